"""The report's two image-quality degradations, as parametrised degraders.

- ``blur``: ``cv2.GaussianBlur(image, (ksize, ksize), sigma)``; the default (15, 0) is the
  report's ``apply_blur`` (sigma 0 lets OpenCV derive sigma = 2.6 px from the kernel size).
  ``ksize=1`` is the identity.
- ``resolution``: down-sample by ``factor`` with ``cv2.resize`` then back up to the original
  size (both bilinear, OpenCV's default); the default 5 is the report's ``modify_resolution``.
  ``factor=1`` is the identity.
"""

from __future__ import annotations

import numpy as np

from btk.degraders import Degrader, Param
from btk.hookspecs import hookimpl


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


BLUR = Degrader(
    name="blur",
    function=gaussian_blur,
    params=(
        Param("ksize", int, 15, 1, 99, "kernel side in pixels (odd)", odd=True),
        Param("sigma", float, 0.0, 0.0, 50.0, "standard deviation in pixels; 0 derives it from ksize"),
    ),
    description="Gaussian blur; default = the report's cv2.GaussianBlur(image, (15, 15), 0)",
)

RESOLUTION = Degrader(
    name="resolution",
    function=lower_resolution,
    params=(Param("factor", float, 5.0, 1.0, 64.0, "down-sampling factor"),),
    description="down-sample then up-sample; default = the report's divide-by-5",
)


@hookimpl
def btk_register_degraders(register):
    register(BLUR)
    register(RESOLUTION)
