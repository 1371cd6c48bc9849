"""Compare the predictions.csv of two runs of one configuration, made by a btk that stored the
network's raw probabilities (before the one scorer) and by today's (calibrated probabilities):
every class should be the same, and the new probabilities should be the old ones with the run's
temperature applied, up to the old file's rounding to six decimals.

    python benchmarks/calibrated_predictions.py OLD_RUN NEW_RUN

Prints the rows compared, the classes that agree, the largest difference between the two files,
and the largest difference between the new file and the old one calibrated here.
"""

from __future__ import annotations

import argparse

import numpy as np

from btk.calibration import apply_temperature
from btk.runs import load_run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("old_run")
    parser.add_argument("new_run")
    args = parser.parse_args()
    old, new = load_run(args.old_run), load_run(args.new_run)
    if old.classes != new.classes or old.trained_classes != old.classes:
        raise SystemExit("runs of one multiclass configuration are needed (the same classes, no folding)")
    print(f"old: {old.name} (calibrated predictions: {old.calibrated_predictions}, T = {old.temperature:.6f})")
    print(f"new: {new.name} (calibrated predictions: {new.calibrated_predictions}, T = {new.temperature:.6f})")
    for condition in old.metrics["conditions"]:
        so, yo, po = old.condition_arrays(condition)
        sn, yn, pn = new.condition_arrays(condition)
        if list(so) != list(sn) or not np.array_equal(yo, yn):
            raise SystemExit(f"{condition}: the two runs scored other images")
        calibrated = apply_temperature(po, old.temperature)
        print(f"{condition}: {len(so)} images, same class {int((po.argmax(1) == pn.argmax(1)).sum())}, "
              f"largest |new - old| {np.abs(pn - po).max():.2e}, largest |new - T(old)| "
              f"{np.abs(pn - calibrated).max():.2e} (median {np.median(np.abs(pn - calibrated)):.1e})")


if __name__ == "__main__":
    main()
