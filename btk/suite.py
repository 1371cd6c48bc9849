"""Suites: named plans of runs. ``report`` is the report's four experiments.

A suite writes ``OUT/<id>-suite-<name>/``: one run directory per experiment and, last,
``suite.json`` with the comparison table.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from btk.config import RunConfig
from btk.errors import BtkError
from btk.feedback import Feedback
from btk.runs import Run, new_run_id, unique_dir


@dataclass(frozen=True)
class Experiment:
    """One run of a suite: a name and the config fields it changes."""

    name: str
    changes: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Row:
    """A line of a suite's table: a run and condition, beside a published result (percent)."""

    label: str
    experiment: str
    condition: str
    published: dict[str, Any] | None = None


@dataclass(frozen=True)
class Suite:
    """A named plan of runs and the table that compares them."""

    name: str
    description: str
    experiments: tuple[Experiment, ...]
    rows: tuple[Row, ...]


# The report's published results on its 394 Testing images (percent).
_REPORT_PUBLISHED: dict[str, dict[str, Any]] = {
    "multiclass": {"accuracy": 75.13, "precision_macro": 74.04, "recall_macro": 83.36, "f1_macro": 70.52,
                   "correct": "296/394"},
    "binary": {"accuracy": 90.0, "precision_macro": 79.0, "recall_macro": 82.0, "f1_macro": 81.0,
               "correct": "355/394"},
    "test_modified": {"accuracy": 73.35, "precision_macro": 72.42, "recall_macro": 73.14, "f1_macro": 69.92,
                      "correct": "289/394"},
    "train_modified": {"accuracy": 74.37, "precision_macro": 72.67, "recall_macro": 78.45, "f1_macro": 69.91,
                       "correct": "293/394"},
}

SUITES: dict[str, Suite] = {
    "report": Suite(
        name="report",
        description="the report's four experiments: 4 classes, binary, train clean / test degraded, "
                    "train degraded / test clean (the report's 'modified' images are run as blur and as resolution)",
        experiments=(
            Experiment("multiclass", {"task": "multiclass", "test_degrade": ("blur", "resolution")}),
            Experiment("binary", {"task": "binary"}),
            Experiment("train-blur", {"task": "multiclass", "train_degrade": ("blur",),
                                      "test_degrade": ("blur", "resolution")}),
            Experiment("train-resolution", {"task": "multiclass", "train_degrade": ("resolution",),
                                            "test_degrade": ("blur", "resolution")}),
        ),
        rows=(
            Row("4 classes, clean", "multiclass", "clean", _REPORT_PUBLISHED["multiclass"]),
            Row("binary, clean", "binary", "clean", _REPORT_PUBLISHED["binary"]),
            Row("train clean, test blur", "multiclass", "blur", _REPORT_PUBLISHED["test_modified"]),
            Row("train clean, test resolution", "multiclass", "resolution", _REPORT_PUBLISHED["test_modified"]),
            Row("train blur, test clean", "train-blur", "clean", _REPORT_PUBLISHED["train_modified"]),
            Row("train resolution, test clean", "train-resolution", "clean", _REPORT_PUBLISHED["train_modified"]),
            Row("train blur, test blur", "train-blur", "blur"),
            Row("train resolution, test resolution", "train-resolution", "resolution"),
        ),
    ),
}

METRICS = ("accuracy", "precision_macro", "recall_macro", "f1_macro")


def get_suite(name: str) -> Suite:
    """The suite ``name``; raises :class:`BtkError` listing the known ones."""
    try:
        return SUITES[name]
    except KeyError:
        raise BtkError(f"unknown suite '{name}' (known: {', '.join(SUITES)})") from None


def suite_table(suite: Suite, runs: dict[str, Run]) -> list[dict[str, Any]]:
    """The suite's rows with measured metrics (percent) and the published ones beside them."""
    table = []
    for row in suite.rows:
        run = runs.get(row.experiment)
        if run is None:
            continue
        m = run.metrics["conditions"].get(row.condition)
        if m is None:
            continue
        unseen = ((run.metrics.get("leakage") or {}).get("conditions_without_copies") or {}).get(row.condition)
        table.append({
            "label": row.label, "run": run.name, "condition": row.condition,
            "measured": {k: round(100 * m[k], 2) for k in METRICS},
            "no_copy": None if unseen is None else {"accuracy": round(100 * unseen["accuracy"], 2),
                                                    "correct": f"{unseen['correct']}/{unseen['n']}"},
            "correct": f"{m['correct']}/{m['n']}", "collapsed": m["collapsed"],
            "published": row.published,
        })
    return table


def read_suite(folder: Path) -> dict[str, Any] | None:
    """The ``suite.json`` of a suite directory, or ``None`` when ``folder`` is not one."""
    path = Path(folder) / "suite.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise BtkError(f"{path}: unreadable suite record ({exc})") from None


def run_suite(name: str, base: RunConfig, out_dir: Path | str = "runs", feedback: Feedback | None = None) -> Path:
    """Run every experiment of suite ``name`` on ``base`` and write the suite directory; its
    ``suite.json`` (:func:`read_suite`) holds the comparison table.

    The data are read once and shared by the runs.
    """
    from btk.degraders import resolve_degradations
    from btk.pipeline import load_for_config, run_experiment
    from btk.plugins import get_host

    feedback = feedback or Feedback()
    suite = get_suite(name)
    host = get_host()
    configs = [base.with_changes(name=exp.name, **exp.changes) for exp in suite.experiments]
    for cfg in configs:  # validate every plan before the first long run
        resolve_degradations(host, cfg.train_degrade + cfg.test_degrade)
    host.models.get(base.model_name)
    parent = Path(out_dir)
    parent.mkdir(parents=True, exist_ok=True)
    folder = unique_dir(parent, new_run_id(f"suite-{name}"))
    folder.mkdir()
    t0 = time.perf_counter()
    data = load_for_config(base, host, feedback)
    runs: dict[str, Run] = {}
    for exp, cfg in zip(suite.experiments, configs):
        feedback.section(f"{suite.name}: {exp.name}")
        runs[exp.name] = run_experiment(cfg, folder, feedback, host, data)
    table = suite_table(suite, runs)
    (folder / "suite.json").write_text(json.dumps({
        "suite": suite.name, "description": suite.description, "base": base.to_json(),
        "runs": {k: r.name for k, r in runs.items()}, "table": table,
        "seconds": time.perf_counter() - t0,
    }, indent=1) + "\n")
    return folder
