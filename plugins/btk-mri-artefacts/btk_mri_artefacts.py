"""``zipper``: the RF-interference artefact of MRI, as an example third-party btk plugin.

Physics: a radio-frequency signal leaking into the scanner at one fixed frequency is recorded
in every phase-encoding line, at the same frequency-encoding position but with a random phase
from line to line. After the Fourier transform it lands in one image column, as a line of
dots of random brightness across the whole image (a "zipper"). Made in k-space: each row of
k-space gets a complex exponential at the column's frequency, amplitude ``strength`` x 255 x
width, with a random phase per row (from the run's seed). ``strength=0`` is the identity.
"""

from __future__ import annotations

import numpy as np

from btk.api import Degrader, Param, RegisterDegrader, hookimpl


def zipper(image: np.ndarray, rng: np.random.Generator, strength: float, position: float) -> np.ndarray:
    """Add an RF zipper at ``position`` (share of the width) to each channel."""
    if strength == 0:
        return image.copy()
    planes = image[..., None] if image.ndim == 2 else image
    h, w = planes.shape[:2]
    column = int(round(position * (w - 1)))
    phases = np.exp(1j * rng.uniform(0, 2 * np.pi, (h, 1)))
    ramp = np.exp(-2j * np.pi * column * np.arange(w)[None, :] / w)
    leak = strength * 255 * w * phases * ramp
    out = np.empty(planes.shape, np.float64)
    for c in range(planes.shape[-1]):
        k = np.fft.fft2(planes[..., c].astype(np.float64))
        out[..., c] = np.abs(np.fft.ifft2(k + leak))
    return np.clip(np.rint(out), 0, 255).astype(np.uint8).reshape(image.shape)


ZIPPER = Degrader(
    name="zipper",
    function=zipper,
    params=(
        Param("strength", float, 0.5, 0.0, 2.0, "amplitude of the leak (share of 255)"),
        Param("position", float, 0.3, 0.0, 1.0, "column of the zipper, as a share of the width"),
    ),
    description="MRI RF-interference zipper (example plugin)",
    levels=tuple({"strength": s, "position": 0.3} for s in (0.1, 0.2, 0.4, 0.7, 1.0)),
    none={"strength": 0.0},
)


@hookimpl
def btk_register_degraders(register: RegisterDegrader) -> None:
    register(ZIPPER)
