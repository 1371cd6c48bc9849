"""Synthetic small bright spots (white-matter hyperintensities) on negative training images.

A scan without a tumour can still show bright spots: white-matter hyperintensities of small
vessel disease, old infarcts, demyelination. A network that has only seen normal brains as "no
tumour" learns that any bright spot means a tumour. ``negative_spots`` (a recipe field) paints a
few such spots onto a share of the negative class's training images, on the fly, so that the
class "no tumour" contains brains with spots too.

A spot is a blob with a flat top and a soft edge, placed well inside the brain: in the part of
the head mask at least a fifth of the head's radius from its edge, away from scalp and skull. It
brightens the tissue towards the image's bright end (50% to 95% of the way from the local value
to the head's 99th percentile). Between one and six spots per image, each about 1.5-5% of the
image's width across. The result is not a radiologist's lesion model; it only breaks the
shortcut "bright spot => tumour" without inventing tumours.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

LabelAugment = Callable[[np.ndarray, np.ndarray, np.random.Generator], np.ndarray]
"""``augment(uint8 batch, integer labels, rng) -> uint8 batch``: an augmentation that depends on the label."""


def brain_interior(image: np.ndarray) -> np.ndarray:
    """Boolean H x W mask of the part of the head at least a fifth of its radius from the
    head's edge (Otsu threshold of the image, largest region, holes filled); empty when the
    image shows no head."""
    import cv2

    gray = image[..., 0] if image.ndim == 3 else image
    if int(gray.max()) == 0:
        return np.zeros(gray.shape, bool)
    _, mask = cv2.threshold(gray, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if n < 2:
        return np.zeros(gray.shape, bool)
    head = (labels == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))).astype(np.uint8)
    contours, _ = cv2.findContours(head, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    filled = np.zeros_like(head)
    cv2.drawContours(filled, contours, -1, 1, thickness=cv2.FILLED)
    distance = cv2.distanceTransform(filled, cv2.DIST_L2, 5)
    radius = float(distance.max())
    return distance > 0.2 * radius if radius > 0 else np.zeros(gray.shape, bool)


def add_bright_spots(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``image`` (H x W or H x W x C, uint8) with one to six small bright spots inside the brain
    (see the module's description); returned unchanged when no brain interior is found."""
    inside = brain_interior(image)
    ys, xs = np.nonzero(inside)
    if len(ys) == 0:
        return image
    h, w = inside.shape
    gray = (image[..., 0] if image.ndim == 3 else image).astype(np.float32)
    top = float(np.percentile(gray[inside], 99))
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    lift = np.zeros((h, w), np.float32)
    for _ in range(int(rng.integers(1, 7))):
        k = int(rng.integers(len(ys)))
        cy, cx = float(ys[k]), float(xs[k])
        sy, sx = (rng.uniform(0.015, 0.05, size=2) * w / 2.5).astype(np.float32)
        angle = float(rng.uniform(0, np.pi))
        dy, dx = yy - cy, xx - cx
        u = dx * np.cos(angle) + dy * np.sin(angle)
        v = -dx * np.sin(angle) + dy * np.cos(angle)
        r2 = (u / sx) ** 2 + (v / sy) ** 2
        blob = np.exp(-0.5 * r2 * r2).astype(np.float32)  # a flat top and a soft edge
        lift = np.maximum(lift, float(rng.uniform(0.5, 0.95)) * blob)
    bright = gray + lift * (np.maximum(top, gray) - gray)
    spotted = np.clip(np.rint(bright), 0, 255).astype(np.uint8)
    if image.ndim == 3:
        return np.repeat(spotted[..., None], image.shape[2], axis=2)
    return spotted


def negative_spot_augmenter(share: float, negative: int) -> LabelAugment:
    """``augment(batch, labels, rng)``: each image of class ``negative``, with probability
    ``share``, gets :func:`add_bright_spots`; other images are left as they are. The same
    generator state gives the same batch."""

    def augment(batch: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        out = batch
        for j in np.nonzero(labels == negative)[0]:
            if rng.random() < share:
                if out is batch:
                    out = batch.copy()
                out[j] = add_bright_spots(batch[j], rng)
        return out

    return augment
