"""The shift check's candidates side by side (``docs/shift.md``: the cases and the rule).

For each case, a cohort is compared with a run's calibration images by btk's old check (a
Kolmogorov-Smirnov test of the top probability) and by the feature tests of :mod:`btk.shift`
(Mahalanobis distance, classifier two-sample test); then the false-alarm rate of each over
exchangeable halves of a run's calibration images. Prints one table and writes the JSON.

    python benchmarks/shift_check.py --demo-run runs/demo/<id> --sartaj-run runs/fast/<id> \\
        --holdout-run runs/holdout/<id> --sartaj ../shared/data/sartaj \\
        --holdout-data runs/holdout/data --navoneel ../shared/data/navoneel
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

LEVEL = 0.01
SPLITS = 200
MACHINE = "this project's CPU machine: 2 cores, 24 GiB, TensorFlow CPU build"


def cohort(run: Any, data: Path, split: str | None, per_class: int = 0, seed: int = 0) -> dict[str, Any]:
    """A cohort read as ``run`` reads its data and scored by its scorer: calibrated
    probabilities, features and groups (``per_class``: that many images of each class, drawn with
    ``seed``; 0: all)."""
    from btk.cache import gather
    from btk.dataset import load_dataset
    from btk.evaluate import reader_for_data, select_split
    from btk.plugins import get_host

    host = get_host()
    reader_name, options = reader_for_data(run, data, host, None, None)
    dataset = load_dataset(host.readers.get(reader_name), data, run.read_options(options))
    index, _ = select_split(dataset, split)
    if per_class:
        rng = np.random.default_rng(seed)
        labels = dataset.labels[index]
        index = np.sort(np.concatenate([rng.choice(index[labels == c], per_class, replace=False)
                                        for c in sorted(set(labels))]))
    images = gather(dataset.images, index)
    with run.scorer() as scorer:
        probs, feats = scorer(images), scorer.features(images)
    return {"probabilities": probs, "features": feats, "groups": [str(g) for g in dataset.groups[index]]}


def tests(ref_feats: np.ndarray, ref_groups: list[str], ref_probs: np.ndarray, new: dict[str, Any],
          seed: int = 0) -> dict[str, Any]:
    """Every test's p-value and effect, on group means (each group one observation)."""
    from btk.shift import by_group, classifier_test, doubt, ks_test, mahalanobis_test

    ref, cur = by_group(ref_feats, ref_groups), by_group(new["features"], new["groups"])
    ref_d = by_group(doubt(ref_probs), ref_groups)
    cur_d = by_group(doubt(new["probabilities"]), new["groups"])
    out: dict[str, Any] = {"images": len(new["groups"]), "groups": len(cur), "reference": len(ref)}
    for name, fn, a, b in (("ks", ks_test, ref_d, cur_d), ("mahalanobis", mahalanobis_test, ref, cur),
                           ("classifier", classifier_test, ref, cur)):
        p, effect = fn(a, b, seed)
        out[name] = {"p": p, "effect": effect}
    return out


def reference_of(run: Any) -> tuple[np.ndarray, list[str], np.ndarray]:
    """The run's calibration images' features, groups and calibrated probabilities."""
    from btk.shift import read_reference

    reference = read_reference(run.path)
    if reference is None:
        raise SystemExit(f"{run.path} keeps no reference features: train it with this btk")
    return reference.features, list(reference.groups), np.asarray(run.conformal().probabilities)


