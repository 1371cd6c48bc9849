"""``btk evaluate`` of one run on one device and on several (``--devices``), in the same session:
wall time, images per second, and whether the answers agree (largest probability difference,
share of images with the same predicted class, accuracy of each).

    python benchmarks/scoring_devices.py RUN --data DATA [--split Testing] [--devices default,1,4]
        [--virtual 4] [--out FOLDER]

Each evaluation is its own ``python -m btk evaluate`` process under ``KERAS_BACKEND=jax``.
``--virtual N`` splits the CPU into N host devices (``XLA_FLAGS=
--xla_force_host_platform_device_count=N``): that measures correctness, not speed (one CPU
split N ways). On a machine with several GPUs leave it out. Prints a table and one JSON line.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def evaluate(run: Path, data: Path, split: str, devices: str, out: Path, virtual: int) -> dict:
    """One ``btk evaluate`` (``devices`` ``""``: Keras' default device): its time and its rows."""
    env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get(
        "PYTHONPATH", "")])}
    if virtual:
        env.update(JAX_PLATFORMS="cpu", XLA_FLAGS=f"--xla_force_host_platform_device_count={virtual}")
    devices = "" if devices == "default" else devices
    target = out / f"devices-{devices or 'default'}"
    args = [sys.executable, "-m", "btk", "evaluate", str(run), "--data", str(data), "--split", split, "--out",
            str(target), "--json", "--duplicate-threshold", "0"]
    if devices:
        args += ["--devices", devices]
    t0 = time.perf_counter()
    done = subprocess.run(args, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"btk evaluate --devices {devices or '-'} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    folder = Path(json.loads(done.stdout)["run"])  # --json: the evaluation's summary; it is made in target
    metrics = json.loads((folder / "metrics.json").read_text())
    with open(folder / "predictions.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["condition"] == "clean"]
    return {"devices": devices or "default", "seconds": round(seconds, 1),
            "predict_seconds": round(metrics["timing"]["predict_seconds"], 2),
            "images_per_second": round(metrics["timing"]["predicted_images_per_second"], 1),
            "accuracy": round(100 * metrics["conditions"]["clean"]["accuracy"], 2),
            "distribution": json.loads((folder / "config.json").read_text()).get("distribution"), "rows": rows}


def agreement(a: list[dict], b: list[dict]) -> dict:
    """Largest probability difference and share of equal predicted classes between two row lists."""
    keys = [k for k in a[0] if k.startswith("p_")]
    diff = max(abs(float(x[k]) - float(y[k])) for x, y in zip(a, b) for k in keys)
    same = sum(x["predicted"] == y["predicted"] for x, y in zip(a, b)) / len(a)
    return {"max_probability_difference": diff, "same_class": round(100 * same, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--split", default="Testing")
    parser.add_argument("--devices", default="1,4",
                        help="comma-separated --devices values to compare (default: Keras' default device)")
    parser.add_argument("--virtual", type=int, default=0, help="split the CPU into this many host devices")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="btk-scoring-"))
    out.mkdir(parents=True, exist_ok=True)
    results = [evaluate(args.run, args.data, args.split, spec, out, args.virtual) for spec in args.devices.split(",")]
    first = results[0]
    print(f"{'devices':>8} {'wall s':>8} {'predict s':>10} {'img/s':>8} {'acc':>6} {'max |dp|':>10} {'same':>6}")
    for r in results:
        r.update(agreement(first["rows"], r["rows"]))
        print(f"{r['devices']:>8} {r['seconds']:>8.1f} {r['predict_seconds']:>10.2f} {r['images_per_second']:>8.1f} "
              f"{r['accuracy']:>6.2f} {r['max_probability_difference']:>10.2e} {r['same_class']:>6.1f}")
    for r in results[1:]:
        print(f"predict time, {r['devices']} devices against {first['devices']}: "
              f"{first['predict_seconds'] / max(r['predict_seconds'], 1e-9):.2f}x")
    print(json.dumps({"run": str(args.run), "virtual": args.virtual,
                      "results": [{k: v for k, v in r.items() if k != "rows"} for r in results]}))


if __name__ == "__main__":
    main()
