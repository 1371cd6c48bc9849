"""``btk report`` over 20 runs: seconds without and with ``--html``.

Writes 20 complete run directories (394 test images, 4 classes, 3 test conditions each, as the
report suite's runs have) into a temporary folder, then times the ``btk`` command itself in a
fresh process, as a user would run it. Usage: python benchmarks/report_speed.py
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from btk.testing import make_run


def main(n_runs: int = 20, n_images: int = 394) -> None:
    classes = ["glioma_tumor", "meningioma_tumor", "no_tumor", "pituitary_tumor"]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        rng = np.random.default_rng(0)
        y = rng.integers(0, 4, n_images)
        for k in range(n_runs):
            conditions = {}
            for cond in ("clean", "blur", "resolution"):
                p = rng.dirichlet(np.ones(4), n_images)
                p[np.arange(n_images), y] += rng.uniform(0.2, 0.8)
                conditions[cond] = p / p.sum(1, keepdims=True)
            make_run(folder, f"run{k:02d}", y, conditions, classes, [f"Testing/{i}.jpg" for i in range(n_images)])
        runs = sorted(str(p) for p in folder.iterdir())
        for label, extra in (("without HTML", []), ("with --html", ["--html", str(folder / "r.html")])):
            t0 = time.perf_counter()
            proc = subprocess.run([sys.executable, "-m", "btk", "report", *runs, *extra], capture_output=True,
                                  text=True)
            seconds = time.perf_counter() - t0
            assert proc.returncode == 0, proc.stderr
            print(f"btk report, {n_runs} runs x 3 conditions x {n_images} images, {label}: {seconds:.1f} s")
        print(f"HTML size: {(folder / 'r.html').stat().st_size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
