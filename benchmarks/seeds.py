"""Stability over seeds: the default recipe, several seeds, the 4-class and the binary task;
one line per run (validation and test accuracy, macro F1, the test images without a copy in
training, best epoch, collapse), then the spread.

    python benchmarks/seeds.py --data ../shared/data/sartaj --seeds 101,102,103,104,105

Extra arguments after ``--`` go to every ``btk run`` (e.g. ``-- --preset btk``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--seeds", default="101,102,103,104,105")
    ap.add_argument("--tasks", default="multiclass,binary")
    ap.add_argument("--out", type=Path, default=Path("runs/seeds"))
    ap.add_argument("extra", nargs="*", help="more btk run arguments (after --)")
    args = ap.parse_args()
    rows = []
    for task in args.tasks.split(","):
        for seed in [int(s) for s in args.seeds.split(",")]:
            name = f"{task}-seed{seed}"
            t0 = time.perf_counter()
            cmd = [sys.executable, "-m", "btk", "run", "--data", str(args.data), "--task", task, "--seed", str(seed),
                   "--name", name, "--out", str(args.out), "--reporter", "json", *args.extra]
            proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            if proc.returncode != 0:
                sys.exit(f"{name} failed:\n{proc.stdout[-2000:]}")
            run_dir = max(args.out.glob(f"*-{name}*"), key=lambda p: p.stat().st_mtime)
            m = json.loads((run_dir / "metrics.json").read_text())
            h = json.loads((run_dir / "history.json").read_text())
            clean = m["conditions"]["clean"]
            unseen = m["leakage"]["conditions_without_copies"].get("clean", {})
            rows.append({"task": task, "seed": seed, "val": max(h["val_accuracy"]), "test": clean["accuracy"],
                         "f1": clean["f1_macro"], "unseen": unseen.get("accuracy"), "best_epoch": h["best_epoch"][0],
                         "epochs": len(h["loss"]), "collapsed": m["collapsed"],
                         "minutes": (time.perf_counter() - t0) / 60, "run": run_dir.name})
            r = rows[-1]
            print(f"{task:10s} seed {seed}: val {r['val']:.3f}  test {r['test']:.3f}  macro F1 {r['f1']:.3f}  "
                  f"no-copy {r['unseen'] if r['unseen'] is None else format(r['unseen'], '.3f')}  best epoch "
                  f"{r['best_epoch']}/{r['epochs']}  collapsed {r['collapsed']}  {r['minutes']:.1f} min", flush=True)
    for task in args.tasks.split(","):
        tests = [r["test"] for r in rows if r["task"] == task]
        print(f"{task}: test accuracy mean {statistics.mean(tests):.3f}, sd "
              f"{statistics.stdev(tests) if len(tests) > 1 else 0:.3f}, min {min(tests):.3f}, max {max(tests):.3f}; "
              f"collapsed runs: {sum(r['collapsed'] for r in rows if r['task'] == task)}")
    (args.out / "seeds.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
