"""Temperature scaling and abstention: the fitted temperature softens overconfident
probabilities (lower NLL and ECE, same top class); a real run stores its temperature and old
runs load with 1.0; accuracy against coverage on a hand-worked case."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from btk.calibration import apply_temperature, coverage_curve, fit_temperature, nll
from btk.runs import load_run
from btk.stats import reliability


def _overconfident(n: int = 3000, classes: int = 4, sharpen: float = 0.4) -> tuple[np.ndarray, np.ndarray]:
    """Labels drawn from calibrated probabilities, and those probabilities at temperature
    ``sharpen`` (overconfident: the true temperature is 1 / sharpen)."""
    rng = np.random.default_rng(0)
    logits = 2 * rng.normal(size=(n, classes))
    honest = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    y = np.array([rng.choice(classes, p=p) for p in honest])
    return apply_temperature(honest, sharpen), y


def test_overconfident_probabilities_get_a_temperature_above_one():
    probs, y = _overconfident()
    t = fit_temperature(probs, y)
    assert 2.0 < t < 3.0  # the true value is 2.5
    calibrated = apply_temperature(probs, t)
    assert nll(calibrated, y) < nll(probs, y)
    assert reliability(y, calibrated)["ece"] < reliability(y, probs)["ece"] / 2
    assert (calibrated.argmax(axis=1) == probs.argmax(axis=1)).all()
    assert np.allclose(calibrated.sum(axis=1), 1)


def test_logits_give_the_same_temperature_and_one_changes_nothing():
    probs, y = _overconfident(500)
    assert fit_temperature(np.log(probs) + 3.0, y) == pytest.approx(fit_temperature(probs, y), rel=1e-6)
    assert apply_temperature(probs, 1.0) is probs
    assert fit_temperature(np.zeros((0, 3)), np.zeros(0, int)) == 1.0


def test_coverage_curve_on_a_hand_worked_case():
    probs = np.array([[0.95, 0.05], [0.85, 0.15], [0.3, 0.7], [0.45, 0.55], [0.6, 0.4]])
    y = np.array([0, 1, 1, 0, 0])  # right, wrong, right, wrong, right
    curve = coverage_curve(y, probs, [0.5, 0.6, 0.9, 0.99])
    assert [p["answered"] for p in curve] == [5, 4, 1, 0]
    assert [p["coverage"] for p in curve] == [1.0, 0.8, 0.2, 0.0]
    assert curve[0]["accuracy"] == pytest.approx(3 / 5)
    assert curve[1]["accuracy"] == pytest.approx(3 / 4)  # 0.95 right, 0.85 wrong, 0.7 right, 0.6 right
    assert curve[2]["accuracy"] == 1.0 and curve[3]["accuracy"] is None


@pytest.mark.slow
def test_a_real_run_stores_a_temperature_that_does_not_hurt(tiny_sartaj_run):
    run_dir, _ = tiny_sartaj_run()
    run = load_run(run_dir)
    fitted = json.loads((Path(run_dir) / "config.json").read_text())["calibration"]
    assert set(fitted) == {"temperature", "val_ece_raw", "val_ece_calibrated", "val_nll_raw", "val_nll_calibrated",
                           "conformal"}
    assert run.calibration is not None and run.calibration.to_json() == fitted
    assert run.temperature == fitted["temperature"] > 0
    assert fitted["val_nll_calibrated"] <= fitted["val_nll_raw"] + 1e-9
    # predictions.csv holds the calibrated probabilities: the temperature keeps every top class
    assert run.calibrated_predictions
    sources, _, probs = run.condition_arrays("clean")
    test = run.images("test")
    assert list(test.sources) == list(sources)
    with run.scorer() as scorer:
        outputs = scorer.outputs(test.images)
    calibrated = scorer.probabilities(outputs)
    raw = scorer.probabilities(outputs, calibrated=False)
    assert np.allclose(calibrated, apply_temperature(raw, run.temperature))
    assert np.allclose(probs, calibrated, atol=1e-5)
    assert (calibrated.argmax(axis=1) == raw.argmax(axis=1)).all()
    assert {"ece", "ece_uncalibrated"} <= set(run.condition_metrics("clean"))
    # an old run (no calibration recorded) loads with T = 1 and unchanged probabilities
    config = json.loads((Path(run_dir) / "config.json").read_text())
    del config["calibration"]
    (Path(run_dir) / "config.json").write_text(json.dumps(config))
    old = load_run(run_dir)
    assert old.calibration is None and old.temperature == 1.0
    with old.scorer() as scorer:
        assert np.array_equal(scorer.probabilities(outputs), raw)
