"""Prediction sets (btk.conformal): the per-class guarantee on exchangeable data, the shift
check, the commands that give and measure sets, and their bad input."""

from __future__ import annotations

import csv
import json
import math
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
    check_delta,
    coverage_interval,
    guarantee_lines,
    in_every_set,
    in_every_set_warning,
    order_index,
    scans_needed,
    set_metrics,
    set_rows,
    set_warnings,
    shortfalls,
)
from btk.errors import BtkError
from btk.shift import CHOSEN, MIN_GROUPS, read_reference
from btk.shift import shift_check as _shift_check


def shift_check(reference, cohort):
    """The top-probability check (btk.shift's fallback for runs without reference features)."""
    return _shift_check(None, None, None, reference, cohort)

CLASSES = ("glioma", "meningioma", "no_tumour", "pituitary")
OLD_RUN = Path(__file__).parent / "fixtures" / "run-ad61e95"  # conftest's old_run copies it


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
    assert (scans_needed(0.95), scans_needed(0.9), scans_needed(0.8), scans_needed(0.99)) == (20, 10, 5, 100)
    rng = np.random.default_rng(0)
    probs, y = _draw(rng, 400)
    keep = (y != 3) | (np.cumsum(y == 3) <= 10)  # 10 pituitary images: enough for 90%, not for 95%
    conformal = Conformal(CLASSES, probs[keep], y[keep])
    assert conformal.thin_classes(0.95) == {"pituitary": 10} and conformal.thin_classes(0.9) == {}
    test, _ = _draw(rng, 50)
    assert conformal.sets(test, 0.95)[:, 3].all()
    assert not conformal.sets(test, 0.9)[:, 3].all()


@pytest.mark.parametrize("coverage, n, left_out", [(0.9, 9, False), (0.9, 10, True), (0.95, 19, False),
                                                   (0.95, 20, True), (0.8, 4, False), (0.8, 5, True)])
def test_a_class_can_be_left_out_exactly_from_one_image_past_the_boundary(coverage, n, left_out):
    """With n calibration images of a class its smallest p-value is 1/(n+1); a set leaves it out
    only below 1 - C, so only for n > 1/(1-C) - 1: 10 at 90%, 20 at 95%. At 95% and 19 images the
    float 1 - 0.95 (0.05000000000000004) is above 1/20 = 0.05, which once let a set leave the
    class out: the real sets are checked on both sides."""
    rng = np.random.default_rng(n)
    probs, y = _draw(rng, 400, weights=(0.34, 0.33, 0.33, 0.0))
    rare = _draw(rng, 4 * n, weights=(0, 0, 0, 1.0))[0][:n]  # n pituitary images
    conformal = Conformal(CLASSES, np.concatenate([probs, rare]), np.concatenate([y, np.full(n, 3)]))
    assert conformal.counts()["pituitary"] == n
    test = np.array([[0.6, 0.2, 0.2, 0.0], [0.0, 0.0, 0.0, 1.0]])  # no sign of pituitary; nothing but it
    sets = conformal.sets(test, coverage)
    assert sets[1, 3]
    assert bool(sets[0, 3]) is not left_out
    assert (conformal.thin_classes(coverage) == {"pituitary": n}) is not left_out  # the one function agrees
    assert (n >= scans_needed(coverage)) is left_out


def test_the_interval_of_one_calibration_s_coverage_is_the_beta_law():
    from scipy.stats import beta

    for n, coverage in [(34, 0.9), (68, 0.9), (19, 0.9), (50, 0.95)]:
        k = order_index(n, coverage)
        whole = (n + 1) * coverage
        assert k == (int(round(whole)) + 1 if abs(whole - round(whole)) < 1e-9 else math.ceil(whole))
        lo, hi = coverage_interval(n, coverage)
        assert lo == pytest.approx(beta.ppf(0.05, k, n + 1 - k)) and hi == pytest.approx(beta.ppf(0.95, k, n + 1 - k))
    # 34 glioma scans at 90% (ceil(35 * 0.9) = 32): a single calibration can cover as little as
    # about 83% with 5% probability; a coverage of 78% is in its 1% tail, not impossible
    lo, hi = coverage_interval(34, 0.9)
    assert 0.82 < lo < 0.83 and 0.97 < hi < 0.98
    assert beta.cdf(0.78, 32, 3) > 0.005
    assert coverage_interval(9, 0.9) == (1.0, 1.0)  # in every set
    # the training-conditional order statistic: the smallest k with at most delta below C
    for n in (22, 40, 100):
        k = order_index(n, 0.9, 0.1)
        assert beta.cdf(0.9, k, n + 1 - k) <= 0.1 < beta.cdf(0.9, k - 1, n + 2 - k)
    assert scans_needed(0.9, 0.1) == 22 and 0.9 ** 22 <= 0.1 < 0.9 ** 21
    lines = guarantee_lines({"glioma": 34, "pituitary": 9}, [0.9])
    assert "average over calibration draws" in lines[0]
    assert lines[1] == f"  90% sets: glioma (n=34) [{100 * lo:.1f}, {100 * hi:.1f}]%; pituitary (n=9) in every set"
    assert "at least C with probability 0.9" in guarantee_lines({"glioma": 34}, [0.9], 0.1)[0]


