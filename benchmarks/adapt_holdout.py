"""``btk adapt`` on the held-out-source benchmark: does re-estimating batch-norm statistics on an
unseen source's unlabelled images help on that source?

Takes runs made by ``benchmarks/source_holdout.py`` (trained without the 171 Training tumours of
the other sources; those are the runs' test images), adapts each on those same images read as
an unlabelled folder (their labels are not used), and compares, before and after: accuracy on
the held-out tumours, the share called a tumour, and accuracy on the run's own validation
images (which must not fall by more than a point). The SARTAJ Testing split is never read.

    python benchmarks/adapt_holdout.py runs/source-holdout/runs/*-A-seed10?
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import time
from pathlib import Path


def clean_rows(run_dir: Path) -> list[dict[str, str]]:
    return [r for r in csv.DictReader((run_dir / "predictions.csv").open()) if r["condition"] == "clean"]


def summary(run_dir: Path, negative: str) -> dict[str, float]:
    rows = clean_rows(run_dir)
    return {"accuracy": sum(r["predicted"] == r["label"] for r in rows) / len(rows),
            "called_tumour": sum(r["predicted"] != negative for r in rows) / len(rows)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--negative-class", default="no_tumor")
    ap.add_argument("--strength", default="1", help="comma-separated btk adapt --strength values to compare")
    ap.add_argument("--depth", default="auto", help="btk adapt --depth")
    ap.add_argument("--out", type=Path, help="write the rows as JSON here")
    args = ap.parse_args()
    rows = []
    for run_dir, strength in [(r, s) for r in args.runs for s in args.strength.split(",")]:
        config = json.loads((run_dir / "config.json").read_text())
        held_out = Path(config["config"]["data"]) / "Testing"
        t0 = time.perf_counter()
        cmd = [sys.executable, "-m", "btk", "adapt", str(run_dir), "--data", str(held_out),
               "--name", f"{run_dir.name.split('-', 2)[-1]}-s{strength}-d{args.depth}-adapted", "--strength", strength,
               "--depth", args.depth, "--json"]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            sys.exit(f"adapting {run_dir.name} failed:\n{proc.stderr[-2000:]}")
        adapted = Path(json.loads(proc.stdout)["run"])  # --json: the new run's summary on standard output
        record = json.loads((adapted / "config.json").read_text())["adaptation"]
        before, after = summary(run_dir, args.negative_class), summary(adapted, args.negative_class)
        row = {"run": run_dir.name, "strength": float(strength), "adapted": adapted.name, "images": record["images"],
               "seconds": time.perf_counter() - t0, "held_out_before": before["accuracy"],
               "held_out_after": after["accuracy"], "called_tumour_before": before["called_tumour"],
               "called_tumour_after": after["called_tumour"], "val_before": record["val_accuracy_before"],
               "val_after": record["val_accuracy_after"]}
        rows.append(row)
        print(f"{run_dir.name} strength {strength}: held-out accuracy {100 * row['held_out_before']:.1f} -> "
              f"{100 * row['held_out_after']:.1f}, called a tumour {100 * row['called_tumour_before']:.1f} -> "
              f"{100 * row['called_tumour_after']:.1f}; own validation {100 * row['val_before']:.1f} -> "
              f"{100 * row['val_after']:.1f} ({row['images']} images, {row['seconds']:.0f} s)", flush=True)
    for strength in sorted({r["strength"] for r in rows}):
        mine = [r for r in rows if r["strength"] == strength]
        mean = lambda k: sum(r[k] for r in mine) / len(mine)  # noqa: E731
        print(f"strength {strength}, mean over {len(mine)} runs: held-out {100 * mean('held_out_before'):.1f} -> "
              f"{100 * mean('held_out_after'):.1f}, called a tumour {100 * mean('called_tumour_before'):.1f} -> "
              f"{100 * mean('called_tumour_after'):.1f}, validation {100 * mean('val_before'):.1f} -> "
              f"{100 * mean('val_after'):.1f}")
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
