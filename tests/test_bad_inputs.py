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


def run(*args: str) -> list[str]:
    """``btk run`` of data that is not there, into ``{tmp}/runs``, with ``args``."""
    return ["run", "--data", MISSING, *args, "--out", "{tmp}/runs"]


# (what, command line, the one line's pattern); {tmp}: the test's folder, which holds only "afile"
# and must hold nothing else afterwards; {run}: a finished run made without training
REFUSALS = [
    ("18 long name on run", run("--name", "n" * 300),
     r"--name: a name of 300 bytes is too long: at most 100"),
    ("18 long name on evaluate", ["evaluate", "{run}", "--data", MISSING, "--name", "n" * 300, "--out", "{tmp}/ev"],
     r"--name: a name of 300 bytes is too long"),
    ("18 line break in a name", run("--name", "ab\ncd"),
     r"--name: 'ab\\ncd' must be a plain name \(no '/', '\\', control character"),
    ("19 --sr is a file", ["predict", "{run}", "--data", MISSING, "--sr", "{tmp}/afile", "--out", "{tmp}/p"],
     r"^Error: --sr .*afile: cannot write there: not a folder$"),
    ("20 limit_train=1", run("--set", "limit_train=1"),
     r"--set limit_train=1: limit_train: 1 image cannot be split into training and validation images"),
    ("21 learning rate nan", run("--set", "learning_rate=nan"),
     r"--set learning_rate=nan: recipe.learning_rate: 'nan' is not a finite number"),
    ("21 infinite scale", run("--set", "scale=inf"),
     r"recipe.scale: 'inf' is not a finite number"),
    ("23 empty --labels", run("--labels", "{tmp}/labels.csv::"),
     r"--labels .*labels.csv: the columns must be path and label \(the file is empty\)"),
    ("23 --labels without rows", run("--labels", "{tmp}/labels.csv::path,label\n"),
     r"--labels .*labels.csv: no corrections in it \(a header and no rows\): leave out --labels"),
    ("31 --pairs in a missing folder", ["audit", "--data", MISSING, "--pairs", "{tmp}/nodir/pairs.csv"],
     r"--pairs .*nodir/pairs.csv: cannot write there: no folder .*nodir$"),
    ("32 --preview in a missing folder", ["degrade", "--data", MISSING, "--preview", "{tmp}/nodir/grid.png"],
     r"--preview .*nodir/grid.png: cannot write there: no folder"),
    ("32 --preview where no file can be made", ["degrade", "--data", MISSING, "--preview", "/proc/nope.png"],
     r"--preview /proc/nope.png: cannot write there \("),
    ("32 --preview of no image kind", ["degrade", "--data", MISSING, "--preview", "{tmp}/grid.txt"],
     r"--preview .*grid.txt: OpenCV writes no image of that kind: name a .png"),
    ("34 reader_options = 5", ["run", "--config", f"{{tmp}}/c.toml::data = '{MISSING}'\nreader_options = 5\n",
                               "--out", "{tmp}/runs"],
     r"c.toml: reader_options: 5 is not a table of options"),
    ("34 fold 7/5 before the data", run("--set", "fold=7/5"),
     r"--set fold=7/5: fold: K must be between 1 and N"),
    ("34 devices before the data", run("--devices", "banana"),
     r"--devices: devices: write auto, a count \(2\) or device indices"),
    ("34 several devices on TensorFlow before the data", run("--devices", "2"),
     r"--devices 2: training on several devices needs the JAX backend"),
    ("34 split_seed before the data", run("--set", "split_seed=-1"),
     r"--set split_seed=-1: split_seed: '-1' must be at least 0"),
]


def _argv(args: list[str], tmp: Path, run_dir: Path) -> tuple[list[str], list[str]]:
    """The command line with {tmp} and {run} filled in (``FILE::TEXT``: TEXT written to FILE
    first), and the names of the files so written."""
    out, written = [], []
    for arg in args:
        arg = arg.format(tmp=tmp, run=run_dir)
        if "::" in arg:
            arg, text = arg.split("::", 1)
            Path(arg).write_text(text)
            written.append(Path(arg).name)
        out.append(arg)
    return out, written


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
    argv, written = _argv(args, tmp_path, fake_run)
    line = one_line_refusal(argv)
    assert re.search(pattern, line), line
    assert "not found" not in line  # checked before the data is read
    assert sorted(p.name for p in tmp_path.iterdir() if p.name not in written) == ["afile"]
    assert sorted(fake_run.rglob("*")) == before


def test_an_integral_float_is_an_integer_and_a_fraction_is_not(tmp_path):
    import json

    from btk.config import convert

    (tmp_path / "c.toml").write_text('data = "D"\n[recipe]\nepochs = 30.0\n')
    result = CliRunner().invoke(cli, ["plan", "--config", str(tmp_path / "c.toml"), "--seeds", "7", "--write",
                                      str(tmp_path / "plan")])
    assert result.exit_code == 0, result.output
    (member,) = (tmp_path / "plan" / "members").glob("*.json")
    assert json.loads(member.read_text())["config"]["recipe"]["epochs"] == 30
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


