"""``btk resume`` is the uninterrupted run: two uninterrupted runs give equal weights (so comparing
with them means something), and a run stopped by SIGTERM after an epoch and resumed ends with those
same weights. An error never deletes the checkpoint."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from btk.cli import cli

# small-cnn keeps its dropout (0.3): a resumed run that drew new dropout seeds would differ
TINY = ["-R", "per_class=8", "-R", "test_per_class=2", "--image-size", "32", "--epochs", "4", "--model",
        "small-cnn", "--set", "schedule=cosine", "--set", "restore_best=false", "--reporter", "none"]


def _run(out: Path, *extra: str) -> Path:
    result = CliRunner().invoke(cli, ["run", *TINY, *extra, "--out", str(out)])
    assert result.exit_code == 0, result.output
    (run,) = out.iterdir()
    return run


def _weights(run: Path) -> list[np.ndarray]:
    from btk.checkpoint import load_model_file

    return load_model_file(run / "model.keras").get_weights()


def _stop_after(monkeypatch: pytest.MonkeyPatch, epoch: int, stop) -> None:
    """Checkpoint.save saves, then calls ``stop()`` once the checkpoint holds ``epoch``."""
    from btk import checkpoint

    save = checkpoint.Checkpoint.save

    def save_then_stop(self, model, state, best):
        save(self, model, state, best)
        if state["epoch"] == epoch:
            stop()

    monkeypatch.setattr(checkpoint.Checkpoint, "save", save_then_stop)


@pytest.mark.slow
def test_a_run_stopped_by_sigterm_and_resumed_ends_with_the_uninterrupted_runs_weights(tmp_path, monkeypatch):
    from btk.determinism import resume_promise
    from btk.interrupt import terminate_raises

    whole = _run(tmp_path / "a")
    again = _run(tmp_path / "b")
    for x, y in zip(_weights(whole), _weights(again), strict=True):
        np.testing.assert_array_equal(x, y)  # two uninterrupted runs: equal, so the comparison below means something

    before = signal.getsignal(signal.SIGTERM)
    terminate_raises()  # as btk's main() does: SIGTERM raises Terminated
    try:
        _stop_after(monkeypatch, 2, lambda: signal.raise_signal(signal.SIGTERM))
        stopped = CliRunner().invoke(cli, ["run", *TINY, "--out", str(tmp_path / "c")])
    finally:
        signal.signal(signal.SIGTERM, before)
    assert stopped.exit_code == 143 and "resume with btk resume" in " ".join(stopped.output.split())
    (partial,) = (tmp_path / "c").iterdir()
    assert json.loads((partial / "checkpoint" / "state.json").read_text())["epoch"] == 2
    monkeypatch.undo()

    resumed = CliRunner().invoke(cli, ["resume", str(partial), "--reporter", "none"])
    assert resumed.exit_code == 0, resumed.output
    (done,) = (tmp_path / "c").iterdir()
    for x, y in zip(_weights(whole), _weights(done), strict=True):
        np.testing.assert_array_equal(x, y)
    history, whole_history = (json.loads((r / "history.json").read_text()) for r in (done, whole))
    assert history.pop("resumed_after_epoch") == [2]
    assert history["loss"] == whole_history["loss"] and history["val_accuracy"] == whole_history["val_accuracy"]
    card = (done / "MODEL_CARD.md").read_text()
    assert f"resumed (`btk resume`) after epoch 2, on tensorflow: {resume_promise('tensorflow')}" in card
    assert "resumed" not in (whole / "MODEL_CARD.md").read_text()


@pytest.mark.slow
def test_an_error_during_training_keeps_the_checkpoint(tmp_path, monkeypatch):
    from btk.errors import BtkError

    def fail():
        raise BtkError("the disk is full")

    _stop_after(monkeypatch, 1, fail)
    args = ["run", *TINY[:-6], "--epochs", "2", "--reporter", "none", "--out", str(tmp_path)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1 and "Error: the disk is full" in result.output
    assert "stopped by an error: resume with btk resume" in " ".join(result.output.split())
    (partial,) = tmp_path.iterdir()
    assert json.loads((partial / "checkpoint" / "state.json").read_text())["epoch"] == 1
    monkeypatch.undo()
    resumed = CliRunner().invoke(cli, ["resume", str(partial), "--reporter", "none"])
    assert resumed.exit_code == 0, resumed.output
    (done,) = tmp_path.iterdir()
    assert len(json.loads((done / "history.json").read_text())["loss"]) == 2


def test_a_stop_before_the_first_checkpoint_leaves_nothing(tmp_path):
    from btk.checkpoint import PartialRun

    partial = PartialRun(tmp_path / "run-1")
    assert partial.folder == tmp_path / ".run-1.partial"
    partial.begin("run-1", {})
    warned: list[str] = []
    partial.stopped(RuntimeError("boom"), warned.append)  # no checkpoint yet: nothing to resume
    assert not partial.folder.exists() and not warned


def test_resume_help_says_what_each_backend_promises():
    from btk.determinism import PROMISES, UNCHECKED

    text = " ".join(CliRunner().invoke(cli, ["resume", "--help"], terminal_width=2000).output.split())
    for promise in (*PROMISES.values(), UNCHECKED):
        assert " ".join(promise.split()) in text
