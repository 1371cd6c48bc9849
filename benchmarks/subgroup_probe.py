"""Tumour vs none on a hidden subgroup of the training data: the tumour images whose source
differs from their class's usual one (in SARTAJ: the Training meningiomas and pituitary
tumours that are not 512 x 512; the no-tumour images mostly come from such sources).

For each run, its own validation images and every image of the subgroup are read as the run
read them and called tumour or none: by a binary model directly, by a 4-class model as
1 - P(no tumour). Only Training images are used.

    python benchmarks/subgroup_probe.py --data ../shared/data/sartaj RUN_DIR [RUN_DIR ...]
"""

from __future__ import annotations

import argparse
import csv
import os
from pathlib import Path

import numpy as np


def tumour_calls(run, score, paths: list[Path], negative: str) -> np.ndarray:
    """Whether the run (its scorer ``score``) calls each image a tumour."""
    import cv2

    from btk.framing import frame

    recipe = run.config.recipe
    flag = cv2.IMREAD_GRAYSCALE if recipe.channels == 1 else cv2.IMREAD_COLOR
    images = []
    for path in paths:
        image = frame(cv2.imread(str(path), flag), recipe.image_size, recipe.crop)
        images.append(image if image.ndim == 3 else image[..., None])
    probs = score(np.stack(images))  # the task's probabilities (a binary run's: none, tumour)
    return probs.argmax(axis=1) != list(run.classes).index(negative)


def main() -> None:
    import cv2

    from btk.runs import load_run

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--negative-class", default="no_tumor")
    ap.add_argument("--size", type=int, default=512, help="the usual side of the tumour classes' images")
    args = ap.parse_args()
    train_root = args.data / "Training"
    subgroups = {}
    for cls in sorted(os.listdir(train_root)):
        if cls == args.negative_class:
            continue
        files = sorted((train_root / cls).iterdir())
        subgroups[cls] = [f for f in files if cv2.imread(str(f), cv2.IMREAD_GRAYSCALE).shape != (args.size, args.size)]
    print("subgroup sizes:", {c: len(v) for c, v in subgroups.items()})
    for run_dir in args.runs:
        run = load_run(run_dir)
        with open(run_dir / "split.csv", newline="") as fh:
            val = [r["source"] for r in csv.DictReader(fh) if r["subset"] == "val"]
        truth = np.array([s.split("/")[-2] != args.negative_class for s in val])
        with run.scorer() as score:
            calls = tumour_calls(run, score, [args.data / s for s in val], args.negative_class)
            line = (f"{run_dir.name:40s} outputs {len(run.trained_classes)}  validation tumour/none "
                    f"{100 * (calls == truth).mean():5.1f}")
            for cls, files in subgroups.items():
                if files:
                    called = tumour_calls(run, score, files, args.negative_class)
                    line += f"  {cls} not {args.size} px called tumour {100 * called.mean():5.1f}"
        print(line, flush=True)


if __name__ == "__main__":
    main()
