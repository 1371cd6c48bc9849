"""The ``terminal`` and ``json`` reporters."""

from __future__ import annotations

import json

from rich.console import Console
from rich.table import Table

from btk.api import RegisterReporter, Reporter, Run, hookimpl


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def terminal_report(run: Run, console: Console) -> None:
    """Metrics per condition, the per-class table, the confusion matrix and ROC AUC, with rich."""
    cfg = run.config["config"]
    conditions = run.metrics["conditions"]
    timing = run.metrics.get("timing", {})
    console.print(f"[bold]run[/] {run.path}  task {cfg['task']}, model {cfg['model']}, "
                  f"preset {run.config['recipe']['name']}, train degradation "
                  f"{', '.join(d['label'] for d in run.config['train_degrade']) or 'none'}")
    summary = Table(title="test metrics (%)")
    for col in ("condition", "accuracy", "balanced acc", "macro P", "macro R", "macro F1", "macro AUC", "correct"):
        summary.add_column(col, justify="left" if col == "condition" else "right")
    leakage = run.metrics.get("leakage") or {}
    rows = list(conditions.items()) + [(f"{name}, no copy in train", m) for name, m in
                                       (leakage.get("conditions_without_copies") or {}).items()]
    for name, m in rows:
        style = "bold red" if m["collapsed"] else None
        summary.add_row(name + (" (COLLAPSED)" if m["collapsed"] else ""), _pct(m["accuracy"]),
                        _pct(m["balanced_accuracy"]), _pct(m["precision_macro"]), _pct(m["recall_macro"]),
                        _pct(m["f1_macro"]), _pct(m["auc_macro"]), f"{m['correct']}/{m['n']}", style=style)
    console.print(summary)
    if leakage.get("test_with_copy_in_train"):
        console.print(f"[yellow]{leakage['test_with_copy_in_train']} of {leakage['test_images']} test images have an "
                      f"exact or near copy (score >= {leakage['threshold']}) in the training data; the 'no copy in "
                      "train' rows leave them out.[/]")
    clean = conditions.get("clean") or next(iter(conditions.values()))
    classes = run.classes
    per_class = Table(title="per class, clean test images")
    for col in ("class", "precision", "recall", "F1", "ROC AUC", "support"):
        per_class.add_column(col, justify="left" if col == "class" else "right")
    for c in classes:
        pc = clean["per_class"][c]
        per_class.add_row(c, _pct(pc["precision"]), _pct(pc["recall"]), _pct(pc["f1"]), _pct(pc["auc"]),
                          str(pc["support"]))
    console.print(per_class)
    cm = Table(title="confusion matrix, clean (rows: true, columns: predicted)")
    cm.add_column("")
    for c in classes:
        cm.add_column(c, justify="right")
    for c, row in zip(classes, clean["confusion"]):
        cm.add_row(c, *[str(v) for v in row])
    console.print(cm)
    if timing:
        console.print(f"loading {timing['load_seconds']:.1f} s, training {timing['train_seconds']:.1f} s "
                      f"({timing['train_images_per_second']:.1f} images/s), total {timing['total_seconds']:.1f} s")
    if run.metrics.get("skipped"):
        console.print(f"[yellow]{len(run.metrics['skipped'])} unreadable input(s) skipped[/]")


def json_report(run: Run, console: Console) -> None:
    """One JSON object on standard output: the run's path, config and metrics per condition."""
    console.print_json(json.dumps({"run": str(run.path), "config": run.config["config"],
                                   "classes": run.classes, "metrics": run.metrics["conditions"]}))


@hookimpl
def btk_register_reporters(register: RegisterReporter) -> None:
    register(Reporter("terminal", terminal_report, "rich tables in the terminal (the default)"))
    register(Reporter("json", json_report, "the metrics as one JSON object on standard output"))
