"""Prediction sets (btk.conformal): the per-class guarantee on exchangeable data, the shift
check, the commands that give and measure sets, and their bad input."""

from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from scipy.stats import binom

from btk.cli import cli
from btk.conformal import (
    Conformal,
    check_coverage,
    scans_needed,
    set_metrics,
    shortfalls,
)
from btk.errors import BtkError
from btk.shift import CHOSEN, MIN_GROUPS, read_reference
from btk.shift import shift_check as _shift_check


def shift_check(reference, cohort):
    """The top-probability check (btk.shift's fallback for runs without reference features)."""
    return _shift_check(None, None, None, reference, cohort)

CLASSES = ("glioma", "meningioma", "no_tumour", "pituitary")
OLD_RUN = Path(__file__).parent / "fixtures" / "run-ad61e95"


def _draw(rng: np.random.Generator, n: int, weights=(0.4, 0.3, 0.1, 0.2), signal: float = 1.5):
    """Labelled images of a noisy 4-class model: softmax of Gaussian logits, the true class
    lifted by ``signal``. Class frequencies ``weights`` (no tumour the rarest)."""
    y = rng.choice(4, size=n, p=weights)
    logits = rng.normal(size=(n, 4))
    logits[np.arange(n), y] += signal
    p = np.exp(logits)
    return p / p.sum(axis=1, keepdims=True), y


def test_coverage_per_class_is_the_promise_over_200_exchangeable_repetitions():
    """Each repetition draws a new calibration set (300 images) and a new test set (100) from
    one distribution. Pooled over 200 repetitions, every class's coverage lies in the binomial
    interval of the promise; unsmoothed p-values may exceed it by at most 1/(n+1), so the upper
    end is that of the promise plus 1/(n+1) for the class's mean calibration count."""
    rng = np.random.default_rng(7)
    coverage = 0.9
    covered = np.zeros(4)
    seen = np.zeros(4)
    cal_counts = np.zeros(4)
    for _ in range(200):
        probs, y = _draw(rng, 300)
        conformal = Conformal(CLASSES, probs, y)
        test_probs, test_y = _draw(rng, 100)
        sets = conformal.sets(test_probs, coverage)
        hit = sets[np.arange(len(test_y)), test_y]
        for k in range(4):
            covered[k] += hit[test_y == k].sum()
            seen[k] += (test_y == k).sum()
            cal_counts[k] += (y == k).sum() / 200
    for k in range(4):
        n = int(seen[k])
        low = binom.ppf(0.005, n, coverage) / n
        high = binom.ppf(0.995, n, min(1.0, coverage + 1 / (cal_counts[k] + 1))) / n
        assert low <= covered[k] / n <= high, (CLASSES[k], covered[k] / n, low, high)
    # the smallest class gets its promise too: that is what Mondrian (per-class) calibration buys
    assert covered[2] / seen[2] >= binom.ppf(0.005, int(seen[2]), coverage) / seen[2]


def test_the_top_probability_check_is_quiet_on_exchangeable_data_and_fires_on_a_shifted_cohort():
    rng = np.random.default_rng(3)
    reference, _ = _draw(rng, 400)
    same, _ = _draw(rng, 300)
    assert not shift_check(reference, same).differs
    shifted, _ = _draw(rng, 300, signal=0.3)  # a site where the network is much less sure
    check = shift_check(reference, shifted)
    assert check.differs and check.p_value < 1e-5 and check.effect > 0.15
    assert check.sentence().startswith("this cohort differs from the calibration images (Kolmogorov-Smirnov")
    assert "the coverage promise does not hold for it" in check.sentence()
    # a cohort as sure as the reference but wrong more often in places is caught too: the
    # network's confidence is spread differently (this is what SARTAJ Testing does)
    mixed = np.concatenate([_draw(rng, 150, signal=0.2)[0], _draw(rng, 150, signal=4.0)[0]])
    assert shift_check(reference, mixed).differs
    # false alarms at about the level asked for, over 200 exchangeable cohorts
    alarms = sum(shift_check(_draw(rng, 200)[0], _draw(rng, 60)[0]).differs for _ in range(200))
    assert alarms <= 8  # level 1%: 2 expected, 8 has probability < 0.001


