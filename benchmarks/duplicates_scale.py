"""Near-duplicate search between two sets of 10,000 images each: time and peak memory.

Makes 20,000 distinct 128 x 128 images (noise smoothed at random scales of 3 to 8 pixels, so
no two are alike; structures much finer than 1/16 of the image defeat the 16 x 16 candidate stage
for shifted copies, see docs/audit.md),
plants 200 altered copies of set A's images in set B (resized, JPEG quality 70, brighter,
shifted by 2 pixels), fingerprints both sets and searches B against A with btk's two-stage
search. Prints the time of each step, the peak resident memory and how many planted copies
were found. Usage: python benchmarks/duplicates_scale.py [N]
"""

from __future__ import annotations

import resource
import sys
import time
from itertools import chain

import cv2
import numpy as np

from btk.duplicates import find_pairs, fingerprint_all


def texture(rng: np.random.Generator, size: int = 128) -> np.ndarray:
    noise = rng.normal(0, 1, (size, size)).astype(np.float32)
    image = cv2.GaussianBlur(noise, (0, 0), rng.uniform(3, 8))
    image = (image - image.min()) / (np.ptp(image) + 1e-6)
    return (image * 255).astype(np.uint8)


def altered(image: np.ndarray, k: int) -> np.ndarray:
    h, w = image.shape
    if k % 4 == 0:
        return cv2.resize(image, (w // 2, h // 2), interpolation=cv2.INTER_AREA)
    if k % 4 == 1:
        return cv2.imdecode(cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 70])[1], cv2.IMREAD_GRAYSCALE)
    if k % 4 == 2:
        return np.clip(image.astype(int) + 30, 0, 255).astype(np.uint8)
    return cv2.warpAffine(image, np.float32([[1, 0, 2], [0, 1, 2]]), (w, h), borderMode=cv2.BORDER_REPLICATE)


def main(n: int = 10_000, planted: int = 200) -> None:
    rng = np.random.default_rng(0)
    originals = [texture(rng) for _ in range(planted)]  # the images of A that B will copy
    t0 = time.perf_counter()
    fa = fingerprint_all(chain(originals, (texture(rng) for _ in range(n - planted))))
    fb = fingerprint_all(chain((texture(rng) for _ in range(n - planted)),
                               (altered(originals[k], k) for k in range(planted))))
    t1 = time.perf_counter()
    pairs = find_pairs(fb, fa)
    t2 = time.perf_counter()
    found = {(i, j) for i, j, _, _ in pairs}
    hits = sum((n - planted + k, k) in found for k in range(planted))
    false = sum(1 for i, j in found if not (i >= n - planted and j == i - (n - planted)))
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"images: {n} vs {n} (128 px), planted copies: {planted}")
    print(f"making + fingerprinting: {t1 - t0:6.1f} s (images are made and fingerprinted as they stream)")
    print(f"search B against A:      {t2 - t1:6.1f} s ({len(pairs)} pairs); target < 60 s")
    missed = [k for k in range(planted) if (n - planted + k, k) not in found]
    kinds = ["resized", "jpeg70", "brighter", "shifted"]
    print(f"planted copies found: {hits}/{planted}; missed: {[kinds[k % 4] for k in missed]}; other pairs: {false}")
    print(f"peak resident memory: {peak_mb:,.0f} MB; target < 1024 MB")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10_000)
