"""The report's two image-quality degradations, as parametrised degraders.

- ``blur``: ``cv2.GaussianBlur(image, (ksize, ksize), sigma)``; the default (15, 0) is the
  report's ``apply_blur`` (sigma 0 lets OpenCV derive sigma = 2.6 px from the kernel size).
  ``ksize=1`` is the identity; ``ksize=0`` derives the kernel from sigma. Levels 1-5: sigma 1.14,
  2.29, 3.43, 4.57, 6.86 px at 256 px (ImageNet-C's 1, 2, 3, 4, 6 px at 224 px), scaled with the
  image width; the report's setting lies between levels 2 and 3.
- ``resolution``: down-sample by ``factor`` with ``cv2.resize`` then back up to the original
  size (both bilinear, OpenCV's default); the default 5 is the report's ``modify_resolution``.
  ``factor=1`` is the identity. Levels 1-5: factor 1.5, 2, 3, 4, 5 (level 5 is the report's).
"""

from __future__ import annotations

import numpy as np

from btk.api import Degrader, Param, RegisterDegrader, hookimpl


def gaussian_blur(image: np.ndarray, rng: np.random.Generator, ksize: int, sigma: float) -> np.ndarray:
    """Gaussian blur with a ``ksize`` x ``ksize`` kernel (OpenCV)."""
    import cv2

    if ksize == 1 and sigma == 0:
        return image.copy()
    return cv2.GaussianBlur(image, (ksize, ksize), sigma).reshape(image.shape)


def lower_resolution(image: np.ndarray, rng: np.random.Generator, factor: float) -> np.ndarray:
    """Down-sample by ``factor`` then up-sample back to the original size (OpenCV, bilinear)."""
    import cv2

    height, width = image.shape[:2]
    small = cv2.resize(image, (max(1, int(width // factor)), max(1, int(height // factor))))
    out = cv2.resize(small, (width, height))
    return out.reshape(image.shape)


def opencv_sigma(ksize: int) -> float:
    """The sigma OpenCV derives from a kernel size when it is given sigma 0."""
    return 0.3 * ((ksize - 1) * 0.5 - 1) + 0.8


def rescale_blur(params: dict, factor: float) -> dict:
    """A blur for images ``factor`` times as wide: sigma (made explicit) times ``factor``, the
    kernel side times ``factor``, rounded down to an odd number (the report's 15 x 15, sigma 2.6 at
    256 px is 7 x 7, sigma 1.3 at 128 px: the same truncation at 2.7 sigma)."""
    ksize, sigma = int(params["ksize"]), float(params["sigma"])
    if sigma == 0 and ksize > 1:
        sigma = opencv_sigma(ksize)
    sigma *= factor
    if ksize > 1:
        ksize = max(1, int(ksize * factor))
        ksize -= 1 - ksize % 2
    return {"ksize": ksize, "sigma": sigma}


def rescale_resolution(params: dict, factor: float) -> dict:
    """Down-sampling for images ``factor`` times as wide that keeps the same number of pixels
    across the head (the report's divide-by-5 at 256 px, 51 px across, is divide-by-2.5 at 128)."""
    return {"factor": max(1.0, float(params["factor"]) * factor)}


BLUR = Degrader(
    name="blur",
    function=gaussian_blur,
    params=(
        Param("ksize", int, 15, 0, 99, "kernel side in pixels (odd; 0: from sigma)", odd=True),
        Param("sigma", float, 0.0, 0.0, 50.0, "standard deviation in pixels; 0 derives it from ksize"),
    ),
    description="Gaussian blur; default = the report's cv2.GaussianBlur(image, (15, 15), 0)",
    levels=tuple({"ksize": 0, "sigma": s} for s in (1.14, 2.29, 3.43, 4.57, 6.86)),
    scaled=("sigma",),
    none={"ksize": 1, "sigma": 0.0},
    rescale=rescale_blur,
)

RESOLUTION = Degrader(
    name="resolution",
    function=lower_resolution,
    params=(Param("factor", float, 5.0, 1.0, 64.0, "down-sampling factor"),),
    description="down-sample then up-sample; default = the report's divide-by-5",
    levels=tuple({"factor": f} for f in (1.5, 2.0, 3.0, 4.0, 5.0)),
    none={"factor": 1.0},
    rescale=rescale_resolution,
)


@hookimpl
def btk_register_degraders(register: RegisterDegrader) -> None:
    register(BLUR)
    register(RESOLUTION)
