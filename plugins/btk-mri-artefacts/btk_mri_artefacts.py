"""``ghosting``: the periodic ghosts of magnitude MRI, made in k-space.

Physics: when the signal changes between phase-encoding lines (breathing, pulsation), the
k-space lines are modulated periodically; every ``period``-th line along the phase-encoding
direction (rows) is scaled by ``1 - strength``, which in image space adds shifted, fainter
copies of the anatomy ("ghosts") spaced ``rows / period`` apart along that direction. The
magnitude image is returned. ``strength=0`` is the identity. Deterministic: no randomness.
"""

from __future__ import annotations

import numpy as np

from btk.degraders import Degrader, Param
from btk.hookspecs import hookimpl


def ghosting(image: np.ndarray, rng: np.random.Generator, strength: float, period: int) -> np.ndarray:
    """Scale every ``period``-th phase-encoding line of k-space by ``1 - strength``."""
    if strength == 0:
        return image.copy()
    planes = image[..., None] if image.ndim == 2 else image
    out = np.empty(planes.shape, np.float64)
    for c in range(planes.shape[-1]):
        k = np.fft.fftshift(np.fft.fft2(planes[..., c].astype(np.float64)))
        k[::period, :] *= 1.0 - strength
        out[..., c] = np.abs(np.fft.ifft2(np.fft.ifftshift(k)))
    return np.clip(np.rint(out), 0, 255).astype(np.uint8).reshape(image.shape)


GHOSTING = Degrader(
    name="ghosting",
    function=ghosting,
    params=(
        Param("strength", float, 0.5, 0.0, 1.0, "share of signal removed from the modulated lines"),
        Param("period", int, 4, 2, 64, "every how many phase-encoding lines are modulated"),
    ),
    description="MRI ghosting: periodic k-space line modulation (example plugin)",
)


@hookimpl
def btk_register_degraders(register):
    register(GHOSTING)
