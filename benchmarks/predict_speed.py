"""End-to-end images/s of ``btk predict`` on SARTAJ's JPEGs against the model's own batched
throughput on the same images already in memory, in one script run.

End to end: ``python -m btk predict RUN --data DATA/Training --data DATA/Testing --out DIR`` in a
subprocess, timed from start to exit (Python and TensorFlow start-up, model load, decoding,
writing ``DIR/<time>-predict-<run>/predictions.csv``: everything a user waits for), best of
``--repeat``. In memory: the same images read as the run reads them (crop, resize), then scored
by the run's scorer (``btk.scoring``: what ``btk predict`` and every other command score with,
intensity normalisation and scaling included), and, intensity-normalised and scaled beforehand,
by the run's model alone on batches of the scorer's size (``predict_on_batch``, the call the
scorer makes) and through Keras' own loop (``model.predict``), each after a warm-up.

The run must be of the ``fast`` recipe (res-cnn, 128 px, grayscale, crop and intensity
normalisation): give one with ``--run``, or the script trains one in a temporary folder in
about a minute (one epoch on 300 images: only the architecture matters for speed).
Usage: python benchmarks/predict_speed.py --data DATA/sartaj [--run RUN_DIR] [--batch-size N]
(``--batch-size``: of the in-memory model calls; default the run's batch size, as its scorer)
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

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}


def make_run(data: Path, parent: Path) -> Path:
    """A one-epoch run of the fast recipe on 300 training images, under ``parent``."""
    done = subprocess.run([sys.executable, "-m", "btk", "run", "--data", str(data), "--limit-train", "300",
                           "--limit-test", "50", "--epochs", "1", "--duplicate-threshold", "0", "--out", str(parent),
                           "--json"], check=True, env=ENV, stdout=subprocess.PIPE, text=True)
    return Path(json.loads(done.stdout)["run"])  # --json: the run's summary on standard output


def busy_cpu_seconds() -> float | None:
    """CPU seconds the whole machine has been busy (Linux's /proc/stat), or None elsewhere."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def predictions_file(out: Path) -> Path:
    """The ``predictions.csv`` of the one result directory ``btk predict --out out`` made."""
    (folder,) = [p for p in out.iterdir() if p.is_dir() and not p.name.startswith(".")]
    return folder / "predictions.csv"


def end_to_end(run: Path, data: Path, out: Path) -> tuple[float, int, float, float | None]:
    """One ``btk predict`` command over Training and Testing into a new folder ``out``: ``(seconds,
    rows of its CSV, its CPU seconds, CPU seconds other processes used meanwhile)``."""
    busy = busy_cpu_seconds()
    t0 = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-m", "btk", "predict", str(run), "--data", str(data / "Training"),
                              "--data", str(data / "Testing"), "--out", str(out)], env=ENV, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status):
        raise SystemExit("btk predict failed")
    cpu = usage.ru_utime + usage.ru_stime
    after = busy_cpu_seconds()
    others = None if busy is None or after is None else max(0.0, after - busy - cpu)
    with open(predictions_file(out), newline="") as fh:
        return seconds, sum(1 for _ in csv.DictReader(fh)), cpu, others


def in_memory(run_dir: Path, data: Path, batch_size: int | None) -> tuple[int, int, float, float, float]:
    """``(images, batch size, scorer images/s, predict_on_batch images/s, model.predict images/s)`` on
    the images in memory (``batch_size`` None: the run's, as its scorer uses)."""
    import numpy as np

    from btk.dataset import load_dataset
    from btk.plugins import get_host
    from btk.runs import load_run
    from btk.training import network_input

    run = load_run(run_dir)
    recipe = run.config.recipe
    batch_size = batch_size or recipe.batch_size
    images = load_dataset(get_host().readers.get("folder"), data, run.read_options(), cache=False).images
    with run.scorer() as score:  # what btk predict calls, on images already decoded
        score.outputs(images[: 2 * score.batch_size])  # warm-up
        t0 = time.perf_counter()
        score(images)
        scorer = len(images) / (time.perf_counter() - t0)
    x = np.concatenate([network_input(images[i:i + batch_size], recipe.scale, recipe.intensity)
                        for i in range(0, len(images), batch_size)])
    batches = [x[i:i + batch_size] for i in range(0, len(x), batch_size)]
    model = run.load_model()
    for batch in batches[:2] + batches[-1:]:  # warm-up: trace the full and the last batch shape
        model.predict_on_batch(batch)
    t0 = time.perf_counter()
    for batch in batches:
        model.predict_on_batch(batch)
    on_batch = len(x) / (time.perf_counter() - t0)
    model.predict(x[: 2 * batch_size], batch_size=batch_size, verbose=0)
    t0 = time.perf_counter()
    model.predict(x, batch_size=batch_size, verbose=0)
    keras_loop = len(x) / (time.perf_counter() - t0)
    return len(x), batch_size, scorer, on_batch, keras_loop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="SARTAJ folder (Training/ and Testing/)")
    parser.add_argument("--run", type=Path, help="a run of the fast recipe [trained here, one epoch]")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="images per in-memory model call [the run's batch size, as its scorer]")
    parser.add_argument("--repeat", type=int, default=2, help="end-to-end runs; the best counts")
    args = parser.parse_args()
    print(f"cores: {os.cpu_count()}")
    with tempfile.TemporaryDirectory() as tmp:
        run = args.run or make_run(args.data, Path(tmp) / "runs")
        times = []
        for k in range(args.repeat):
            seconds, rows, cpu, others = end_to_end(run, args.data, Path(tmp) / f"predictions-{k}")
            times.append(seconds)
            print(f"btk predict: {rows} images in {seconds:.2f} s = {rows / seconds:,.0f} images/s end to end "
                  f"({cpu:.1f} CPU-s; other processes meanwhile: {'?' if others is None else f'{others:.1f}'} CPU-s)")
        n, batch_size, scorer, on_batch, keras_loop = in_memory(run, args.data, args.batch_size)
    best = rows / min(times)
    print(f"in memory ({n} images): the run's scorer {scorer:,.0f} images/s; preprocessed, batch size {batch_size}: "
          f"predict_on_batch {on_batch:,.0f} images/s, model.predict {keras_loop:,.0f} images/s")
    print(f"end to end (best) / in memory: {best:,.0f} / {on_batch:,.0f} = {best / on_batch:.2f} "
          f"(against model.predict: {best / keras_loop:.2f}); targets: >= 150 images/s and >= 0.5")


if __name__ == "__main__":
    main()
