"""Bad inputs: refused in one line and a non-zero exit, before the work where they are known before
it, with nothing written (no folder left behind); or, where the command goes on, the damaged or
ignored part counted and named in the output and in what it writes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import one_line_refusal

from btk.cli import cli

MISSING = "{tmp}/no-such-data"  # data that would be refused if it were read: a check before reading comes first
PHANTOMS = ["-R", "per_class=4", "-R", "test_per_class=2", "--model", "small-cnn", "--image-size", "32",
            "--epochs", "1", "--reporter", "none"]

# (what, command line, the one line's pattern); {tmp}: the test's folder, which holds only "afile"
# and must hold nothing else afterwards; {run}: a finished run made without training
REFUSALS = [
    ("18 long name on run", ["run", "--data", MISSING, "--name", "n" * 300, "--out", "{tmp}/runs"],
     r"--name: a name of 300 bytes is too long: at most 100"),
    ("18 long name on evaluate", ["evaluate", "{run}", "--data", MISSING, "--name", "n" * 300, "--out", "{tmp}/ev"],
     r"--name: a name of 300 bytes is too long"),
    ("18 line break in a name", ["run", "--data", MISSING, "--name", "ab\ncd", "--out", "{tmp}/runs"],
     r"--name: 'ab\\ncd' must be a plain name \(no '/', '\\', control character"),
    ("19 --sr is a file", ["predict", "{run}", "--data", MISSING, "--sr", "{tmp}/afile", "--out", "{tmp}/p"],
     r"^Error: --sr .*afile: cannot write there: not a folder$"),
    ("20 limit_train=1", ["run", "--data", MISSING, "--set", "limit_train=1", "--out", "{tmp}/runs"],
     r"--set limit_train=1: limit_train: 1 image cannot be split into training and validation images"),
    ("21 learning rate nan", ["run", "--data", MISSING, "--set", "learning_rate=nan", "--out", "{tmp}/runs"],
     r"--set learning_rate=nan: recipe.learning_rate: 'nan' is not a finite number"),
    ("21 infinite scale", ["run", "--data", MISSING, "--set", "scale=inf", "--out", "{tmp}/runs"],
     r"recipe.scale: 'inf' is not a finite number"),
    ("34 reader_options = 5", ["run", "--config", "{tmp}/c.toml::reader_options = 5", "--out", "{tmp}/runs"],
     r"c.toml: reader_options: 5 is not a table of options"),
    ("34 fold 7/5 before the data", ["run", "--data", MISSING, "--set", "fold=7/5", "--out", "{tmp}/runs"],
     r"--set fold=7/5: fold: K must be between 1 and N"),
    ("34 devices before the data", ["run", "--data", MISSING, "--devices", "banana", "--out", "{tmp}/runs"],
     r"--devices: devices: write auto, a count \(2\) or device indices"),
    ("34 several devices on TensorFlow before the data", ["run", "--data", MISSING, "--devices", "2", "--out",
                                                          "{tmp}/runs"],
     r"--devices 2: training on several devices needs the JAX backend"),
    ("34 split_seed before the data", ["run", "--data", MISSING, "--set", "split_seed=-1", "--out", "{tmp}/runs"],
     r"--set split_seed=-1: split_seed: '-1' must be at least 0"),
]


def _argv(args: list[str], tmp: Path, run: Path) -> list[str]:
    """The command line with {tmp} and {run} filled in; ``FILE::TEXT`` writes TEXT to FILE first."""
    out = []
    for arg in args:
        arg = arg.format(tmp=tmp, run=run)
        if "::" in arg:
            arg, text = arg.split("::", 1)
            Path(arg).write_text(f'data = "{tmp}/no-such-data"\n{text}\n')
        out.append(arg)
    return out


@pytest.fixture
def fake_run(tmp_path_factory) -> Path:
    """A finished run made without training (no model): enough for refusals made before it is used."""
    import numpy as np

    from btk.testing import make_run

    y = np.array([0, 1, 0, 1])
    return make_run(tmp_path_factory.mktemp("runs"), "r", y, np.eye(2)[y] * 0.8 + 0.1, ["a", "b"])


@pytest.mark.parametrize("args,pattern", [r[1:] for r in REFUSALS], ids=[r[0] for r in REFUSALS])
def test_a_bad_input_is_refused_in_one_line_before_the_work_and_nothing_is_written(tmp_path, fake_run, args,
                                                                                     pattern):
    (tmp_path / "afile").write_text("not a folder")
    before = sorted(fake_run.rglob("*"))
    line = one_line_refusal(_argv(args, tmp_path, fake_run))
    assert re.search(pattern, line), line
    assert "data not found" not in line  # checked before the data is read
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "c.toml") == ["afile"]
    assert sorted(fake_run.rglob("*")) == before


def test_an_integral_float_is_an_integer_and_a_fraction_is_not():
    from btk.config import convert

    assert convert("recipe.epochs", 30.0) == 30 and isinstance(convert("recipe.epochs", 30.0), int)
    assert convert("recipe.epochs", "30.0") == 30
    with pytest.raises(ValueError, match=r"30\.5 is not an integer"):
        convert("recipe.epochs", 30.5)


def test_a_training_that_diverges_stops_in_one_line_without_advising_resume(tmp_path):
    """A finite but absurd learning rate makes the loss nan: the run stops at that epoch, says so
    in one line, keeps no checkpoint (resuming would repeat it) and leaves no folder."""
    result = CliRunner().invoke(cli, ["run", *PHANTOMS, "--set", "learning_rate=1e30", "--out",
                                      str(tmp_path / "runs")])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert re.search(r"Error: training diverged: the (validation )?loss is nan after epoch 1 \(try a smaller "
                     r"learning rate; resuming would repeat it\)", result.output.strip().splitlines()[-1])
    assert "btk resume" not in result.output
    assert not (tmp_path / "runs").exists()


def test_a_diverged_training_keeps_no_checkpoint():
    """Even one saved after an earlier epoch: resuming from it would diverge again."""
    import tempfile

    from btk.checkpoint import PartialRun
    from btk.errors import BtkError, DivergedError

    for error, kept in ((DivergedError("training diverged"), False), (BtkError("the disk is full"), True)):
        with tempfile.TemporaryDirectory() as tmp:
            partial = PartialRun(Path(tmp) / "runs" / "r")
            partial.begin("r", {})
            (partial.folder / "checkpoint").mkdir()
            (partial.folder / "checkpoint" / "state.json").write_text("{}")
            warned: list[str] = []
            partial.stopped(error, warned.append)
            assert partial.folder.exists() == kept and bool(warned) == kept
            assert (Path(tmp) / "runs").exists() == kept  # the folder begin() made goes too
