"""Procedurally generated brain-like MRI phantoms: the images of the ``synthetic`` reader and of
the contract kit (:mod:`btk.testing`), made here so neither depends on the other.

Each phantom is an axial slice: skull ring, brain with smooth tissue texture, two ventricles,
and one of four findings (:data:`CLASSES`) that mimic where the real tumours sit:

- ``glioma_tumor``: an irregular intra-axial mass with a dark necrotic core, in a hemisphere;
- ``meningioma_tumor``: a bright, round, extra-axial mass pressed against the inner skull;
- ``pituitary_tumor``: a small bright mass at the sella, below the ventricles;
- ``no_tumor``: none.

Head size, position, rotation, contrast, lesion size and place, and noise vary per phantom,
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


def make_phantom(label: str, rng: np.random.Generator, size: int = GENERATION_SIZE) -> np.ndarray:
    """One uint8 phantom slice of ``size`` x ``size`` pixels for class ``label``."""
    import cv2

    s = float(size)
    img: np.ndarray = np.zeros((size, size), np.float32)
    cx, cy = s / 2 + rng.normal(0, 0.02 * s), s / 2 + rng.normal(0, 0.02 * s)
    ax, ay = s * rng.uniform(0.33, 0.40), s * rng.uniform(0.40, 0.46)
    tilt = rng.uniform(-12, 12)
    _ellipse(img, (cx, cy), (ax, ay), tilt, 0.9)  # scalp + skull
    _ellipse(img, (cx, cy), (ax * 0.93, ay * 0.94), tilt, 0.25)  # bone (dark) band
    brain = np.zeros_like(img)
    _ellipse(brain, (cx, cy), (ax * 0.88, ay * 0.89), tilt, 1.0)
    texture: np.ndarray = cv2.GaussianBlur(rng.normal(0, 1, img.shape).astype(np.float32), (0, 0), s / 40)
    texture /= texture.std() + 1e-6
    tissue = rng.uniform(0.45, 0.6) + 0.05 * texture
    img = np.where(brain > 0.5, tissue, img)
    # ventricles: two dark crescents either side of the midline
    for side in (-1, 1):
        _ellipse(img, (cx + side * s * 0.05, cy - s * 0.03), (s * 0.03, s * 0.09), side * 20 + tilt, 0.12)
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
    rot = cv2.getRotationMatrix2D((s / 2, s / 2), rng.uniform(-10, 10), rng.uniform(0.95, 1.05))
    img = cv2.warpAffine(img, rot, (size, size))
    # magnitude MR noise: Rician (|signal + complex Gaussian noise|)
    sigma = rng.uniform(0.02, 0.05)
    img = np.hypot(img + rng.normal(0, sigma, img.shape), rng.normal(0, sigma, img.shape))
    img *= rng.uniform(0.85, 1.1)
    return np.clip(img * 255, 0, 255).astype(np.uint8)
