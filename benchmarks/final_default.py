"""The default recipe's five seeds and their ensemble, side by side: what `btk ensemble --train 5`
wrote, plus the evaluations with test-time augmentation kept in each run.

One line per model: validation accuracy (the members' shared validation images), test accuracy
and macro F1, accuracy on the test images with no copy in Training, no-tumour recall, tumour vs
none (4-class probabilities read as 1 - P(no tumour)), ECE raw and with the run's temperature
(``ece_uncalibrated`` and ``ece`` of ``metrics.json``; for runs made before btk reported
calibrated probabilities, computed from their raw predictions); then mean and range of the
members, the ensemble's gain, and the same with `--tta` where the run has such an evaluation.

    python benchmarks/final_default.py runs/*-final-member? runs/*-final-ensemble5
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np


def _rows(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "predictions.csv", newline="") as fh:
        return [r for r in csv.DictReader(fh) if r["condition"] == "clean"]


def scores(run_dir: Path, negative: str = "no_tumor") -> dict[str, float]:
    """Figures of one run or evaluation directory from its predictions and metrics."""
    from btk.calibration import apply_temperature
    from btk.runs import load_run
    from btk.stats import reliability

    run = load_run(run_dir)  # an evaluation keeps its run's temperature
    metrics = run.metrics
    clean = run.condition_metrics("clean")
    unseen = metrics["leakage"]["conditions_without_copies"].get("clean", {})
    rows = _rows(run_dir)
    classes = [k[2:] for k in rows[0] if k.startswith("p_")]
    probs = np.array([[float(r[f"p_{c}"]) for c in classes] for r in rows])
    y = np.array([classes.index(r["label"]) for r in rows])
    neg = classes.index(negative)
    binary_truth, binary_pred = y != neg, probs[:, neg] < 0.5
    if run.calibrated_predictions:  # predictions.csv holds the calibrated probabilities
        ece_raw, ece_calibrated = clean["ece_uncalibrated"], clean["ece"]
    else:  # an older run: the network's own probabilities, the temperature applied here
        ece_raw = reliability(y, probs)["ece"]
        ece_calibrated = reliability(y, apply_temperature(probs, run.temperature))["ece"]
    return {"test": clean["accuracy"], "f1": clean["f1_macro"], "unseen": unseen.get("accuracy", float("nan")),
            "no_tumour_recall": clean["per_class"][negative]["recall"],
            "binary": float((binary_truth == binary_pred).mean()),
            "ece_raw": ece_raw, "ece_calibrated": ece_calibrated}


def validation_with_and_without_tta(run) -> tuple[float, float]:
    """Accuracy on the run's validation images (the task's answers, as the run's scorer gives
    them), without and with test-time augmentation."""
    val = run.images("validation")
    out = []
    for tta in (False, True):
        with run.scorer(tta=tta) as score:
            probs = score(val.images)
        out.append(float((probs.argmax(axis=1) == val.y).mean()))
    return out[0], out[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--tta-name", default="tta", help="name of the --tta evaluations inside each run")
    ap.add_argument("--validation-tta", action="store_true",
                    help="also score each run's validation images with and without test-time augmentation")
    args = ap.parse_args()
    from btk.errors import BtkError
    from btk.runs import load_run

    table = []
    for run_dir in args.runs:
        run = load_run(run_dir)
        if run.ensemble is not None:
            val = run.ensemble.val_accuracy
        else:
            best = run.best_epoch
            val = run.history["val_accuracy"][best - 1] if best else max(run.history["val_accuracy"])
        row = {"run": run.name, "ensemble": run.ensemble is not None, "val": val, **scores(run_dir),
               "train_minutes": (run.metrics.get("timing", {}).get("train_seconds") or 0) / 60}
        tta = sorted((run_dir / "evaluations").glob(f"*-eval-{args.tta_name}")) if (run_dir / "evaluations").is_dir() \
            else []
        if tta:
            row["tta"] = scores(tta[-1])
        if args.validation_tta:
            try:
                row["val_plain"], row["val_tta"] = validation_with_and_without_tta(run)
            except BtkError as exc:  # e.g. an ensemble of runs that held out different validation images
                print(f"{run.name}: no validation images to score ({exc})", flush=True)
            else:
                print(f"{run.name}: validation {100 * row['val_plain']:.1f}, with TTA {100 * row['val_tta']:.1f}",
                      flush=True)
        table.append(row)
    head = ("model", "val", "test", "F1", "no copy", "no-tumour rec.", "tumour vs none", "ECE raw", "ECE cal.")
    print(" | ".join(head))

    def line(name: str, r: dict) -> str:
        cells = [r.get("val"), r["test"], r["f1"], r["unseen"], r["no_tumour_recall"], r["binary"],
                 r["ece_raw"], r["ece_calibrated"]]
        return " | ".join([name] + ["-" if v is None else f"{100 * v:.1f}" for v in cells])

    for r in table:
        print(line(r["run"], r))
        if "tta" in r:
            print(line(f"{r['run']} + tta", {"val": None, **r["tta"]}))
    members = [r for r in table if not r["ensemble"]]
    if members:
        for key in ("val", "test", "f1", "unseen", "no_tumour_recall", "binary", "ece_raw", "ece_calibrated"):
            values = [r[key] for r in members]
            print(f"members {key}: mean {100 * np.mean(values):.1f}, range {100 * min(values):.1f}-"
                  f"{100 * max(values):.1f}")
        print(f"members' training: {np.mean([r['train_minutes'] for r in members]):.1f} min each")
    print(json.dumps(table, indent=1, default=float))


if __name__ == "__main__":
    main()
