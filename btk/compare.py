"""Side-by-side views of several runs: one row per run and test condition, paired tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np

from btk.image_sets import image_keys, images_id, tested_images
from btk.runs import Run
from btk.stats import mcnemar

COLUMNS = ("accuracy", "balanced_accuracy", "f1_macro", "auc_macro", "ece")
LOWER_IS_BETTER = {"ece"}


def image_sets(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The sets of test images the rows (:func:`run_rows`) were measured on, in order of first
    appearance: ``label`` (the rows' ``images``), ``id``, ``n``, ``data`` and the ``runs`` on it;
    ``compared``: whether two or more runs share it, so that its best can be named."""
    sets: dict[str, dict[str, Any]] = {}
    for r in rows:
        entry = sets.setdefault(r["images"], {"label": r["images"], "id": r["images_id"], "n": r["n"],
                                              "data": r["data"], "runs": []})
        if r["run"] not in entry["runs"]:
            entry["runs"].append(r["run"])
    for entry in sets.values():
        entry["compared"] = len(entry["runs"]) > 1
    return list(sets.values())


def image_set_lines(rows: list[dict[str, Any]]) -> list[str]:
    """One line per set of test images (:func:`image_sets`) saying what is compared on it, for
    the terminal and the HTML alike."""
    lines = []
    for s in image_sets(rows):
        what = (f"{', '.join(s['runs'])}: the same images, compared" if s["compared"] else
                f"only {s['runs'][0]}: not compared with the others")
        lines.append(f"test images {s['label']}: {s['n']} images of {s['data']} (set {s['id']}); {what}")
    if len(lines) > 1:
        lines.append("Numbers on different test images are not compared: a best is named only among runs "
                     "tested on the same images.")
    return lines


def run_rows(runs: list[Run]) -> list[dict[str, Any]]:
    """A row per run and test condition: what was run, and its headline metrics (ECE of the
    reported probabilities, 15 equal-width bins); ``images``: a letter for the set of test
    images (the same letter: the same images, :func:`tested_images`), ``images_id`` its
    fingerprint, ``data`` where they are."""
    rows = []
    labels: dict[frozenset[str], str] = {}
    for run in runs:
        keys = tested_images(run)
        label = labels.setdefault(keys, chr(ord("A") + len(labels)) if len(labels) < 26 else f"#{len(labels) + 1}")
        data = run.config.data or f"{run.config.reader} (generated)"
        cfg = run.config
        train = ", ".join(d.label for d in run.train_degrade) or "none"
        for condition in run.metrics["conditions"]:
            m = run.condition_metrics(condition)
            rows.append({
                "run": run.name, "task": cfg.task, "reader": cfg.reader, "model": cfg.model_name,
                "train_degrade": train, "test_condition": condition, "n": m["n"],
                "accuracy": m["accuracy"], "balanced_accuracy": m["balanced_accuracy"], "f1_macro": m["f1_macro"],
                "auc_macro": m["auc_macro"], "ece": m["ece"], "collapsed": m["collapsed"],
                "images": label, "images_id": images_id(keys), "data": data,
            })
    return rows


