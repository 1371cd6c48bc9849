"""Plans of runs over seeds, run one after another or as parallel processes.

A plan is a suite's experiments (or one plain run) times a list of seeds: ``btk plan --suite
report --seeds 101-105 --jobs 2``. Each member is one run, named after its experiment and seed
(``multiclass-seed101``). With ``--jobs N`` above 1 the members run as separate ``btk run``
processes, at most N at a time, each from a configuration file written into the plan's folder
(``members/NAME.json``), its output captured to ``members/NAME.log``.

Each member process gets ``max(1, cpu_count // N)`` CPU threads (``OMP_NUM_THREADS``,
``TF_NUM_INTEROP_THREADS``, ``TF_NUM_INTRAOP_THREADS``) and, where accelerators are visible
(``CUDA_VISIBLE_DEVICES`` set, or GPUs listed by ``nvidia-smi -L``), member k gets device
``k % n_devices`` through ``CUDA_VISIBLE_DEVICES``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from btk.config import RunConfig
from btk.errors import BtkError
from btk.feedback import Feedback

THREAD_VARIABLES = ("OMP_NUM_THREADS", "TF_NUM_INTEROP_THREADS", "TF_NUM_INTRAOP_THREADS")
MULTIHOST_VARIABLES = ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID")

_SEED_ITEM = re.compile(r"^\s*(-?\d+)\s*(?:-\s*(-?\d+)\s*)?$")


def parse_seeds(text: str) -> tuple[int, ...]:
    """The seeds in ``text``: integers and inclusive ranges separated by commas, e.g.
    ``101-105``, ``101,103,107`` or ``101-103,110``. Order is kept; repeats are dropped.

    Raises:
        ValueError: a malformed item, a range that runs backwards, or no seed at all.
    """
    seeds: list[int] = []
    for item in str(text).split(","):
        match = _SEED_ITEM.match(item)
        if not match:
            raise ValueError(f"{item.strip()!r} is not a seed or a range FIRST-LAST (e.g. 101-105,110)")
        first = int(match.group(1))
        last = first if match.group(2) is None else int(match.group(2))
        if last < first:
            raise ValueError(f"the range {first}-{last} runs backwards (write {last}-{first})")
        seeds += [s for s in range(first, last + 1) if s not in seeds]
    if not seeds:
        raise ValueError("no seeds given")
    return tuple(seeds)


@dataclass(frozen=True)
class Member:
    """One run of a plan: its run name, the experiment it repeats, its seed and configuration."""

    name: str
    experiment: str
    seed: int | None
    config: RunConfig


def plan_members(base: RunConfig, experiments: Sequence[tuple[str, Mapping[str, Any]]],
                 seeds: Sequence[int] | None = None) -> list[Member]:
    """The members of a plan: every experiment (a name and the config fields it changes) for
    every seed, seed by seed. Without ``seeds`` each experiment runs once with ``base``'s seed
    and keeps its own name; with them a member's name carries its seed (``binary-seed102``)."""
    if not seeds:
        return [Member(name, name, None, base.with_changes(name=name, **changes)) for name, changes in experiments]
    return [Member(f"{name}-seed{seed}", name, seed, base.with_changes(name=f"{name}-seed{seed}", seed=seed, **changes))
            for seed in seeds for name, changes in experiments]


def cpu_threads(jobs: int, cpu_count: int | None = None) -> int:
    """CPU threads for each of ``jobs`` member processes: ``max(1, cpu_count // jobs)``."""
    cpus = cpu_count if cpu_count is not None else (os.cpu_count() or 1)
    return max(1, cpus // max(1, jobs))


def visible_devices(environ: Mapping[str, str] | None = None) -> list[str]:
    """The accelerators member processes may be spread over: the entries of
    ``CUDA_VISIBLE_DEVICES`` when it is set, else the GPUs ``nvidia-smi -L`` lists (by index),
    else none."""
    environ = os.environ if environ is None else environ
    given = environ.get("CUDA_VISIBLE_DEVICES")
    if given is not None:
        return [d.strip() for d in given.split(",") if d.strip() and d.strip() != "-1"]
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.SubprocessError):
        return []
    return [str(k) for k, line in enumerate(listing.stdout.splitlines()) if line.startswith("GPU ")]


def member_env(index: int, jobs: int, devices: Sequence[str], environ: Mapping[str, str] | None = None,
               cpu_count: int | None = None) -> dict[str, str]:
    """The environment of member ``index`` of a plan run ``jobs`` at a time: this process's,
    with the CPU thread share (:func:`cpu_threads`), device ``index % len(devices)`` when there
    are ``devices``, and this btk first on ``PYTHONPATH`` so the member runs the same code. A
    member is a run of its own: the multi-host variables (``JAX_COORDINATOR_ADDRESS``, ...) are
    left out, so it never tries to join another run's processes."""
    env = {k: v for k, v in (os.environ if environ is None else environ).items() if k not in MULTIHOST_VARIABLES}
    threads = str(cpu_threads(jobs, cpu_count))
    env.update(dict.fromkeys(THREAD_VARIABLES, threads))
    if devices:
        env["CUDA_VISIBLE_DEVICES"] = devices[index % len(devices)]
    here = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([here, *[p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]])
    return env


