"""Rich tables of what the library returns: run comparisons, audits, suites, robustness sweeps,
predictions, the decode cache and the plugins."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

from btk.render import table_width


def _percent(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{100 * value:.{digits}f}"


def render_comparison(rows: list[dict[str, Any]], best: dict[str, Any], tests: list[dict[str, Any]],
                      console: Console, title: str = "") -> None:
    """Several runs side by side (:func:`btk.compare.run_rows`), the best of each column in bold
    among the runs on the same test images (:func:`btk.compare.best_by_column`), a line per set
    of test images, and McNemar's test for each pair of runs on the same images
    (:func:`btk.compare.paired_tests`)."""
    from btk.compare import COLUMNS, image_set_lines, is_best

    runs = len(dict.fromkeys(r["run"] for r in rows))
    marked = " best of each column on the same images in bold" if best else " no two runs on the same test images"
    table = Table(title=f"{title or f'{runs} runs'} (%,{marked})")
    numeric = ("acc", "bal. acc", "macro F1", "macro AUC", "ECE")
    for col in ("run", "task", "reader", "train degr.", "test", "images", *numeric):
        table.add_column(col, justify="right" if col in numeric else "left", overflow="fold")
    for r in rows:
        cells = []
        for c in COLUMNS:
            v = r[c]
            text = "-" if v is None else f"{100 * v:.1f}"
            cells.append(f"[bold green]{text}[/]" if is_best(r, c, best) else text)
        name = r["run"] + (" [red](COLLAPSED)[/]" if r["collapsed"] else "")
        table.add_row(name, r["task"], r["reader"], r["train_degrade"], r["test_condition"], r["images"], *cells)
    console.print(table)
    for line in image_set_lines(rows):
        console.print(line, highlight=False, markup=False)
    for t in tests:
        console.print(f"McNemar (clean, {t['n']} images): {t['a']} vs {t['b']}: only A right {t['a_only']}, "
                      f"only B right {t['b_only']}, p = {t['p_value']:.4g}", highlight=False)


def render_agreement(a: str, b: str, rows: list[dict[str, Any]], console: Console) -> None:
    """Two runs' predictions on their shared test images (:func:`btk.compare.agreement`)."""
    table = Table(title=f"{a} (A) and its repeat {b} (B)")
    for col in ("test", "images", "same class", "largest prob. difference", "acc A", "acc B", "only A right",
                "only B right", "McNemar p"):
        table.add_column(col, justify="left" if col == "test" else "right")
    for r in rows:
        table.add_row(r["condition"], str(r["n"]), f"{r['same_class']}/{r['n']}",
                      f"{r['max_probability_difference']:.2g}", f"{100 * r['accuracy_a']:.1f}",
                      f"{100 * r['accuracy_b']:.1f}", str(r["a_only"]),
                      str(r["b_only"]), f"{r['p_value']:.3g}")
    console.print(table)
    for r in rows:
        if r["same_class"] == r["n"] and r["max_probability_difference"] == 0:
            verdict = "identical predictions"
        elif r["same_class"] == r["n"]:
            verdict = "the same classes, probabilities differ slightly"
        else:
            verdict = (f"{r['n'] - r['same_class']} image(s) change class; McNemar p = {r['p_value']:.3g}"
                       + (" (no evidence that either is more accurate)" if r["p_value"] >= 0.05 else ""))
        console.print(f"{r['condition']}: {verdict}", highlight=False)


