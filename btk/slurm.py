"""Slurm batch scripts that btk writes instead of running the work itself.

``btk predict --write DIR --shards N`` writes a job array whose task K predicts the K-th share
of the inputs and a merge job that puts the shares together; ``btk plan --write DIR`` writes a
job array with one task per run of the plan. A script names everything by its absolute path and
runs btk with the Python interpreter that wrote it, so it works from any folder on any node
that sees the same files.
"""

from __future__ import annotations

import re
import shlex
import sys
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from btk.errors import BtkError

if TYPE_CHECKING:
    import click

TASK_ID = "$SLURM_ARRAY_TASK_ID"
"""The array task's index (1..N in btk's scripts), as the shell writes it."""

DEFAULT_CPUS = 2
"""CPUs per task unless ``--sbatch cpus-per-task=N`` says otherwise."""

_KEY = re.compile(r"^[a-z][a-z0-9-]*$")
_SET_BY_BTK = ("array",)
_UNSAFE = re.compile(r"[\s'\"\\]")


class Shell(str):
    """A piece of a command line written into the script as it is (a variable, a glob): not quoted."""


def btk_command(*args: str) -> list[str]:
    """``btk ARGS`` run by this Python interpreter (``python -m btk``): the installation that
    writes a script is the one its tasks run."""
    return [sys.executable or "python3", "-m", "btk", *args]


def shell_line(parts: Sequence[str]) -> str:
    """``parts`` as one shell command line: each quoted (:func:`shlex.quote`) except the
    :class:`Shell` pieces, which are written as they are."""
    return " ".join(part if isinstance(part, Shell) else shlex.quote(part) for part in parts)


def parse_sbatch_options(items: Sequence[str], what: str = "--sbatch") -> dict[str, str | None]:
    """``KEY=VALUE`` (or a bare ``KEY``, or either with the leading ``--``) items as
    ``{key: value}``, each becoming an ``#SBATCH --KEY=VALUE`` line, e.g. ``time=02:00:00``,
    ``gres=gpu:1``, ``partition=gpu``, ``exclusive``.

    Raises:
        BtkError: a key that is not a long sbatch option name, ``array`` (btk sets it), or a
            value with a space, quote or backslash (``#SBATCH`` lines cannot hold them safely).
    """
    options: dict[str, str | None] = {}
    for item in items:
        key, has_value, value = str(item).lstrip("-").partition("=")
        key = key.strip()
        if not _KEY.match(key):
            raise BtkError(f"{what} {item}: give OPTION=VALUE with sbatch's long option name, e.g. {what} "
                           "time=02:00:00")
        if key in _SET_BY_BTK:
            raise BtkError(f"{what} {item}: btk sets --{key} itself")
        if _UNSAFE.search(value):
            raise BtkError(f"{what} {item}: a value with spaces, quotes or backslashes cannot go on an #SBATCH line")
        options[key] = value if has_value else None
    return options


def _check_path(path: Path, what: str) -> None:
    if _UNSAFE.search(str(path)):
        raise BtkError(f"{what} {path}: Slurm's #SBATCH lines cannot hold a path with spaces, quotes or backslashes")


def batch_script(job_name: str, logs: Path, lines: Sequence[str], tasks: int | None = None,
                 options: Mapping[str, str | None] | None = None, comments: Sequence[str] = ()) -> str:
    """The text of a batch script: ``#SBATCH`` lines (the job's name; ``--array=1-TASKS`` when
    ``tasks`` is given; its output in ``logs``, ``%A_%a.out`` for an array task, ``%x-%j.out``
    otherwise; :data:`DEFAULT_CPUS` CPUs per task; then ``options``, which replace these), the
    thread counts of TensorFlow and OpenMP set to the task's CPUs, then ``lines``.

    Raises:
        BtkError: a ``logs`` path that cannot go on an ``#SBATCH`` line.
    """
    _check_path(logs, "logs folder")
    settings: dict[str, str | None] = {"job-name": job_name}
    if tasks is not None:
        settings["array"] = f"1-{tasks}"
    settings["output"] = str(logs / ("%A_%a.out" if tasks is not None else "%x-%j.out"))
    settings["cpus-per-task"] = str(DEFAULT_CPUS)
    settings.update(options or {})
    from btk.plan import THREAD_VARIABLES

    threads = " ".join(f"{name}=${{SLURM_CPUS_PER_TASK:-1}}" for name in THREAD_VARIABLES)
    text = ["#!/bin/bash", *(f"# {comment}" for comment in comments)]
    text += [f"#SBATCH --{key}" + ("" if value is None else f"={value}") for key, value in settings.items()]
    text += ["set -euo pipefail", f"export {threads}", *lines]
    return "\n".join(text) + "\n"


def write_script(path: Path, text: str, logs: Path) -> Path:
    """Write the batch script ``text`` to ``path`` (executable) and make ``logs``: Slurm does not
    make the folder of a job's output file, and a task without it fails without a word.

    Raises:
        BtkError: ``path`` exists already (a script that has been submitted is never replaced).
    """
    if path.exists():
        raise BtkError(f"{path} exists already: give a new folder")
    logs.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o755)
    return path


