"""Intensity normalisation at the network's input (``--intensity``): one slice exported with a
different gain or gamma reaches the network alike, and every path applies the run's setting."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from btk.cli import cli
from btk.intensity import normalise_intensity

SLICE = "Training/meningioma_tumor/m (2).jpg"


def _exported(image: np.ndarray, gain: float, gamma: float) -> np.ndarray:
    """``image`` as another scanner's export might window it."""
    levels = (np.arange(256) / 255.0) ** gamma * gain
    return cv2.LUT(image, np.clip(np.rint(levels * 255), 0, 255).astype(np.uint8))


def _batch(*images: np.ndarray) -> np.ndarray:
    return np.stack([cv2.resize(i, (128, 128))[..., None] for i in images])


def test_stretch_removes_a_gain_difference_and_equalize_a_gamma_difference_too(sartaj):
    image = cv2.imread(str(sartaj / SLICE), cv2.IMREAD_GRAYSCALE)
    gained = _batch(image, _exported(image, 0.6, 1.0)).astype(float)
    curved = _batch(image, _exported(image, 0.8, 1.6)).astype(float)
    diff = lambda b: np.abs(b[0] - b[1]).mean()  # noqa: E731
    stretched = normalise_intensity(gained.astype(np.uint8), "stretch").astype(float)
    assert diff(gained) > 8 and diff(stretched) < diff(gained) / 10, (diff(gained), diff(stretched))
    equalized = normalise_intensity(curved.astype(np.uint8), "equalize").astype(float)
    assert diff(curved) > 8 and diff(equalized) < diff(curved) / 4, (diff(curved), diff(equalized))
    stretched = normalise_intensity(curved.astype(np.uint8), "stretch").astype(float)
    assert diff(stretched) > 2 * diff(equalized)  # gamma stays


def test_stretch_keeps_black_and_whitens_the_heads_99th_percentile():
    image = np.zeros((64, 64), np.uint8)
    image[16:48, 16:48] = np.arange(32 * 32).reshape(32, 32) % 100 + 20  # a "head" of 20..119
    out = normalise_intensity(image[None, ..., None], "stretch")[0, ..., 0]
    top = np.percentile(image[16:48, 16:48], 99, method="inverted_cdf")
    assert out[0, 0] == 0 and out.max() == 255
    assert out[image == 50].max() == np.rint(50 * 255 / top)


def test_equalize_spreads_the_heads_grey_levels_and_leaves_the_background_dark(sartaj):
    from btk.intensity import head_mask

    image = cv2.imread(str(sartaj / SLICE))  # 3 equal channels
    batch = np.stack([cv2.resize(image, (128, 128)), cv2.resize(image, (128, 128))[::-1]])
    out = normalise_intensity(batch, "equalize")
    assert np.array_equal(out[..., 0], out[..., 2])  # equal channels stay equal
    mask = head_mask(np.ascontiguousarray(batch[0, ..., 0])) > 0
    assert 0.2 < mask.mean() < 0.9
    quartiles = np.percentile(out[0, ..., 0][mask], [25, 50, 75])
    assert np.allclose(quartiles, [64, 128, 191], atol=12), quartiles
    assert np.median(out[0, ..., 0][~mask]) < 20
    assert normalise_intensity(batch, "none") is batch
    blank = np.zeros((1, 16, 16, 1), np.uint8)
    assert np.array_equal(normalise_intensity(blank, "equalize"), blank)
    with pytest.raises(ValueError, match="unknown intensity"):
        normalise_intensity(batch, "zscore")


def test_training_batches_are_normalised_before_the_float_conversion(sartaj):
    from btk.training import make_batches

    image = cv2.imread(str(sartaj / SLICE), cv2.IMREAD_GRAYSCALE)
    images = _batch(image, _exported(image, 0.5, 1.3), image[::-1])
    (x,) = make_batches(images, None, 1 / 255, 2, intensity="equalize")[0]
    assert np.array_equal(x, normalise_intensity(images[:2], "equalize").astype(np.float32) * np.float32(1 / 255))


def test_unknown_intensity_is_a_one_line_error():
    from btk.config import get_recipe
    from btk.errors import BtkError

    result = CliRunner().invoke(cli, ["run", "--set", "intensity=zscore"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.startswith("Error: --set intensity=zscore: recipe.intensity: 'zscore'")
    assert len(result.output.strip().splitlines()) == 1
    with pytest.raises(BtkError, match="intensity: 'zscore' is not one of"):
        get_recipe("fast", intensity="zscore")


@pytest.mark.slow
def test_a_run_records_its_normalisation_and_predict_applies_it(tiny_sartaj_run, monkeypatch):
    from btk import training

    run_dir, data = tiny_sartaj_run("--set", "intensity=equalize")
    assert json.loads((run_dir / "config.json").read_text())["recipe"]["intensity"] == "equalize"
    seen = []
    real = training.network_input  # what the scorer prepares every batch with
    monkeypatch.setattr(training, "network_input", lambda batch, scale, intensity="none":
                        seen.append(intensity) or real(batch, scale, intensity))
    scans = [arg for p in sorted((data / "no_tumor").iterdir())[:2] for arg in ("--data", str(p))]
    result = CliRunner().invoke(cli, ["predict", str(run_dir), *scans, "--json"])
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.stdout)) == 2
    assert seen and all(intensity == "equalize" for intensity in seen)


def test_nyul_maps_every_export_of_a_slice_onto_the_learned_landmarks(sartaj):
    from btk.intensity import NYUL_PERCENTILES, fit_nyul, nyul_landmarks, parse_nyul

    files = sorted((sartaj / "Training" / "meningioma_tumor").glob("*.jpg"))[:20]
    training = np.stack([cv2.resize(cv2.imread(str(f), cv2.IMREAD_GRAYSCALE), (128, 128))[..., None] for f in files])
    method = fit_nyul(training)
    standard = parse_nyul(method)
    assert len(standard) == len(NYUL_PERCENTILES) and np.all(np.diff(standard) > 0)
    assert standard[0] == pytest.approx(0, abs=0.01) and standard[-1] == pytest.approx(255, abs=0.01)
    image = cv2.imread(str(sartaj / SLICE), cv2.IMREAD_GRAYSCALE)
    exports = _batch(image, _exported(image, 0.6, 1.0), _exported(image, 0.8, 1.6), _exported(image, 1.0, 0.7))
    out = normalise_intensity(exports, method)
    marks = np.stack([nyul_landmarks(np.ascontiguousarray(o[..., 0])) for o in out])
    # gain and gamma differences gone: each export's landmarks land on the standard scale
    before = np.stack([nyul_landmarks(np.ascontiguousarray(e[..., 0])) for e in exports])
    assert np.abs(before - before.mean(axis=0)).max() > 20
    assert np.abs(marks - standard).max() < 8, marks - standard  # 8-bit quantisation of the steep parts
    assert out[:, 0, 0, 0].max() == 0  # the black background stays black


@pytest.mark.slow
def test_a_nyul_run_records_its_fitted_scale(tiny_sartaj_run):
    from btk.intensity import is_intensity

    run_dir, _ = tiny_sartaj_run("--set", "intensity=nyul")
    recorded = json.loads((run_dir / "config.json").read_text())["recipe"]["intensity"]
    assert recorded.startswith("nyul:") and is_intensity(recorded)