def _uniform_draw(rng: np.random.Generator, n: int, delta: float | None) -> Conformal:
    """A two-class calibration whose class-0 nonconformity scores are uniform on (0, 1)."""
    p0 = rng.uniform(size=n)
    other = rng.uniform(size=20)
    probs = np.concatenate([np.stack([p0, 1 - p0], 1), np.stack([1 - other, other], 1)])
    return Conformal(("a", "b"), probs, np.r_[np.zeros(n, int), np.ones(20, int)], delta=delta)


def test_over_many_calibration_draws_the_plain_promise_is_an_average_and_the_pac_one_holds_per_draw():
    """Exchangeable synthetic scores: the coverage of class a given one calibration is the share
    of a fine grid of test scores in its sets. The plain form misses C in about 42% of draws
    (P(Beta(37, 4) < 0.9) for n = 40) while averaging at least C; the training-conditional
    form (delta = 0.1) misses it in at most 10% of draws."""
    from scipy.stats import binom

    rng = np.random.default_rng(11)
    grid = (np.arange(200) + 0.5) / 200  # P(a) of the test images: nonconformity uniform too
    test = np.stack([grid, 1 - grid], 1)
    draws, n, coverage = 150, 40, 0.9
    plain = np.array([_uniform_draw(rng, n, None).sets(test, coverage)[:, 0].mean() for _ in range(draws)])
    pac = np.array([_uniform_draw(rng, n, 0.1).sets(test, coverage)[:, 0].mean() for _ in range(draws)])
    assert plain.mean() >= coverage - 0.01  # the marginal promise
    assert 0.25 <= (plain < coverage).mean() <= 0.6  # ... but not for each draw
    lo, hi = coverage_interval(n, coverage)  # the printed interval holds a draw's coverage 90% of the time
    inside = ((plain >= lo - 0.005) & (plain <= hi + 0.005)).mean()  # 0.005: the grid's step
    assert binom.ppf(0.001, draws, 0.9) / draws <= inside <= binom.ppf(0.999, draws, 0.9) / draws
    assert (pac < coverage).mean() <= binom.ppf(0.999, draws, 0.1) / draws
    assert pac.mean() > plain.mean()  # the price: larger sets


def test_a_training_conditional_calibration_survives_the_file_and_says_so(tmp_path):
    rng = np.random.default_rng(4)
    probs, y = _draw(rng, 300)
    conformal = Conformal(CLASSES, probs, y, delta=0.1)
    conformal.write(tmp_path / "conformal.csv")
    back = Conformal.read(tmp_path / "conformal.csv", CLASSES)
    assert back.delta == 0.1 and "probability 0.9" in back.summary()["method"] and back.summary()["pac_delta"] == 0.1
    test, _ = _draw(rng, 40)
    assert np.array_equal(back.sets(test, 0.9), conformal.sets(test, 0.9))
    assert back.sets(test, 0.9).sum() >= Conformal(CLASSES, probs, y).sets(test, 0.9).sum()
    assert Conformal.read(tmp_path / "conformal.csv", CLASSES).thin_classes(0.95) == in_every_set(
        conformal.counts(), 0.95, 0.1)
    for bad in (0, 0.7, "x"):
        with pytest.raises(BtkError, match="--pac-delta"):
            check_delta(bad)
    from btk.config import make_run_config

    assert make_run_config(pac_delta=0.1).pac_delta == 0.1 and make_run_config().pac_delta is None
    with pytest.raises(BtkError, match="pac_delta"):
        make_run_config(pac_delta=0.7)


