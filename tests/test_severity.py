"""Severity levels of every built-in degrader: identity at 'none', monotone, deterministic."""

from __future__ import annotations

from itertools import pairwise

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from btk.cli import cli
from btk.degraders import resolve_degradations
from btk.errors import BtkError
from btk.plugins import get_host

LEVELLED = ["blur", "resolution", "noise", "motion", "ghosting", "spike", "bias", "gibbs", "jpeg", "contrast"]


def _images(sartaj):
    files = sorted((sartaj / "Training").glob("*/*.jpg"))[::700][:4]
    return np.stack([cv2.resize(cv2.imread(str(f)), (256, 256)) for f in files])


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(((a.astype(float) - b.astype(float)) ** 2).mean())
    return float("inf") if mse == 0 else 10 * np.log10(255 ** 2 / mse)


def test_every_levelled_degrader_is_registered_with_five_levels():
    host = get_host()
    for name in LEVELLED:
        d = host.degraders.get(name)
        assert len(d.levels) == 5 and d.none is not None, name
        assert d.description and d.function.__doc__, name


@pytest.mark.parametrize("name", LEVELLED)
def test_none_is_identity_levels_are_monotone_and_seeded(name, sartaj):
    images = _images(sartaj)
    d = get_host().degraders.get(name)
    assert np.array_equal(d.apply(images, d.none, seed=3), images)
    scores = []
    for level in range(1, 6):
        out = d.apply(images, d.level_params(level, 256), seed=3)
        assert out.shape == images.shape and out.dtype == np.uint8
        assert np.array_equal(out, d.apply(images, d.level_params(level, 256), seed=3))  # same seed, same output
        scores.append(np.mean([psnr(o, i) for o, i in zip(out, images)]))
    assert all(a > b for a, b in pairwise(scores)), (name, [round(s, 2) for s in scores])


def test_pixel_parameters_scale_with_the_image_width():
    blur = get_host().degraders.get("blur")
    assert blur.level_params(3, 256)["sigma"] == pytest.approx(3.43)
    assert blur.level_params(3, 512)["sigma"] == pytest.approx(6.86)
    assert get_host().degraders.get("resolution").level_params(5, 64) == {"factor": 5.0}  # a ratio: not scaled


def test_level_specs_and_their_errors():
    host = get_host()
    (deg,) = resolve_degradations(host, ["noise@4"])
    assert deg.label == "noise@4" and deg.params_for(256) == {"sigma": 0.09}
    for spec, message in [("noise@6", "level must be 1..5, got 6"), ("noise@0", "level must be 1..5, got 0"),
                          ("noise@x", "the level must be a whole number 1..5"),
                          ("haze@2", "unknown degrader 'haze' (known: bias, blur, contrast, ghosting, gibbs, jpeg, "
                                     "motion, noise, resolution, spike)"),
                          ("jpeg:quality=high", "parameter 'quality' must be int, got 'high'"),
                          ("noise@2:sigma=1", "not both")]:
        with pytest.raises(BtkError, match=message.replace("(", r"\(").replace(")", r"\)")) as info:
            resolve_degradations(host, [spec])
        assert "\n" not in str(info.value)


def test_cli_rejects_a_bad_level_in_one_line(tmp_path):
    result = CliRunner().invoke(cli, ["run", "--degrade", "blur@9", "--epochs", "1", "--out", str(tmp_path)])
    assert result.exit_code == 1
    assert [line for line in result.output.splitlines() if line.startswith("Error")] == [
        "Error: degrader 'blur': level must be 1..5, got 9"]
