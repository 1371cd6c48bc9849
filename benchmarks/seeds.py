"""Stability over seeds: the default recipe, several seeds, the 4-class and the binary task;
one line per run (validation and test accuracy, macro F1, the test images without a copy in
training, best epoch, collapse), then the spread.

    python benchmarks/seeds.py --data ../shared/data/sartaj --seeds 101,102,103,104,105

The ``fast`` recipe learns the binary task through the classes, so its binary run with a seed
is the 4-class run with that seed read as tumour vs none; ``--tasks multiclass`` runs only the
4-class runs and prints that reading of each (``--read-binary RUN_DIR ...`` prints it for
finished runs).

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


def tumour_vs_none(run_dir: Path, negative: str = "no_tumor") -> dict:
    """A 4-class run's clean test predictions read as tumour vs none (P(tumour) = 1 - P(negative)):
    accuracy and macro F1 on all test images and on those without a copy in training."""
    import csv

    from sklearn.metrics import f1_score

    copies = {r["source"]: r["copy_in_train"] == "1" for r in csv.DictReader((run_dir / "split.csv").open())
              if r["subset"] == "test"}
    rows = [r for r in csv.DictReader((run_dir / "predictions.csv").open()) if r["condition"] == "clean"]
    truth = [r["label"] != negative for r in rows]
    called = [float(r[f"p_{negative}"]) < 0.5 for r in rows]
    unseen = [not copies[r["source"]] for r in rows]
    pick = lambda xs: [x for x, u in zip(xs, unseen) if u]  # noqa: E731
    acc = lambda t, c: sum(a == b for a, b in zip(t, c)) / len(t)  # noqa: E731
    return {"test": acc(truth, called), "f1": f1_score(truth, called, average="macro"), "n": len(rows),
            "unseen": acc(pick(truth), pick(called)), "n_unseen": sum(unseen)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--seeds", default="101,102,103,104,105")
    ap.add_argument("--tasks", default="multiclass,binary")
    ap.add_argument("--out", type=Path, default=Path("runs/seeds"))
    ap.add_argument("--read-binary", nargs="+", type=Path, metavar="RUN_DIR",
                    help="only print finished 4-class runs read as tumour vs none")
    ap.add_argument("extra", nargs="*", help="more btk run arguments (after --)")
    args = ap.parse_args()
    if args.read_binary:
        for run_dir in args.read_binary:
            b = tumour_vs_none(run_dir)
            print(f"{run_dir.name}: tumour vs none {b['test']:.3f} (of {b['n']})  macro F1 {b['f1']:.3f}  "
                  f"no-copy {b['unseen']:.3f} (of {b['n_unseen']})")
        return
    rows = []
    for task in args.tasks.split(","):
        for seed in [int(s) for s in args.seeds.split(",")]:
            name = f"{task}-seed{seed}"
            t0 = time.perf_counter()
            cmd = [sys.executable, "-m", "btk", "run", "--data", str(args.data), "--task", task, "--seed", str(seed),
                   "--name", name, "--out", str(args.out), "--json", *args.extra]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                sys.exit(f"{name} failed:\n{proc.stderr[-2000:]}")
            run_dir = Path(json.loads(proc.stdout)["run"])  # --json: the run's summary on standard output
            m = json.loads((run_dir / "metrics.json").read_text())
            h = json.loads((run_dir / "history.json").read_text())
            clean = m["conditions"]["clean"]
            unseen = m["leakage"]["conditions_without_copies"].get("clean", {})
            rows.append({"task": task, "seed": seed, "val": max(h["val_accuracy"]), "test": clean["accuracy"],
                         "f1": clean["f1_macro"], "unseen": unseen.get("accuracy"), "best_epoch": h["best_epoch"][0],
                         "epochs": len(h["loss"]), "collapsed": m["collapsed"],
                         "minutes": (time.perf_counter() - t0) / 60, "run": run_dir.name})
            r = rows[-1]
            if task == "multiclass":
                r["as_binary"] = tumour_vs_none(run_dir)
            print(f"{task:10s} seed {seed}: val {r['val']:.3f}  test {r['test']:.3f}  macro F1 {r['f1']:.3f}  "
                  f"no-copy {r['unseen'] if r['unseen'] is None else format(r['unseen'], '.3f')}  best epoch "
                  f"{r['best_epoch']}/{r['epochs']}  collapsed {r['collapsed']}  {r['minutes']:.1f} min", flush=True)
            if "as_binary" in r:
                b = r["as_binary"]
                print(f"{'':10s} read as tumour vs none: test {b['test']:.3f}  macro F1 {b['f1']:.3f}  "
                      f"no-copy {b['unseen']:.3f}", flush=True)
    for task in args.tasks.split(","):
        tests = [r["test"] for r in rows if r["task"] == task]
        print(f"{task}: test accuracy mean {statistics.mean(tests):.3f}, sd "
              f"{statistics.stdev(tests) if len(tests) > 1 else 0:.3f}, min {min(tests):.3f}, max {max(tests):.3f}; "
              f"collapsed runs: {sum(r['collapsed'] for r in rows if r['task'] == task)}")
    (args.out / "seeds.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
