"""Model-independent on-the-fly augmentation: flips, small rotations, scalings and shifts, and
intensity changes, applied to uint8 batches in the batch loader (``--augment``).

Every image gets, each epoch, a fresh draw: a left-right flip with probability 1/2; one affine
warp (rotation within +-``rotate`` degrees, scaling within 1 +- ``scale``, shift within
+- ``shift`` of the side; black border, like the background of an MRI slice); a look-up table
for intensity (gain 1 +- ``contrast``, gamma within 1 +- ``gamma``, offset within +- ``brightness``
of the range). Draws come from the generator the loader seeds by (seed, epoch, batch), so a
run is reproducible.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Augment = Callable[[np.ndarray, np.random.Generator], np.ndarray]


def make_image_augmenter(rotate: float = 10.0, scale: float = 0.1, shift: float = 0.05, contrast: float = 0.15,
                         gamma: float = 0.2, brightness: float = 0.05, flip: bool = True) -> Augment:
    """``augment(batch, rng)`` for N x H x W x C uint8 batches; see the module docstring."""
    import cv2

    levels = np.arange(256, dtype=np.float64) / 255.0

    def augment(batch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        out = np.empty_like(batch)
        n, h, w, c = batch.shape
        for j in range(n):
            image = batch[j]
            if flip and rng.random() < 0.5:
                image = image[:, ::-1]
            angle = rng.uniform(-rotate, rotate)
            factor = 1.0 + rng.uniform(-scale, scale)
            matrix: np.ndarray = cv2.getRotationMatrix2D((w / 2 - 0.5, h / 2 - 0.5), angle, factor)
            matrix[:, 2] += rng.uniform(-shift, shift, 2) * (w, h)
            warped = cv2.warpAffine(np.ascontiguousarray(image), matrix, (w, h), flags=cv2.INTER_LINEAR,
                                    borderMode=cv2.BORDER_CONSTANT, borderValue=0)
            lut = levels ** (1.0 + rng.uniform(-gamma, gamma))
            lut = lut * (1.0 + rng.uniform(-contrast, contrast)) + rng.uniform(-brightness, brightness)
            lut = np.clip(np.rint(lut * 255.0), 0, 255).astype(np.uint8)
            out[j] = cv2.LUT(warped, lut).reshape(h, w, c)
        return out

    return augment


def chain(*augments: Augment | None) -> Augment | None:
    """One augmenter applying the given ones in order (``None`` entries skipped)."""
    steps = [a for a in augments if a is not None]
    if not steps:
        return None
    if len(steps) == 1:
        return steps[0]

    def augment(batch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        for step in steps:
            batch = step(batch, rng)
        return batch

    return augment
