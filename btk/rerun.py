"""``btk rerun``: a finished run made again from its record, and how far the two agree.

A plain run is trained again from its recorded configuration. An ensemble is made again as it
was made: each member trained again from its own record (its seed and its split), then the new
members combined. ``seed`` shifts every seed by the same amount, so a rerun with another seed
shows how much the figures move with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from btk.config import RunConfig
from btk.errors import BtkError
from btk.feedback import Feedback
from btk.plugins import PluginHost, get_host
from btk.run_files import check_writable
from btk.runs import Run, load_run


@dataclass
class Rerun:
    """A run made again (:func:`rerun`) and its agreement with the original
    (:func:`btk.compare.agreement`)."""

    original: Run
    run: Run
    agreement: list[dict[str, Any]]


def relocated(run: Run, seed_shift: int = 0) -> RunConfig:
    """``run``'s configuration with its data path as found from here (:attr:`btk.runs.Run.data_path`)
    and its seed moved by ``seed_shift``.

    Raises:
        BtkError: the run's data is not here.
    """
    config = run.config
    if config.data is not None:
        path = run.data_path
        if path is None:
            raise BtkError(f"the data of {run.name}, {config.data}, is not here (nor relative to the folder it was "
                           "made in)")
        config = config.with_changes(data=str(path))
    return config.with_changes(seed=config.seed + seed_shift) if seed_shift else config


def rerun(run_dir: Path | str, seed: int | None = None, out: Path | str | None = None,
          host: PluginHost | None = None, feedback: Feedback | None = None) -> Rerun:
    """Make the run at ``run_dir`` again under ``out`` [its parent folder], with ``seed`` [its
    own] (an ensemble's member seeds all move by the same amount), and compare the two.

    Raises:
        BtkError: an evaluation, an ensemble whose members are gone, data that is not here, an
            output folder that cannot be written.
    """
    from btk.compare import agreement
    from btk.pipeline import run_experiment

    host = host or get_host()
    feedback = feedback or Feedback()
    original = load_run(run_dir)
    if original.is_evaluation:
        raise BtkError(f"{original.path} is an evaluation: rerun the run it evaluated")
    shift = 0 if seed is None else seed - original.config.seed
    parent = check_writable(out if out is not None else original.path.parent)
    if original.ensemble is not None:
        from btk.ensemble import combine

        members = []
        for member in original.ensemble.members:
            try:
                members.append(load_run(member.path))
            except BtkError:
                raise BtkError(f"{original.name}: its member {member.run} is not at {member.path}; an ensemble is "
                               "made again from its members' records") from None
        configs = [relocated(m, shift) for m in members]
        feedback.info(f"making the ensemble's {len(configs)} members again, each from its own record")
        new_members = [run_experiment(c, parent, feedback, host) for c in configs]
        result = combine(new_members, parent, host, feedback, name=original.config.name, tta=original.tta)
    else:
        result = run_experiment(relocated(original, shift), parent, feedback, host)
    return Rerun(original, result, agreement(original, result))
