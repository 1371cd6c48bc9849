"""``btk resume``: an interrupted run continued from its last checkpoint, with its own
configuration, as the uninterrupted run would have gone on (:func:`btk.training.train` restores
what that takes; :func:`btk.determinism.resume_promise` says what each backend then promises).

The run in progress lives in a hidden ``.<id>.partial`` folder (:class:`btk.checkpoint.PartialRun`)
that :func:`btk.pipeline.run_experiment` makes and keeps when it stops after an epoch, whatever
stopped it.
"""

from __future__ import annotations

from pathlib import Path

from btk.checkpoint import RESUME_FILE, PartialRun
from btk.config import RunConfig
from btk.errors import BtkError
from btk.feedback import Feedback
from btk.pipeline import run_experiment
from btk.plugins import PluginHost
from btk.runs import Run

__all__ = ["resume_config", "resume_run"]


def resume_config(partial: Path | str) -> tuple[RunConfig, str]:
    """The configuration and run id of the interrupted run in ``partial`` (its hidden
    ``.<id>.partial`` folder, or the run path it would have had).

    Raises:
        BtkError: the folder holds no interrupted run.
    """
    from btk.run_files import MARKER

    run = PartialRun(partial)
    if not run.folder.is_dir():
        finished = run.folder.parent / run.folder.name[1:-len(".partial")]
        if (finished / MARKER).is_file():
            raise BtkError(f"{finished} is a finished run: nothing to resume")
        raise BtkError(f"{partial}: not an interrupted run: no folder {run.folder} (btk run names the hidden "
                       ".ID.partial folder it keeps when it stops)")
    try:
        saved = run.read()
    except (OSError, ValueError) as exc:
        raise BtkError(f"{run.folder / RESUME_FILE}: unreadable ({exc})") from None
    if saved is None:
        raise BtkError(f"{run.folder}: not an interrupted run (no {RESUME_FILE}); nothing to resume")
    try:
        return RunConfig.from_json(saved["config"]), saved["id"]
    except (KeyError, TypeError) as exc:
        raise BtkError(f"{run.folder / RESUME_FILE}: unreadable run configuration ({exc})") from None


def resume_run(partial: Path | str, feedback: Feedback | None = None, host: PluginHost | None = None) -> Run:
    """Continue the interrupted run in ``partial`` (its hidden ``.<id>.partial`` folder, or the
    run path it would have had) from its last checkpoint, with its own configuration.

    Raises:
        BtkError: the folder holds no interrupted run.
    """
    config, run_id = resume_config(partial)
    return run_experiment(config, PartialRun(partial).folder.parent, feedback, host, run_id=run_id)
