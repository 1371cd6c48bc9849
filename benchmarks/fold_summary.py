"""What a fold ensemble found, for the docs: cross-validated accuracy per fold, the ensemble on its
test images (all, and those with no copy in Training), the label issues per class, which
disagreeing copies ``btk audit`` knows are among them, and a picture of the 32 most doubtful
images (the image, and the likely class's heat map over it; given -> likely above each).

    python benchmarks/fold_summary.py --run runs/folds5/<id>-folds5 --pairs pairs.csv \\
        --grid docs/label-issues-top32.jpg --out docs/results/cpu-folds/summary.json
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", type=Path, required=True, help="a fold ensemble run (btk ensemble --folds K)")
    ap.add_argument("--pairs", type=Path, help="btk audit --pairs output: copies whose labels disagree are looked up")
    ap.add_argument("--grid", type=Path, help="write the 32 most doubtful images here (JPEG)")
    ap.add_argument("--out", type=Path, help="write the summary here (JSON)")
    args = ap.parse_args()

    import cv2
    import numpy as np

    from btk.explain import grid, overlay
    from btk.runs import load_run

    run = load_run(args.run)
    cv = run.metrics["cv"]
    clean = run.metrics["conditions"]["clean"]
    unseen = (run.metrics.get("leakage") or {}).get("conditions_without_copies", {}).get("clean", {})
    issues = run.label_issues()
    flagged = {r["path"]: r for r in issues}
    summary = {
        "run": run.name, "folds": cv["folds"], "cv_accuracy_per_fold": cv["accuracy_per_fold"],
        "cv_accuracy_mean": cv["accuracy_mean"], "cv_accuracy_std": cv["accuracy_std"],
        "oof_accuracy": cv["oof_accuracy"], "oof_recall": cv["oof_recall"],
        "test_accuracy": clean["accuracy"],
        "test_no_tumor_recall": clean["per_class"].get("no_tumor", {}).get("recall"),
        "test_unseen_accuracy": unseen.get("accuracy"), "test_unseen_images": unseen.get("n"),
        "label_issues": len(issues), "label_issues_per_class": cv.get("label_issues"),
        "train_minutes": run.metrics["timing"]["train_seconds"] / 60,
    }
    if args.pairs:
        disagreeing = [r for r in csv.DictReader(args.pairs.open()) if r["labels_disagree"] == "True"]
        training = sorted({p for r in disagreeing for p in (r["a"], r["b"]) if p.startswith("Training/")})
        summary["disagreeing_copies"] = {"pairs": len(disagreeing), "training_images": len(training),
                                         "flagged": [p for p in training if p in flagged],
                                         "not_flagged": [p for p in training if p not in flagged]}
    print(json.dumps(summary, indent=1))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(summary, indent=1) + "\n")
    if args.grid:
        ex = run.examples()
        tiles, labels = [], []
        for image, heat, (given, likely) in zip(ex["issues/images"], ex["issues/heat"], ex["issues/labels"]):
            gray = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR) if image.ndim == 2 else image
            tiles.append(np.concatenate([gray, overlay(image, np.asarray(heat, np.float32), side=image.shape[0])],
                                        axis=1))
            labels.append(f"{given[:6]} -> {likely[:6]}")
        args.grid.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(args.grid), grid(tiles, labels, columns=4), [cv2.IMWRITE_JPEG_QUALITY, 85])


if __name__ == "__main__":
    main()
