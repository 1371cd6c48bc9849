"""`btk resume` against the uninterrupted run, on the demo (`btk run` without data: small-cnn on the
synthetic phantoms, 10 epochs): the run once uninterrupted, then once per interruption epoch,
stopped by SIGTERM as soon as its checkpoint holds that epoch (so the signal lands during the next
epoch, as a scheduler's would) and resumed with `btk resume`. Prints, per interruption, the epoch the
checkpoint held and the largest difference in any weight and in any epoch's loss against the
uninterrupted run, and writes them as JSON.

    python benchmarks/resume_equality.py --epochs 3,6,8 --out docs/results/cpu-demo/resume-equality.json
    KERAS_BACKEND=jax python benchmarks/resume_equality.py --epochs 2 --options "-R per_class=12 \
        -R test_per_class=3 --image-size 32 --epochs 4" --out docs/results/cpu-demo/resume-equality-jax.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def _btk(*args: str) -> dict:
    done = subprocess.run([sys.executable, "-m", "btk", *args, "--json"], capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"btk {' '.join(args)} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout)


def _interrupted(out: Path, epoch: int, extra: list[str]) -> tuple[Path, int]:
    """A demo run stopped by SIGTERM once its checkpoint holds ``epoch``: its partial folder and the
    epochs its checkpoint holds."""
    proc = subprocess.Popen([sys.executable, "-m", "btk", "run", *extra, "--out", str(out), "--json"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    state = None
    while proc.poll() is None:
        found = list(out.glob(".*.partial/checkpoint/state.json"))
        if found:
            try:
                if json.loads(found[0].read_text())["epoch"] >= epoch:
                    state = found[0]
                    break
            except (OSError, ValueError):  # being replaced
                pass
        time.sleep(0.05)
    if state is None:
        raise SystemExit(f"the run ended before epoch {epoch}:\n{proc.stderr.read()[-2000:] if proc.stderr else ''}")
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=300)
    if proc.returncode != 143:
        raise SystemExit(f"SIGTERM gave exit status {proc.returncode}")
    return state.parent.parent, json.loads(state.read_text())["epoch"]


def _weights(run: Path) -> list[np.ndarray]:
    from btk.checkpoint import load_model_file

    return load_model_file(run / "model.keras").get_weights()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", default="3,6,8", help="comma-separated interruption epochs")
    parser.add_argument("--set", action="append", default=[], help="a recipe or run field for every run")
    parser.add_argument("--options", default="", help="more btk run options for every run, as one string")
    parser.add_argument("--out", type=Path, required=True, help="JSON file to write")
    parser.add_argument("--machine", default="", help="the machine in words, kept in the JSON")
    parser.add_argument("--runs", type=Path, default=Path("/tmp/btk-resume-equality"), help="folder for the runs")
    args = parser.parse_args()
    extra = [a for s in args.set for a in ("--set", s)] + shlex.split(args.options)
    import keras

    start = time.perf_counter()
    whole = _btk("run", *extra, "--out", str(args.runs / "whole"))
    whole_seconds = time.perf_counter() - start
    whole_path = Path(whole["run"])
    reference = _weights(whole_path)
    whole_history = json.loads((whole_path / "history.json").read_text())
    rows = []
    for epoch in map(int, args.epochs.split(",")):
        partial, held = _interrupted(args.runs / f"stop{epoch}", epoch, extra)
        resumed = _btk("resume", str(partial))
        path = Path(resumed["run"])
        weights = _weights(path)
        history = json.loads((path / "history.json").read_text())
        row = {"stop_at_epoch": epoch, "checkpoint_epoch": held,
               "max_weight_difference": max(float(np.max(np.abs(a - b))) for a, b in zip(reference, weights)),
               "max_loss_difference": max(abs(a - b) for a, b in zip(whole_history["loss"], history["loss"])),
               "test_accuracy": resumed["metrics"]["clean"]["accuracy"],
               "uninterrupted_test_accuracy": whole["metrics"]["clean"]["accuracy"]}
        rows.append(row)
        print(f"SIGTERM once epoch {epoch} was saved; resumed after epoch {held}: max |weight difference| "
              f"{row['max_weight_difference']:.3g}, max |loss difference| {row['max_loss_difference']:.3g}, test "
              f"accuracy {100 * row['test_accuracy']:.1f}% "
              f"(uninterrupted {100 * row['uninterrupted_test_accuracy']:.1f}%)",
              flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "machine": args.machine or platform.platform(), "platform": platform.platform(),
        "processor": platform.processor(), "cpus": os.cpu_count(),
        "backend": keras.backend.backend(), "date": time.strftime("%Y-%m-%d"), "options": extra,
        "uninterrupted_seconds": round(whole_seconds, 1), "results": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
