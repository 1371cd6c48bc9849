"""Prediction sets measured where the promise is tested: SARTAJ Testing and the held-out source.

Takes runs made by ``benchmarks/source_holdout.py`` (trained on SARTAJ Training without the
tumour images of other sources; their test images are those 171 held-out tumours) and:

1. gives each run its prediction sets from its own validation images (``btk calibrate RUN``,
   what every run since sets does at its end), then reports at 90% and 95%: coverage overall and
   per class, mean set size, the share of single answers and their accuracy, and the shift
   check, on the held-out source (the run's test images) and on SARTAJ Testing
   (``btk evaluate --coverage``);
2. recalibrates on the held-out source (``btk calibrate RUN --data HELDOUT --sample 0.5``) for
   several sample seeds and reports the per-class coverage at 95% on the other half, with the
   mean set size on that half before (the validation calibration) and after.

    python benchmarks/conformal_sets.py --runs runs/source-holdout/runs --holdout runs/source-holdout/data \\
        --sartaj ../shared/data/sartaj --out docs/results/cpu-conformal
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

COVERAGES = (0.9, 0.95)


def _row(where: str, run: str, level: str, s: dict, shift: dict | None) -> dict:
    return {"cohort": where, "run": run, "promise": float(level), "coverage": s["coverage"],
            "per_class": {c: v["coverage"] for c, v in s["per_class"].items()},
            "per_class_images": {c: v["images"] for c, v in s["per_class"].items()}, "mean_size": s["mean_size"],
            "single": s["single"], "single_accuracy": s["single_accuracy"], "empty": s["empty"],
            "shift_p": (shift or {}).get("p_value"), "shift_differs": (shift or {}).get("differs")}


def _sets_of(run, condition: str = "clean") -> tuple[dict, dict]:
    m = run.metrics["conditions"][condition]
    return m.get("sets") or {}, m.get("shift") or {}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=Path, required=True, help="folder of source_holdout.py runs")
    ap.add_argument("--holdout", type=Path, required=True, help="source_holdout.py's data folder")
    ap.add_argument("--sartaj", type=Path, required=True)
    ap.add_argument("--sample-seeds", default="1,2,3,4,5")
    ap.add_argument("--out", type=Path, default=Path("docs/results/cpu-conformal"))
    ap.add_argument("--work", type=Path, default=Path("runs/conformal-work"), help="where the new runs go")
    args = ap.parse_args()

    from btk.conformal import Conformal, set_metrics
    from btk.evaluate import evaluate
    from btk.feedback import Feedback
    from btk.recalibrate import calibrate_run
    from btk.runs import load_run
    from btk.shift import shift_check

    args.out.mkdir(parents=True, exist_ok=True)
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    quiet = Feedback()
    rows: list[dict] = []
    recal: list[dict] = []
    sources = sorted(p for p in args.runs.iterdir() if p.is_dir() and not p.name.startswith("."))
    for source in sources:
        t0 = time.perf_counter()
        base = load_run(source)
        own = base if base.conformal() is not None else calibrate_run(base, out=work, name=f"{source.name}-val",
                                                                     feedback=quiet)
        # an exchangeable real cohort: half of the validation images, calibrated on the other half
        cal = own.conformal()
        rng = np.random.default_rng(0)
        for level in COVERAGES:
            parts = []
            for _ in range(20):
                order = rng.permutation(len(cal.labels))
                a, b = order[: len(order) // 2], order[len(order) // 2:]
                half = Conformal(cal.classes, cal.probabilities[a], cal.labels[a])
                parts.append(set_metrics(half.sets(cal.probabilities[b], level), cal.labels[b], cal.probabilities[b],
                                         cal.classes))
            mean = {k: float(np.mean([p[k] for p in parts])) for k in ("coverage", "mean_size", "single", "empty")}
            mean["single_accuracy"] = float(np.mean([p["single_accuracy"] or 0 for p in parts]))
            mean["per_class"] = {c: {"coverage": float(np.mean([p["per_class"][c]["coverage"] for p in parts])),
                                     "images": parts[0]["per_class"][c]["images"]} for c in cal.classes}
            rows.append(_row("validation halves (x20)", source.name, f"{level:g}", mean,
                             shift_check(None, None, None, half.reference(), cal.probabilities[b]).to_json()))
        sets, shift = _sets_of(own)
        for level in sorted(sets):
            rows.append(_row("held-out source", source.name, level, sets[level], shift))
        testing = evaluate(own.path, args.sartaj, feedback=quiet, coverages=COVERAGES, out=work,
                           name=f"{source.name}-testing")
        sets, shift = _sets_of(testing)
        for level in sorted(sets):
            rows.append(_row("SARTAJ Testing", source.name, level, sets[level], shift))
        print(f"{source.name}: sets measured ({time.perf_counter() - t0:.0f} s)", flush=True)
        _, y_all, p_all = own.condition_arrays("clean")
        src_all = own.condition_arrays("clean")[0]
        for seed in [int(s) for s in args.sample_seeds.split(",")]:
            for variant, coverage, thin in (("keep", 0.95, "keep"), ("site", 0.9, "error")):
                new = calibrate_run(own, args.holdout, split="Testing", sample=0.5, coverage=coverage, thin=thin,
                                    seed=seed, out=work, name=f"{source.name}-site{seed}-{variant}", feedback=quiet)
                rest = {r["source"] for r in new.split_rows() if r["subset"] == "test"}
                pick = np.array([s in rest for s in src_all])
                before = set_metrics(own.conformal().sets(p_all[pick], 0.95), y_all[pick], p_all[pick], own.classes)
                after = new.metrics["conditions"]["clean"]["sets"]["0.95"]
                recal.append({"run": source.name, "sample_seed": seed, "variant": variant,
                              "kept_from_run": new.metrics["recalibration"]["kept_from_run"],
                              "calibration_per_class": new.metrics["recalibration"]["calibration_per_class"],
                              "rest": after["images"],
                              "before": {"coverage": before["coverage"], "mean_size": before["mean_size"],
                                         "per_class": {c: v["coverage"] for c, v in before["per_class"].items()}},
                              "after": {"coverage": after["coverage"], "mean_size": after["mean_size"],
                                        "per_class": {c: v["coverage"] for c, v in after["per_class"].items()},
                                        "single": after["single"], "single_accuracy": after["single_accuracy"]},
                              "shift_after": new.metrics["conditions"]["clean"]["shift"]})
            print(f"{source.name}: recalibrated on the held-out source, sample seed {seed}", flush=True)
    (args.out / "conformal.json").write_text(json.dumps({"sets": rows, "recalibration": recal}, indent=1))
    print(render(rows, recal))
    (args.out / "conformal.md").write_text(render(rows, recal))


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def render(rows: list[dict], recal: list[dict]) -> str:
    """The two tables of docs/conformal.md."""
    classes = sorted({c for r in rows for c in r["per_class"]})
    out = ["| cohort | run | promise | coverage | " + " | ".join(classes) + " | mean size | single | single acc. | "
           "shift p |", "| --- " * (9 + len(classes)) + "|"]
    for r in rows:
        out.append(f"| {r['cohort']} | {r['run']} | {100 * r['promise']:g} | {_pct(r['coverage'])} | "
                   + " | ".join(_pct(r["per_class"].get(c)) for c in classes)
                   + f" | {r['mean_size']:.2f} | {_pct(r['single'])} | {_pct(r['single_accuracy'])} | "
                   f"{r['shift_p']:.2g} |")
    out += ["", "| run | sample seed | variant | calibrated on | before: coverage / mean size | after: coverage | "
            "after: per class | after: mean size |", "| --- " * 8 + "|"]
    for r in recal:
        per = ", ".join(f"{c} {_pct(v)}" for c, v in r["after"]["per_class"].items())
        cal = ", ".join(f"{c} {n}" for c, n in r["calibration_per_class"].items())
        out.append(f"| {r['run']} | {r['sample_seed']} | {r['variant']} | {cal} | {_pct(r['before']['coverage'])} / "
                   f"{r['before']['mean_size']:.2f} | {_pct(r['after']['coverage'])} | {per} | "
                   f"{r['after']['mean_size']:.2f} |")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
