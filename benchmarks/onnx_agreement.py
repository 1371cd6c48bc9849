"""ONNX Runtime against btk's Keras scorer on every SARTAJ Testing image: a multiclass run, the
same run with test-time augmentation, an ensemble of two, and a binary run trained through the
classes; and ``examples/onnx_predict.py`` (no btk) on the same files.

The runs are trained here, in float32 (``--set recipe.precision=float32``: a bfloat16 run's
Keras scorer computes in bfloat16, which no float32 graph reproduces to 1e-5), with the default
recipe and ``--epochs`` epochs (agreement does not depend on how long a network trained; the
probabilities must only be far from uniform). For each case: ``btk predict --runtime keras`` and
``--runtime onnx`` on ``DATA/Testing``, and the example on the graph ``btk export`` wrote; the
largest difference of any probability, and whether every answer is the same.

Usage: python benchmarks/onnx_agreement.py --data DATA/sartaj --out OUT [--epochs 5] [--runs FOLDER]
(``--runs``: a folder where an earlier invocation trained them, to measure again without training)
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "onnx_predict.py"


def btk(*args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "btk", *args], env=ENV, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"btk {' '.join(args)} failed:\n{done.stderr[-2000:]}")
    return done.stdout


def train(data: Path, folder: Path, epochs: int) -> dict[str, Path]:
    common = ["--set", "recipe.precision=float32", "--epochs", str(epochs), "--reporter", "none"]
    if not (folder / "ens").is_dir():
        btk("ensemble", "--train", "2", "--data", str(data), "--out", str(folder / "ens"), *common)
    if not (folder / "bin").is_dir():
        btk("run", "--data", str(data), "--task", "binary", "--out", str(folder / "bin"), *common)
    found = {p.name.split("-")[-1]: p for p in (folder / "ens").iterdir() if not p.name.startswith(".")}
    [binary] = [p for p in (folder / "bin").iterdir() if not p.name.startswith(".")]
    return {"member": found["member1"], "ensemble": found["ensemble2"], "binary": binary}


def rows(path: Path) -> dict[str, tuple[str, np.ndarray]]:
    with open(path, newline="") as fh:
        return {r["path"]: (r["predicted"], np.array([float(v) for k, v in r.items() if k.startswith("p_")]))
                for r in csv.DictReader(fh)}


def predict(run: Path, data: Path, out: Path, runtime: str, tta: bool) -> tuple[dict, float]:
    t0 = time.perf_counter()
    btk("predict", str(run), "--data", str(data), "--out", str(out), "--runtime", runtime,
        "--tta" if tta else "--no-tta")
    [folder] = [p for p in out.iterdir() if not p.name.startswith(".")]
    return rows(folder / "predictions.csv"), time.perf_counter() - t0


def largest(a: dict, b: dict) -> tuple[float, int]:
    assert a.keys() == b.keys(), "not the same files"
    diff = max(float(np.abs(a[k][1] - b[k][1]).max()) for k in a)
    return diff, sum(a[k][0] != b[k][0] for k in a)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--runs", type=Path, help="where the runs are (trained there if absent) [OUT/runs]")
    args = parser.parse_args()
    runs = train(args.data, args.runs or args.out / "runs", args.epochs)
    testing = args.data / "Testing"
    results = []
    for case, run_key, tta in (("multiclass", "member", False), ("multiclass, TTA", "member", True),
                               ("ensemble of 2", "ensemble", False), ("binary through the classes", "binary", False)):
        run = runs[run_key]
        work = args.out / case.replace(" ", "-").replace(",", "")
        export = work / "export"
        btk("export", str(run), "--out", str(export), "--tta" if tta else "--no-tta")
        [exported] = [p for p in export.iterdir() if not p.name.startswith(".")]
        sidecar = json.loads((exported / "model.onnx.json").read_text())
        keras_rows, keras_s = predict(run, testing, work / "keras", "keras", tta)
        onnx_rows, onnx_s = predict(run, testing, work / "onnx", "onnx", tta)
        files = sorted(keras_rows)
        done = subprocess.run([sys.executable, "-c", "import runpy, sys; sys.modules['btk'] = None; "
                               f"sys.argv = sys.argv[1:]; runpy.run_path({str(EXAMPLE)!r}, run_name='__main__')",
                               str(EXAMPLE), str(exported), *files], capture_output=True, text=True, env=ENV)
        if done.returncode:
            raise SystemExit(done.stderr[-2000:])
        example_rows = {r["path"]: (r["predicted"], np.array([float(v) for k, v in r.items() if k.startswith("p_")]))
                        for r in csv.DictReader(done.stdout.splitlines())}
        onnx_diff, onnx_changed = largest(keras_rows, onnx_rows)
        example_diff, example_changed = largest(keras_rows, example_rows)
        labels = {k: Path(k).parent.name for k in keras_rows}
        binary = run_key == "binary"
        truth = {k: ("no_tumor" if v == "no_tumor" else "tumor") if binary else v for k, v in labels.items()}

        def accuracy(table: dict) -> float:
            return sum(table[k][0] == truth[k] for k in table) / len(table)

        result = {"case": case, "run": run.name, "images": len(keras_rows),
                  "export_measured": sidecar["measured"],
                  "onnx_vs_keras": onnx_diff, "answers_changed_onnx": onnx_changed,
                  "example_vs_keras": example_diff, "answers_changed_example": example_changed,
                  "accuracy_keras": accuracy(keras_rows), "accuracy_onnx": accuracy(onnx_rows),
                  "accuracy_example": accuracy(example_rows),
                  "predict_seconds": {"keras": keras_s, "onnx": onnx_s}}
        results.append(result)
        print(f"{case:28s} {len(keras_rows)} images: ONNX Runtime {onnx_diff:.1e} ({onnx_changed} answers changed), "
              f"example {example_diff:.1e} ({example_changed}); accuracy {result['accuracy_keras']:.4f} / "
              f"{result['accuracy_onnx']:.4f} / {result['accuracy_example']:.4f}", flush=True)
    (args.out / "agreement.json").write_text(json.dumps({"machine": os.uname().nodename, "cores": os.cpu_count(),
                                                         "date": time.strftime("%Y-%m-%d"), "results": results},
                                                        indent=1) + "\n")
    print("all within 1e-5" if all(r["onnx_vs_keras"] <= 1e-5 and r["example_vs_keras"] <= 1e-5 for r in results)
          else "SOME ABOVE 1e-5")


if __name__ == "__main__":
    main()
