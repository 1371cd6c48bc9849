"""Exact and near-duplicate images: fingerprints and a two-stage search.

- **Exact**: SHA-1 of the decoded pixels (shape included): pixel-identical images.
- **Near**: candidates from 16 x 16 thumbnails (area-averaged, lightly blurred, zero-mean,
  unit-norm) whose cosine similarity is at least ``threshold - 0.03`` (a matrix product, in
  blocks); each candidate is verified on 64 x 64 thumbnails by normalised cross-correlation
  after aligning them (sub-pixel shifts of up to ``MAX_SHIFT`` thumbnail pixels: the peak of
  ``cv2.matchTemplate``'s correlation map, refined with a parabola). A pair is a
  near-duplicate when that score reaches ``threshold``. Resizing, re-encoding, brightness and
  contrast changes and small shifts keep the score near 1; different slices of one volume do not.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

COARSE = 16
FINE = 64
MAX_SHIFT = 3
DEFAULT_THRESHOLD = 0.95
CANDIDATE_MARGIN = 0.03  # coarse similarity may sit this far below the verified score


@dataclass
class Fingerprints:
    """Fingerprints of N images: ``exact`` hashes, ``coarse`` N x 256 unit vectors, ``fine`` N x 64 x 64
    thumbnails (float16: 8 KB an image)."""

    exact: np.ndarray
    coarse: np.ndarray
    fine: np.ndarray

    def __len__(self) -> int:
        return len(self.exact)

    def subset(self, index: np.ndarray) -> Fingerprints:
        """The fingerprints at ``index``."""
        return Fingerprints(self.exact[index], self.coarse[index], self.fine[index])


def _gray(image: np.ndarray) -> np.ndarray:
    if image.ndim == 3:
        image = image[..., 0] if image.shape[-1] == 1 else image.mean(axis=-1)
    return np.ascontiguousarray(image)


def fingerprint(image: np.ndarray) -> tuple[str, np.ndarray, np.ndarray]:
    """(exact hash, coarse vector, fine thumbnail) of one image (H x W or H x W x C)."""
    import cv2

    digest = hashlib.sha1(f"{image.shape}{image.dtype}".encode() + np.ascontiguousarray(image).tobytes()).hexdigest()
    gray = _gray(image).astype(np.float32)
    coarse: np.ndarray = cv2.GaussianBlur(
        cv2.resize(gray, (COARSE, COARSE), interpolation=cv2.INTER_AREA), (0, 0), 0.5).ravel()
    coarse -= coarse.mean()
    coarse /= np.linalg.norm(coarse) + 1e-6
    fine = cv2.resize(gray, (FINE, FINE), interpolation=cv2.INTER_AREA)
    return digest, coarse, fine.astype(np.float32)


def fingerprint_all(images: Iterable[np.ndarray]) -> Fingerprints:
    """Fingerprints of many images."""
    hashes, coarse, fine = [], [], []
    for image in images:  # an iterator of images is consumed one at a time
        h, c, f = fingerprint(image)
        hashes.append(h)
        coarse.append(c)
        fine.append(f.astype(np.float16))
    return Fingerprints(np.array(hashes, dtype=object),
                        np.stack(coarse) if coarse else np.zeros((0, COARSE * COARSE), np.float32),
                        np.stack(fine) if fine else np.zeros((0, FINE, FINE), np.float16))


def _ncc(a: np.ndarray, b: np.ndarray) -> float:
    a = a - a.mean()
    b = b - b.mean()
    denom = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / denom) if denom > 0 else 0.0


def _peak(r: np.ndarray) -> tuple[float, float]:
    """Sub-pixel position of the maximum of a correlation map (parabola through the neighbours)."""
    iy, ix = np.unravel_index(int(np.argmax(r)), r.shape)

    def refine(lo: float, mid: float, hi: float) -> float:
        denom = lo - 2 * mid + hi
        return 0.0 if denom >= 0 else float(np.clip(0.5 * (lo - hi) / denom, -0.5, 0.5))

    fx = refine(r[iy, ix - 1], r[iy, ix], r[iy, ix + 1]) if 0 < ix < r.shape[1] - 1 else 0.0
    fy = refine(r[iy - 1, ix], r[iy, ix], r[iy + 1, ix]) if 0 < iy < r.shape[0] - 1 else 0.0
    return ix + fx, iy + fy


def shift_ncc(a: np.ndarray, b: np.ndarray) -> float:
    """Normalised cross-correlation of two fine thumbnails after aligning them: the shift
    (sub-pixel, up to MAX_SHIFT pixels) is the peak of their correlation map, refined with a
    parabola; the border that a shift uncovers is left out of the comparison."""
    import cv2

    m = MAX_SHIFT
    if a.std() < 1e-6 or b.std() < 1e-6:  # flat images: equal or not
        return 1.0 if np.allclose(a, b, atol=1.0) else 0.0
    r = cv2.matchTemplate(a, b[m:-m, m:-m], cv2.TM_CCOEFF_NORMED)
    px, py = _peak(r)
    moved = cv2.warpAffine(b, np.array([[1, 0, px - m], [0, 1, py - m]], np.float32), b.shape[::-1],
                           flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return max(float(r.max()), _ncc(a[m:-m, m:-m], moved[m:-m, m:-m]))


def find_pairs(a: Fingerprints, b: Fingerprints | None = None, threshold: float = DEFAULT_THRESHOLD,
               block: int = 2048) -> list[tuple[int, int, str, float]]:
    """Duplicate pairs between ``a`` and ``b`` (or within ``a`` when ``b`` is None).

    Returns:
        ``(i, j, kind, score)`` with ``kind`` "exact" (score 1.0) or "near"; within one set,
        each pair once with ``i < j``.
    """
    within = b is None
    other = a if b is None else b
    candidate = threshold - CANDIDATE_MARGIN
    pairs: list[tuple[int, int, str, float]] = []
    for start in range(0, len(a), block):
        sims = a.coarse[start:start + block] @ other.coarse.T
        rows, cols = np.nonzero(sims >= candidate)
        rows = rows + start
        if within:
            keep = cols > rows
            rows, cols = rows[keep], cols[keep]
        for i, j in zip(rows.tolist(), cols.tolist()):
            if a.exact[i] == other.exact[j]:
                pairs.append((i, j, "exact", 1.0))
                continue
            score = shift_ncc(a.fine[i].astype(np.float32), other.fine[j].astype(np.float32))
            if score >= threshold:
                pairs.append((i, j, "near", round(score, 4)))
    return pairs


def copy_mask(test: Fingerprints, reference: Fingerprints, threshold: float = DEFAULT_THRESHOLD) -> np.ndarray:
    """True for each ``test`` image with an exact or near copy in ``reference``."""
    mask = np.zeros(len(test), bool)
    for i, _, _, _ in find_pairs(test, reference, threshold):
        mask[i] = True
    return mask


def duplicate_clusters(fp: Fingerprints, threshold: float = DEFAULT_THRESHOLD,
                       groups: np.ndarray | None = None) -> np.ndarray:
    """A cluster id per image: images joined by duplicate pairs, or sharing a group id, share one
    (union-find). Splitting by these ids keeps copies and groups on one side."""
    return clusters_from_pairs(len(fp), find_pairs(fp, None, threshold), groups)


def clusters_from_pairs(n: int, pairs: list[tuple[int, int, str, float]],
                        groups: np.ndarray | None = None) -> np.ndarray:
    """:func:`duplicate_clusters` from pairs already found (``find_pairs`` within one set of
    ``n`` images)."""
    parent = np.arange(n)

    def root(k: int) -> int:
        while parent[k] != k:
            parent[k] = parent[parent[k]]
            k = parent[k]
        return k

    def join(i: int, j: int) -> None:
        ri, rj = root(i), root(j)
        if ri != rj:
            parent[max(ri, rj)] = min(ri, rj)

    if groups is not None:
        first: dict[object, int] = {}
        for k, g in enumerate(groups):
            join(first.setdefault(g, k), k)
    for i, j, _, _ in pairs:
        join(i, j)
    return np.array([root(k) for k in range(n)])