def render_ensemble(run: Any, console: Console) -> None:
    """An ensemble run's members beside the ensemble: validation and test accuracy, the
    members' mean, and what the ensemble gains over it."""
    info = run.ensemble
    if info is None:
        return
    members = info.members
    table = Table(title=f"{run.name}: {len(members)} members averaged")
    for col in ("model", "seed", "validation", "test"):
        table.add_column(col, justify="left" if col == "model" else "right")

    def pct(value: Any) -> str:
        return "-" if value is None else f"{100 * value:.1f}"

    for m in members:
        table.add_row(m.run, str(m.seed if m.seed is not None else ""), pct(m.val_accuracy), pct(m.test_accuracy))
    vals = [m.val_accuracy for m in members if m.val_accuracy is not None]
    tests = [m.test_accuracy for m in members if m.test_accuracy is not None]
    mean_val = sum(vals) / len(vals) if vals else None
    mean_test = sum(tests) / len(tests) if tests else None
    table.add_row("members' mean", "", pct(mean_val), pct(mean_test))
    test = run.metrics["conditions"]["clean"]["accuracy"]
    table.add_row("ensemble", "", pct(info.val_accuracy), pct(test))
    console.print(table)
    if mean_test is not None:
        gain = f"ensemble against the members' mean: test {100 * (test - mean_test):+.1f} points"
        if info.val_accuracy is not None and mean_val is not None:
            gain += f", validation {100 * (info.val_accuracy - mean_val):+.1f}"
        console.print(gain, highlight=False)


def render_audit(summary: dict[str, Any], console: Console) -> None:
    """An audit's summary (:meth:`btk.audit.AuditResult.summary`) as tables and lines."""
    for name, info in summary["datasets"].items():
        table = Table(title=f"{name}: {info['images']} images")
        splits = list(info["class_counts"])
        classes = sorted({c for counts in info["class_counts"].values() for c in counts})
        table.add_column("class")
        for split in splits:
            table.add_column(split, justify="right")
        for c in classes:
            table.add_row(c, *[str(info["class_counts"][s].get(c, 0)) for s in splits])
        console.print(table)
        sizes = ", ".join(f"{k} ({v})" for k, v in list(info["sizes"].items())[:5])
        more = len(info["sizes"]) - 5
        console.print(f"sizes: {sizes}{f', and {more} more' if more > 0 else ''}; channels in the files: "
                      f"{info['channels']}; bit depth: {info['bit_depths']}")
        if info["unreadable"]:
            console.print(f"[yellow]{len(info['unreadable'])} unreadable file(s)[/], e.g. "
                          f"{info['unreadable'][0]['source']}: {info['unreadable'][0]['reason']}")
        else:
            console.print("unreadable files: none")
    pairs = Table(title=f"duplicate pairs (near: score >= {summary['threshold']})")
    for col in ("where", "exact pairs", "near pairs", "labels disagree"):
        pairs.add_column(col, justify="left" if col == "where" else "right")
    for scope, counts in summary["pairs"].items():
        disagree = counts["labels_disagree"]
        pairs.add_row(scope, str(counts["exact"]), str(counts["near"]),
                      "not compared" if disagree is None else f"[bold red]{disagree}[/]" if disagree else "0")
    console.print(pairs)
    for title, c in summary["copies"].items():
        other = c["copy_with_other_label"]
        console.print(f"[bold]{title}:[/] {c['exact_copy']} pixel-identical, {c['near_copy_only']} more near-copies "
                      f"({c['any_copy']} in all)"
                      + ("" if other is None else f"; {other} with a copy that carries another label"))
    if summary.get("class_map"):
        console.print("classes renamed for the comparison: "
                      + ", ".join(f"{k} -> {v}" for k, v in summary["class_map"].items()))
    for reason in summary.get("labels_not_compared", {}).values():
        console.print(f"[yellow]labels not compared: {reason}[/]")


def render_suite_table(table: list[dict[str, Any]], console: Console, title: str) -> None:
    """A suite's rows (:func:`btk.suite.suite_table`): measured beside published numbers."""
    from btk.suite import METRICS

    grid = Table(title=title, show_lines=False)
    grid.add_column("experiment")
    for k in ("acc", "P", "R", "F1"):
        grid.add_column(f"{k}", justify="right")
    grid.add_column("correct", justify="right")
    grid.add_column("acc, no copy in train", justify="right")
    for k in ("acc", "P", "R", "F1", "correct"):
        grid.add_column(f"report {k}", justify="right", style="dim")
    for r in table:
        pub = r["published"] or {}
        flag = " [bold red](COLLAPSED)[/]" if r["collapsed"] else ""
        unseen = r.get("no_copy")
        grid.add_row(r["label"] + flag, *[f"{r['measured'][k]:.1f}" for k in METRICS], r["correct"],
                     f"{unseen['accuracy']:.1f} ({unseen['correct']})" if unseen else "",
                     *[f"{pub[k]:.1f}" if k in pub else "" for k in METRICS], pub.get("correct", ""))
    console.print(grid)


