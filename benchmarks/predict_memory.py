"""Peak memory (RSS) of ``btk predict --out DIR`` on 500 files against 20,000 files.

The files are symbolic links to SARTAJ's JPEGs in a temporary folder: the 3,264 images again and
again, the same names in numbered sub-folders (``copy00/Training/glioma_tumor/gg (1).jpg``,
``copy01/...``). Each command runs in its own process; its peak RSS is the kernel's count for
that child (``os.wait4``). Flat memory means the two peaks differ by little: what grows with the
number of files is only a small record per file.
Usage: python benchmarks/predict_memory.py --data DATA/sartaj [--run RUN_DIR] [--counts 500,20000]
(without --run, a one-epoch run of the fast recipe is trained first, as in predict_speed.py)
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from predict_speed import ENV, make_run, predictions_file


def link_files(data: Path, n: int, root: Path) -> Path:
    """A folder of ``n`` links to the JPEGs under ``data``, names reused in numbered sub-folders."""
    files = sorted(data.glob("*/*/*.jpg"))
    folder = root / f"files-{n}"
    for i in range(n):
        source = files[i % len(files)]
        target = folder / f"copy{i // len(files):02d}" / source.relative_to(data)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(source.resolve())
    return folder


def peak_rss(command: list[str]) -> tuple[float, float]:
    """``(peak RSS in MiB, seconds)`` of ``command`` run as a child process."""
    t0 = time.perf_counter()
    child = subprocess.Popen(command, env=ENV, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode:
        raise SystemExit(f"failed ({child.returncode}): {' '.join(command)}")
    return usage.ru_maxrss / 1024, time.perf_counter() - t0  # ru_maxrss is in KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="SARTAJ folder (Training/ and Testing/)")
    parser.add_argument("--run", type=Path, help="a run of the fast recipe [trained here, one epoch]")
    parser.add_argument("--counts", default="500,20000", help="numbers of files, comma-separated")
    args = parser.parse_args()
    peaks = {}
    with tempfile.TemporaryDirectory() as tmp:
        run = args.run or make_run(args.data, Path(tmp) / "runs")
        for n in (int(c) for c in args.counts.split(",")):
            folder = link_files(args.data, n, Path(tmp))
            out = Path(tmp) / f"predictions-{n}"
            peaks[n], seconds = peak_rss([sys.executable, "-m", "btk", "predict", str(run), "--data", str(folder),
                                          "--out", str(out)])
            with open(predictions_file(out)) as fh:
                rows = sum(1 for _ in fh) - 1
            print(f"{n:,} files: {rows:,} rows, peak RSS {peaks[n]:,.0f} MiB, {seconds:.1f} s "
                  f"({rows / seconds:,.0f} images/s)")
    low, high = min(peaks), max(peaks)
    print(f"difference ({high:,} - {low:,} files): {peaks[high] - peaks[low]:+,.0f} MiB (target: within 300 MB)")


if __name__ == "__main__":
    main()
