"""btk report: every number it prints, the HTML file, and bad run directories."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import chromium

from btk.cli import cli
from btk.compare import paired_tests, run_rows
from btk.metrics import evaluate
from btk.runs import load_run
from btk.stats import mcnemar, metric_cis, reliability
from btk.testing import make_run

# A case worked by hand: labels 0 0 1 1, predictions 0 1 1 0.
Y = np.array([0, 0, 1, 1])
P = np.array([[0.9, 0.1], [0.38, 0.62], [0.3, 0.7], [0.82, 0.18]])


def test_metrics_of_a_hand_worked_case():
    m = evaluate(Y, P, ["a", "b"])
    assert m["accuracy"] == 0.5 and m["correct"] == 2
    assert m["precision_macro"] == 0.5 and m["recall_macro"] == 0.5 and m["f1_macro"] == 0.5
    assert m["balanced_accuracy"] == 0.5
    # AUC of b: positives score .7 and .18, negatives .1 and .62: 3 of 4 pairs ordered right
    assert m["per_class"]["b"]["auc"] == 0.75 and m["per_class"]["a"]["auc"] == 0.75
    assert m["confusion"] == [[1, 1], [1, 1]]


def test_ece_of_a_hand_worked_case():
    rel = reliability(Y, P)
    assert rel["bins"] == 15 and len(rel["count"]) == 15  # 15 equal-width bins on [0, 1]
    # one image per bin: ECE = mean |correct - confidence| = (.1 + .62 + .3 + .82) / 4
    assert rel["ece"] == pytest.approx(0.46)
    assert sum(rel["count"]) == 4 and rel["count"][13] == 1  # confidence .9 in (0.8667, 0.9333]
    perfect = reliability(np.array([0, 1]), np.array([[1.0, 0.0], [0.0, 1.0]]))
    assert perfect["ece"] == 0.0 and perfect["count"][14] == 2


def test_mcnemar_of_a_hand_worked_case():
    # 10 images only A got right, 2 only B: exact two-sided p = 2 * (1 + 12 + 66) / 2**12
    a = np.array([1] * 10 + [0] * 2 + [1] * 5 + [0] * 3, bool)
    b = np.array([0] * 10 + [1] * 2 + [1] * 5 + [0] * 3, bool)
    result = mcnemar(a, b)
    assert (result["a_only"], result["b_only"], result["both"], result["neither"]) == (10, 2, 5, 3)
    assert result["p_value"] == pytest.approx(158 / 4096)
    assert mcnemar(a, a)["p_value"] == 1.0


def _noisy(n, seed=0, k=3):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    p = rng.dirichlet(np.ones(k), n)
    p[np.arange(n), y] += 0.4
    return y, p / p.sum(1, keepdims=True)


def test_confidence_intervals_contain_the_estimate_and_narrow_with_more_samples():
    widths = []
    for n in (100, 1600):
        y, p = _noisy(n)
        m = evaluate(y, p, ["a", "b", "c"])
        ci = metric_cis(y, p)
        for key in ("accuracy", "balanced_accuracy", "f1_macro", "auc_macro"):
            low, high = ci[key]
            assert low <= m[key] <= high, (key, n)
        widths.append(ci["accuracy"][1] - ci["accuracy"][0])
    assert widths[1] < widths[0] / 2  # 16x the samples: about a quarter of the width


def test_comparison_rows_best_marks_and_paired_test(tmp_path):
    y, p = _noisy(200, 1)
    worse = 0.5 * p + 0.5 * np.roll(p, 1, axis=1)
    make_run(tmp_path, "good", y, p, ["a", "b", "c"])
    make_run(tmp_path, "worse", y, {"clean": worse, "blur": worse[::-1]}, ["a", "b", "c"], train_degrade=["blur"])
    runs = [load_run(tmp_path / "good"), load_run(tmp_path / "worse")]
    rows = run_rows(runs)
    assert [(r["run"], r["test_condition"]) for r in rows] == [("good", "clean"), ("worse", "clean"), ("worse", "blur")]
    assert rows[1]["train_degrade"] == "blur"
    assert rows[0]["ece"] == pytest.approx(reliability(y, p)["ece"])
    (test,) = paired_tests(runs)
    expected = mcnemar(p.argmax(1) == y, worse.argmax(1) == y)
    assert test["p_value"] == expected["p_value"] and test["n"] == 200
    out = CliRunner().invoke(cli, ["report", str(tmp_path / "good"), str(tmp_path / "worse")], env={"COLUMNS": "200"})
    assert out.exit_code == 0, out.output
    assert "2 runs" in out.output and "McNemar" in out.output
    assert f"{100 * rows[0]['accuracy']:.1f}" in out.output


def test_bad_run_directories_are_skipped_with_one_line(tmp_path):
    y, p = _noisy(50, 2)
    for name in ("ok", "no_metrics", "old", "interrupted"):
        make_run(tmp_path, name, y, p, ["a", "b", "c"])
    (tmp_path / "no_metrics" / "metrics.json").unlink()
    marker = tmp_path / "old" / "btk-run.json"
    marker.write_text(json.dumps({"format": 0}))
    (tmp_path / "interrupted" / "btk-run.json").unlink()
    shutil.move(tmp_path / "interrupted", tmp_path / ".interrupted.partial")
    out = CliRunner().invoke(cli, ["report", *[str(tmp_path / n) for n in ("ok", "no_metrics", "old")],
                                   str(tmp_path / ".interrupted.partial")], env={"COLUMNS": "200"})
    assert out.exit_code == 0, out.output
    skipped = [line for line in out.output.splitlines() if line.startswith("btk: skipped")]
    assert len(skipped) == 3
    assert "run is missing metrics.json" in skipped[0]
    assert "run format 0 is not supported" in skipped[1]
    assert "is not a complete btk run" in skipped[2]
    assert "per class, clean test images" in out.output  # the good run is still reported


def test_html_report_is_self_contained_and_renders(tmp_path):
    y, p = _noisy(120, 3, 4)
    classes = ["glioma", "meningioma", "none", "pituitary"]
    make_run(tmp_path, "one", y, {"clean": p, "blur": np.roll(p, 1, axis=0)}, classes)
    make_run(tmp_path, "two", y, 0.7 * p + 0.3 / 4, classes)
    html_path = tmp_path / "report.html"
    out = CliRunner().invoke(cli, ["report", str(tmp_path / "one"), str(tmp_path / "two"), "--html", str(html_path)])
    assert out.exit_code == 0, out.output
    page = html_path.read_text()
    assert "<script" not in page and "<link" not in page  # nothing to run, nothing to fetch
    assert not re.search(r"""(src|href)=["'](?!data:|#)""", page)  # only embedded images and in-page links
    assert "http://" not in page and "https://" not in page
    assert page.count("data:image/png;base64,") == 2 * 2 + 8 * 3  # 2 figures per run; 8 examples x 3 conditions
    assert "McNemar p (exact)" in page and "ECE" in page and "[" in page  # paired test, calibration, intervals
    shot = tmp_path / "shot.png"
    proc = chromium(html_path, tmp_path / "profile", 1200, 1600, "--enable-logging=stderr", "--v=0",
                    f"--screenshot={shot}")
    assert shot.exists(), proc.stderr
    assert "CONSOLE" not in proc.stderr and "Uncaught" not in proc.stderr
    import cv2

    image = cv2.imread(str(shot))
    assert image.shape[:2] == (1600, 1200)
    assert image.std() > 20  # not a blank page
    assert (image < 100).mean() > 0.01  # dark text and figures present


