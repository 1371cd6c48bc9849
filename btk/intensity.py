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
- ``nyul``: Nyúl and Udupa's standardisation (1999, "On standardizing the MR image intensity
  scale"), learned from the training images: each image's head landmarks (the 1st, 10th,
  20th, ..., 90th and 99th percentiles) are mapped piecewise-linearly onto a standard scale,
  the mean of the training images' landmarks once each image's 1st-99th percentile range is
  stretched over 0..255. ``btk run`` fits the scale on the run's training images and records
  it in the run as ``nyul:L1,...,L11`` (:func:`fit_nyul`), which every later use reads.

The head is the largest region above Otsu's threshold with the tissue it encloses
(:func:`head_mask`); an image's background is not counted, so its noise is not amplified as a
whole-image equalisation would.
"""

from __future__ import annotations

import numpy as np

from btk.framing import bright_mask

INTENSITIES = ("none", "stretch", "equalize", "nyul")
NYUL_PERCENTILES = (1, 10, 20, 30, 40, 50, 60, 70, 80, 90, 99)
"""The landmarks of ``nyul``: percentiles of each image's head."""


def is_intensity(method: str) -> bool:
    """Whether ``method`` is a known normalisation, or ``nyul`` with its fitted scale."""
    if method in INTENSITIES:
        return True
    if method.startswith("nyul:"):
        try:
            return len(parse_nyul(method)) == len(NYUL_PERCENTILES)
        except ValueError:
            return False
    return False


def parse_nyul(method: str) -> np.ndarray:
    """The standard scale recorded in ``nyul:L1,...,L11``."""
    return np.array([float(v) for v in method.split(":", 1)[1].split(",")])


def _head_cdf(gray: np.ndarray) -> np.ndarray | None:
    import cv2

    mask = head_mask(gray)
    if mask is None:
        return None
    hist = cv2.calcHist([gray], [0], mask, [256], [0, 256]).ravel()
    return np.cumsum(hist) / hist.sum()


def nyul_landmarks(gray: np.ndarray) -> np.ndarray | None:
    """The head's landmark grey levels of ``gray`` (:data:`NYUL_PERCENTILES`); ``None`` for a
    blank image."""
    cdf = _head_cdf(gray)
    if cdf is None:
        return None
    return np.searchsorted(cdf, np.array(NYUL_PERCENTILES) / 100.0).astype(np.float64)


def fit_nyul(images: np.ndarray) -> str:
    """Nyúl's standard scale from ``images`` (N x H x W x C uint8; the first channel), as the
    ``nyul:...`` method string a run records."""
    total, count = np.zeros(len(NYUL_PERCENTILES)), 0
    for image in images:
        marks = nyul_landmarks(np.ascontiguousarray(image[..., 0]))
        if marks is None or marks[-1] <= marks[0]:
            continue
        total += (marks - marks[0]) * 255.0 / (marks[-1] - marks[0])
        count += 1
    scale = total / max(count, 1) if count else np.linspace(0, 255, len(NYUL_PERCENTILES))
    return "nyul:" + ",".join(f"{v:.2f}" for v in scale)


def _nyul_table(gray: np.ndarray, standard: np.ndarray) -> np.ndarray:
    marks = nyul_landmarks(gray)
    if marks is None:
        return np.arange(256, dtype=np.uint8)
    # strictly increasing landmarks (flat stretches of a histogram repeat a level)
    marks = marks + np.arange(len(marks)) * 1e-3
    levels = np.arange(256, dtype=np.float64)
    table = np.interp(levels, marks, standard)
    low = (standard[1] - standard[0]) / (marks[1] - marks[0])  # the end segments extend linearly
    high = (standard[-1] - standard[-2]) / (marks[-1] - marks[-2])
    table = np.where(levels < marks[0], standard[0] + (levels - marks[0]) * low, table)
    table = np.where(levels > marks[-1], standard[-1] + (levels - marks[-1]) * high, table)
    return np.clip(np.rint(table), 0, 255).astype(np.uint8)


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
    if not is_intensity(method) or method == "nyul":
        raise ValueError(f"unknown intensity normalisation '{method}' (known: {', '.join(INTENSITIES)}; "
                         "nyul is fitted by btk run before use)")
    standard = parse_nyul(method) if method.startswith("nyul:") else None
    out = np.empty_like(batch)
    for j in range(batch.shape[0]):
        for c in range(batch.shape[-1]):
            channel = np.ascontiguousarray(batch[j, ..., c])
            table = _nyul_table(channel, standard) if standard is not None else intensity_table(channel, method)
            out[j, ..., c] = cv2.LUT(channel, table)
    return out