def failed_lines(failed: list[dict[str, Any]], folder: Any = None) -> list[str]:
    """One ``FAILED NAME: exit status S; log LOG (error)`` line per failed run of a plan
    (``suite.json``'s ``failed``); ``folder``: the plan's folder, to show the log's full path."""
    lines = []
    for f in failed:
        log = f"; log {f['log'] if folder is None else Path(folder) / f['log']}" if f.get("log") else ""
        status = f"exit status {f['returncode']}" if f.get("returncode") is not None else "failed in this process"
        lines.append(f"FAILED {f['member']}: {status}{log}" + (f" ({f['error']})" if f.get("error") else ""))
    return lines


def render_suite_aggregate(aggregate: list[dict[str, Any]], console: Console, title: str) -> None:
    """A plan over seeds, one line per row of its suite (:func:`btk.suite.aggregate_table`):
    each metric's mean over the seeds and its range (lowest-highest), beside the published one."""
    from btk.suite import METRICS

    grid = Table(title=title, show_lines=False)
    grid.add_column("experiment")
    grid.add_column("seeds", justify="right")
    for k in ("acc", "P", "R", "F1"):
        grid.add_column(f"{k} mean (range)", justify="right")
    grid.add_column("report acc", justify="right", style="dim")
    for r in aggregate:
        pub = r.get("published") or {}
        flag = f" [bold red]({r['collapsed']} collapsed)[/]" if r["collapsed"] else ""
        grid.add_row(r["label"] + flag, str(r["n"]),
                     *[f"{r['mean'][k]:.1f} ({r['min'][k]:.1f}-{r['max'][k]:.1f})" for k in METRICS],
                     f"{pub['accuracy']:.1f}" if "accuracy" in pub else "")
    console.print(grid)


def render_robustness(run_name: str, result: dict[str, Any], scores: dict[str, Any], console: Console) -> None:
    """A sweep's accuracy by degrader and severity, with CE and relative CE. Degraders may have
    any number of levels: there is a column per level up to the most any of them has."""
    from btk.robustness import level_count

    levels = level_count(result)
    table = Table(title=f"{run_name}: {result.get('subset', 'test')} accuracy (%) by severity; "
                        f"clean {100 * result['clean']:.1f}")
    for col in ("degrader", *[str(k) for k in range(1, levels + 1)], "CE", "rel. CE"):
        table.add_column(col, justify="left" if col == "degrader" else "right")
    for name, accs in result["degraders"].items():
        rel = scores["relative_ce"].get(name)
        ce = scores["ce"].get(name)
        table.add_row(name, *[f"{100 * a:.1f}" for a in accs], *[""] * (levels - len(accs)),
                      "-" if ce is None else f"{ce:.3f}", "-" if rel is None else f"{rel:.3f}")
    console.print(table)


def render_robustness_extra(run_name: str, baseline_name: str, losses: list[dict[str, Any]], console: Console,
                            subset: str = "test") -> None:
    """Accuracy under explicit degradations (``--also``) and each loss as a share of the
    baseline's (:func:`btk.robustness.extra_losses`)."""
    table = Table(title=f"{run_name}: {subset} accuracy (%) under the settings given with --also")
    for col in ("degradation", "accuracy", "loss", f"loss of {baseline_name}", "share of the baseline's loss"):
        table.add_column(col, justify="left" if col == "degradation" else "right")
    for row in losses:
        share = "-" if row["share"] is None else f"{row['share']:.2f}"
        table.add_row(row["label"], _percent(row["accuracy"]), _percent(row["loss"]), _percent(row["baseline_loss"]),
                      share)
    console.print(table)


