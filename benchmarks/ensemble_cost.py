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
    from btk.plugins import get_host
    from btk.robustness import test_images
    from btk.runs import load_run
    from btk.training import predict

    single = load_run(args.single)
    images, _ = test_images(single, get_host())
    recipe = single.config["recipe"]
    rates = {}
    for label, run in (("one model", single), ("ensemble", load_run(args.ensemble))):
        for tta in (False, True):
            model = run.load_model(tta)
            predict(model, images[:64], recipe["scale"], intensity=recipe["intensity"])  # warm-up
            best = float("inf")
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                predict(model, images, recipe["scale"], intensity=recipe["intensity"])
                best = min(best, time.perf_counter() - t0)
            rates[(label, tta)] = len(images) / best
            print(f"{label}{' + TTA' if tta else ''}: {rates[(label, tta)]:.0f} images/s "
                  f"({len(images)} images, best of {args.repeats}); "
                  f"{rates[('one model', False)] / rates[(label, tta)]:.2f}x the time of one model", flush=True)


if __name__ == "__main__":
    main()
