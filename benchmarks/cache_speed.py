"""The decode cache: a first load of a dataset (decode, resize, store) against a second load
of the same files with the same options (a memory map of the stored images), and the load of
the report's own code (``cv2.imread`` + ``cv2.resize`` in one process), in one run.

    python benchmarks/cache_speed.py --data ../shared/data/sartaj --image-size 256 --channels 3

Prints the seconds of each and the ratios; the cache lives in a temporary folder, removed after.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "plugins")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--image-size", type=int, default=256)
    ap.add_argument("--channels", type=int, default=3, choices=(1, 3))
    args = ap.parse_args()
    cache = tempfile.mkdtemp(prefix="btk-cache-bench-")
    os.environ["BTK_CACHE_DIR"] = cache
    import cv2
    import numpy as np

    from btk.dataset import load_dataset
    from btk.plugins import get_host
    from btk.types import ReadOptions

    reader = get_host().readers.get("folder")
    options = ReadOptions(args.image_size, args.channels)
    try:
        t0 = time.perf_counter()
        first = load_dataset(reader, args.data, options)
        t_first = time.perf_counter() - t0
        first_sum = int(first.images.sum(dtype=np.int64))  # every pixel read once
        t_first_read = time.perf_counter() - t0
        t0 = time.perf_counter()
        second = load_dataset(reader, args.data, options)
        t_second = time.perf_counter() - t0
        second_sum = int(second.images.sum(dtype=np.int64))
        t_second_read = time.perf_counter() - t0
        assert isinstance(second.images, np.memmap) and first_sum == second_sum
        files = sorted(p for p in args.data.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
        t0 = time.perf_counter()
        for f in files:  # the report's way, one process
            cv2.resize(cv2.imread(str(f)), (args.image_size, args.image_size))
        t_report = time.perf_counter() - t0
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    n = len(first)
    print(f"{n} images at {args.image_size} px x {args.channels} ({first.images.nbytes / 2**20:.0f} MiB), "
          f"{os.cpu_count()} CPUs")
    print(f"report's loop (imread + resize, 1 thread):  {t_report:6.2f} s")
    print(f"btk first load (parallel decode + store):    {t_first:6.2f} s  "
          f"({t_report / t_first:.1f}x the report's loop);"
          f" then every pixel read: {t_first_read:.2f} s")
    print(f"btk second load (from the cache):            {t_second:6.2f} s  ({t_first / t_second:.0f}x faster than the "
          f"first); then every pixel read: {t_second_read:.2f} s ({t_first_read / t_second_read:.1f}x)")


if __name__ == "__main__":
    main()
