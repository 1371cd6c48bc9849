"""``btk calibrate``'s site sample: drawn by class alone (before) against drawn by whole groups
(:func:`btk.recalibrate.draw_sample`: the reader's groups joined with near-copy clusters,
stratified by class). For each sample share and seed, how many near-copy clusters have images
on both sides (the sample and the rest that tests it), how many images lie in such clusters, the
sample's share of the images and each class's share in it.

    python benchmarks/calibrate_groups.py --data ../shared/data/sartaj --split Training \\
        --out docs/results/cpu-calibrate-groups

Reads the images as the ``fast`` preset sizes them (128 px, one channel; no head crop), at the
default copy threshold (0.95).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "plugins")]


def _split_clusters(groups, sample) -> tuple[int, int]:
    """Clusters with images on both sides, and the images in them."""
    import numpy as np

    inside = np.zeros(len(groups), bool)
    inside[sample] = True
    both = [g for g in np.unique(groups) if inside[groups == g].any() and (~inside[groups == g]).any()]
    return len(both), int(np.isin(groups, both).sum())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--split", default="Training")
    ap.add_argument("--shares", default="0.05,0.5")
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--threshold", type=float, default=0.95)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    import numpy as np
    from sklearn.model_selection import train_test_split

    from btk.dataset import load_dataset
    from btk.plugins import get_host
    from btk.recalibrate import draw_sample
    from btk.split import split_groups
    from btk.types import ReadOptions

    t0 = time.perf_counter()
    data = load_dataset(get_host().readers.get("folder"), args.data / args.split, ReadOptions(128, 1))
    groups = split_groups(data, args.threshold)
    _, y = np.unique(data.labels, return_inverse=True)
    classes = sorted(set(data.labels))
    sizes = np.unique(groups, return_counts=True)[1]
    result = {"machine": "this project's CPU machine: 2 cores, 24 GiB, TensorFlow CPU build",
              "python": platform.python_version(), "data": f"{args.data.name}/{args.split}", "images": len(y),
              "threshold": args.threshold, "groups": int(len(sizes)), "groups_of_two_or_more": int((sizes > 1).sum()),
              "images_in_such_groups": int(sizes[sizes > 1].sum()), "read_and_group_s": time.perf_counter() - t0,
              "draws": []}
    for share in (float(s) for s in args.shares.split(",")):
        for seed in range(args.seeds):
            old, _ = train_test_split(np.arange(len(y)), train_size=share, stratify=y, random_state=seed)
            new, _ = draw_sample(y, share, seed, groups)
            for how, sample in (("by class (before)", old), ("whole groups (now)", new)):
                clusters, images = _split_clusters(groups, sample)
                result["draws"].append({
                    "share": share, "seed": seed, "how": how, "sample": int(len(sample)),
                    "sample_share": len(sample) / len(y), "clusters_split": clusters,
                    "images_in_split_clusters": images,
                    "class_share": {c: float((y[sample] == k).sum() / (y == k).sum()) for k, c in enumerate(classes)}})
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "calibrate_groups.json").write_text(json.dumps(result, indent=1) + "\n")
    for share in sorted({d["share"] for d in result["draws"]}):
        for how in ("by class (before)", "whole groups (now)"):
            rows = [d for d in result["draws"] if d["share"] == share and d["how"] == how]
            split = [d["clusters_split"] for d in rows]
            shares = [d["sample_share"] for d in rows]
            worst = max(abs(v - share) for d in rows for v in d["class_share"].values())
            print(f"share {share:g}, {how}: clusters split {min(split)}-{max(split)} (mean {np.mean(split):.1f}), "
                  f"sample share {min(shares):.3f}-{max(shares):.3f}, largest class-share gap {worst:.3f}")
    print(f"{result['images']} images, {result['groups_of_two_or_more']} clusters of 2+ "
          f"({result['images_in_such_groups']} images); read and grouped in {result['read_and_group_s']:.0f} s")


if __name__ == "__main__":
    main()
