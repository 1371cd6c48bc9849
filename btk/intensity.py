"""Intensity normalisation per image, at the network's input (``--intensity``).

MRI intensities have no fixed scale: each scanner, sequence and export windows them its own
way, so a network trained on one source can learn its brightness and contrast instead of the
anatomy. Normalising each image the same way before it reaches the network takes that cue
away. It is applied to every batch the network sees (training, validation, test, degraded
test images, ``btk predict``), after augmentation and degradation, as a scanner's export
would come before btk.

- ``none``: the pixels as read.
- ``stretch``: the head's 99th percentile (the head: pixels above Otsu's threshold) becomes
  white; darker values scale in proportion, black stays black. Removes gain differences.
- ``equalize``: histogram equalisation (``cv2.equalizeHist``): the same distribution of grey
  levels for every image. Removes gain and gamma differences.
"""

from __future__ import annotations

import numpy as np

INTENSITIES = ("none", "stretch", "equalize")


def _stretch(gray: np.ndarray) -> np.ndarray:
    """A 256-entry look-up table mapping the head's 99th percentile of ``gray`` to 255."""
    import cv2

    threshold, _ = cv2.threshold(gray, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    head = gray[gray > threshold]
    top = float(np.percentile(head, 99)) if head.size else float(gray.max())
    factor = 255.0 / max(top, 1.0)
    return np.clip(np.rint(np.arange(256) * factor), 0, 255).astype(np.uint8)


def normalise_intensity(batch: np.ndarray, method: str) -> np.ndarray:
    """``batch`` (N x H x W x C uint8) with each image normalised by ``method`` (see the module
    docstring), channel by channel. ``none`` returns ``batch`` itself.

    Raises:
        ValueError: unknown method.
    """
    import cv2

    if method == "none":
        return batch
    if method not in INTENSITIES:
        raise ValueError(f"unknown intensity normalisation '{method}' (known: {', '.join(INTENSITIES)})")
    out = np.empty_like(batch)
    for j in range(batch.shape[0]):
        for c in range(batch.shape[-1]):
            channel = np.ascontiguousarray(batch[j, ..., c])
            out[j, ..., c] = cv2.equalizeHist(channel) if method == "equalize" else cv2.LUT(channel, _stretch(channel))
    return out
