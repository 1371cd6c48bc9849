"""Generalisation to a source the network never saw, measured on Training images only.

SARTAJ's Training split mixes sources: every glioma is 512 x 512, and the meningiomas and
pituitary tumours that are not 512 x 512 come from other sources (143 and 28 images). This
script holds that subgroup out entirely: it builds a folder of links in which Training is
the rest of SARTAJ Training and Testing is the held-out subgroup, runs ``btk run`` on it for
each recipe variant and seed, and reports how often the held-out tumours get their class and
how often they are called a tumour at all (the failure a new source causes: a tumour called
"no tumour"). The SARTAJ Testing split is never read, so recipes can be chosen by it.

    python benchmarks/source_holdout.py --data ../shared/data/sartaj --seeds 101,102 \\
        --variant default= --variant degraders="--augment-degraders all"
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path


def build_holdout(train_root: Path, dest: Path, size: int, negative: str) -> dict[str, int]:
    """Links: ``dest/Training`` = Training minus the tumour images not ``size`` px square;
    ``dest/Testing`` = those images. Returns the held-out count per class."""
    import cv2

    held = {}
    for cls in sorted(p.name for p in train_root.iterdir() if p.is_dir()):
        for split in ("Training", "Testing"):
            (dest / split / cls).mkdir(parents=True, exist_ok=True)
        held[cls] = 0
        for f in sorted((train_root / cls).iterdir()):
            other = cls != negative and cv2.imread(str(f), cv2.IMREAD_GRAYSCALE).shape != (size, size)
            held[cls] += other
            link = dest / ("Testing" if other else "Training") / cls / f.name
            if not link.exists():
                link.symlink_to(f.resolve())
    for cls, n in held.items():
        if n == 0:  # the folder reader wants images in every class folder it sees
            (dest / "Testing" / cls).rmdir()
    return {c: n for c, n in held.items() if n}


def summarise(run_dir: Path, negative: str) -> dict:
    """Held-out accuracy, share called a tumour, and validation accuracy of one run."""
    rows = [r for r in csv.DictReader((run_dir / "predictions.csv").open()) if r["condition"] == "clean"]
    history = json.loads((run_dir / "history.json").read_text())
    best = history.get("best_epoch", [0])[0]
    per_class = {}
    for r in rows:
        per_class.setdefault(r["label"], []).append(r["predicted"] == r["label"])
    return {"held_out": len(rows), "accuracy": sum(r["predicted"] == r["label"] for r in rows) / len(rows),
            "called_tumour": sum(r["predicted"] != negative for r in rows) / len(rows),
            "per_class": {c: sum(v) / len(v) for c, v in per_class.items()},
            "val_accuracy": history["val_accuracy"][best - 1] if best else max(history["val_accuracy"])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, required=True, help="SARTAJ root (its Training split is used)")
    ap.add_argument("--seeds", default="101,102")
    ap.add_argument("--variant", action="append", default=[],
                    help="NAME=ARGS: extra btk run arguments for one recipe variant; repeatable")
    ap.add_argument("--size", type=int, default=512, help="the usual side of the tumour classes' images")
    ap.add_argument("--negative-class", default="no_tumor")
    ap.add_argument("--out", type=Path, default=Path("runs/source-holdout"))
    args = ap.parse_args()
    variants = dict(v.split("=", 1) for v in (args.variant or ["default="]))
    data = args.out / "data"
    held = build_holdout(args.data / "Training", data, args.size, args.negative_class)
    print("held out (not", f"{args.size} px):", held, flush=True)
    rows = []
    for name, extra in variants.items():
        for seed in [int(s) for s in args.seeds.split(",")]:
            tag = f"{name}-seed{seed}"
            t0 = time.perf_counter()
            cmd = [sys.executable, "-m", "btk", "run", "--data", str(data), "--seed", str(seed), "--name", tag,
                   "--out", str(args.out / "runs"), "--json", *shlex.split(extra)]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                sys.exit(f"{tag} failed:\n{proc.stderr[-2000:]}")
            run_dir = Path(json.loads(proc.stdout)["run"])  # --json: the run's summary on standard output
            row = {"variant": name, "seed": seed, "args": extra, "minutes": (time.perf_counter() - t0) / 60,
                   "run": run_dir.name, **summarise(run_dir, args.negative_class)}
            rows.append(row)
            per_class = "  ".join(f"{c} {v:.3f}" for c, v in row["per_class"].items())
            print(f"{name:12s} seed {seed}: validation {row['val_accuracy']:.3f}  held-out accuracy "
                  f"{row['accuracy']:.3f} ({per_class})  called tumour {row['called_tumour']:.3f}  "
                  f"{row['minutes']:.1f} min", flush=True)
    for name in variants:
        mine = [r for r in rows if r["variant"] == name]
        mean = lambda k: sum(r[k] for r in mine) / len(mine)  # noqa: E731
        print(f"{name}: mean over {len(mine)} seeds: validation {mean('val_accuracy'):.3f}  held-out accuracy "
              f"{mean('accuracy'):.3f}  called tumour {mean('called_tumour'):.3f}")
    (args.out / "source-holdout.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
