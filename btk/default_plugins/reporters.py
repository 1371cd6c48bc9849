"""The ``terminal`` reporter (``--json`` on every command gives the machine-readable form)."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from btk.api import RegisterReporter, Reporter, Run, hookimpl


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def _header(run: Run) -> str:
    cfg = run.config
    what = (f"task {cfg.task}, model {cfg.model_name}, preset {cfg.recipe.name}, train degradation "
            f"{', '.join(d.label for d in run.train_degrade) or 'none'}")
    if run.ensemble is not None:
        what += f", ensemble of {len(run.ensemble.members)}"
    ev = run.evaluation
    if ev is not None:
        renamed = ", ".join(f"{k} -> {v}" for k, v in ev.class_map.items())
        return (f"[bold]evaluation[/] {run.path}\n  of run {ev.run_id} ({what})\n  on {ev.data} "
                f"({ev.split}, reader {ev.reader}" + (f"; classes renamed {renamed}" if renamed else "") + ")")
    return f"[bold]run[/] {run.path}  {what}"


def _provenance(run: Run) -> str | None:
    """One paragraph of what made the run (runs written before provenance was kept have none)."""
    made = run.made_by()
    return None if made is None else f"{made[0]}\n  command: {made[1]}"


def _accuracy_interval(run: Run, condition: str) -> str:
    from btk.stats import metric_cis

    _, y, probs = run.condition_arrays(condition)
    low, high = metric_cis(y, probs)["accuracy"]
    return f"{_pct(low)}-{_pct(high)}"


def _calibration(run: Run, console: Console) -> None:
    """The run's temperature, and accuracy against coverage on the clean test images when
    answers below a confidence are withheld (``btk predict --min-confidence``)."""
    from btk.calibration import coverage_curve

    fitted = run.calibration
    if fitted is not None:
        console.print(f"temperature {fitted.temperature:.3f} (fitted on the validation split): validation ECE "
                      f"{_pct(fitted.val_ece_raw)} -> {_pct(fitted.val_ece_calibrated)} %, NLL "
                      f"{fitted.val_nll_raw or 0:.3f} -> {fitted.val_nll_calibrated or 0:.3f}", highlight=False)
    else:
        console.print("no temperature fitted: probabilities as the network gives them", style="dim")
    condition = "clean" if "clean" in run.metrics["conditions"] else next(iter(run.metrics["conditions"]))
    _, y, probs = run.condition_arrays(condition)
    kind = "calibrated " if run.calibrated_predictions and fitted is not None else ""
    table = Table(title=f"accuracy against coverage, {condition} test images (answer only at {kind}confidence >= "
                        "threshold)")
    for col in ("min confidence", "answered", "coverage %", "accuracy %"):
        table.add_column(col, justify="right")
    for point in coverage_curve(y, probs):
        table.add_row(f"{point['threshold']:.2f}", f"{point['answered']}/{len(y)}", _pct(point["coverage"]),
                      _pct(point["accuracy"]))
    console.print(table)


def _sets(run: Run, console: Console) -> None:
    """The prediction sets' coverage per condition and promise (:func:`btk.conformal.set_rows`),
    and the warnings a user must read: a shift verdict that the cohort differs, a class below its
    promise, a promise whose sets hold a class always; the clean images' shift verdict otherwise
    (:func:`btk.shift.shift_sentence`)."""
    from btk.conformal import guarantee_lines, set_rows, set_warnings
    from btk.shift import shift_sentence

    conditions = run.metrics["conditions"]
    calibration = run.calibration.conformal if run.calibration is not None else None
    rows = set_rows(conditions, calibration)
    if not rows:
        return
    classes = list(run.classes)
    table = Table(title="prediction sets (conformal, per-class promise): coverage % and set size "
                        "(* every set holds the class)")
    for col in ("condition", "promise", "coverage", *classes, "mean size", "single", "single acc", "empty",
                "shift p"):
        table.add_column(col, justify="left" if col == "condition" else "right")
    for r in rows:
        held = r["in_every_set"]
        table.add_row(r["condition"], f"{100 * r['promise']:g}" + (" *" if held else ""), _pct(r["coverage"]),
                      *[_pct(r["per_class"].get(c)) + (" *" if c in held else "") for c in classes],
                      f"{r['mean_size']:.2f}", _pct(r["single"]), _pct(r["single_accuracy"]), _pct(r["empty"]),
                      f"{r['shift_p']:.2g}" if r["shift_p"] is not None else "-",
                      style="yellow" if r["shortfalls"] or r["shift_differs"] or held else None)
    console.print(table)
    if calibration and calibration.get("per_class"):
        promises = sorted({r["promise"] for r in rows})
        for text in guarantee_lines(calibration["per_class"], promises, calibration.get("pac_delta")):
            console.print(text, highlight=False, markup=False)
    shift = (conditions.get("clean") or {}).get("shift")
    if shift and not shift.get("differs"):  # one that says "differs" is among the warnings
        console.print(f"clean: {shift_sentence(shift)}", highlight=False)
    for condition in conditions:
        for warning in set_warnings(conditions, condition, calibration):
            console.print(f"[yellow]{condition}: {warning}[/]", highlight=False)


def terminal_report(run: Run, console: Console) -> None:
    """Metrics per condition (with the accuracy's 95% bootstrap interval and the expected
    calibration error), the per-class table, the confusion matrix and ROC AUC, with rich."""
    conditions = run.metrics["conditions"]
    timing = run.metrics.get("timing", {})
    console.print(_header(run))
    made = _provenance(run)
    if made:
        console.print(made, style="dim", highlight=False, markup=False)
    summary = Table(title="test metrics (%)")
    for col in ("condition", "accuracy", "95% CI", "balanced acc", "macro P", "macro R", "macro F1", "macro AUC",
                "ECE", "ECE before T", "correct"):
        summary.add_column(col, justify="left" if col == "condition" else "right")
    leakage = run.metrics.get("leakage") or {}
    rows = [(name, run.condition_metrics(name), name) for name in conditions]
    rows += [(f"{name}, no copy in train", m, None)
             for name, m in (leakage.get("conditions_without_copies") or {}).items()]
    for name, m, condition in rows:
        style = "bold red" if m["collapsed"] else None
        interval = _accuracy_interval(run, condition) if condition is not None else ""
        summary.add_row(name + (" (COLLAPSED)" if m["collapsed"] else ""), _pct(m["accuracy"]), interval,
                        _pct(m["balanced_accuracy"]), _pct(m["precision_macro"]), _pct(m["recall_macro"]),
                        _pct(m["f1_macro"]), _pct(m["auc_macro"]), _pct(m.get("ece")),
                        _pct(m.get("ece_uncalibrated")), f"{m['correct']}/{m['n']}", style=style)
    console.print(summary)
    where = "the run's training data" if run.is_evaluation else "the training data"
    if leakage.get("test_with_copy_in_train"):
        console.print(f"[yellow]{leakage['test_with_copy_in_train']} of {leakage['test_images']} test images have an "
                      f"exact or near copy (score >= {leakage['threshold']}) in {where}; the 'no copy in "
                      "train' rows leave them out.[/]")
    elif run.is_evaluation and leakage.get("checked"):
        console.print(f"none of the {leakage['test_images']} images has a copy in {where} "
                      f"(score >= {leakage['threshold']})")
    elif run.is_evaluation:
        console.print("[yellow]copies in the run's training data were not looked for[/]")
    _calibration(run, console)
    _sets(run, console)
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
    if "train_seconds" in timing:
        console.print(f"loading {timing['load_seconds']:.1f} s, training {timing['train_seconds']:.1f} s "
                      f"({timing['train_images_per_second']:.1f} images/s), total {timing['total_seconds']:.1f} s")
    elif "predict_seconds" in timing:
        console.print(f"loading {timing['load_seconds']:.1f} s, predicting {timing['predict_seconds']:.1f} s "
                      f"({timing['predicted_images_per_second']:.1f} images/s), total {timing['total_seconds']:.1f} s")
    if run.metrics.get("skipped"):
        console.print(f"[yellow]{len(run.metrics['skipped'])} unreadable input(s) skipped[/]")
    if run.metrics.get("read_in_part"):
        console.print(f"[yellow]{len(run.metrics['read_in_part'])} input(s) read in part (metrics.json: "
                      "read_in_part)[/]")
    _explanations(run, console)


def _explanations(run: Run, console: Console) -> None:
    """One line on the clean test images' heat maps, and a warning when most lies outside the head."""
    info = run.metrics.get("explanations")
    if not info or not info.get("n") or info.get("median") is None:
        return
    console.print(f"heat maps of {info['n']} test images: median {_pct(info['median'])}% of the mass outside the head",
                  highlight=False)
    if info.get("mostly_outside"):
        console.print("[bold red]warning: the model mostly looks outside the head (background, border, labels), "
                      "not at the anatomy[/]")


@hookimpl
def btk_register_reporters(register: RegisterReporter) -> None:
    register(Reporter("terminal", terminal_report, "rich tables in the terminal (the default)"))
