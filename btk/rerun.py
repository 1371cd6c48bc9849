"""``btk rerun``: a finished run made again from its record, and how far the two agree.

A run is made again as it was made, from its roles (:mod:`btk.record`):

- a plain run is trained again from its recorded configuration;
- a seed ensemble: each member trained again from its own record (its seed and its split), then
  the new members averaged (:func:`btk.ensemble.combine`);
- a fold ensemble: each fold run trained again from its own record, then combined again as a
  fold ensemble (:func:`btk.ensemble.combine_folds`: out-of-fold calibration, label issues);
- a calibrated run (``btk calibrate``): calibrated again on the site sample it recorded (the same
  scans, not a new draw), or on its origin's own calibration images;
- an adapted run (``btk adapt``): adapted again on the images it recorded, with the same strength,
  depth and tolerance.

A calibrated or adapted run changes no weight of its origin's network, so its rerun **reuses the
origin run** (the run it was calibrated or adapted from) where that is still at its recorded
path, and refuses in one line where it is not. With another seed the origin is made again first
(with that seed), then calibrated or adapted again. ``seed`` shifts every seed by the same
amount, so a rerun with another seed shows how much the figures move with it.
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
    (:func:`btk.compare.agreement`); ``how``: what was made again, in words."""

    original: Run
    run: Run
    agreement: list[dict[str, Any]]
    how: str = ""


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


def origin_of(run: Run) -> Run:
    """The run ``run`` was calibrated or adapted from, at its recorded path.

    Raises:
        BtkError: it is no longer there.
    """
    info = run.recalibration or run.adaptation or {}
    path = info.get("from_path")
    try:
        return load_run(str(path))
    except BtkError:
        raise BtkError(f"{run.name}: the run it was {'calibrated' if run.recalibration else 'adapted'} from, "
                       f"{info.get('from_run')}, is not at {path}; a rerun reuses it (its network)") from None


def kind_of(run: Run) -> str:
    """How ``run`` was made: ``calibrated``, ``adapted``, ``fold ensemble``, ``ensemble`` or ``run``
    (the outermost step: a calibrated adapted run is ``calibrated``)."""
    if run.recalibration:
        return "calibrated"
    if run.adaptation:
        return "adapted"
    if run.ensemble is not None:
        return "fold ensemble" if "out_of_fold" in run.roles else "ensemble"
    return "run"


def make_again(run: Run, parent: Path, seed_shift: int, host: PluginHost, feedback: Feedback) -> tuple[Run, str]:
    """``run`` made again under ``parent`` as it was made (see the module), its seeds moved by
    ``seed_shift``; with what was done, in words.

    Raises:
        BtkError: an evaluation, an origin or members that are gone, data that is not here.
    """
    from btk.pipeline import run_experiment

    if run.is_evaluation:
        raise BtkError(f"{run.path} is an evaluation: rerun the run it evaluated")
    kind = kind_of(run)
    if kind in ("calibrated", "adapted"):
        from btk.adapt import adapt_again
        from btk.recalibrate import calibrate_again

        origin = origin_of(run)
        how = f"its origin {origin.name} reused"
        if seed_shift:
            origin, made = make_again(origin, parent, seed_shift, host, feedback)
            how = f"its origin made again ({made})"
        if kind == "calibrated":
            site = run.role_sources("site_sample")
            feedback.info(f"calibrating {origin.name} again on " + (f"the {len(site)} scans of its recorded site "
                                                                     "sample" if site else "its calibration images"))
            again = calibrate_again(run, origin, parent, host, feedback)
            on = f"its recorded site sample ({len(site)} scans)" if site else "its origin's calibration images"
            return again, f"calibrated again on {on}, {how}"
        feedback.info(f"adapting {origin.name} again on the images {run.name} recorded")
        return adapt_again(run, origin, parent, host, feedback), f"adapted again on its recorded images, {how}"
    if run.ensemble is not None:
        from btk.ensemble import combine, combine_folds

        members = []
        for member in run.ensemble.members:
            try:
                members.append(load_run(member.path))
            except BtkError:
                raise BtkError(f"{run.name}: its member {member.run} is not at {member.path}; an ensemble is "
                               "made again from its members' records") from None
        configs = [relocated(m, seed_shift) for m in members]
        feedback.info(f"making the {kind}'s {len(configs)} members again, each from its own record")
        new_members = [run_experiment(c, parent, feedback, host) for c in configs]
        if kind == "fold ensemble":
            return (combine_folds(new_members, parent, host, feedback, name=run.config.name),
                    f"{len(configs)} fold runs trained again and combined again as a fold ensemble")
        return (combine(new_members, parent, host, feedback, name=run.config.name, tta=run.tta),
                f"{len(configs)} members trained again and averaged")
    return run_experiment(relocated(run, seed_shift), parent, feedback, host), "trained again from its configuration"


def rerun(run_dir: Path | str, seed: int | None = None, out: Path | str | None = None,
          host: PluginHost | None = None, feedback: Feedback | None = None) -> Rerun:
    """Make the run at ``run_dir`` again under ``out`` [its parent folder], with ``seed`` [its
    own] (an ensemble's member seeds, a calibrated or adapted run's origin's, all move by the
    same amount), and compare the two.

    Raises:
        BtkError: an evaluation, an ensemble whose members are gone, a calibrated or adapted run
            whose origin is gone, data that is not here, an output folder that cannot be written.
    """
    from btk.compare import agreement

    host = host or get_host()
    feedback = feedback or Feedback()
    original = load_run(run_dir)
    if original.is_evaluation:
        raise BtkError(f"{original.path} is an evaluation: rerun the run it evaluated")
    shift = 0 if seed is None else seed - original.config.seed
    parent = check_writable(out if out is not None else original.path.parent)
    result, how = make_again(original, parent, shift, host, feedback)
    return Rerun(original, result, agreement(original, result), how)
