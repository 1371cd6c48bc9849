"""How well a fold ensemble's label issues find wrong labels: inject a seeded share of label flips
into SARTAJ Training through a corrections file (``--labels``; the dataset is not touched), run
``btk ensemble --folds K`` on it, and score its ``label_issues.csv`` against the flips:
precision (flagged images that were flipped) and recall (flips that were flagged).

    python benchmarks/label_noise.py --data ../shared/data/sartaj --share 0.05 --seed 7 --folds 5 \\
        --out runs/label-noise
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
from pathlib import Path


def write_flips(data: Path, share: float, seed: int, out: Path) -> dict[str, tuple[str, str]]:
    """A corrections file that gives a seeded ``share`` of Training images another class, chosen
    at random; returns ``path -> (true label, flipped label)``."""
    import numpy as np

    rng = np.random.default_rng(seed)
    images = sorted((p.relative_to(data).as_posix(), p.parent.name) for p in (data / "Training").rglob("*.jpg"))
    classes = sorted({label for _, label in images})
    picked = rng.choice(len(images), size=round(share * len(images)), replace=False)
    flips = {}
    for i in sorted(picked):
        path, label = images[i]
        others = [c for c in classes if c != label]
        flips[path] = (label, str(rng.choice(others)))
    with open(out, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "label"])
        for path, (_, flipped) in flips.items():
            writer.writerow([path, flipped])
    return flips


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--share", type=float, default=0.05)
    ap.add_argument("--seed", type=int, default=7, help="seed of the flips")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--out", type=Path, default=Path("runs/label-noise"))
    ap.add_argument("--extra", default="", help="more btk ensemble arguments (e.g. a recipe change)")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    flips = write_flips(args.data, args.share, args.seed, args.out / "flips.csv")
    print(f"{len(flips)} labels flipped ({args.share:.0%} of Training, seed {args.seed})", flush=True)
    cmd = [sys.executable, "-m", "btk", "ensemble", "--folds", str(args.folds), "--data", str(args.data),
           "--labels", str(args.out / "flips.csv"), "--name", f"noise{args.seed}", "--out", str(args.out / "runs"),
           "--json", *args.extra.split()]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        sys.exit(done.stderr[-3000:])
    run = Path(json.loads(done.stdout)["run"])
    flagged = {r["path"]: r for r in csv.DictReader((run / "label_issues.csv").open())}
    hits = [p for p in flagged if p in flips]
    result = {"flipped": len(flips), "flagged": len(flagged), "flagged_and_flipped": len(hits),
              "precision": len(hits) / len(flagged) if flagged else None, "recall": len(hits) / len(flips),
              "likely_is_true_label": sum(flagged[p]["likely"] == flips[p][0] for p in hits), "run": str(run)}
    print(json.dumps(result, indent=1))
    (args.out / "label-noise.json").write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