def best_by_column(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """The best value of each metric column (lowest ECE, highest otherwise) per set of test
    images (the rows' ``images``) that two or more runs share; a set only one run was tested on
    has none: numbers on different images are not compared."""
    best: dict[str, dict[str, float]] = {}
    for s in image_sets(rows):
        if not s["compared"]:
            continue
        mine = [r for r in rows if r["images"] == s["label"]]
        for col in COLUMNS:
            values = [r[col] for r in mine if r[col] is not None]
            if values:
                best.setdefault(s["label"], {})[col] = min(values) if col in LOWER_IS_BETTER else max(values)
    return best


def is_best(row: dict[str, Any], col: str, best: dict[str, dict[str, float]]) -> bool:
    """Whether ``row``'s ``col`` is the best among the runs on its test images (:func:`best_by_column`)."""
    return row[col] is not None and row[col] == best.get(row["images"], {}).get(col)


def paired_tests(runs: list[Run], condition: str = "clean") -> list[dict[str, Any]]:
    """McNemar's exact test for every pair of runs evaluated on the same test images (same
    sources, same labels) under ``condition``."""
    out = []
    for a, b in combinations(runs, 2):
        if condition not in a.metrics["conditions"] or condition not in b.metrics["conditions"]:
            continue
        if a.classes != b.classes:
            continue
        sa, ya, pa = a.condition_arrays(condition)
        sb, yb, pb = b.condition_arrays(condition)
        if len(sa) != len(sb) or image_keys(a, sa) != image_keys(b, sb):  # the same images of the same data
            continue
        order = np.argsort(sb)[np.argsort(np.argsort(sa))]  # b's rows in a's order
        if not np.array_equal(ya, yb[order]):
            continue
        result = mcnemar(pa.argmax(1) == ya, pb[order].argmax(1) == yb[order])
        out.append({"a": a.name, "b": b.name, "condition": condition, "n": len(sa),
                    "accuracy_a": float((pa.argmax(1) == ya).mean()),
                    "accuracy_b": float((pb[order].argmax(1) == yb[order]).mean()), **result})
    return out


def agreement(a: Run, b: Run) -> list[dict[str, Any]]:
    """How far two runs' predictions agree on the test images they share, per condition both
    have: the images, how many get the same class, the largest probability difference, and
    McNemar's exact test of their correctness (``btk rerun``: a run against its repeat)."""
    out = []
    for condition in a.metrics["conditions"]:
        if condition not in b.metrics["conditions"]:
            continue
        sa, ya, pa = a.condition_arrays(condition)
        sb, yb, pb = b.condition_arrays(condition)
        row_of_b = {s: i for i, s in enumerate(sb)}
        ia = np.array([i for i, s in enumerate(sa) if s in row_of_b], dtype=int)
        if not len(ia) or a.classes != b.classes:
            continue
        ib = np.array([row_of_b[s] for s in sa[ia]], dtype=int)
        same_label = ya[ia] == yb[ib]
        ia, ib = ia[same_label], ib[same_label]
        right_a, right_b = pa[ia].argmax(1) == ya[ia], pb[ib].argmax(1) == yb[ib]
        out.append({"condition": condition, "n": len(ia),
                    "same_class": int((pa[ia].argmax(1) == pb[ib].argmax(1)).sum()),
                    "max_probability_difference": float(np.abs(pa[ia] - pb[ib]).max()) if len(ia) else 0.0,
                    "accuracy_a": float(right_a.mean()), "accuracy_b": float(right_b.mean()),
                    **mcnemar(right_a, right_b)})
    return out


def evaluation_groups(runs: list[Run]) -> tuple[list[list[Run]], list[str]]:
    """Each run beside its evaluations (``btk evaluate``): a run given with evaluations in its
    folder, and the run of evaluations given without it, first in a group with them.

    Returns:
        (groups, skipped): the groups, and one line for each evaluation or run that cannot be read.
    """
    from btk.errors import BtkError
    from btk.runs import load_run

    parents: dict[Path, Run] = {}
    members: dict[Path, dict[Path, Run]] = {}
    orphans: dict[Path, Run] = {}
    skipped: list[str] = []
    for run in runs:
        if run.is_evaluation:
            try:
                parent = run.evaluated_run()
            except BtkError as exc:
                skipped.append(f"the run of {run.name} cannot be read ({exc})")
                continue
            key = parent.path.resolve()
            orphans.setdefault(key, parent)
            members.setdefault(key, {})[run.path.resolve()] = run
            continue
        key = run.path.resolve()
        parents[key] = run
        for path in run.evaluation_dirs():
            try:
                members.setdefault(key, {}).setdefault(path.resolve(), load_run(path))
            except BtkError as exc:
                skipped.append(str(exc))
    groups = [[parents.get(key) or orphans[key], *evaluations.values()] for key, evaluations in members.items()]
    return groups, skipped


def gather_runs(paths: list[Path]) -> tuple[list[Run], list[dict[str, Any]], list[str]]:
    """The finished runs at ``paths``: run directories, or suite directories (their runs).

    Returns:
        (runs, suites, skipped): the runs, each suite's record (``suite.json``), and one line
        for each path that is not a complete run.
    """
    from btk.errors import BtkError
    from btk.runs import load_run
    from btk.suite import read_suite

    runs: list[Run] = []
    suites: list[dict[str, Any]] = []
    skipped: list[str] = []
    for path in paths:
        info = read_suite(path)
        if info is not None:
            suites.append(info)
            candidates = [Path(path) / name for name in info.get("runs", {}).values()]
        else:
            candidates = [Path(path)]
        for candidate in candidates:
            try:
                runs.append(load_run(candidate))
            except BtkError as exc:
                skipped.append(str(exc))
    return runs, suites, skipped


@dataclass
class EvaluationGroup:
    """A run beside its evaluations: a row per run or evaluation and condition, the best of each
    column among those on the same test images (:func:`best_by_column`), and McNemar's test of
    the run against each evaluation on the same images."""

    run: Run
    evaluations: list[Run]
    rows: list[dict[str, Any]]
    best: dict[str, dict[str, float]]
    tests: list[dict[str, Any]]


@dataclass
class Report:
    """Everything ``btk report`` shows, for the terminal and for the HTML file alike.

    Attributes:
        runs: the runs (and evaluations) given; ``suites``: their plans' records, and the runs
            that differ only in their seed put together (:func:`btk.suite.seed_summary`);
        skipped: one line per path that is not a complete run;
        rows, best, tests: the comparison of several runs (a row per run and condition; the
            best per set of test images, :func:`best_by_column`);
        groups: each run beside its evaluations.
    """

    runs: list[Run]
    suites: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, dict[str, float]] = field(default_factory=dict)
    tests: list[dict[str, Any]] = field(default_factory=list)
    groups: list[EvaluationGroup] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """The report as one JSON-ready object (``btk report --json``)."""
        return {"runs": [r.summary() for r in self.runs], "suites": self.suites, "skipped": self.skipped,
                "comparison": self.rows, "paired_tests": self.tests,
                "evaluations": [{"run": g.run.name, "evaluations": [e.name for e in g.evaluations], "rows": g.rows,
                                 "paired_tests": g.tests} for g in self.groups]}


