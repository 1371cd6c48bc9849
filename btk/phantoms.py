"""Procedurally generated brain-like MRI phantoms: the images of the ``synthetic`` reader and of
the contract kit (:mod:`btk.testing`), made here so neither depends on the other.

Each phantom is an axial slice: skull ring, brain with smooth tissue texture, two ventricles,
and one of four findings (:data:`CLASSES`) that mimic where the real tumours sit:

- ``glioma_tumor``: an irregular intra-axial mass with a dark necrotic core, in a hemisphere;
- ``meningioma_tumor``: a bright, round, extra-axial mass pressed against the inner skull;
- ``pituitary_tumor``: a small bright mass at the sella, below the ventricles;
- ``no_tumor``: none.

Head size, shape, position, rotation, skull, grey and white matter texture, cortical folds,
ventricles, contrast, bias field, lesion size and place, and noise vary per phantom,
drawn from the random generator passed in.
"""

from __future__ import annotations

import numpy as np

CLASSES = ("glioma_tumor", "meningioma_tumor", "no_tumor", "pituitary_tumor")
GENERATION_SIZE = 128


def _ellipse(img: np.ndarray, center, axes, angle, value, thickness=-1) -> None:
    import cv2

    c = (int(round(center[0] * 16)), int(round(center[1] * 16)))
    a = (max(1, int(round(axes[0] * 16))), max(1, int(round(axes[1] * 16))))
    cv2.ellipse(img, c, a, angle, 0, 360, value, thickness, cv2.LINE_AA, 4)


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Gaussian noise blurred by ``sigma`` pixels, scaled to unit standard deviation."""
    import cv2

    field: np.ndarray = cv2.GaussianBlur(rng.normal(0, 1, shape).astype(np.float32), (0, 0), sigma)
    return field / (field.std() + 1e-6)


def make_phantom(label: str, rng: np.random.Generator, size: int = GENERATION_SIZE) -> np.ndarray:
    """One uint8 phantom slice of ``size`` x ``size`` pixels for class ``label``."""
    import cv2

    s = float(size)
    shape = (size, size)
    img: np.ndarray = np.zeros(shape, np.float32)
    cx, cy = s / 2 + rng.normal(0, 0.035 * s), s / 2 + rng.normal(0, 0.035 * s)
    ax = s * rng.uniform(0.29, 0.40)
    ay = min(ax * rng.uniform(1.05, 1.32), s * 0.47)
    tilt = rng.uniform(-20, 20)
    bone = rng.uniform(0.90, 0.95)
    _ellipse(img, (cx, cy), (ax, ay), tilt, rng.uniform(0.75, 0.95))  # scalp + skull
    _ellipse(img, (cx, cy), (ax * bone, ay * bone), tilt, rng.uniform(0.15, 0.3))  # bone (dark) band
    # the brain in the head's own coordinates: r = 1 on the inner skull
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    t = np.radians(tilt)
    u = ((xx - cx) * np.cos(t) + (yy - cy) * np.sin(t)) / (ax * (bone - 0.04))
    v = (-(xx - cx) * np.sin(t) + (yy - cy) * np.cos(t)) / (ay * (bone - 0.04))
    r = np.sqrt(u * u + v * v)
    coarse, fine = _smooth_noise(rng, shape, s / 14), _smooth_noise(rng, shape, s / 45)
    tissue = rng.uniform(0.40, 0.55) + 0.09 * coarse + 0.04 * fine
    # white matter: a brighter core whose border wanders with the coarse texture
    tissue += rng.uniform(0.08, 0.16) * (r + 0.15 * coarse < rng.uniform(0.55, 0.72))
    # sulci: dark folds in the cortical ribbon, where a band-limited noise crosses zero
    folds = _smooth_noise(rng, shape, s / rng.uniform(35, 60))
    tissue = np.where((np.abs(folds) < rng.uniform(0.12, 0.25)) & (r > 0.68), tissue * 0.5, tissue)
    img = np.where(r < 1.0, tissue, img).astype(np.float32)
    # ventricles: two dark crescents either side of the midline, their size and spread varying
    grow, spread, shift = rng.uniform(0.7, 1.5), rng.uniform(0.035, 0.07), rng.normal(0, 0.02 * s)
    for side in (-1, 1):
        _ellipse(img, (cx + shift + side * s * spread, cy - s * rng.uniform(-0.02, 0.07)),
                 (s * 0.03 * grow, s * 0.09 * grow * rng.uniform(0.8, 1.2)),
                 side * rng.uniform(10, 30) + tilt, 0.12)
    if label == "glioma_tumor":
        side = rng.choice([-1, 1])
        lx = cx + side * ax * rng.uniform(0.3, 0.55)
        ly = cy + ay * rng.uniform(-0.45, 0.35)
        r = s * rng.uniform(0.07, 0.11)
        for _ in range(rng.integers(3, 6)):
            _ellipse(img, (lx + rng.normal(0, r / 2), ly + rng.normal(0, r / 2)),
                     (r * rng.uniform(0.5, 1.0), r * rng.uniform(0.5, 1.0)), rng.uniform(0, 180),
                     rng.uniform(0.72, 0.82))
        _ellipse(img, (lx, ly), (r * 0.4, r * 0.35), rng.uniform(0, 180), 0.2)  # necrotic core
    elif label == "meningioma_tumor":
        angle = rng.uniform(0, 2 * np.pi)
        r = s * rng.uniform(0.06, 0.09)
        lx = cx + (ax * 0.88 - r * 0.8) * np.cos(angle)
        ly = cy + (ay * 0.89 - r * 0.8) * np.sin(angle)
        _ellipse(img, (lx, ly), (r, r * rng.uniform(0.8, 1.0)), np.degrees(angle), 0.97)
    elif label == "pituitary_tumor":
        r = s * rng.uniform(0.03, 0.05)
        _ellipse(img, (cx + rng.normal(0, s * 0.01), cy + ay * 0.42), (r, r * 0.8), 0, 0.95)
    img = cv2.GaussianBlur(img, (0, 0), 0.6)
    img = img * (1 + rng.uniform(0.05, 0.15) * _smooth_noise(rng, shape, s / 5))  # coil sensitivity (bias field)
    rot = cv2.getRotationMatrix2D((s / 2, s / 2), rng.uniform(-15, 15), rng.uniform(0.92, 1.08))
    img = cv2.warpAffine(img, rot, (size, size))
    # magnitude MR noise: Rician (|signal + complex Gaussian noise|)
    sigma = rng.uniform(0.02, 0.05)
    img = np.hypot(img + rng.normal(0, sigma, img.shape), rng.normal(0, sigma, img.shape))
    img *= rng.uniform(0.85, 1.1)
    return np.clip(img * 255, 0, 255).astype(np.uint8)
