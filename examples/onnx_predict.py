"""Classify image files with a graph exported by ``btk export``, without btk: ONNX Runtime, NumPy
and OpenCV only, every step taken from the sidecar (``model.onnx.json``) beside the graph.

    python examples/onnx_predict.py EXPORT_FOLDER scan1.jpg scan2.png ... > predictions.csv

EXPORT_FOLDER holds ``model.onnx`` and ``model.onnx.json`` (a run's folder after ``btk export
RUN``, or the folder ``btk export RUN --out DIR`` made). One CSV row per file: its path, the
answer and each class's calibrated probability, as ``btk predict`` gives them for JPEG and PNG
files. Handles what the sidecar describes for such files: grayscale or colour decoding, the
head crop, the resize, the ``none``, ``stretch`` and ``equalize`` intensity normalisations, the
scale, the temperature and a binary task's folding.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort


def otsu_mask(gray: np.ndarray) -> np.ndarray | None:
    """Pixels above Otsu's threshold of the image blurred with a 5 x 5 Gaussian; None if blank."""
    if int(gray.max()) == int(gray.min()):
        return None
    blurred = cv2.GaussianBlur(gray, (5, 5), 0)
    return cv2.threshold(blurred, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)[1]


def head_square(image: np.ndarray) -> np.ndarray:
    """The sidecar's head crop: a square around the largest bright region, zero-padded."""
    gray = image if image.ndim == 2 else (image[..., 0] if image.shape[-1] == 1 else image.max(axis=-1))
    mask = otsu_mask(np.ascontiguousarray(gray))
    if mask is None:
        return image
    count, labels = cv2.connectedComponents(mask, connectivity=8, ltype=cv2.CV_32S)
    if count < 2:
        return image
    areas = np.bincount(labels.ravel(), minlength=count)
    largest = 1 + int(np.argmax(areas[1:]))
    if areas[largest] < 0.02 * gray.size:
        return image
    x, y, w, h = cv2.boundingRect((labels == largest).astype(np.uint8))
    side = int(round(max(w, h) * 1.08))
    top, left = y + h // 2 - side // 2, x + w // 2 - side // 2
    square = np.zeros((side, side, *image.shape[2:]), image.dtype)
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + side, image.shape[0]), min(left + side, image.shape[1])
    square[y0 - top:y1 - top, x0 - left:x1 - left] = image[y0:y1, x0:x1]
    return square


def intensity_table(channel: np.ndarray, method: str) -> np.ndarray:
    """The sidecar's look-up table for one channel: the head's histogram stretched or equalised."""
    identity = np.arange(256, dtype=np.uint8)
    mask = otsu_mask(channel)
    if mask is None:
        return identity
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return identity
    head = np.zeros_like(channel)
    cv2.drawContours(head, [max(contours, key=cv2.contourArea)], -1, 255, thickness=cv2.FILLED)
    histogram = cv2.calcHist([channel], [0], head, [256], [0, 256]).ravel()
    cdf = np.cumsum(histogram) / histogram.sum()
    levels = np.arange(256, dtype=np.float64)
    table = levels * 255.0 / max(int(np.searchsorted(cdf, 0.99)), 1) if method == "stretch" else cdf * 255.0
    return np.clip(np.rint(table), 0, 255).astype(np.uint8)


def prepare(path: str, before: dict) -> np.ndarray:
    """One file as the graph's input: H x W x C float32."""
    flag = cv2.IMREAD_GRAYSCALE if before["channels"] == 1 else cv2.IMREAD_COLOR
    image = cv2.imdecode(np.fromfile(path, np.uint8), flag)
    if image is None:
        raise ValueError(f"cannot decode {path}")
    if image.ndim == 2:
        image = image[..., None]
    if before["crop"] == "head":
        image = head_square(image)
    size = before["resize"]["size"]
    if image.shape[:2] != (size, size):
        image = cv2.resize(image, (size, size))
        if image.ndim == 2:
            image = image[..., None]
    method = before["intensity"]
    if method in ("stretch", "equalize"):
        image = np.stack([cv2.LUT(np.ascontiguousarray(image[..., c]), intensity_table(np.ascontiguousarray(
            image[..., c]), method)) for c in range(image.shape[-1])], axis=-1)
    elif method != "none":
        raise SystemExit(f"intensity normalisation '{method}' is not handled by this example")
    return image.astype(np.float32) * np.float32(before["scale"])


def answer(probabilities: np.ndarray, after: dict) -> np.ndarray:
    """The graph's probabilities read as the sidecar says: temperature, then a binary task's fold."""
    p = np.asarray(probabilities, np.float64)
    if after["temperature"] != 1.0:
        z = np.log(np.clip(p, 1e-12, 1.0)) / after["temperature"]
        z -= z.max(axis=1, keepdims=True)
        p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    fold = after.get("fold")
    if fold:
        negative = p[:, after["trained_classes"].index(fold["negative_class"])]
        p = np.stack([negative, 1.0 - negative], axis=1)
    return p


def main(folder: str, paths: list[str]) -> None:
    sidecar = json.loads((Path(folder) / "model.onnx.json").read_text())
    session = ort.InferenceSession(str(Path(folder) / sidecar["graph"]), providers=["CPUExecutionProvider"])
    classes = sidecar["after"]["classes"]
    writer = csv.writer(sys.stdout)
    writer.writerow(["path", "predicted", *[f"p_{c}" for c in classes]])
    for start in range(0, len(paths), 32):
        chunk = paths[start:start + 32]
        batch = np.stack([prepare(p, sidecar["before"]) for p in chunk])
        [probabilities] = session.run(["probabilities"], {session.get_inputs()[0].name: batch})
        for path, row in zip(chunk, answer(probabilities, sidecar["after"])):
            writer.writerow([path, classes[int(np.argmax(row))], *[f"{v:.9f}" for v in row]])


if __name__ == "__main__":
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    main(sys.argv[1], sys.argv[2:])
