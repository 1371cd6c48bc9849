"""Framing: crop each image to a square around the head before it is resized.

Datasets assembled from several sources frame the head differently (borders, zoom, image
size), and when a source goes with a class the network can learn the framing instead of the
anatomy: in SARTAJ's Training split every glioma image is 512 x 512 and 390 of the 395
no-tumour images are not. Cropping every image to the head's bounding square (``--crop head``)
gives all sources the same framing; the aspect ratio is kept (the square is padded with
black where it leaves the image).
"""

from __future__ import annotations

import numpy as np

CROPS = ("none", "head")


def bright_mask(gray: np.ndarray) -> np.ndarray | None:
    """The pixels of ``gray`` (H x W uint8) above Otsu's threshold of the lightly blurred image,
    as a 0/255 mask; ``None`` for a blank (single-valued) image."""
    import cv2

    if int(gray.max()) == int(gray.min()):
        return None
    blur = cv2.GaussianBlur(gray, (5, 5), 0)
    _, mask = cv2.threshold(blur, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    return mask


def head_box(image: np.ndarray, margin: float = 0.04, min_share: float = 0.02) -> tuple[int, int, int] | None:
    """The square ``(top, left, side)`` around the head in ``image`` (H x W or H x W x C, uint8).

    The head is the largest connected region brighter than Otsu's threshold of the lightly
    blurred image; the square is centred on its bounding box, with ``margin`` of its side
    added on each edge. ``None`` when no region covers ``min_share`` of the image (an empty
    slice, a blank image): the caller keeps the image as it is.
    """
    import cv2

    gray = image if image.ndim == 2 else (image[..., 0] if image.shape[-1] == 1 else image.max(axis=-1))
    mask = bright_mask(np.ascontiguousarray(gray))
    if mask is None:
        return None
    # labels only, then the areas and the one box needed: half the time of OpenCV's statistics
    # for every region (mostly specks), with the same regions, numbering and box
    n, labels = cv2.connectedComponents(mask, connectivity=8, ltype=cv2.CV_32S)
    if n < 2:
        return None
    areas = np.bincount(labels.ravel(), minlength=n)
    k = 1 + int(np.argmax(areas[1:]))
    if areas[k] < min_share * gray.size:
        return None
    x, y, w, h = cv2.boundingRect((labels == k).astype(np.uint8))
    side = int(round(max(w, h) * (1 + 2 * margin)))
    top = y + h // 2 - side // 2
    left = x + w // 2 - side // 2
    return top, left, side


def crop_square(image: np.ndarray, top: int, left: int, side: int) -> np.ndarray:
    """``image[top:top+side, left:left+side]``, padded with zeros where the square leaves the image."""
    out = np.zeros((side, side, *image.shape[2:]), dtype=image.dtype)
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + side, image.shape[0]), min(left + side, image.shape[1])
    out[y0 - top:y1 - top, x0 - left:x1 - left] = image[y0:y1, x0:x1]
    return out


def frame(image: np.ndarray, size: int | None, crop: str = "none") -> np.ndarray:
    """``image`` cropped as ``crop`` says (``none`` or ``head``), then resized to ``size`` x ``size``
    with ``cv2.resize`` (the readers' resize); ``size`` ``None`` keeps the cropped size."""
    return frame_with_box(image, size, crop)[0]


def frame_with_box(image: np.ndarray, size: int | None, crop: str = "none"
                   ) -> tuple[np.ndarray, tuple[int, int, int] | None]:
    """:func:`frame`, and the square ``(top, left, side)`` it cut from ``image`` (``None``: the
    whole image), to put a map of the framed image back where it belongs (:func:`unframe`)."""
    import cv2

    box = None
    if crop == "head":
        box = head_box(image)
        if box is not None:
            image = crop_square(image, *box)
    elif crop != "none":
        raise ValueError(f"unknown crop '{crop}' (known: {', '.join(CROPS)})")
    if size and image.shape[:2] != (size, size):
        channels = image.shape[2] if image.ndim == 3 else None
        image = cv2.resize(image, (size, size))
        if channels == 1 and image.ndim == 2:
            image = image[..., None]
    return image, box


def unframe(heat: np.ndarray, shape: tuple[int, int], box: tuple[int, int, int] | None) -> np.ndarray:
    """A map of a framed image (:func:`frame_with_box`) back on the original image's ``shape``
    (rows, columns): resized to the square it was cut from and put there (what fell outside the
    image dropped), zero elsewhere; without a box, resized to the whole image."""
    import cv2

    heat = np.asarray(heat, dtype=np.float32)
    rows, cols = shape
    if box is None:
        return cv2.resize(heat, (cols, rows), interpolation=cv2.INTER_LINEAR)
    top, left, side = box
    square = cv2.resize(heat, (side, side), interpolation=cv2.INTER_LINEAR)
    out = np.zeros((rows, cols), np.float32)
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + side, rows), min(left + side, cols)
    out[y0:y1, x0:x1] = square[y0 - top:y1 - top, x0 - left:x1 - left]
    return out