def test_separate_runs_over_seeds_get_their_mean_and_range(tmp_path):
    """Runs made one by one (a job array's) that differ only in their seed are put together: the
    mean and range of each metric over the seeds; a run with another recipe is not among them."""
    y = np.repeat(np.arange(3), 40)
    accuracies = []
    for seed in (101, 102, 103):
        _, p = _noisy(120, seed)
        p = np.eye(3)[y] * 0.2 + p
        make_run(tmp_path, f"multiclass-seed{seed}", y, p, ["a", "b", "c"], seed=seed)
        accuracies.append(100 * float((p.argmax(1) == y).mean()))
    make_run(tmp_path, "blurred-seed101", y, _noisy(120, 7)[1], ["a", "b", "c"], seed=101, train_degrade=["blur"])
    paths = sorted(str(p) for p in tmp_path.iterdir())
    out = CliRunner().invoke(cli, ["report", *paths, "--html", str(tmp_path / "r.html")], env={"COLUMNS": "200"})
    assert out.exit_code == 0, out.output
    assert "differ only in their seed (seeds 101, 102, 103)" in out.output
    mean, low, high = sum(accuracies) / 3, min(accuracies), max(accuracies)
    assert f"{mean:.1f} ({low:.1f}-{high:.1f})" in out.output
    assert "over seeds 101, 102, 103" in (tmp_path / "r.html").read_text()

    from btk.suite import seed_summary

    summary = seed_summary([load_run(p) for p in paths])
    (row,) = summary["aggregate"]
    assert row["label"] == "multiclass" and row["n"] == 3 and row["seeds"] == [101, 102, 103]
    assert row["mean"]["accuracy"] == pytest.approx(mean, abs=0.01)
    assert seed_summary([load_run(paths[0])]) is None
    shutil.copytree(tmp_path / "multiclass-seed101", tmp_path / "again-seed101")  # a seed run twice counts once
    again = seed_summary([load_run(p) for p in sorted(tmp_path.iterdir()) if p.is_dir()])
    assert again["aggregate"][0]["n"] == 3
