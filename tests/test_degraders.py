"""The report's degradations, pixel for pixel, and parameter validation."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from btk.errors import BtkError
from btk.plugins import get_host


def report_apply_blur(image):  # Listing 11 of the report, verbatim
    return cv2.GaussianBlur(image, (15, 15), 0)


def report_modify_resolution(image):  # Listing 10 of the report, verbatim
    resized = cv2.resize(image, (image.shape[1] // 5, image.shape[0] // 5))
    modified_resolution = cv2.resize(resized, (image.shape[1], image.shape[0]))
    return modified_resolution


def _real_images(sartaj, n=6):
    files = sorted((sartaj / "Training" / "glioma_tumor").glob("*.jpg"))[:n]
    return np.stack([cv2.resize(cv2.imread(str(f)), (256, 256)) for f in files])


def test_blur_default_equals_report_function(sartaj):
    images = _real_images(sartaj)
    out = get_host().degraders.get("blur").apply(images)
    expected = np.stack([report_apply_blur(i) for i in images])
    assert out.dtype == np.uint8 and out.shape == images.shape
    assert np.array_equal(out, expected)
    assert not np.array_equal(out, images)


def test_resolution_default_equals_report_function(sartaj):
    images = _real_images(sartaj)
    out = get_host().degraders.get("resolution").apply(images)
    expected = np.stack([report_modify_resolution(i) for i in images])
    assert np.array_equal(out, expected)
    assert not np.array_equal(out, images)


def test_report_functions_also_match_on_odd_sizes_and_grayscale():
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (3, 203, 203, 1), dtype=np.uint8)
    host = get_host()
    blurred = host.degraders.get("blur").apply(images)
    lowres = host.degraders.get("resolution").apply(images)
    for i, image in enumerate(images):
        assert np.array_equal(blurred[i, ..., 0], report_apply_blur(image[..., 0]))
        assert np.array_equal(lowres[i, ..., 0], report_modify_resolution(image[..., 0]))


@pytest.mark.parametrize("name,params", [("blur", {"ksize": 1}), ("resolution", {"factor": 1})])
def test_identity_settings(name, params):
    images = np.random.default_rng(2).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    assert np.array_equal(get_host().degraders.get(name).apply(images, params), images)


@pytest.mark.parametrize(
    "name,params,message",
    [
        ("blur", {"ksize": 4}, "must be odd"),
        ("blur", {"ksize": -1}, "between 0 and 99"),
        ("blur", {"sigma": -1}, "between 0.0 and 50.0"),
        ("blur", {"ksize": "big"}, "must be int"),
        ("blur", {"size": 3}, "has no parameter 'size' (parameters: ksize, sigma)"),
        ("resolution", {"factor": 0.5}, "between 1.0 and 64.0"),
    ],
)
def test_bad_parameters_are_one_line_errors(name, params, message):
    with pytest.raises(BtkError, match=message.replace("(", r"\(").replace(")", r"\)")) as info:
        get_host().degraders.get(name).resolve(params)
    assert "\n" not in str(info.value)


def test_stronger_settings_lose_more_detail():
    image = cv2.resize(np.random.default_rng(3).integers(0, 256, (32, 32), dtype=np.uint8), (128, 128))[None]
    host = get_host()
    blur, res = host.degraders.get("blur"), host.degraders.get("resolution")
    err = lambda out: float(np.abs(out.astype(float) - image).mean())  # noqa: E731
    assert err(blur.apply(image, {"ksize": 5})) < err(blur.apply(image, {"ksize": 15})) < err(
        blur.apply(image, {"ksize": 31}))
    assert err(res.apply(image, {"factor": 2})) < err(res.apply(image, {"factor": 5})) < err(
        res.apply(image, {"factor": 10}))


def test_report_scale_is_the_report_at_256_and_the_same_relative_blur_at_128(sartaj):
    from btk.degraders import resolve_degradations

    host = get_host()
    blur, lowres = resolve_degradations(host, ["blur@report", "resolution@report"])
    assert (blur.label, lowres.label) == ("blur@report", "resolution@report")
    images = _real_images(sartaj, 3)
    # at the report's own size: the report's functions, pixel for pixel
    assert np.array_equal(blur.apply(images), np.stack([report_apply_blur(i) for i in images]))
    assert np.array_equal(lowres.apply(images), np.stack([report_modify_resolution(i) for i in images]))
    # at 128 px: half the kernel and sigma (OpenCV's 2.6 px for 15 x 15), 51 px across as at 256 / 5
    assert blur.params_for(128) == {"ksize": 7, "sigma": pytest.approx(1.3)}
    assert lowres.params_for(128) == {"factor": 2.5}
    small = np.stack([cv2.resize(i, (128, 128)) for i in images])
    expected = np.stack([cv2.GaussianBlur(i, (7, 7), 1.3) for i in small])
    assert np.array_equal(blur.apply(small), expected)
    # plain 'blur' keeps the report's 15 x 15 kernel at any size: twice the relative blur at 128 px
    plain = resolve_degradations(host, ["blur"])[0]
    assert plain.params_for(128) == {"ksize": 15, "sigma": 0.0}
    # the label written into a run reads back as the same degradation
    again = resolve_degradations(host, [blur.label])[0]
    assert again.params_for(128) == blur.params_for(128)