def false_alarms(run: Any, splits: int) -> dict[str, Any]:
    """Each test's alarms at :data:`LEVEL` over ``splits`` random halves (by group) of the run's
    calibration images: one half the reference, the other the cohort."""
    feats, groups, probs = reference_of(run)
    keys = np.array(sorted(set(groups)))
    group_arr = np.asarray(groups)
    alarms = {"ks": 0, "mahalanobis": 0, "classifier": 0}
    p_values: dict[str, list[float]] = {k: [] for k in alarms}
    for seed in range(splits):
        rng = np.random.default_rng(seed)
        half = set(rng.permutation(keys)[: len(keys) // 2])
        a = np.array([g in half for g in group_arr])
        new = {"features": feats[~a], "groups": list(group_arr[~a]), "probabilities": probs[~a]}
        result = tests(feats[a], list(group_arr[a]), probs[a], new, seed)
        for k in alarms:
            p_values[k].append(result[k]["p"])
            alarms[k] += result[k]["p"] < LEVEL
    return {"splits": splits, "images": len(groups), "groups": len(keys),
            "alarms": alarms, "rate": {k: v / splits for k, v in alarms.items()},
            "median_p": {k: float(np.median(v)) for k, v in p_values.items()}}


def main() -> None:
    from btk.runs import load_run

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--demo-run", type=Path, required=True)
    ap.add_argument("--sartaj-run", type=Path, required=True)
    ap.add_argument("--holdout-run", type=Path)
    ap.add_argument("--sartaj", type=Path, required=True)
    ap.add_argument("--holdout-data", type=Path)
    ap.add_argument("--navoneel", type=Path, required=True)
    ap.add_argument("--splits", type=int, default=SPLITS)
    ap.add_argument("--out", type=Path, default=Path("docs/results/shift-check/shift-check.json"))
    ap.add_argument("--reuse", action="store_true", help="keep the cases already in --out made with the same runs")
    args = ap.parse_args()
    t0 = time.perf_counter()
    before = json.loads(args.out.read_text()) if args.reuse and args.out.is_file() else {}
    done = {(r["case"], r["run"]): r for r in before.get("cases", [])}
    demo, sartaj = load_run(args.demo_run), load_run(args.sartaj_run)
    cases = [("1 demo run, 200 SARTAJ Testing images", demo, args.sartaj, "Testing", 50, True),
             ("2 fast run, SARTAJ Testing", sartaj, args.sartaj, "Testing", 0, None)]
    if args.holdout_run and args.holdout_data:
        cases.append(("3 fast run (held-out-source data), held-out source", load_run(args.holdout_run),
                      args.holdout_data, "Testing", 0, True))
    cases.append(("4 fast run, navoneel", sartaj, args.navoneel, "all", 0, True))
    rows = []
    for name, run, data, split, per_class, must in cases:
        if (name, run.name) in done:
            rows.append(done[(name, run.name)])
            continue
        new = cohort(run, data, split, per_class)
        feats, groups, probs = reference_of(run)
        rows.append({"case": name, "run": run.name, "data": str(data), "must_fire": must,
                     **tests(feats, groups, probs, new)})
        print(name, json.dumps({k: v for k, v in rows[-1].items() if k in ("ks", "mahalanobis", "classifier")}),
              flush=True)
    halves = {}
    for name, run in (("5 fast run's calibration images, halves", sartaj),
                      ("5b demo run's calibration images, halves", demo)):
        kept = (before.get("false_alarms") or {}).get(name)
        halves[name] = kept if kept and kept.get("run") == run.name else {"run": run.name,
                                                                           **false_alarms(run, args.splits)}
    print("\n| case | images (groups) | reference | KS top probability | Mahalanobis | classifier (AUC) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['case']} | {r['images']} ({r['groups']}) | {r['reference']} | {r['ks']['p']:.2g} | "
              f"{r['mahalanobis']['p']:.2g} | {r['classifier']['p']:.2g} ({r['classifier']['effect']:.2f}) |")
    for name, h in halves.items():
        print(f"| {name}: false alarms at 1% over {h['splits']} | {h['images']} ({h['groups']}) | half | "
              f"{h['rate']['ks']:.1%} | {h['rate']['mahalanobis']:.1%} | {h['rate']['classifier']:.1%} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": MACHINE, "python": platform.python_version(), "level": LEVEL,
                                    "cases": rows, "false_alarms": halves,
                                    "seconds": round(time.perf_counter() - t0, 1)}, indent=1) + "\n")
    print(f"written {args.out} ({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):  # the small matrix work of 400 tests: threads only fight on a busy machine
        main()