class PredictionTable:
    """Predictions (:class:`btk.predict.Prediction`) printed as they come: a table drawn in
    chunks of ``chunk`` rows with the same column widths, the first with the title and header,
    so no more than a chunk is held (a longer path in a later chunk folds onto a second line).
    Means over a series' or volume's slices are in bold.
    ``slices``: whether series or volumes may come (the slice column is then wide enough for
    ``all N (mean)``)."""

    def __init__(self, title: str, classes: Sequence[str], console: Console, slices: bool = True,
                 chunk: int = 50, sets: bool = False) -> None:
        self.title, self.classes, self.console, self.chunk = title, list(classes), console, chunk
        self.sets = sets  # a column with each row's prediction set (--coverage)
        self.rows: list[Any] = []
        self.printed = 0
        # fixed widths, the same for every chunk: a probability column is as wide as the longest
        # word of its class (the header wraps at the words); the input gets what is left, less a
        # space between columns
        self.widths = {"slice": len("all 999 (mean)") if slices else len("slice"),
                       "class": max(len("class"), *map(len, self.classes)),
                       **{c: max(5, *map(len, c.split("_"))) for c in self.classes},
                       **({"set": max(len("(empty)"), *map(len, self.classes))} if sets else {})}
        self.room = max(16, table_width(console) - sum(self.widths.values()) - len(self.widths))

    def write(self, prediction: Any) -> None:
        """Queue one row; a full chunk is printed."""
        self.rows.append(prediction)
        if len(self.rows) >= self.chunk:
            self.flush()

    def close(self) -> None:
        """Print the rows still queued."""
        self.flush()

    def flush(self) -> None:
        """Print the queued rows."""
        if not self.rows:
            return
        first = self.printed == 0
        if first:  # on a terminal, what is left of its width; elsewhere the first chunk's longest path
            longest = max(len(r.path) for r in self.rows)
            self.widths["input"] = self.room if self.console.is_terminal else max(16, min(self.room, longest))
        table = Table(title=self.title if first else None, show_header=first, box=box.SIMPLE_HEAD, show_edge=False,
                      pad_edge=False, padding=(0, 0))
        for col in ("input", "slice", "class", *self.classes, *(["set"] if self.sets else [])):
            table.add_column(col.replace("_", " ") if col in self.classes else col, width=self.widths[col],
                             justify="right" if col in self.classes else "left", overflow="fold")
        for r in self.rows:
            members = [r.set_label().replace("|", " ")] if self.sets else []
            empty = self.sets and not r.prediction_set
            table.add_row(r.path, r.slice_label(), r.predicted, *[f"{r.probabilities[c]:.3f}" for c in self.classes],
                          *members, style="bold red" if empty else "bold" if r.aggregated_over is not None else None)
        self.console.print(table)
        self.printed += len(self.rows)
        self.rows.clear()


def render_prediction_summary(answers: Mapping[str, int], images: int, console: Console,
                              set_sizes: Mapping[int, int] | None = None, coverage: float | None = None) -> None:
    """One line: how many files (series, volumes) got an answer, how many images and slices were
    predicted, and the answers counted by class; with ``set_sizes`` (``--coverage``), a second
    line: how many answers are single classes, larger sets, and empty sets (flagged)."""
    counts = ", ".join(f"{c} {n:,}" for c, n in sorted(answers.items(), key=lambda kv: (-kv[1], kv[0])))
    files = sum(answers.values())
    console.print(f"{files:,} input(s) predicted ({images:,} images and slices): {counts or 'none'}",
                  highlight=False, markup=False)
    if set_sizes is not None and coverage is not None:
        single, empty = set_sizes.get(1, 0), set_sizes.get(0, 0)
        larger = sum(n for k, n in set_sizes.items() if k > 1)
        console.print(f"prediction sets at {100 * coverage:g}% coverage: {single:,} single class, {larger:,} "
                      f"'one of these', {empty:,} empty" + (" (no class fits: look at these)" if empty else ""),
                      highlight=False, markup=False, style="yellow" if empty else None)


def render_cache(root: Path, rows: list[tuple[str, int, float]], console: Console) -> None:
    """The decode cache's entries: key, size, when last used."""
    import time

    table = Table(title=f"decode cache: {root}")
    for col in ("key", "size", "last used"):
        table.add_column(col)
    for key, size, used in rows:
        table.add_row(key, f"{size / 2**20:.1f} MiB", time.strftime("%Y-%m-%d %H:%M", time.localtime(used)))
    console.print(table)
    console.print(f"{len(rows)} dataset(s), {sum(r[1] for r in rows) / 2**20:.1f} MiB")