def test_too_few_calibration_images_of_a_class_put_it_in_every_set():
    assert (scans_needed(0.95), scans_needed(0.9), scans_needed(0.8)) == (19, 9, 4)
    rng = np.random.default_rng(0)
    probs, y = _draw(rng, 400)
    keep = (y != 3) | (np.cumsum(y == 3) <= 10)  # 10 pituitary images: enough for 90%, not for 95%
    conformal = Conformal(CLASSES, probs[keep], y[keep])
    assert conformal.thin_classes(0.95) == {"pituitary": 10} and conformal.thin_classes(0.9) == {}
    test, _ = _draw(rng, 50)
    assert conformal.sets(test, 0.95)[:, 3].all()
    assert not conformal.sets(test, 0.9)[:, 3].all()


def test_sets_do_not_depend_on_the_other_images_and_survive_the_file(tmp_path):
    rng = np.random.default_rng(1)
    probs, y = _draw(rng, 200)
    conformal = Conformal(CLASSES, probs, y, tuple(f"img{i}.jpg" for i in range(200)))
    test, _ = _draw(rng, 30)
    together = conformal.sets(test, 0.9)
    alone = np.stack([conformal.sets(test[i:i + 1], 0.9)[0] for i in range(30)])
    assert np.array_equal(together, alone)
    conformal.write(tmp_path / "conformal.csv")
    back = Conformal.read(tmp_path / "conformal.csv", CLASSES)
    assert back.sources == conformal.sources and np.array_equal(back.labels, y)
    assert np.array_equal(back.sets(test, 0.9), together)
    assert np.allclose(back.p_values(test), conformal.p_values(test))


def test_set_metrics_and_the_words_for_a_shortfall():
    sets = np.array([[1, 0], [1, 1], [0, 0], [0, 1]], bool)
    y = np.array([0, 1, 1, 0])
    m = set_metrics(sets, y, np.full((4, 2), 0.5), ("a", "b"))
    assert m["coverage"] == 0.5 and m["mean_size"] == 1.0 and m["single"] == 0.5 and m["empty"] == 0.25
    assert m["single_accuracy"] == 0.5
    assert m["per_class"] == {"a": {"images": 2, "coverage": 0.5, "mean_size": 1.0},
                              "b": {"images": 2, "coverage": 0.5, "mean_size": 1.0}}
    low = {"per_class": {"no_tumor": {"images": 200, "coverage": 0.88}, "glioma": {"images": 200, "coverage": 0.94}}}
    lines = shortfalls(low, 0.95)
    assert len(lines) == 1  # 94% of 200 is within chance of 95%; 88% is not
    assert lines[0].startswith("no_tumor coverage 88.0% < 95% (200 images, binomial p = ")
    assert lines[0].endswith("this site is not exchangeable with the training data")


@pytest.mark.parametrize("value", [1.5, 0, 1, -0.2, "x"])
def test_a_coverage_outside_zero_and_one_is_refused(value):
    with pytest.raises(BtkError, match="a coverage is a share between 0 and 1"):
        check_coverage(value)


# --- the commands ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_run(tmp_path_factory, sartaj_small):
    """One run on 44 real SARTAJ images (small-cnn, 32 px, 2 epochs)."""
    out = tmp_path_factory.mktemp("conformal-runs")
    result = CliRunner().invoke(cli, ["run", "--data", str(sartaj_small), "--model", "small-cnn", "--image-size", "32",
                                      "--epochs", "2", "--set", "val_fraction=0.3", "--name", "sets", "--out", str(out),
                                      "--reporter", "none"])
    assert result.exit_code == 0, result.output
    return next(out.iterdir())