@pytest.fixture(scope="module")
def real_run(tmp_path_factory) -> tuple[object, Path, Path]:
    """A one-epoch phantom run interrupted right after its epoch's checkpoint, then resumed (no
    more training): (the interrupted command's result, its kept ``.partial`` folder, the run)."""
    from btk import checkpoint

    runs = tmp_path_factory.mktemp("real") / "runs"
    save = checkpoint.Checkpoint.save

    def save_then_interrupt(self, model, state, best):
        save(self, model, state, best)
        raise KeyboardInterrupt

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(checkpoint.Checkpoint, "save", save_then_interrupt)
        stopped = CliRunner().invoke(cli, ["run", *PHANTOMS, "--out", str(runs)])
    (partial,) = runs.iterdir()
    resumed = CliRunner().invoke(cli, ["resume", str(partial), "--reporter", "none"])
    assert resumed.exit_code == 0, resumed.output
    (run,) = runs.iterdir()
    return stopped, partial, run


def test_an_interrupted_run_says_what_it_kept(real_run):
    stopped, partial, _ = real_run
    assert stopped.exit_code == 130
    assert f"interrupted: resume with btk resume {partial}" in " ".join(stopped.stdout.split())
    assert stopped.stderr.strip().splitlines()[-1] == (f"btk: interrupted; kept for btk resume: {partial}; nothing "
                                                       "else half-written was kept")


def test_resuming_a_finished_run_says_so(real_run):
    _, partial, run = real_run
    for given in (run, partial):
        assert one_line_refusal(["resume", str(given)]) == f"Error: {run} is a finished run: nothing to resume"
    assert not partial.exists()


def test_an_ensemble_of_a_run_and_its_copy_is_refused(real_run, tmp_path):
    import shutil

    run = real_run[2]
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    line = one_line_refusal(["ensemble", str(run), str(copy), "--out", str(tmp_path / "ens")])
    assert re.fullmatch(rf"Error: {copy} has the same model as {run} \(a copy: model.keras SHA-256 [0-9a-f]{{16}}\): "
                        r"an ensemble needs different runs", line), line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy"]


