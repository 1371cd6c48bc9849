"""btk's training against the plain-Keras baseline (``shared/baselines/seed_pipeline.py``), on
the same data, on the same machine, in one run: trained images/s, time to a validation
accuracy, peak memory (RSS), and their ratios.

Each side runs in its own process (so each peak RSS is its own), one after the other:

- ``baseline``: ``seed_pipeline.py``, experiment ``multiclass``, pixels scaled by 1/255;
- ``btk seed-cnn``: ``btk run --preset btk`` (the same network, batch, epochs and image size);
- ``btk fast``: ``btk run`` with its default ``fast`` recipe (res-cnn, 128 px), if asked.

Usage (paths relative to the project root):

    python benchmarks/train_vs_baseline.py --data ../shared/data/sartaj --epochs 2 --limit 600
    KERAS_BACKEND=jax python benchmarks/train_vs_baseline.py --data DATA --epochs 5 --fast

``--limit`` trains on that many Training images (0: all); ``--target`` is the validation
accuracy for the time-to-accuracy comparison. Trained images/s is taken from the median epoch
(the first epoch compiles) for both sides.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BASELINE = ROOT.parent / "shared" / "baselines" / "seed_pipeline.py"
# runs a command and prints its peak resident memory (KiB on Linux) as the last line
MEASURE = ("import resource, subprocess, sys; rc = subprocess.call(sys.argv[1:]); "
           "print('PEAK_RSS_KB', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(rc)")


def measured(cmd: list[str], env: dict[str, str], log: Path) -> tuple[str, float]:
    """Run ``cmd``; return its output and its peak RSS in MiB."""
    with open(log, "w") as fh:
        proc = subprocess.run([sys.executable, "-c", MEASURE, *cmd], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
        fh.write(proc.stdout)
    if proc.returncode != 0:
        sys.exit(f"failed ({proc.returncode}): {' '.join(cmd)}; see {log}")
    peak = re.findall(r"PEAK_RSS_KB (\d+)", proc.stdout)
    return proc.stdout, int(peak[-1]) / 1024


def time_to(history: dict, target: float) -> float | None:
    """Seconds of training until the validation accuracy first reaches ``target``."""
    total = 0.0
    for acc, seconds in zip(history["val_accuracy"], history["epoch_seconds"]):
        total += seconds
        if acc >= target:
            return total
    return None


def median(values: list[float]) -> float:
    values = sorted(values)
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, required=True, help="dataset folder (Training/ and Testing/ class folders)")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--limit", type=int, default=0, help="Training images used (0: all)")
    ap.add_argument("--target", type=float, default=0.7, help="validation accuracy for time-to-accuracy")
    ap.add_argument("--fast", action="store_true", help="also run btk's default fast recipe")
    ap.add_argument("--out", type=Path, default=None, help="where logs and results go [a temporary folder]")
    ap.add_argument("--baseline", type=Path, default=BASELINE,
                    help="the baseline script [shared/baselines/seed_pipeline.py]")
    ap.add_argument("--btk-args", default="", help="more arguments for btk's seed-cnn run, e.g. '--set micro_batch=8'")
    args = ap.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="btk-bench-"))
    out.mkdir(parents=True, exist_ok=True)
    # the same Keras backend for both sides: btk's default (TensorFlow) unless KERAS_BACKEND says otherwise
    env = dict(os.environ, PYTHONUNBUFFERED="1", KERAS_BACKEND=os.environ.get("KERAS_BACKEND", "tensorflow"))
    results = {}

    base_env = dict(env, EPOCHS=str(args.epochs), SUBSET=str(args.limit), EXPERIMENTS="multiclass",
                    SCALE=repr(1 / 255), SEED="101", OUT=str(out / "baseline"))
    _, peak = measured([sys.executable, str(args.baseline), str(args.data)], base_env, out / "baseline.log")
    (res_file,) = (out / "baseline").glob("multiclass_*.json")
    res = json.loads(res_file.read_text())
    hist = dict(res["history"], epoch_seconds=None)
    n_train = res["train_images"]
    # the baseline records only the median epoch time: spread it over its epochs
    hist["epoch_seconds"] = [res["epoch_seconds_median"]] * len(res["history"]["loss"])
    results["baseline (plain Keras)"] = {
        "images_per_second": n_train / res["epoch_seconds_median"], "peak_rss_mib": peak,
        "time_to_target_s": time_to(hist, args.target), "val_accuracy": max(res["history"]["val_accuracy"]),
        "test_accuracy": res["eval"]["test/none"]["accuracy"]}

    btk = [sys.executable, "-m", "btk", "run", "--data", str(args.data), "--out", str(out / "runs"),
           "--epochs", str(args.epochs), "--limit-train", str(args.limit), "--reporter", "none"]
    sides = [("btk seed-cnn (preset btk)", ["--preset", "btk", "--model", "seed-cnn", *args.btk_args.split()])]
    if args.fast:
        sides.append(("btk fast (res-cnn, 128 px)", ["--preset", "fast"]))
    for label, extra in sides:
        before = set((out / "runs").glob("*")) if (out / "runs").exists() else set()
        _, peak = measured(btk + extra, env, out / (label.split()[1] + ".log"))
        (run_dir,) = set((out / "runs").glob("*")) - before
        history = json.loads((run_dir / "history.json").read_text())
        metrics = json.loads((run_dir / "metrics.json").read_text())
        n = metrics["counts"]["train"]
        results[label] = {
            "images_per_second": n / median(history["epoch_seconds"][1:] or history["epoch_seconds"]),
            "peak_rss_mib": peak, "time_to_target_s": time_to(history, args.target),
            "val_accuracy": max(history["val_accuracy"]),
            "test_accuracy": metrics["conditions"]["clean"]["accuracy"]}

    base = results["baseline (plain Keras)"]
    print(f"\n{'':30s} {'images/s':>9s} {'ratio':>6s} {'peak RSS MiB':>13s} {'ratio':>6s} "
          f"{'s to val ' + format(args.target, '.2f'):>14s} {'val acc':>8s} {'test acc':>9s}")
    for label, r in results.items():
        ttt = "-" if r["time_to_target_s"] is None else f"{r['time_to_target_s']:.0f}"
        print(f"{label:30s} {r['images_per_second']:9.1f} {r['images_per_second'] / base['images_per_second']:6.2f} "
              f"{r['peak_rss_mib']:13.0f} {r['peak_rss_mib'] / base['peak_rss_mib']:6.2f} {ttt:>14s} "
              f"{r['val_accuracy']:8.3f} {r['test_accuracy']:9.3f}")
    (out / "results.json").write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                                  "results": results}, indent=1))
    print(f"\nlogs and results: {out}")


if __name__ == "__main__":
    main()
