"""Side-by-side views of several runs: one row per run and test condition, paired tests."""

from __future__ import annotations

from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np

from btk.runs import Run
from btk.stats import mcnemar, reliability

COLUMNS = ("accuracy", "balanced_accuracy", "f1_macro", "auc_macro", "ece")
LOWER_IS_BETTER = {"ece"}


def run_rows(runs: list[Run]) -> list[dict[str, Any]]:
    """A row per run and test condition: what was run, and its headline metrics (ECE from the
    run's predictions, 15 equal-width bins)."""
    rows = []
    for run in runs:
        cfg = run.config["config"]
        train = ", ".join(d["label"] for d in run.config.get("train_degrade", [])) or "none"
        for condition, m in run.metrics["conditions"].items():
            _, y, probs = run.condition_arrays(condition)
            rows.append({
                "run": run.name, "task": cfg["task"], "reader": cfg["reader"], "model": cfg["model"],
                "train_degrade": train, "test_condition": condition, "n": m["n"],
                "accuracy": m["accuracy"], "balanced_accuracy": m["balanced_accuracy"], "f1_macro": m["f1_macro"],
                "auc_macro": m["auc_macro"], "ece": reliability(y, probs)["ece"], "collapsed": m["collapsed"],
            })
    return rows


def best_by_column(rows: list[dict[str, Any]]) -> dict[str, float]:
    """The best value of each metric column (lowest ECE, highest otherwise)."""
    best = {}
    for col in COLUMNS:
        values = [r[col] for r in rows if r[col] is not None]
        if values:
            best[col] = min(values) if col in LOWER_IS_BETTER else max(values)
    return best


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
        if len(sa) != len(sb) or set(sa) != set(sb):
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
    skipped: list[str] = []
    for run in runs:
        if run.is_evaluation:
            key = Path(run.config["evaluation"]["run"]).resolve()
            members.setdefault(key, {})[run.path.resolve()] = run
            continue
        key = run.path.resolve()
        parents[key] = run
        for path in run.evaluations():
            try:
                members.setdefault(key, {}).setdefault(path.resolve(), load_run(path))
            except BtkError as exc:
                skipped.append(str(exc))
    groups = []
    for key, evaluations in members.items():
        if key not in parents:
            try:
                parents[key] = load_run(key)
            except BtkError as exc:
                skipped.append(f"the run of {', '.join(r.name for r in evaluations.values())} cannot be read ({exc})")
                continue
        groups.append([parents[key], *evaluations.values()])
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