def test_every_report_line_flags_a_promise_whose_sets_hold_every_class():
    """The demo's case: 15 calibration images a class, a 95% promise: every set holds every class
    (mean size 4.00, coverage 100%), and every report says so."""
    per_class = {"metrics": {"images": 15, "coverage": 1.0, "mean_size": 4.0}}
    sets = {"images": 60, "coverage": 1.0, "mean_size": 4.0, "single": 0.0, "single_accuracy": None, "empty": 0.0,
            "per_class": dict.fromkeys(CLASSES, per_class["metrics"])}
    conditions = {"clean": {"sets": {"0.9": {**sets, "mean_size": 1.3}, "0.95": sets}}}
    calibration = {"per_class": dict.fromkeys(CLASSES, 15)}
    rows = set_rows(conditions, calibration)
    assert [r["in_every_set"] for r in rows] == [{}, dict.fromkeys(CLASSES, 15)]
    warnings = set_warnings(conditions, "clean", calibration)
    assert warnings == [in_every_set_warning(dict.fromkeys(CLASSES, 15), 0.95)]
    assert warnings[0].startswith("95% sets: every set holds glioma (15), meningioma (15), no_tumour (15), "
                                  "pituitary (15): too few calibration images")
    assert "at least 20 of a class" in warnings[0]
    assert set_rows(conditions)[1]["in_every_set"] == {}  # without the calibration nothing is claimed


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


@pytest.mark.parametrize("fraction", [0.5, 0.25, 0.7])
def test_a_site_sample_takes_whole_patients_and_copy_clusters_stratified_by_class(fraction):
    from btk.recalibrate import draw_sample

    rng = np.random.default_rng(2)
    sizes = rng.integers(1, 6, size=80)  # 80 patients of 1-5 scans, each of one class
    classes = rng.choice(4, size=80, p=(0.4, 0.3, 0.2, 0.1))
    groups = np.repeat(np.arange(80), sizes)
    y = np.repeat(classes, sizes)
    sample, rest = draw_sample(y, fraction, seed=3, groups=groups)
    assert len(sample) + len(rest) == len(y) and not set(sample) & set(rest)
    assert not set(groups[sample]) & set(groups[rest])  # no patient on both sides
    assert abs(len(sample) / len(y) - fraction) < 0.12
    for k in range(4):  # every class on both sides, in about the proportion asked for
        share = (y[sample] == k).sum() / (y == k).sum()
        assert 0 < share < 1 and abs(share - fraction) < 0.25, (k, share)
    again = draw_sample(y, fraction, seed=3, groups=groups)
    assert np.array_equal(again[0], sample)  # seeded
    with pytest.raises(BtkError, match="a group is never split"):
        draw_sample(y, 0.5, seed=3, groups=np.zeros(len(y), int))


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
    with run.scorer() as scorer:  # every command that scores through the run compares with the same features
        assert scorer.shift_reference is not None
        assert np.array_equal(scorer.shift_reference.features, reference.features)
    # the run's own test metrics are the sets of the probabilities in its predictions.csv
    _, y, probs = run.condition_arrays("clean")
    assert clean["sets"]["0.9"] == set_metrics(conformal.sets(probs, 0.9), y, probs, run.classes)


@pytest.mark.slow
def test_every_report_of_a_run_with_thin_calibration_flags_the_sets_that_hold_a_class_always(small_run, tmp_path):
    """The run has a few validation images a class (fewer than the 10 a 90% set needs): the
    terminal report, the HTML report, the model card and predict all say that every set holds
    them, from one function."""
    from btk.runs import load_run

    run = load_run(small_run)
    held = run.conformal().thin_classes(0.9)
    assert held == in_every_set(run.conformal().counts(), 0.9) and held  # all classes: 2-3 images each
    warning = in_every_set_warning(held, 0.9)
    html = tmp_path / "report.html"
    result = CliRunner().invoke(cli, ["report", str(small_run), "--html", str(html)])
    assert result.exit_code == 0, result.output
    flat = " ".join(result.output.split())  # rich wraps long lines
    assert " ".join(f"clean: {warning}".split()) in flat
    assert "average over calibration draws" in flat and "in every set" in flat
    page = html.read_text()
    assert page.count('<tr class="warn in-every-set">') == 2  # the 90% and 95% rows
    assert "every set holds" in page
    card = (small_run / "MODEL_CARD.md").read_text()
    assert warning in card and "| test images | 90 * |" in card
    scan = next(iter(run.conformal().sources))
    data = Path(run.config.data)
    predicted = CliRunner().invoke(cli, ["predict", str(small_run), "--data", str(data / scan), "--coverage", "0.9"])
    assert predicted.exit_code == 0, predicted.output
    assert " ".join(warning.split()) in " ".join(predicted.output.split())


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
    # the run's 2-3 validation images a class: the evaluation's report says every set holds them
    assert "80% sets: every set holds" in " ".join(report.output.split())