def command_arguments(ctx: click.Context, leave_out: Collection[str] = ()) -> list[str]:
    """The arguments that give ``ctx``'s command the values it was given: its arguments, then
    each option given (on the command line or from the environment; not those left at their
    defaults), except the parameters named in ``leave_out``. Paths (``click.Path``) are made
    absolute, URLs kept; a repeatable option is repeated, a boolean flag written as the switch
    it was given (``--tta`` or ``--no-tta``). The values are the ones the command received, so
    an option's callback must return what it was given."""
    import click

    arguments: list[str] = []
    options: list[str] = []
    for param in ctx.command.params:
        name = param.name
        if name is None or name in leave_out or name not in ctx.params:
            continue
        value = ctx.params[name]
        source = ctx.get_parameter_source(name)
        if isinstance(param, click.Argument):
            values = value if isinstance(value, (tuple, list)) else [value]
            arguments += [_text(param, v) for v in values if v is not None]
            continue
        if not isinstance(param, click.Option) or source in (None, click.core.ParameterSource.DEFAULT):
            continue
        switch = next((o for o in param.opts if o.startswith("--")), param.opts[0])
        if param.is_flag:
            if param.secondary_opts:
                options.append(switch if value else param.secondary_opts[0])
            elif value is True or (not isinstance(value, bool) and value is not None and value == param.flag_value):
                options.append(switch)
            continue
        for item in value if param.multiple else [value]:
            if item is None:
                continue
            items = item if isinstance(item, tuple) else (item,)
            options += [switch, *(_text(param, v) for v in items)]
    return arguments + options


def _text(param: click.Parameter, value: object) -> str:
    import click

    text = str(value)
    if isinstance(param.type, click.Path) and "://" not in text:
        return str(Path(text).absolute())
    return text


def predict_scripts(folder: Path, out: Path, shards: int, run_name: str, predict_args: Sequence[str],
                    options: Mapping[str, str | None] | None = None) -> tuple[Path, Path]:
    """Write ``folder/predict.sbatch``, a job array of ``shards`` tasks, task K running
    ``btk predict PREDICT_ARGS --shard K/SHARDS --out OUT/shares``, and ``folder/merge.sbatch``,
    ``btk merge`` of ``OUT/shares/*`` into ``OUT`` (submitted to run after the array:
    :func:`submit_predict`). Logs go to ``folder/logs``. ``predict_args``: the run and the
    options of ``btk predict`` without ``--shard``, ``--out`` or ``--json``, paths absolute.

    Returns:
        The two scripts.

    Raises:
        BtkError: ``folder`` holds a predict.sbatch or merge.sbatch already, ``OUT/shares``
            holds something already (a merge would take it too), fewer than 1 share, or a path
            an ``#SBATCH`` line cannot hold.
    """
    if shards < 1:
        raise BtkError(f"--shards {shards}: give at least 1")
    folder, out = Path(folder).absolute(), Path(out).absolute()
    _check_path(folder, "--write")
    shares = out / "shares"
    if shares.is_dir() and any(shares.iterdir()):
        raise BtkError(f"{shares} holds earlier shares already (a merge would take them too): give a new --out")
    for name in ("predict.sbatch", "merge.sbatch"):
        if (folder / name).exists():
            raise BtkError(f"{folder / name} exists already: give a new folder")
    logs = folder / "logs"
    job = f"btk-predict-{_job_name(run_name)}"
    task = btk_command("predict", *predict_args, "--shard", Shell(f'"{TASK_ID}"/{shards}'), "--out", str(shares))
    merge = btk_command("merge", Shell(f"{shlex.quote(str(shares))}/*"), "--out", str(out))
    predict_text = batch_script(job, logs, [shell_line(task)], tasks=shards, options=options, comments=(
        f"btk predict in {shards} share(s): task K predicts the K-th share into {shares};",
        f"then merge.sbatch puts them together in {out}. Submit both: {submit_predict(folder)}"))
    merge_options = {"cpus-per-task": "1", **{k: v for k, v in (options or {}).items() if k not in ("gres", "gpus")}}
    merge_text = batch_script(f"{job}-merge", logs, [shell_line(merge)], options=merge_options, comments=(
        f"btk merge: the {shards} share(s) of predict.sbatch as one table, once every task has succeeded",))
    return (write_script(folder / "predict.sbatch", predict_text, logs),
            write_script(folder / "merge.sbatch", merge_text, logs))


def submit_predict(folder: Path) -> str:
    """The shell line that submits ``folder``'s predict.sbatch and then its merge.sbatch, to start
    once every task of the array has succeeded (``--dependency=afterok``)."""
    folder = Path(folder).absolute()
    predict, merge = shlex.quote(str(folder / "predict.sbatch")), shlex.quote(str(folder / "merge.sbatch"))
    return f'jid=$(sbatch --parsable {predict}) && sbatch --dependency=afterok:"${{jid%%;*}}" {merge}'


def plan_script(folder: Path, files: Sequence[Path], out: Path,
                options: Mapping[str, str | None] | None = None) -> Path:
    """Write ``folder/plan.sbatch``: a job array with one task per file of ``files`` (a plan's
    members, :func:`btk.suite.write_plan`), task I running ``btk run --config FILE --out OUT``
    with the I-th file of the list written in the script (not a glob, whose order could change).
    Logs go to ``folder/logs``.

    Raises:
        BtkError: no files, ``folder`` holds a plan.sbatch already, or a path an ``#SBATCH`` line
            cannot hold.
    """
    if not files:
        raise BtkError("a plan without runs: nothing to write")
    folder, out = Path(folder).absolute(), Path(out).absolute()
    _check_path(folder, "--write")
    logs = folder / "logs"
    listing = ["members=(", *(f"  {shlex.quote(str(Path(f).absolute()))}" for f in files), ")"]
    task = btk_command("run", "--config", Shell(f'"${{members[{TASK_ID} - 1]}}"'), "--out", str(out))
    text = batch_script("btk-plan", logs, [*listing, shell_line(task)], tasks=len(files), options=options,
                        comments=(f"btk plan: {len(files)} run(s), task I trains the I-th of the list into {out};",
                                  f"then: {shell_line(btk_command('report', Shell(shlex.quote(str(out)) + '/*')))}"))
    return write_script(folder / "plan.sbatch", text, logs)


def _job_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)[:60] or "run"
