"""Two ``jax.distributed`` processes on 127.0.0.1, 2 virtual CPU devices each, train one btk run
together (``btk run --coordinator 127.0.0.1:PORT --num-processes 2 --process-id K``) and this
checks that both exit 0 and exactly one run directory is written, recording 4 devices in 2
processes.

    python benchmarks/multihost_loopback.py [--out FOLDER] [--epochs 2]

Prints one JSON line (each process's exit status and seconds, the run directories, the
recorded distribution) and exits non-zero when a check fails.
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


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def loopback(out: Path, epochs: int = 2, timeout: float = 900) -> dict:
    """Run the two processes into ``out`` and return what happened (see the module docstring)."""
    port = free_port()
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu",
           "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    for name in ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID", "SLURM_NTASKS", "SLURM_PROCID"):
        env.pop(name, None)
    args = ["run", "-R", "per_class=8", "-R", "test_per_class=4", "--image-size", "32", "--epochs", str(epochs),
            "--model", "small-cnn", "--batch-size", "8", "--no-augment", "--precision", "float32",
            "--devices", "auto", "--name", "multihost", "--out", str(out), "--reporter", "terminal"]
    t0 = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, "-m", "btk", *args, "--coordinator", f"127.0.0.1:{port}",
                               "--num-processes", "2", "--process-id", str(k)], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for k in range(2)]
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
    return {"ok": ok, "processes": results, "runs": runs, "distribution": distribution}


def main() -> int:
    """Command-line entry: run :func:`loopback` and print its result as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="Run folder (default: a temporary one).")
    parser.add_argument("--epochs", type=int, default=2)
    opts = parser.parse_args()
    out = opts.out or Path(tempfile.mkdtemp(prefix="btk-multihost-"))
    result = loopback(out, opts.epochs)
    print(json.dumps(result))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
