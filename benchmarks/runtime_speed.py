"""``btk predict`` with each runtime, in one script run, so the ratios compare like with like:
Keras (today's path: the run's network as trained), ONNX Runtime (the float32 graph ``btk
export`` writes) and ONNX Runtime int8 (``btk export --int8``).

1. The network alone on the same prepared batches in memory (the run's batch size, as its
   scorer calls it; the median of ``--repeat`` passes over 1,024 SARTAJ images after a warm-up):
   Keras ``predict_on_batch`` (the run's precision), Keras in float32, ONNX Runtime, int8.
2. End to end: ``python -m btk predict RUN --data ... --out DIR --runtime R`` in a subprocess,
   from start to exit, on the 3,264 SARTAJ files and on 20,000 links to them
   (``benchmarks/predict_memory.py``'s folder), best of ``--repeat``.
3. A 5-member ensemble (``btk ensemble --train 5``: one graph for the five), end to end on the
   3,264 files, Keras against ONNX Runtime.

The runs are trained here on a few hundred images for one epoch (speed depends on the
architecture, not on the weights), with the default recipe and precision (bfloat16 on a CPU
that has it), then exported (``btk export RUN --int8``). Prints each figure and the ratios
against Keras; ``--json`` writes them.

Usage: python benchmarks/runtime_speed.py --data DATA/sartaj [--repeat 3] [--json FILE] [--skip-ensemble]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from predict_memory import link_files
from predict_speed import busy_cpu_seconds

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
TRAIN = ["--limit-train", "300", "--limit-test", "50", "--epochs", "1", "--duplicate-threshold", "0", "--json",
         "--reporter", "none"]


def btk(*args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "btk", *args], env=ENV, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"btk {' '.join(args[:3])} failed:\n{done.stderr[-3000:]}")
    return done.stdout


def end_to_end(run: Path, inputs: list[Path], out: Path, runtime: str) -> float:
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "btk", "predict", str(run),
                           *[a for p in inputs for a in ("--data", str(p))], "--out", str(out), "--runtime", runtime],
                          env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if done.returncode:
        raise SystemExit(f"btk predict --runtime {runtime} failed:\n{done.stderr[-2000:]}")
    return time.perf_counter() - t0


def network_alone(run_dir: Path, data: Path, repeat: int) -> dict[str, float]:
    """Images/s of each runtime's network on the same prepared batches."""
    import numpy as np

    from btk.dataset import load_dataset
    from btk.onnx_export import float32_network
    from btk.onnx_graph import OnnxNetwork
    from btk.plugins import get_host
    from btk.runs import load_run
    from btk.training import network_input

    run = load_run(run_dir)
    recipe = run.config.recipe
    images = load_dataset(get_host().readers.get("folder"), data / "Testing", run.read_options(), cache=False).images
    images = np.concatenate([images] * (1024 // len(images) + 1))[:1024]
    x = network_input(images, recipe.scale, recipe.intensity)
    batch = int(recipe.batch_size)
    batches = [x[i:i + batch] for i in range(0, len(x), batch)]
    keras_net = run.load_model()
    networks = {"keras": keras_net.predict_on_batch, "keras_float32": float32_network(keras_net).predict_on_batch,
                "onnx": OnnxNetwork(run_dir / "model.onnx").predict_on_batch,
                "int8": OnnxNetwork(run_dir / "model.int8.onnx").predict_on_batch}
    seconds: dict[str, list[float]] = {k: [] for k in networks}
    for call in networks.values():
        call(batches[0])
        call(batches[1])
    for _ in range(repeat):  # interleaved: a burst of other work hits every runtime alike
        for name, call in networks.items():
            t0 = time.perf_counter()
            for b in batches:
                call(b)
            seconds[name].append(time.perf_counter() - t0)
    return {name: len(x) / float(np.median(s)) for name, s in seconds.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="SARTAJ folder (Training/ and Testing/)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--skip-ensemble", action="store_true")
    args = parser.parse_args()
    busy0 = busy_cpu_seconds()
    figures: dict = {"cores": os.cpu_count(), "date": time.strftime("%Y-%m-%d %H:%M")}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        run = Path(json.loads(btk("run", "--data", str(args.data), "--out", str(root / "runs"), *TRAIN))["run"])
        btk("export", str(run))
        sidecar = json.loads((run / "model.onnx.json").read_text())
        figures["run"] = {"precision": sidecar["measured"]["keras_precision"],
                          "onnx_vs_keras_scorer": sidecar["measured"]["against_keras_scorer"],
                          "onnx_vs_keras_float32": sidecar["measured"]["against_keras_float32"]}
        done = subprocess.run([sys.executable, "-m", "btk", "export", str(run), "--int8"], env=ENV,
                              capture_output=True, text=True)
        runtimes = ["keras", "onnx"]
        if done.returncode == 0:
            runtimes.append("int8")
            figures["run"]["int8_validation"] = json.loads((run / "model.int8.onnx.json").read_text())[
                "validation_accuracy"]
        else:  # a one-epoch network on few images may fail the 0.3-point rule: timed all the same, not used
            figures["run"]["int8_refused"] = done.stderr.strip().splitlines()[-1]
            print(f"int8 refused by its rule ({figures['run']['int8_refused']}); its network is timed alone")
            from btk.onnx_int8 import quantize
            from btk.runs import load_run
            from btk.training import network_input

            recipe = load_run(run).config.recipe
            train = load_run(run).images("train").images[:256]
            quantize(run / "model.onnx", run / "model.int8.onnx", network_input(train, recipe.scale, recipe.intensity),
                     int(recipe.batch_size))
        alone = network_alone(run, args.data, args.repeat)
        figures["network_images_per_second"] = alone
        print("network alone, images/s: " + ", ".join(f"{k} {v:,.0f}" for k, v in alone.items()))
        print("  against Keras: " + ", ".join(f"{k} {v / alone['keras']:.2f}x" for k, v in alone.items()), flush=True)
        archive = link_files(args.data, 20000, root / "links")
        cases = {"3,264 files": [args.data / "Training", args.data / "Testing"], "20,000 files": [archive]}
        figures["end_to_end"] = {}
        for label, inputs in cases.items():
            n = 3264 if label.startswith("3") else 20000
            row = {}
            for runtime in runtimes:
                best = min(end_to_end(run, inputs, root / f"out-{runtime}-{n}-{k}", runtime)
                           for k in range(args.repeat))
                row[runtime] = n / best
            figures["end_to_end"][label] = row
            print(f"end to end, {label}: " + ", ".join(f"{k} {v:,.0f} images/s ({v / row['keras']:.2f}x)"
                                                       for k, v in row.items()), flush=True)
        if not args.skip_ensemble:
            out = json.loads(btk("ensemble", "--train", "5", "--data", str(args.data), "--out", str(root / "ens"),
                                 *TRAIN))
            ensemble = Path(out["run"])
            btk("export", str(ensemble))
            ensemble_runtimes = ["keras", "onnx"]
            done = subprocess.run([sys.executable, "-m", "btk", "export", str(ensemble), "--int8"], env=ENV,
                                  capture_output=True, text=True)
            if done.returncode == 0:
                ensemble_runtimes.append("int8")
            else:
                figures["ensemble_int8_refused"] = done.stderr.strip().splitlines()[-1]
            row = {}
            for runtime in ensemble_runtimes:
                best = min(end_to_end(ensemble, cases["3,264 files"], root / f"ens-{runtime}-{k}", runtime)
                           for k in range(args.repeat))
                row[runtime] = 3264 / best
            figures["ensemble_5_end_to_end_3264"] = row
            print("5-member ensemble, end to end, 3,264 files: " + ", ".join(
                f"{k} {v:,.0f} images/s ({v / row['keras']:.2f}x)" for k, v in row.items()), flush=True)
    busy1 = busy_cpu_seconds()
    figures["machine_busy_cpu_seconds"] = None if busy0 is None or busy1 is None else busy1 - busy0
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1) + "\n")


if __name__ == "__main__":
    main()