def render_plugins(plugins: list[dict[str, Any]], problems: list[str], console: Console) -> None:
    """The plugins (:func:`btk.plugins.describe_plugins`): where each came from, what it
    registered; then a line for each plugin that could not be loaded."""
    table = Table(title="btk plugins")
    table.add_column("plugin", no_wrap=True)  # a module path such as btk.default_plugins.mri_artefacts
    for col in ("from", "version", "registered"):
        table.add_column(col, overflow="fold")
    for p in plugins:
        parts = [f"{kind}: {', '.join(names)}" for kind, names in p["registered"].items() if names]
        table.add_row(p["name"], p["origin"], p["version"], "\n".join(parts) or "-")
    console.print(table)
    for problem in problems:
        console.print(f"problem: {problem}", style="yellow", markup=False, highlight=False)


def render_explanations(rows: Sequence[Mapping[str, Any]], console: Console, title: str) -> None:
    """``btk explain``'s rows (path, predicted, probability, method, outside_head_share) and the
    mean outside-the-head share."""
    table = Table(title=title, box=box.SIMPLE_HEAD)
    for col in ("input", "predicted", "probability", "method", "outside head %"):
        table.add_column(col, justify="right" if col in ("probability", "outside head %") else "left",
                         overflow="fold")
    shares = []
    for r in rows:
        share = r["outside_head_share"]
        if share is not None:
            shares.append(share)
        table.add_row(r["path"], r["predicted"], f"{r['probability']:.3f}", r["method"],
                      "-" if share is None else _percent(share))
    console.print(table)
    mean = _percent(sum(shares) / len(shares)) if shares else "-"
    console.print(f"mean share of the heat outside the head: {mean} over {len(shares)} image(s)", highlight=False,
                  markup=False)


def render_label_issues(name: str, rows: Sequence[Mapping[str, str]], console: Console, show: int = 20) -> None:
    """A fold ensemble's label issues: how many per given class, and the ``show`` least
    self-confident with their given and likely labels."""
    from collections import Counter

    counts = Counter(r["given"] for r in rows)
    console.print(f"{name}: {len(rows)} likely label issue(s): "
                  + (", ".join(f"{c} {n}" for c, n in sorted(counts.items())) or "none"), highlight=False)
    table = Table(title=f"the {min(show, len(rows))} least self-confident")
    for col in ("path", "given", "likely", "self-confidence", "margin"):
        table.add_column(col, justify="right" if col in ("self-confidence", "margin") else "left")
    for r in rows[:show]:
        table.add_row(r["path"], r["given"], r["likely"], f"{float(r['self_confidence']):.3f}",
                      f"{float(r['margin']):.3f}")
    console.print(table)



def render_node_status(counts: Mapping[str, Any], folder: Path, console: Console) -> None:
    """A node's journal (``btk listen --status``): studies by state, instances, late instances,
    events by kind, the spool's size, and each failed study's reason."""
    table = Table(title=f"btk node: {folder}")
    table.add_column("")
    table.add_column("count", justify="right")
    for state, n in counts["studies"].items():
        table.add_row(f"studies {state}", f"{n:,}")
    table.add_row("instances received", f"{counts['instances']:,}")
    table.add_row("instances kept", f"{counts['instances_kept']:,} ({counts['spool_bytes'] / 2**20:.1f} MiB)")
    table.add_row("late instances (after the answer)", f"{counts['late']:,}")
    for event, n in sorted(counts["events"].items()):
        table.add_row(f"events: {event}", f"{n:,}")
    console.print(table)
    for study, reason in counts["failed"].items():
        console.print(f"failed {study}: {reason}", markup=False, highlight=False)
    if counts.get("drift"):
        drift = counts["drift"]
        console.print(f"shift over the last {drift['window_series']} series: {drift['sentence']}", markup=False,
                      highlight=False)