@pytest.mark.slow
def test_calibrate_on_a_site_sample_records_it_and_refuses_too_few_scans(small_run, sartaj_small, tmp_path):
    from btk.runs import load_run

    runner = CliRunner()
    site = tmp_path / "site"
    shutil.copytree(sartaj_small, site)
    copied = sorted((site / "Training" / "meningioma_tumor").glob("*.jpg"))[:3]
    for f in copied:  # three scans twice each: a copy pair must stay on one side of the sample
        shutil.copy(f, f.with_name(f"copy-{f.name}"))
    out = tmp_path / "out"
    base = ["calibrate", str(small_run), "--data", str(site), "--split", "all", "--out", str(out)]
    few = runner.invoke(cli, base)  # half of 11 per class: 5 or 6 scans; a 95% set leaves a class out from 20
    assert few.exit_code == 1 and "Traceback" not in few.output
    assert re.search(r"glioma_tumor: [4-7] labelled scan\(s\) in the sample, 95% coverage needs at least 20 "
                     r"\(label 1[3-6] more\)", few.output)
    assert not out.exists() or not list(out.iterdir())
    result = runner.invoke(cli, [*base, "--coverage", "0.8", "--name", "site"])
    assert result.exit_code == 0, result.output
    # the report flags the promises whose sets hold a class always (5 a class: 90% needs 10)
    assert "every set holds" in result.output and "in every set" in result.output
    assert "average over calibration draws" in result.output
    calibrated = load_run(next(out.iterdir()))
    record = calibrated.metrics["recalibration"]
    assert record["from_run"] == small_run.name and record["sample"]["images"] + record["rest"]["images"] == 47
    assert record["sample"]["per_class"] == {c: int(n) for c, n in record["calibration_per_class"].items()}
    assert len(record["sample"]["sha256"]) == 64 and record["groups"]["sample"] + record["groups"]["rest"] == 44
    assert set(record["conditional_coverage"]) == {"0.8", "0.9", "0.95"}
    conformal = calibrated.conformal()
    assert conformal.origin == "site"
    subsets = {r["source"]: r["subset"] for r in csv.DictReader((calibrated.path / "split.csv").open())}
    val = {s for s, subset in subsets.items() if subset == "val"}
    assert set(conformal.sources) == val and len(val) == record["sample"]["images"]
    for f in copied:  # each copy pair on one side
        pair = [s for s in subsets if s.endswith(f.name)]
        assert len(pair) == 2 and subsets[pair[0]] == subsets[pair[1]], pair
    assert calibrated.metrics["counts"]["test"] == record["rest"]["images"]  # scored with the new calibration
    assert "0.9" in calibrated.metrics["conditions"]["clean"]["sets"]
    # a sample share outside (0, 1), a bad coverage: one line each
    bad = runner.invoke(cli, [*base, "--sample", "1.5"])
    assert bad.exit_code == 1 and "--sample 1.5" in bad.output and "Traceback" not in bad.output
    bad = runner.invoke(cli, [*base, "--coverage", "1.5"])
    assert bad.exit_code == 1 and "--coverage 1.5" in bad.output


@pytest.mark.slow
def test_calibrate_with_pac_delta_gives_training_conditional_sets_that_every_later_command_uses(small_run, tmp_path):
    from btk.runs import load_run

    runner = CliRunner()
    bad = runner.invoke(cli, ["calibrate", str(small_run), "--pac-delta", "0.7", "--out", str(tmp_path)])
    assert bad.exit_code == 1 and "Traceback" not in bad.output
    assert bad.output.strip().splitlines()[-1].startswith("Error: --pac-delta 0.7: ")
    assert not list(tmp_path.iterdir())
    made = runner.invoke(cli, ["calibrate", str(small_run), "--pac-delta", "0.1", "--out", str(tmp_path),
                               "--reporter", "none"])
    assert made.exit_code == 0, made.output
    assert "training-conditional promise" in made.output and "probability 0.9" in made.output
    calibrated = load_run(next(tmp_path.iterdir()))
    assert calibrated.config.pac_delta == 0.1 and calibrated.conformal().delta == 0.1
    assert calibrated.calibration.conformal["pac_delta"] == 0.1
    assert calibrated.metrics["recalibration"]["pac_delta"] == 0.1
    # its test metrics are the PAC sets of its predictions (2-3 images a class: every set holds all)
    _, y, probs = calibrated.condition_arrays("clean")
    sets = calibrated.conformal().sets(probs, 0.9)
    assert calibrated.metrics["conditions"]["clean"]["sets"]["0.9"] == set_metrics(sets, y, probs, calibrated.classes)
    assert sets.all() and calibrated.conformal().thin_classes(0.9) == calibrated.conformal().counts()


@pytest.mark.slow
def test_a_run_from_before_sets_is_told_how_to_get_them_and_calibrate_gives_them(sartaj, old_run, old_run_data,
                                                                                   tmp_path):
    old = old_run
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