def member_command(config_file: Path, out_dir: Path) -> list[str]:
    """The command that runs one member: a plain ``btk run`` from its configuration file."""
    return [sys.executable, "-m", "btk", "run", "--config", str(config_file), "--out", str(out_dir)]


@dataclass
class MemberResult:
    """How a member ended: its exit status (negative: killed by that signal), its log file and,
    when it finished, the name of its run directory."""

    member: Member
    returncode: int | None
    log: Path | None
    run_name: str | None = None
    error: str = ""

    @property
    def ok(self) -> bool:
        """Whether the member finished and wrote its run directory."""
        return self.returncode == 0 and self.run_name is not None


def find_run_dir(folder: Path, name: str) -> str | None:
    """The finished run directory of run ``name`` in ``folder`` (``<stamp>-name`` or
    ``<stamp>-name-K``), or ``None``."""
    pattern = re.compile(rf"^\d{{8}}-\d{{6}}-{re.escape(name)}(-\d+)?$")
    found = sorted(p.name for p in folder.iterdir() if p.is_dir() and pattern.match(p.name))
    return found[-1] if found else None


def write_member_config(member: Member, folder: Path) -> Path:
    """Write ``members/NAME.json`` (a run directory's ``config.json`` format) and return its path."""
    import json

    path = folder / "members" / f"{member.name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"config": member.config.to_json()}, indent=1) + "\n")
    return path


def run_parallel(members: Sequence[Member], folder: Path, jobs: int, feedback: Feedback | None = None,
                 poll: float = 0.2, on_start: Callable[[Member, subprocess.Popen], None] | None = None
                 ) -> list[MemberResult]:
    """Run ``members`` as ``btk run`` processes, at most ``jobs`` at a time, each writing its run
    directory into ``folder`` and its output to ``folder/members/NAME.log``.

    A member that exits non-zero, is killed, or leaves no run directory is a failed member; the
    others go on. Interrupting the plan (Ctrl-C, or SIGTERM: :mod:`btk.interrupt`)
    stops the running members: each gets SIGTERM, so it removes what it had half-written, and is
    waited for. ``on_start`` is called with each member and its process as it starts.

    Returns:
        One :class:`MemberResult` per member, in the plan's order.
    """
    feedback = feedback or Feedback()
    devices = visible_devices()
    pending = list(enumerate(members))
    running: list[tuple[int, Member, subprocess.Popen, Any]] = []
    results: dict[int, MemberResult] = {}

    def start(index: int, member: Member) -> None:
        config_file = write_member_config(member, folder)
        log_path = folder / "members" / f"{member.name}.log"
        log = open(log_path, "w")  # noqa: SIM115 - closed when the member ends
        proc = subprocess.Popen(member_command(config_file, folder), stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=member_env(index, jobs, devices))
        feedback.info(f"started {member.name} (process {proc.pid})")
        running.append((index, member, proc, log))
        if on_start is not None:
            on_start(member, proc)

    try:
        while pending or running:
            while pending and len(running) < jobs:
                start(*pending.pop(0))
            time.sleep(poll)
            for entry in list(running):
                index, member, proc, log = entry
                code = proc.poll()
                if code is None:
                    continue
                log.close()
                running.remove(entry)
                result = MemberResult(member, code, Path(log.name),
                                      find_run_dir(folder, member.name) if code == 0 else None)
                results[index] = result
                feedback.info(f"{member.name}: " + ("done" if result.ok else f"FAILED (exit status {code})"))
    finally:
        for _index, _member, proc, log in running:  # interrupted: stop what still runs
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
            log.close()
        if running:  # what the stopped members kept for btk resume, for the line the interruption ends with
            from btk.checkpoint import PartialRun
            from btk.interrupt import KEPT

            KEPT.extend(p for p in sorted(folder.glob(".*.partial")) if PartialRun(p).checkpoint.exists)
    return [results[k] for k in range(len(members))]


def run_in_process(members: Sequence[Member], folder: Path, feedback: Feedback | None = None) -> list[MemberResult]:
    """Run ``members`` one after another in this process, reading the data once. A member
    that raises is a failed member (its error kept); the others go on."""
    from btk.pipeline import load_for_config, run_experiment
    from btk.plugins import get_host

    feedback = feedback or Feedback()
    host = get_host()
    data = load_for_config(members[0].config, host, feedback) if members else None
    results = []
    for member in members:
        feedback.section(f"plan: {member.name}")
        try:
            run = run_experiment(member.config, folder, feedback, host, data)
        except Exception as exc:  # one member's failure does not lose the others
            feedback.warn(f"{member.name} failed: {exc}")
            results.append(MemberResult(member, None, None, error=f"{type(exc).__name__}: {exc}"))
        else:
            results.append(MemberResult(member, 0, None, run.path.name))
    return results


def check_jobs(jobs: int) -> int:
    """``jobs`` when it is at least 1; raises :class:`BtkError` otherwise."""
    if jobs < 1:
        raise BtkError(f"--jobs must be at least 1, got {jobs}")
    return jobs
