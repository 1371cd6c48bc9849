"""What an ensemble and test-time augmentation cost at prediction: images per second of one
member and of the ensemble, each without and with TTA, on the run's own test images (already
decoded, so only the network is timed), best of three, in one process.

    python benchmarks/ensemble_cost.py runs/<id>-member1 runs/<id>-ensemble5
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("single", type=Path)
    ap.add_argument("ensemble", type=Path)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    from btk.runs import load_run

    single = load_run(args.single)
    images = single.images("test").images  # the run's test images, read as it read them
    rates = {}
    for label, run in (("one model", single), ("ensemble", load_run(args.ensemble))):
        for tta in (False, True):
            with run.scorer(tta=tta) as score:  # the run's scorer: what every btk command scores with
                score(images[:64])  # warm-up
                best = float("inf")
                for _ in range(args.repeats):
                    t0 = time.perf_counter()
                    score(images)
                    best = min(best, time.perf_counter() - t0)
            rates[(label, tta)] = len(images) / best
            print(f"{label}{' + TTA' if tta else ''}: {rates[(label, tta)]:.0f} images/s "
                  f"({len(images)} images, best of {args.repeats}); "
                  f"{rates[('one model', False)] / rates[(label, tta)]:.2f}x the time of one model", flush=True)


if __name__ == "__main__":
    main()