def build_report(runs: list[Run], suites: list[dict[str, Any]] | None = None,
                 skipped: list[str] | None = None) -> Report:
    """The :class:`Report` of ``runs``: the runs that differ only in their seed put together,
    the comparison of several runs, each run beside its evaluations."""
    from btk.suite import seed_summary

    suites = list(suites or [])
    in_suites = {name for info in suites for name in info.get("runs", {}).values()}
    over_seeds = seed_summary([r for r in runs if r.path.name not in in_suites])
    if over_seeds is not None:
        suites.append(over_seeds)
    report = Report(runs, suites, list(skipped or []))
    if len(runs) > 1:
        report.rows = run_rows(runs)
        report.best = best_by_column(report.rows)
        report.tests = paired_tests(runs)
    groups, unreadable = evaluation_groups(runs)
    report.skipped += unreadable
    for group in groups:
        rows = run_rows(group)
        report.groups.append(EvaluationGroup(group[0], group[1:], rows, best_by_column(rows),
                                             [t for t in paired_tests(group) if t["a"] == group[0].name]))
    return report


def gather_report(paths: list[Path]) -> Report:
    """``btk report``'s whole job: the runs, suites and evaluations at ``paths`` (run, suite and
    evaluation directories) read and put together (:func:`build_report`).

    Raises:
        BtkError: no complete run among them.
    """
    from btk.errors import BtkError

    runs, suites, skipped = gather_runs(list(paths))
    if not runs:
        raise BtkError("no complete run to report" + (f" ({skipped[0]})" if skipped else ""))
    return build_report(runs, suites, skipped)
