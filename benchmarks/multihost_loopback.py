"""Two ``jax.distributed`` processes on 127.0.0.1, 2 virtual CPU devices each, train one btk run
together (``btk run`` with ``JAX_COORDINATOR_ADDRESS=127.0.0.1:PORT``, ``JAX_NUM_PROCESSES=2`` and
``JAX_PROCESS_ID=K`` in its environment), and this checks that both exit 0 and exactly one run
directory is written, recording 4 devices in 2 processes. Then one process with 4 virtual CPU
devices trains the same run (same seed, same global batch), and the per-epoch losses of the two
runs must agree to ``LOSS_TOLERANCE`` (relative): dropout included, the two processes train as
one does.

    python benchmarks/multihost_loopback.py [--out FOLDER] [--epochs 2] [--no-reference]

Prints one JSON line (each process's exit status and seconds, the run directories, the
recorded distribution, both runs' losses and their largest relative difference) and exits
non-zero when a check fails.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOSS_TOLERANCE = 1e-4  # relative, per epoch (float32; measured about 4e-7: the order of float sums)
HISTORY_KEYS = ("loss", "val_loss")


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(devices: int) -> dict[str, str]:
    """The environment of a btk process on CPU with ``devices`` virtual devices."""
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu",
           "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    for name in ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID", "SLURM_NTASKS", "SLURM_PROCID"):
        env.pop(name, None)
    return env


def _args(out: Path, epochs: int, name: str) -> list[str]:
    """``btk run``'s arguments for the small run both layouts train."""
    return ["run", "-R", "per_class=8", "-R", "test_per_class=4", "--image-size", "32", "--epochs", str(epochs),
            "--model", "small-cnn", "--batch-size", "8", "--set", "augment_images=off", "--set", "precision=float32",
            "--devices", "auto", "--name", name, "--out", str(out), "--reporter", "terminal"]


def _history(run_dir: str | Path) -> dict[str, list[float]]:
    """The per-epoch losses a run directory records."""
    history = json.loads((Path(run_dir) / "history.json").read_text())
    return {key: history.get(key, []) for key in HISTORY_KEYS}


def single_process(out: Path, epochs: int = 2, devices: int = 4, timeout: float = 600) -> dict:
    """Train the same run in one process over ``devices`` virtual CPU devices, into ``out``.

    Returns:
        ``{"returncode", "seconds", "run", "history"}`` (``run`` and ``history`` None when no
        single run directory was written).
    """
    t0 = time.perf_counter()
    try:
        done = subprocess.run([sys.executable, "-m", "btk", *_args(out, epochs, "one-process")], env=_env(devices),
                              capture_output=True, text=True, timeout=timeout)
        returncode, tail = done.returncode, (done.stdout + done.stderr).strip().splitlines()[-3:]
    except subprocess.TimeoutExpired:
        returncode, tail = None, ["timed out"]
    runs = sorted(d for d in out.iterdir() if d.is_dir() and not d.name.startswith(".")) if out.exists() else []
    run = str(runs[0]) if len(runs) == 1 else None
    return {"returncode": returncode, "seconds": round(time.perf_counter() - t0, 1), "tail": tail, "run": run,
            "history": _history(run) if run else None}


def relative_difference(a: dict[str, list[float]], b: dict[str, list[float]]) -> float:
    """The largest relative difference between two histories' per-epoch losses (inf when their
    epochs differ)."""
    worst = 0.0
    for key in HISTORY_KEYS:
        if len(a.get(key, [])) != len(b.get(key, [])) or not a.get(key):
            return float("inf")
        worst = max([worst] + [abs(x - y) / max(abs(y), 1e-12) for x, y in zip(a[key], b[key], strict=True)])
    return worst


def loopback(out: Path, epochs: int = 2, timeout: float = 900, reference: bool = True) -> dict:
    """Run the two processes into ``out`` and, with ``reference``, the one-process 4-device run
    into ``out``'s sibling ``<out>-one-process``; return what happened (see the module docstring)."""
    port = free_port()
    args = _args(out, epochs, "multihost")
    t0 = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, "-m", "btk", *args],
                              env={**_env(2), "JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{port}", "JAX_NUM_PROCESSES": "2",
                                   "JAX_PROCESS_ID": str(k)},
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for k in range(2)]
    results = []
    for k, p in enumerate(procs):
        try:
            output, _ = p.communicate(timeout=max(1.0, timeout - (time.perf_counter() - t0)))
        except subprocess.TimeoutExpired:
            p.kill()
            output, _ = p.communicate()
        results.append({"process": k, "returncode": p.returncode, "seconds": round(time.perf_counter() - t0, 1),
                        "tail": output.strip().splitlines()[-3:]})
    runs = sorted(str(d) for d in out.iterdir() if d.is_dir() and not d.name.startswith(".")) if out.exists() else []
    distribution = None
    if len(runs) == 1:
        distribution = json.loads((Path(runs[0]) / "config.json").read_text()).get("distribution")
    ok = (all(r["returncode"] == 0 for r in results) and len(runs) == 1 and distribution is not None
          and len(distribution["devices"]) == 4 and distribution["processes"] == 2)
    result = {"ok": ok, "processes": results, "runs": runs, "distribution": distribution,
              "history": _history(runs[0]) if len(runs) == 1 else None}
    if reference:
        one = single_process(out.with_name(out.name + "-one-process"), epochs)
        difference = (relative_difference(result["history"], one["history"])
                      if result["history"] and one["history"] else float("inf"))
        result.update(reference=one, relative_difference=difference,
                      ok=ok and one["returncode"] == 0 and difference <= LOSS_TOLERANCE)
    return result


def main() -> int:
    """Command-line entry: run :func:`loopback` and print its result as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="Run folder (default: a temporary one).")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--no-reference", action="store_true",
                        help="Skip the one-process 4-device run and the comparison of losses.")
    opts = parser.parse_args()
    out = opts.out or Path(tempfile.mkdtemp(prefix="btk-multihost-")) / "runs"
    result = loopback(out, opts.epochs, reference=not opts.no_reference)
    print(json.dumps(result))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
