"""Does a trained model depend on how the head is framed? A probe on the run's validation images.

Each validation image of a run (images from the training data that the model did not train
on) is read again from its file and shown to the model three ways:

- ``as is``: the file, as the run read it;
- ``border``: the head shrunk to 50-80% and placed at a random spot of a larger black canvas
  (sources that leave wide borders);
- ``tight``: cut to the head's bounding box, borders removed (sources that crop close).

A model that learned the anatomy gives the same answers; one that learned a source's framing
loses accuracy. Nothing here looks at the test split.

    python benchmarks/framing_probe.py --data ../shared/data/sartaj RUN_DIR [RUN_DIR ...]
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np


def border(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The image shrunk to 50-80% at a random place on a black canvas of the original size."""
    import cv2

    h, w = image.shape[:2]
    zoom = rng.uniform(0.5, 0.8)
    small = cv2.resize(image, (max(1, int(w * zoom)), max(1, int(h * zoom))), interpolation=cv2.INTER_AREA)
    out = np.zeros_like(image)
    top = int(rng.integers(0, h - small.shape[0] + 1))
    left = int(rng.integers(0, w - small.shape[1] + 1))
    out[top:top + small.shape[0], left:left + small.shape[1]] = small
    return out


def tight(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The image cut to the bounding box of the head (no margin, not squared)."""
    import cv2

    from btk.framing import head_box

    box = head_box(image, margin=0.0)
    if box is None:
        return image
    gray = image if image.ndim == 2 else image[..., 0]
    _, mask = cv2.threshold(cv2.GaussianBlur(gray, (5, 5), 0), 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    ys, xs = np.nonzero(mask)
    return image[ys.min():ys.max() + 1, xs.min():xs.max() + 1]


def probe(run_dir: Path, data: Path, seed: int) -> dict[str, float]:
    import cv2

    from btk.framing import frame
    from btk.runs import load_run

    run = load_run(run_dir)
    recipe = run.config.recipe
    with open(run_dir / "split.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["subset"] == "val"]
    flag = cv2.IMREAD_GRAYSCALE if recipe.channels == 1 else cv2.IMREAD_COLOR
    rng = np.random.default_rng(seed)
    views: dict[str, list[np.ndarray]] = {"as is": [], "border": [], "tight": []}
    labels = []
    for r in rows:
        image = cv2.imread(str(data / r["source"]), flag)
        for name, view in (("as is", image), ("border", border(image, rng)), ("tight", tight(image, rng))):
            framed = frame(view, recipe.image_size, recipe.crop)
            views[name].append(framed if framed.ndim == 3 else framed[..., None])
        labels.append(r["label"])
    y = run.targets(labels)  # the task's classes (binary: 0 for the negative class)
    out = {}
    with run.scorer() as score:  # the run's own answers: its input preparation and temperature
        for name, images in views.items():
            out[name] = float((score(np.stack(images)).argmax(axis=1) == y).mean())
    out["n"] = len(y)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    print(f"{'run':40s} {'crop':5s} {'n':>4s} {'as is':>6s} {'border':>7s} {'tight':>6s}")
    results = {}
    for run_dir in args.runs:
        r = probe(run_dir, args.data, args.seed)
        crop = json.loads((run_dir / "config.json").read_text())["recipe"].get("crop", "none")
        results[run_dir.name] = {"crop": crop, **r}
        print(f"{run_dir.name:40s} {crop:5s} {r['n']:4d} {100 * r['as is']:6.1f} {100 * r['border']:7.1f} "
              f"{100 * r['tight']:6.1f}", flush=True)
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
