"""The default recipe's five seeds and their ensemble, side by side: what `btk run --ensemble 5`
wrote, plus the evaluations with test-time augmentation kept in each run.

One line per model: validation accuracy (the members' shared validation images), test accuracy
and macro F1, accuracy on the test images with no copy in Training, no-tumour recall, tumour vs
none (4-class probabilities read as 1 - P(no tumour)), ECE raw and with the run's temperature;
then mean and range of the members, the ensemble's gain, and the same with `--tta` where the
run has such an evaluation.

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


def scores(run_dir: Path, temperature: float, negative: str = "no_tumor") -> dict[str, float]:
    """Figures of one run or evaluation directory from its predictions and metrics."""
    from btk.calibration import apply_temperature
    from btk.stats import reliability

    metrics = json.loads((run_dir / "metrics.json").read_text())
    clean = metrics["conditions"]["clean"]
    unseen = metrics["leakage"]["conditions_without_copies"].get("clean", {})
    rows = _rows(run_dir)
    classes = [k[2:] for k in rows[0] if k.startswith("p_")]
    probs = np.array([[float(r[f"p_{c}"]) for c in classes] for r in rows])
    y = np.array([classes.index(r["label"]) for r in rows])
    neg = classes.index(negative)
    binary_truth, binary_pred = y != neg, probs[:, neg] < 0.5
    return {"test": clean["accuracy"], "f1": clean["f1_macro"], "unseen": unseen.get("accuracy", float("nan")),
            "no_tumour_recall": clean["per_class"][negative]["recall"],
            "binary": float((binary_truth == binary_pred).mean()),
            "ece_raw": reliability(y, probs)["ece"],
            "ece_calibrated": reliability(y, apply_temperature(probs, temperature))["ece"]}


def validation_with_and_without_tta(run) -> tuple[float, float]:
    """Accuracy on the run's validation images (over the classes the network learned), without
    and with test-time augmentation."""
    from btk.plugins import get_host
    from btk.robustness import test_images
    from btk.training import predict

    images, y = test_images(run, get_host(), "validation")
    recipe = run.config["recipe"]
    out = []
    for tta in (False, True):
        probs = run.task_probabilities(predict(run.load_model(tta), images, recipe["scale"],
                                               intensity=recipe.get("intensity", "none")))
        out.append(float((probs.argmax(axis=1) == y).mean()))
    return out[0], out[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--tta-name", default="tta", help="name of the --tta evaluations inside each run")
    ap.add_argument("--validation-tta", action="store_true",
                    help="also score each run's validation images with and without test-time augmentation")
    args = ap.parse_args()
    from btk.runs import load_run

    table = []
    for run_dir in args.runs:
        run = load_run(run_dir)
        ensemble = run.config.get("ensemble")
        if ensemble:
            val = ensemble.get("val_accuracy")
        else:
            best = int((run.history.get("best_epoch") or [0])[0])
            val = run.history["val_accuracy"][best - 1] if best else max(run.history["val_accuracy"])
        row = {"run": run.name, "ensemble": bool(ensemble), "val": val, **scores(run_dir, run.temperature),
               "train_minutes": (run.metrics.get("timing", {}).get("train_seconds") or 0) / 60}
        tta = sorted((run_dir / "evaluations").glob(f"*-eval-{args.tta_name}")) if (run_dir / "evaluations").is_dir() \
            else []
        if tta:
            row["tta"] = scores(tta[-1], run.temperature)
        if args.validation_tta:
            row["val_plain"], row["val_tta"] = validation_with_and_without_tta(run)
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
