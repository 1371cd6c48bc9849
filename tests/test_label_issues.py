"""Confident learning (btk.label_issues) finds injected label noise from out-of-fold probabilities."""

from __future__ import annotations

import numpy as np

from btk.label_issues import class_thresholds, confident_joint, find_label_issues, issue_rows


def _noisy(seed: int, n: int = 2000, flip: float = 0.05, signal: float = 2.5):
    """True classes, out-of-fold probabilities of a decent model of them, and labels with a
    seeded ``flip`` share changed to another class at random."""
    rng = np.random.default_rng(seed)
    y = rng.choice(4, size=n, p=(0.3, 0.3, 0.15, 0.25))
    logits = rng.normal(size=(n, 4))
    logits[np.arange(n), y] += signal
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    given = y.copy()
    flipped = rng.choice(n, size=int(flip * n), replace=False)
    given[flipped] = (y[flipped] + rng.integers(1, 4, size=len(flipped))) % 4
    return probs, given, set(flipped.tolist())


def test_injected_flips_are_found_with_high_precision_and_recall():
    for seed in (0, 1, 2):
        probs, given, flipped = _noisy(seed)
        issues = find_label_issues(probs, given)
        found = {x.index for x in issues}
        precision = len(found & flipped) / len(found)
        recall = len(found & flipped) / len(flipped)
        assert precision >= 0.6 and recall >= 0.6, (seed, precision, recall)
        # the ranked list starts with the least self-confident examples
        confidences = [x.self_confidence for x in issues]
        assert confidences == sorted(confidences)
        assert all(x.likely != x.given and x.margin > 0 for x in issues)


def test_clean_labels_give_few_issues_and_the_joint_is_what_the_paper_defines():
    probs, _, _ = _noisy(3, flip=0.0)
    labels = probs.argmax(axis=1)  # labels the model agrees with
    assert len(find_label_issues(probs, labels)) <= 0.01 * len(labels)
    tiny = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
    given = np.array([0, 0, 1, 1])
    assert np.allclose(class_thresholds(tiny, given), [0.85, 0.55])
    joint, likely = confident_joint(tiny, given)
    # example 3 (labelled 1): P(0) = 0.6 < 0.85 and P(1) = 0.4 < 0.55: no confident label
    assert likely.tolist() == [0, -1, 1, -1] and joint.tolist() == [[1, 0], [0, 1]]
    rows = issue_rows(find_label_issues(probs[:50], (labels[:50] + 1) % 4), [f"f{i}" for i in range(50)], "abcd")
    assert rows and all(r[1] != r[2] for r in rows)


def test_label_corrections_are_applied_recorded_and_checked(tiny_sartaj_run, tmp_path):
    """``--labels FILE``: a dropped image is left out, a relabelled one changes class, the run
    records the file's SHA-256; paths not in the data and unknown labels are one line each."""
    import csv
    import hashlib
    import json

    from click.testing import CliRunner

    from btk.cli import cli

    data = tmp_path / "data"  # tiny_sartaj_run's 6 meningioma and 6 no-tumour images
    men = sorted(p.name for p in (data / "meningioma_tumor").iterdir())
    fixes = tmp_path / "fixes.csv"
    fixes.write_text(f"path,label\nmeningioma_tumor/{men[0]},drop\nmeningioma_tumor/{men[1]},no_tumor\n")
    run_dir, _ = tiny_sartaj_run("--labels", str(fixes))
    rows = {r["source"]: r["label"] for r in csv.DictReader((run_dir / "split.csv").open())}
    assert f"meningioma_tumor/{men[0]}" not in rows and len(rows) == 11
    assert rows[f"meningioma_tumor/{men[1]}"] == "no_tumor"
    config = json.loads((run_dir / "config.json").read_text())
    record = config["provenance"]["data"]["labels"]
    assert record["sha256"] == hashlib.sha256(fixes.read_bytes()).hexdigest()
    assert (record["changed"], record["dropped"]) == (1, 1) and config["config"]["labels"] == str(fixes)
    bad = tmp_path / "bad.csv"
    bad.write_text("path,label\n" + "".join(f"nowhere/{k}.jpg,drop\n" for k in range(7)))
    result = CliRunner().invoke(cli, ["run", "--data", str(data), "--labels", str(bad), "--out", str(tmp_path / "x")])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "7 path(s) not in the data, e.g. nowhere/0.jpg, nowhere/1.jpg, nowhere/2.jpg, nowhere/3.jpg, " \
           "nowhere/4.jpg" in result.output
    bad.write_text(f"path,label\nmeningioma_tumor/{men[2]},glioma\n")
    result = CliRunner().invoke(cli, ["run", "--data", str(data), "--labels", str(bad), "--out", str(tmp_path / "x")])
    assert result.exit_code == 1 and "unknown label(s) glioma" in result.output
