"""Intensity normalisation per image, at the network's input (``--intensity``).

MRI intensities have no fixed scale: each scanner, sequence and export windows them its own
way, so a network trained on one source can learn its brightness and contrast instead of the
anatomy. Normalising each image the same way before it reaches the network takes that cue
away. It is applied to every batch the network sees (training, validation, test, degraded
test images, ``btk predict``), after augmentation and degradation, as a scanner's export
would come before btk.

- ``none``: the pixels as read.
- ``stretch``: the head's 99th percentile becomes white; darker values scale in proportion,
  black stays black. Removes gain differences.
- ``equalize``: histogram equalisation of the head: its grey levels spread evenly over 0..255
  (the background, darker than the head, stays dark). Removes gain and gamma differences.

The head is the largest region above Otsu's threshold with the tissue it encloses
(:func:`head_mask`); an image's background is not counted, so its noise is not amplified as a
whole-image equalisation would.
"""

from __future__ import annotations

import numpy as np

from btk.framing import bright_mask

INTENSITIES = ("none", "stretch", "equalize")


def head_mask(gray: np.ndarray) -> np.ndarray | None:
    """The head in ``gray`` (H x W uint8) as a filled mask: the largest region above Otsu's
    threshold of the lightly blurred image, with the darker tissue it encloses. ``None`` for a
    blank image."""
    import cv2

    bright = bright_mask(gray)
    if bright is None:
        return None
    contours, _ = cv2.findContours(bright, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return None
    mask = np.zeros_like(gray)
    cv2.drawContours(mask, [max(contours, key=cv2.contourArea)], -1, 255, thickness=cv2.FILLED)
    return mask


def intensity_table(gray: np.ndarray, method: str) -> np.ndarray:
    """The 256-entry look-up table ``method`` applies to ``gray`` (H x W uint8)."""
    import cv2

    mask = head_mask(gray)
    if mask is None:  # a blank image: nothing to normalise
        return np.arange(256, dtype=np.uint8)
    hist = cv2.calcHist([gray], [0], mask, [256], [0, 256]).ravel()
    cdf = np.cumsum(hist) / hist.sum()
    levels = np.arange(256, dtype=np.float64)
    if method == "stretch":
        top = int(np.searchsorted(cdf, 0.99))  # the head's 99th percentile
        table = levels * 255.0 / max(top, 1)
    else:  # equalize: the head's grey levels spread evenly over 0..255
        table = cdf * 255.0
    return np.clip(np.rint(table), 0, 255).astype(np.uint8)


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
            out[j, ..., c] = cv2.LUT(channel, intensity_table(channel, method))
    return out
