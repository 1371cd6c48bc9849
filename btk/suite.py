"""Suites: named plans of runs. ``report`` is the report's four experiments.

A suite writes ``OUT/<id>-suite-<name>/``: one run directory per experiment and, last,
``suite.json`` with the comparison table.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from btk.config import RunConfig
from btk.errors import BtkError
from btk.feedback import Feedback
from btk.run_files import check_writable, new_run_id, unique_dir
from btk.runs import Run, load_run

if TYPE_CHECKING:
    import subprocess

    from btk.plan import Member


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


def plain_suite(base: RunConfig) -> Suite:
    """A one-experiment plan: ``base`` as it is (``btk plan --seeds`` without ``--suite``); its
    table has a row for each test condition the runs have."""
    name = base.name or base.task
    return Suite(name=name, description=f"one run ({name}) over seeds", experiments=(Experiment(name),), rows=())


def _rows(suite: Suite, runs: dict[str, Run]) -> tuple[Row, ...]:
    if suite.rows:
        return suite.rows
    conditions: list[str] = []
    for run in runs.values():
        conditions += [c for c in run.metrics["conditions"] if c not in conditions]
    exp = suite.experiments[0].name
    return tuple(Row(exp if c == "clean" else f"{exp}, test {c}", exp, c) for c in conditions)


def aggregate_table(table: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per row of a plan over seeds: the mean, lowest and highest of each metric (percent) over
    the seeds that finished, with the seeds and how many runs collapsed."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for entry in table:
        groups.setdefault(entry.get("row", entry["label"]), []).append(entry)
    out = []
    for label, entries in groups.items():
        values = {k: [e["measured"][k] for e in entries] for k in METRICS}
        out.append({
            "label": label, "condition": entries[0]["condition"],
            "seeds": [e.get("seed") for e in entries], "n": len(entries),
            "mean": {k: round(sum(v) / len(v), 2) for k, v in values.items()},
            "min": {k: min(v) for k, v in values.items()}, "max": {k: max(v) for k, v in values.items()},
            "collapsed": sum(1 for e in entries if e["collapsed"]), "published": entries[0]["published"],
        })
    return out


_SEED_FIELDS = ("seed", "split_seed", "name")


def _without_seed(run: Run) -> str:
    """What a run is apart from its seed and name: its configuration (recipe included) and kind."""
    config = {k: v for k, v in run.config.to_json().items() if k not in _SEED_FIELDS}
    return json.dumps([run.kind, config, run.ensemble is not None], sort_keys=True, default=str)


def _plain_name(run: Run) -> str:
    name = run.config.name or run.name
    suffix = f"-seed{run.config.seed}"
    return name[:-len(suffix)] if name.endswith(suffix) else name


def seed_summary(runs: list[Run]) -> dict[str, Any] | None:
    """Runs that are one experiment over several seeds (the same configuration, recipe and
    degradations; another seed and name), put together as a plan over seeds is: the per-run
    table and its :func:`aggregate_table`. Runs made separately count (a Slurm job array's, one
    ``btk run`` each); of several runs with one seed the first counts. None when no two runs
    differ only in their seed.

    Returns:
        A suite record (:func:`read_suite`'s keys ``suite``, ``description``, ``table``,
        ``seeds``, ``aggregate``).
    """
    groups: dict[str, list[Run]] = {}
    for run in runs:
        if not run.is_evaluation:
            groups.setdefault(_without_seed(run), []).append(run)
    table = []
    for group in groups.values():
        by_seed: dict[Any, Run] = {}
        for run in group:  # a seed run twice (btk rerun) counts once: its first run
            by_seed.setdefault(run.config.seed, run)
        if len(by_seed) < 2:
            continue
        label = _plain_name(next(iter(by_seed.values())))
        table += plan_table(Suite(label, "", (Experiment(label),), ()),
                            {f"{label}-seed{seed}": run for seed, run in by_seed.items()}, tuple(sorted(by_seed)))
    if not table:
        return None
    seeds = sorted({e["seed"] for e in table})
    return {"suite": "over seeds", "description": "runs that differ only in their seed: the mean and range over "
            "the seeds", "table": table, "seeds": seeds, "aggregate": aggregate_table(table)}


def plan_table(suite: Suite, runs: dict[str, Run], seeds: tuple[int, ...] | None) -> list[dict[str, Any]]:
    """The suite's table for runs keyed by member name: without seeds, :func:`suite_table`;
    with them, its rows for each seed in turn, each labelled with its seed and carrying
    ``row`` (the plain label) and ``seed``."""
    rows = _rows(suite, runs)
    shaped = Suite(suite.name, suite.description, suite.experiments, rows)
    if not seeds:
        return suite_table(shaped, runs)
    table = []
    for seed in seeds:
        by_experiment = {exp.name: runs[f"{exp.name}-seed{seed}"] for exp in suite.experiments
                         if f"{exp.name}-seed{seed}" in runs}
        for entry in suite_table(shaped, by_experiment):
            table.append({**entry, "label": f"{entry['label']} (seed {seed})", "row": entry["label"], "seed": seed})
    return table


def write_plan(name: str | None, base: RunConfig, folder: Path | str, seeds: tuple[int, ...] | None = None
               ) -> list[Path]:
    """Write the runs of suite ``name`` (``None``: ``base`` alone) for each of ``seeds`` as
    ``folder/members/NAME.json`` (a run directory's ``config.json`` format), without training:
    each is one ``btk run --config FILE``, for a job array or another scheduler, from any folder
    (a relative data or labels path is recorded as the absolute path). The plan is checked as
    :func:`run_suite` checks it.

    Returns:
        The files written, in plan order.

    Raises:
        BtkError: an unknown suite, model or degradation, ``--ensemble`` (an ensemble is one
            configuration of several runs), or a folder that already holds a plan.
    """
    from btk.plan import write_member_config

    existing = sorted((Path(folder) / "members").glob("*.json"))
    if existing:  # a job array runs every file there: another plan's would be run too
        raise BtkError(f"{Path(folder) / 'members'} already holds {len(existing)} run configuration(s) "
                       f"(e.g. {existing[0].name}): give a new folder")
    # the files run from any folder: a path typed relative to this one is recorded as the absolute path
    base = base.with_changes(**{key: str(Path(value).absolute()) for key in ("data", "labels")
                                if (value := getattr(base, key)) and "://" not in value})
    _, members = _checked_plan(name, base, seeds)
    return [write_member_config(member, Path(folder)) for member in members]


def _checked_plan(name: str | None, base: RunConfig, seeds: tuple[int, ...] | None) -> tuple[Suite, list[Member]]:
    """Suite ``name`` (``None``: ``base`` alone) and its members for ``seeds``
    (:func:`btk.plan.plan_members`), every degradation and the model checked before any run."""
    from btk.degraders import resolve_degradations
    from btk.plan import plan_members
    from btk.plugins import get_host

    suite = get_suite(name) if name is not None else plain_suite(base)
    host = get_host()
    members = plan_members(base, [(exp.name, exp.changes) for exp in suite.experiments], seeds)
    for member in members:
        resolve_degradations(host, member.config.train_degrade + member.config.test_degrade)
    for member in members:  # a model too big for the images fails every member: say so once, before any
        spec = host.models.get(member.config.model_name)
        if member.config.recipe.image_size < spec.min_image_size:
            raise BtkError(f"model '{spec.name}' needs an image size of at least {spec.min_image_size}, got "
                           f"{member.config.recipe.image_size}")
    return suite, members


def run_suite(name: str | None, base: RunConfig, out_dir: Path | str = "runs", feedback: Feedback | None = None,
              seeds: tuple[int, ...] | None = None, jobs: int = 1,
              on_start: Callable[[Member, subprocess.Popen], None] | None = None) -> Path:
    """Run every experiment of suite ``name`` (``None``: ``base`` alone, see :func:`plain_suite`)
    on ``base``, for each of ``seeds`` when given, and write the suite directory; its
    ``suite.json`` (:func:`read_suite`) holds the comparison table.

    With ``jobs`` 1 the runs go one after another in this process and the data are read once;
    above 1 they run as separate processes, at most ``jobs`` at a time (:mod:`btk.plan`).
    Runs that fail are listed under ``failed`` in ``suite.json``; the table holds the others.
    ``on_start`` is called with each member process as it starts (``jobs`` above 1).
    """
    from btk.plan import check_jobs, run_in_process, run_parallel

    feedback = feedback or Feedback()
    check_jobs(jobs)
    suite, members = _checked_plan(name, base, seeds)  # every plan checked before the first long run
    parent = check_writable(out_dir)
    folder = unique_dir(parent, new_run_id(f"suite-{suite.name}" if name is not None else f"seeds-{suite.name}"))
    (folder.parent / f".{folder.name}.partial").rename(folder)  # the name unique_dir claimed
    t0 = time.perf_counter()
    if jobs > 1:
        feedback.section(f"{suite.name}: {len(members)} runs, {jobs} at a time")
        results = run_parallel(members, folder, jobs, feedback, on_start=on_start)
    else:
        results = run_in_process(members, folder, feedback)
    runs: dict[str, Run] = {}
    failed = []
    for result in results:
        if result.ok:
            try:
                runs[result.member.name] = load_run(folder / str(result.run_name))
                continue
            except BtkError as exc:
                result.error = str(exc)
        failed.append({"member": result.member.name, "returncode": result.returncode,
                       "log": None if result.log is None else str(result.log.relative_to(folder)),
                       **({"error": result.error} if result.error else {})})
    table = plan_table(suite, runs, seeds)
    record: dict[str, Any] = {
        "suite": suite.name, "description": suite.description, "base": base.to_json(),
        "runs": {k: r.name for k, r in runs.items()}, "table": table,
    }
    if seeds:
        record.update(seeds=list(seeds), aggregate=aggregate_table(table))
    record.update(jobs=jobs, failed=failed, seconds=time.perf_counter() - t0)
    (folder / "suite.json").write_text(json.dumps(record, indent=1) + "\n")
    return folder