@pytest.mark.slow
def test_a_run_keeps_its_validation_probabilities_and_measures_its_sets(small_run):
    from btk.runs import load_run

    run = load_run(small_run)
    conformal = run.conformal()
    assert conformal is not None and conformal.origin == "validation"
    val = [r["source"] for r in csv.DictReader((small_run / "split.csv").open()) if r["subset"] == "val"]
    assert sorted(conformal.sources) == sorted(val)
    summary = json.loads((small_run / "config.json").read_text())["calibration"]["conformal"]
    assert summary["images"] == len(val) and summary["library"].startswith("crepes")
    clean = run.metrics["conditions"]["clean"]
    assert set(clean["sets"]) == {"0.9", "0.95"} and clean["shift"]["reference"] == len(val)
    # the shift check compares the test images' features with the calibration images', which the run keeps
    reference = read_reference(small_run)
    assert reference is not None and len(reference.groups) == len(val) and reference.features.shape[1] > 0
    assert clean["shift"]["test"] == CHOSEN and not clean["shift"]["fallback"]
    # the run's own test metrics are the sets of the probabilities in its predictions.csv
    _, y, probs = run.condition_arrays("clean")
    assert clean["sets"]["0.9"] == set_metrics(conformal.sets(probs, 0.9), y, probs, run.classes)


