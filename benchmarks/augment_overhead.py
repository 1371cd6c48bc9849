"""Cost of on-the-fly degradation augmentation when training the seed CNN at 256 px.

Trains ``seed-cnn`` (256 x 256 x 3, batch 32) on the same 128 real training images for 3 epochs
without augmentation and with ``--augment-degraders all`` (each image, with probability 0.5,
through one of the ten levelled degraders at a random level), in this process, one after the
other, and prints trained images per second of each (the first epoch, which compiles, left out)
and their ratio. Usage: python benchmarks/augment_overhead.py [DATA]
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from btk.augment import make_augmenter
from btk.config import get_recipe
from btk.plugins import get_host
from btk.training import train


def main(data: Path) -> None:
    import cv2

    files = sorted(data.glob("Training/*/*.jpg"))[::22][:128]
    labels = sorted({f.parent.name for f in files})
    x = np.stack([cv2.resize(cv2.imread(str(f)), (256, 256)) for f in files])
    y = np.array([labels.index(f.parent.name) for f in files])
    host = get_host()
    recipe = get_recipe("btk", epochs=3, restore_best=False, class_weight=False)
    augment = make_augmenter([d for d in host.degraders if d.levels], 0.5)
    speeds = {}
    for label, aug in (("plain", None), ("augmented", augment)):
        model = host.models.get("seed-cnn").build((256, 256, 3), len(labels), {"learning_rate": 1e-4})
        times = []
        train(model, x, y, x[:32], y[:32], len(labels), recipe, seed=0, augment=aug,
              on_epoch=lambda epoch, logs, seconds: times.append(seconds))
        speeds[label] = len(x) / float(np.mean(times[1:]))
        print(f"{label:10s}: {speeds[label]:.2f} trained images/s (epochs: {', '.join(f'{t:.1f}' for t in times)} s)")
    print(f"augmented / plain: {speeds['augmented'] / speeds['plain']:.3f} "
          f"(slowdown {100 * (1 - speeds['augmented'] / speeds['plain']):.1f}%; target at most 10%)")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[2] / "shared" / "data" / "sartaj")