def test_a_truncated_model_is_damaged_not_missing(real_run, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(real_run[2], copy)
    size = (copy / "model.keras").stat().st_size
    with open(copy / "model.keras", "r+b") as fh:
        fh.truncate(size // 2)
    line = one_line_refusal(["predict", str(copy), "--data", str(_jpegs(tmp_path / "scans", cut=False))])
    assert line == (f"Error: {copy / 'model.keras'}: damaged: a .keras model is a zip archive and these "
                    f"{size // 2:,} bytes are not a complete one (truncated or overwritten?)")


def _jpegs(folder: Path, cut: bool = True) -> Path:
    """``whole.jpg`` and, with ``cut``, ``cut.jpg``: the same phantom JPEG cut at 60% of its bytes."""
    import cv2

    from btk.testing import sample_images

    folder.mkdir(parents=True)
    data = cv2.imencode(".jpg", sample_images(1, 64)[0])[1].tobytes()
    (folder / "whole.jpg").write_bytes(data)
    if cut:
        (folder / "cut.jpg").write_bytes(data[: len(data) * 6 // 10])
    return folder


def test_a_truncated_jpeg_is_counted_as_damaged_and_named(real_run, tmp_path):
    import json

    folder = _jpegs(tmp_path / "scans")
    result = CliRunner().invoke(cli, ["predict", str(real_run[2]), "--data", str(folder), "--out",
                                      str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    reason = f"damaged image {folder / 'cut.jpg'}: truncated JPEG: its "
    assert f"btk: skipped {folder / 'cut.jpg'}: {reason}" in result.stderr
    assert "btk: 1 input(s) could not be read" in result.stderr
    (written,) = (tmp_path / "out").iterdir()
    record = json.loads((written / "predict.json").read_text())
    assert record["rows"] == 1 and [s["source"] for s in record["skipped"]] == [str(folder / "cut.jpg")]
    assert record["skipped"][0]["reason"].startswith(reason)


@pytest.mark.parametrize("data", ["missing", "only-damaged"])
def test_a_failed_predict_json_prints_nothing_and_leaves_no_folder(real_run, tmp_path, data):
    """Nothing on standard output (not even ``[]``), and no --out or --sr folder left behind."""
    folder = tmp_path / "missing"
    if data == "only-damaged":
        folder = _jpegs(tmp_path / "scans", cut=False)
        (folder / "whole.jpg").write_bytes((folder / "whole.jpg").read_bytes()[:300])
    result = CliRunner().invoke(cli, ["predict", str(real_run[2]), "--data", str(folder), "--json", "--out",
                                      str(tmp_path / "deep" / "out"), "--sr", str(tmp_path / "sr")])
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr.strip().splitlines()[-1].startswith("Error: ")
    assert not (tmp_path / "deep").exists() and not (tmp_path / "sr").exists()


def test_a_failed_evaluation_leaves_no_evaluations_folder(real_run, tmp_path):
    (tmp_path / "empty").mkdir()
    line = one_line_refusal(["evaluate", str(real_run[2]), "--data", str(tmp_path / "empty")])
    assert line.startswith("Error: ") and "empty" in line
    assert not (real_run[2] / "evaluations").exists()


def test_a_written_plan_records_the_absolute_data_path(tmp_path, monkeypatch):
    import json

    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["plan", "--data", "data/three", "--labels", "fix.csv", "--seeds", "1-2",
                                      "--write", "plan"])
    assert result.exit_code == 0, result.output
    for member in sorted((tmp_path / "plan" / "members").glob("*.json")):
        config = json.loads(member.read_text())["config"]
        assert (config["data"], config["labels"]) == (str(tmp_path / "data" / "three"), str(tmp_path / "fix.csv"))


def _volumes(folder: Path) -> Path:
    """``a/four.nii.gz`` (3 volumes) and ``b/three.nii.gz``: small random NIfTI files."""
    import nibabel as nib
    import numpy as np

    rng = np.random.default_rng(0)
    for name, shape in (("a/four", (24, 24, 4, 3)), ("b/three", (24, 24, 4))):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        nib.save(nib.Nifti1Image(rng.integers(0, 255, shape).astype(np.int16), np.eye(4)), folder / f"{name}.nii.gz")
    return folder


NOTE = "a 4-D file: volume 0 of 3 read, the other 2 left out (-R volume=N reads another)"


def test_a_4d_volume_read_in_part_is_counted_and_named_by_predict(real_run, tmp_path):
    import json

    folder = _volumes(tmp_path / "scans")
    result = CliRunner().invoke(cli, ["predict", str(real_run[2]), "--data", str(folder), "--out",
                                      str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert f"btk: read in part: {folder / 'a' / 'four.nii.gz'}: {NOTE}" in result.stderr
    assert "btk: 1 input(s) read in part" in result.stderr
    (written,) = (tmp_path / "out").iterdir()
    record = json.loads((written / "predict.json").read_text())
    assert record["read_in_part"] == [{"source": str(folder / "a" / "four.nii.gz"), "left_out": NOTE}]
    # a volume the user chose is no note
    chosen = CliRunner().invoke(cli, ["predict", str(real_run[2]), "--data", str(folder), "-R", "volume=1"])
    assert chosen.exit_code == 0 and "read in part" not in chosen.output


def test_a_4d_volume_read_in_part_is_noted_in_a_dataset_and_its_cache(tmp_path):
    from btk.dataset import load_dataset, unread_records
    from btk.plugins import get_host
    from btk.types import ReadOptions

    folder = _volumes(tmp_path / "data")
    reader = get_host().readers.get("nifti")
    first, again = (load_dataset(reader, folder, ReadOptions(16, 1, {"slices": "all"})) for _ in range(2))
    assert first.notes == again.notes == [("a/four.nii.gz", NOTE)]  # the second read is the cache's
    assert unread_records(first.skipped, first.notes) == {
        "skipped": [], "read_in_part": [{"source": "a/four.nii.gz", "left_out": NOTE}]}


def test_a_split_of_few_groups_is_made_or_refused_in_one_line():
    """Fewer groups than a stratified split's folds: a plain grouped split; one group: one line."""
    import numpy as np

    from btk.errors import BtkError
    from btk.split import grouped_holdout

    labels = np.array([0] * 10 + [1] * 10)  # 10 of each class: 10 folds for a share of 0.1, but 7 groups
    groups = np.array([f"g{i // 3}" for i in range(20)])
    held = grouped_holdout(labels, groups, 0.1, 0)
    assert 0 < held.sum() < 20 and not set(groups[held]) & set(groups[~held])
    with pytest.raises(BtkError, match=r"^20 image\(s\) in 1 group\(s\) are too few to hold out a share of 0.1"):
        grouped_holdout(labels, np.array(["g"] * 20), 0.1, 0)


def test_an_interrupted_plan_names_the_checkpoints_its_members_kept(tmp_path, monkeypatch):
    """The members are other processes: what they kept for btk resume is named all the same."""
    import sys
    import time

    from btk import plan
    from btk.config import make_run_config
    from btk.interrupt import KEPT, interrupted_line

    kept = tmp_path / ".20261207-000000-m.partial"
    script = ("import pathlib, sys, time; p = pathlib.Path(sys.argv[1]) / 'checkpoint'; p.mkdir(parents=True); "
              "(p / 'state.json').write_text('{}'); time.sleep(60)")
    monkeypatch.setattr(plan, "member_command", lambda config_file, out_dir: [sys.executable, "-c", script, str(kept)])

    def interrupt_once_kept(member, proc):
        deadline = time.monotonic() + 60
        while not (kept / "checkpoint" / "state.json").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        raise KeyboardInterrupt

    KEPT.clear()
    with pytest.raises(KeyboardInterrupt):
        plan.run_parallel([plan.Member("m", "x", 1, make_run_config(data="D"))], tmp_path, 1,
                          on_start=interrupt_once_kept)
    assert interrupted_line() == f"btk: interrupted; kept for btk resume: {kept}; nothing else half-written was kept"
    KEPT.clear()
    assert interrupted_line() == "btk: interrupted; nothing half-written was kept"