@pytest.mark.slow
def test_predict_gives_each_image_its_set_the_same_as_the_run_computes(small_run, sartaj_small, tmp_path):
    from btk.runs import load_run

    scans = sartaj_small / "Testing"
    result = CliRunner().invoke(cli, ["predict", str(small_run), "--data", str(scans), "--coverage", "0.9",
                                      "--check-shift", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "prediction sets at 90% coverage:" in result.output
    assert f"no verdict on shift: {len(list(scans.rglob('*.jpg')))} images" in result.output  # fewer than 20
    folder = next(tmp_path.iterdir())
    rows = list(csv.DictReader((folder / "predictions.csv").open()))
    run = load_run(small_run)
    probs = np.array([[float(r[f"p_{c}"]) for c in run.classes] for r in rows])
    expected = run.conformal().sets(probs, 0.9)
    for r, members in zip(rows, expected):
        names = [c for c, m in zip(run.classes, members) if m]
        assert r["set"] == ("|".join(names) or "(empty)") and int(r["set_size"]) == len(names)
    info = json.loads((folder / "predict.json").read_text())
    assert info["coverage"] == 0.9 and info["shift"]["images"] == len(rows) and info["shift"]["verdict"] == "none"
    assert sum(info["set_sizes"].values()) == len(rows)
    as_json = CliRunner().invoke(cli, ["predict", str(small_run), "--data", str(scans), "--coverage", "0.9",
                                       "--json"])
    records = json.loads(as_json.stdout)
    assert [r["set"] for r in records] == [[c for c, m in zip(run.classes, s) if m] for s in expected]


@pytest.mark.slow
def test_evaluate_measures_the_coverages_asked_for_clean_and_degraded(small_run, sartaj_small, tmp_path):
    from btk.runs import load_run

    result = CliRunner().invoke(cli, ["evaluate", str(small_run), "--data", str(sartaj_small), "--split", "all",
                                      "--coverage", "0.8", "--coverage", "0.9", "--degrade", "blur@2",
                                      "--out", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    evaluation = load_run(json.loads(result.stdout)["run"])
    for condition in ("clean", "blur@2"):
        m = evaluation.metrics["conditions"][condition]
        assert set(m["sets"]) == {"0.8", "0.9"} and m["sets"]["0.9"]["images"] == 44
        shift = m["shift"]
        assert shift["images"] == 44 and shift["test"] == CHOSEN
        if shift["reference"] < MIN_GROUPS:  # too few calibration images to test: no verdict from the features
            assert shift["p_value"] is None and shift["verdict"] in ("none", "differs")
        else:
            assert 0.0 <= shift["p_value"] <= 1.0
    assert evaluation.conformal() is not None  # the evaluation keeps its run's calibration
    report = CliRunner().invoke(cli, ["report", str(evaluation.path)])
    assert report.exit_code == 0 and "prediction sets" in report.output


@pytest.mark.slow
def test_calibrate_on_a_site_sample_records_it_and_refuses_too_few_scans(small_run, sartaj_small, tmp_path):
    from btk.runs import load_run

    runner = CliRunner()
    base = ["calibrate", str(small_run), "--data", str(sartaj_small), "--split", "all", "--out", str(tmp_path)]
    few = runner.invoke(cli, base)  # half of 11 per class: 5 or 6 scans, 95% needs 19
    assert few.exit_code == 1 and "Traceback" not in few.output
    assert re.search(r"glioma_tumor: [56] labelled scan\(s\) in the sample, 95% coverage needs at least 19 "
                     r"\(label 1[34] more\)", few.output)
    assert not list(tmp_path.iterdir())
    result = runner.invoke(cli, [*base, "--coverage", "0.8", "--name", "site", "--reporter", "none"])
    assert result.exit_code == 0, result.output
    calibrated = load_run(next(tmp_path.iterdir()))
    record = calibrated.metrics["recalibration"]
    assert record["from_run"] == small_run.name and record["sample"]["images"] == 22
    assert record["sample"]["per_class"] == {c: int(n) for c, n in record["calibration_per_class"].items()}
    assert len(record["sample"]["sha256"]) == 64 and record["rest"]["images"] == 22
    conformal = calibrated.conformal()
    assert conformal.origin == "site"
    val = {r["source"] for r in csv.DictReader((calibrated.path / "split.csv").open()) if r["subset"] == "val"}
    assert set(conformal.sources) == val and len(val) == 22
    assert calibrated.metrics["counts"]["test"] == 22  # the rest, scored with the new calibration
    assert "0.9" in calibrated.metrics["conditions"]["clean"]["sets"]
    # a sample share outside (0, 1), a bad coverage: one line each
    bad = runner.invoke(cli, [*base, "--sample", "1.5"])
    assert bad.exit_code == 1 and "--sample 1.5" in bad.output and "Traceback" not in bad.output
    bad = runner.invoke(cli, [*base, "--coverage", "1.5"])
    assert bad.exit_code == 1 and "--coverage 1.5" in bad.output


@pytest.mark.slow
def test_a_run_from_before_sets_is_told_how_to_get_them_and_calibrate_gives_them(sartaj, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(OLD_RUN, old)
    scan = next((sartaj / "Testing" / "no_tumor").glob("*.jpg"))
    runner = CliRunner()
    refused = runner.invoke(cli, ["predict", str(old), "--data", str(scan), "--coverage", "0.9"])
    assert refused.exit_code == 1 and "Traceback" not in refused.output
    assert "has no prediction-set calibration" in refused.output and f"btk calibrate {old}" in refused.output
    refused = runner.invoke(cli, ["evaluate", str(old), "--data", str(sartaj), "--coverage", "0.9"])
    assert refused.exit_code == 1 and "btk calibrate" in refused.output
    made = runner.invoke(cli, ["calibrate", str(old), "--out", str(tmp_path / "new"), "--reporter", "none"])
    assert made.exit_code == 0, made.output
    new = next((tmp_path / "new").iterdir())
    answered = runner.invoke(cli, ["predict", str(new), "--data", str(scan), "--coverage", "0.9", "--json"])
    assert answered.exit_code == 0, answered.output
    assert "set" in json.loads(answered.stdout)[0]


def test_predict_refuses_a_bad_coverage_in_one_line():
    result = CliRunner().invoke(cli, ["predict", str(OLD_RUN), "--data", str(OLD_RUN), "--coverage", "1.5"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.strip().splitlines() == [
        "Error: --coverage 1.5: a coverage is a share between 0 and 1 (exclusive), e.g. 0.95"]


def test_a_site_calibration_completed_from_validation_is_compared_with_the_site_alone():
    rng = np.random.default_rng(5)
    site, y_site = _draw(rng, 120, signal=0.8)
    val, y_val = _draw(rng, 80)
    both = Conformal(CLASSES, np.concatenate([site, val]), np.concatenate([y_site, y_val]), (), "site+validation",
                     ("site",) * 120 + ("validation",) * 80)
    assert np.array_equal(both.reference(), site)
    assert not shift_check(both.reference(), _draw(rng, 200, signal=0.8)[0]).differs  # another sample of the site
