"""Choose a robust default by the rule in docs/recipes.md, on Training data only.

Reads the runs ``benchmarks/source_holdout.py`` made (``<out>/runs/*-<VARIANT>-seed<N>``: trained
without the other sources' tumours, which are their test images), sweeps each run's
validation images with every degrader at every level and with the report's blur and
resolution at the report's scale (``btk robustness --subset validation``; kept in the run), and
prints per variant: validation accuracy and no-tumour recall, held-out-source accuracy, the
report-scale losses and the level-3 retention of every degrader; then applies the rule.

    python benchmarks/robust_default.py --runs runs/source-holdout/runs --variants A,B,C --reference A
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np


def validation_recall(run, host, negative: str) -> dict[str, float]:
    """Per-class recall of ``run``'s model on its validation images (the task's answers, as the
    run's scorer gives them)."""
    val = run.images("validation", host)
    with run.scorer() as score:
        pred = score(val.images).argmax(axis=1)
    y = val.y
    return {c: float((pred[y == k] == k).mean()) for k, c in enumerate(run.classes) if (y == k).any()}


def held_out_accuracy(run_dir: Path) -> float:
    rows = [r for r in csv.DictReader((run_dir / "predictions.csv").open()) if r["condition"] == "clean"]
    return sum(r["predicted"] == r["label"] for r in rows) / len(rows)


def measure(run_dir: Path, host, negative: str) -> dict:
    from btk.degraders import resolve_degradations
    from btk.robustness import sweep
    from btk.runs import load_run

    run = load_run(run_dir)
    path = run_dir / "robustness-validation.json"
    if path.exists():
        result = json.loads(path.read_text())
    else:
        result = sweep(run, host, extra=resolve_degradations(host, ["blur@report", "resolution@report"]),
                       subset="validation")
    clean = result["clean"]
    level3 = {name: accs[2] / clean for name, accs in result["degraders"].items()}
    recall = validation_recall(run, host, negative)
    return {"run": run_dir.name, "validation": clean, "no_tumour_recall": recall.get(negative),
            "held_out": held_out_accuracy(run_dir),
            "blur_report_loss": clean - result["extra"]["blur@report"],
            "resolution_report_loss": clean - result["extra"]["resolution@report"],
            "level3_retention": level3, "level3_mean_accuracy": float(np.mean([a[2] for a in
                                                                             result["degraders"].values()]))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=Path, required=True, help="folder of the source-holdout runs")
    ap.add_argument("--variants", default="A,B,C")
    ap.add_argument("--reference", default="A", help="the current default's variant")
    ap.add_argument("--negative-class", default="no_tumor")
    ap.add_argument("--out", type=Path, help="write the table as JSON here")
    args = ap.parse_args()
    from btk.plugins import get_host

    host = get_host()
    table = {}
    for variant in args.variants.split(","):
        dirs = sorted(p for p in args.runs.iterdir()
                      if p.is_dir() and not p.name.startswith(".") and f"-{variant}-seed" in p.name
                      and not p.name.endswith("-adapted"))
        rows = [measure(d, host, args.negative_class) for d in dirs]
        for r in rows:
            worst3 = min(r["level3_retention"].items(), key=lambda kv: kv[1])
            print(f"{variant} {r['run']}: validation {100 * r['validation']:.1f}  no-tumour recall "
                  f"{100 * r['no_tumour_recall']:.1f}  held-out {100 * r['held_out']:.1f}  blur@report loss "
                  f"{100 * r['blur_report_loss']:.1f}  resolution@report loss {100 * r['resolution_report_loss']:.1f}"
                  f"  level 3 mean {100 * r['level3_mean_accuracy']:.1f}, worst {worst3[0]} "
                  f"{100 * worst3[1]:.0f}% of clean", flush=True)
        mean = lambda k: float(np.mean([r[k] for r in rows]))  # noqa: E731
        retention = {name: float(np.mean([r["level3_retention"][name] for r in rows]))
                     for name in rows[0]["level3_retention"]}
        table[variant] = {"runs": rows, "validation": mean("validation"),
                          "no_tumour_recall": mean("no_tumour_recall"), "held_out": mean("held_out"),
                          "blur_report_loss": mean("blur_report_loss"),
                          "resolution_report_loss": mean("resolution_report_loss"),
                          "level3_retention": retention, "level3_mean_accuracy": mean("level3_mean_accuracy")}
    ref = table[args.reference]
    print()
    print("variant  validation  no-tumour recall  held-out  blur@report loss  resolution@report loss  "
          "level-3 worst retention  eligible  robust  shortfall")
    for variant, t in table.items():
        t["eligible"] = (t["validation"] >= ref["validation"] - 0.01
                         and t["no_tumour_recall"] >= ref["no_tumour_recall"] - 0.05)
        shortfalls = [max(0.0, t["blur_report_loss"] - 0.05), max(0.0, t["resolution_report_loss"] - 0.05),
                      *[max(0.0, 0.9 - v) for v in t["level3_retention"].values()]]
        t["shortfall"] = max(shortfalls)
        t["robust"] = t["shortfall"] == 0
        worst = min(t["level3_retention"].items(), key=lambda kv: kv[1])
        print(f"{variant:8s} {100 * t['validation']:10.1f} {100 * t['no_tumour_recall']:17.1f} "
              f"{100 * t['held_out']:9.1f} {100 * t['blur_report_loss']:17.1f} "
              f"{100 * t['resolution_report_loss']:23.1f}  {worst[0]} {100 * worst[1]:.0f}%{'':12s}"
              f"{t['eligible']!s:9s} {t['robust']!s:7s} {100 * t['shortfall']:.1f}")
    eligible = {v: t for v, t in table.items() if t["eligible"]}
    robust = {v: t for v, t in eligible.items() if t["robust"]}
    if robust:
        pool = robust
    else:
        least = min(t["shortfall"] for t in eligible.values())
        pool = {v: t for v, t in eligible.items() if t["shortfall"] == least}
    best = max(t["held_out"] for t in pool.values())
    tied = {v: t for v, t in pool.items() if t["held_out"] >= best - 0.02}
    choice = max(tied, key=lambda v: tied[v]["level3_mean_accuracy"])
    print(f"\nchosen by the rule: {choice} ({'meets' if choice in robust else 'closest to'} the robustness targets"
          f"; candidates within 2 points of the best held-out accuracy: {', '.join(tied)})")
    if args.out:
        args.out.write_text(json.dumps({"table": table, "choice": choice}, indent=1))


if __name__ == "__main__":
    main()
