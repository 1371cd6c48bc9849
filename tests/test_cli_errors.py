"""Bad input: one clear line and a non-zero exit, or a counted skip; never a half-written run."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from btk.cli import cli

FAST = ["--model", "small-cnn", "--image-size", "32", "--epochs", "1", "--set", "channels=1"]


def _run(args):
    result = CliRunner().invoke(cli, args)
    return result, [line for line in result.output.splitlines() if line.strip()]


def _assert_one_line_error(result, lines, *fragments, exit_code=1):
    assert result.exit_code == exit_code, result.output
    errors = [line for line in lines if line.startswith("Error:")]
    assert len(errors) == 1, result.output
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    assert "Traceback" not in result.output


def test_missing_data_folder(tmp_path):
    result, lines = _run(["run", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "runs"), *FAST])
    _assert_one_line_error(result, lines, "data folder not found", "nope")
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_empty_data_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    result, lines = _run(["run", "--data", str(tmp_path / "empty"), *FAST])
    _assert_one_line_error(result, lines, "is empty")


def test_class_folder_without_images(image_folder):
    (image_folder / "d").mkdir()
    (image_folder / "d" / "notes.txt").write_text("not an image")
    result, lines = _run(["run", "--data", str(image_folder), *FAST])
    _assert_one_line_error(result, lines, "class folder has no images", "/d")


@pytest.mark.slow
def test_unreadable_image_is_skipped_and_counted_or_fatal_with_strict(image_folder, tmp_path):
    (image_folder / "a" / "broken.png").write_bytes(b"this is not a png")
    strict, lines = _run(["run", "--data", str(image_folder), "--strict", "--out", str(tmp_path / "r1"), *FAST])
    _assert_one_line_error(strict, lines, "unreadable input a/broken.png", "--strict")
    result, lines = _run(["run", "--data", str(image_folder), "--out", str(tmp_path / "r2"), "--reporter", "none",
                          *FAST])
    assert result.exit_code == 0, result.output
    assert "skipped 1 unreadable input(s)" in result.output
    import json

    run_dir = next((tmp_path / "r2").iterdir())
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["skipped"][0]["source"] == "a/broken.png"
    assert sum(metrics["counts"].values()) == 12  # every readable image is somewhere


@pytest.mark.parametrize(
    "args,fragments",
    [
        (["run", "--reader", "dicomm"],
         ["unknown reader 'dicomm'", "known: dicom, dicomweb, folder, nifti, synthetic"]),
        (["run", "--model", "resnet"], ["unknown model 'resnet'", "seed-cnn, small-cnn"]),
        (["run", "--degrade", "sharpen"],
         ["unknown degrader 'sharpen'", "known: bias, blur, contrast, ghosting, gibbs"]),
        (["run", "--train-degrade", "blur:ksize=200"], ["'ksize' must be between 0 and 99, got 200"]),
        (["run", "--degrade", "resolution:factor=abc"], ["'factor' must be float, got 'abc'"]),
        (["run", "--degrade", "blur:ksize"], ["write KEY=VALUE"]),
        (["run", "--preset", "quick"], ["Error: --preset: preset: 'quick' is not one of", "fast, btk, report, demo"]),
        (["plan", "--suite", "nope"], ["unknown suite 'nope'", "report"]),
        (["run", "--reporter", "mlflow"], ["unknown reporter 'mlflow'", "(known: html, terminal)"]),
        (["run", "-R", "per_class=-3"], ["'per_class' must be positive"]),
        # bad flag and --set values: the schema's one line, SOURCE: FIELD: problem
        (["run", "--epochs", "0"], ["Error: --epochs: recipe.epochs: '0' must be at least 1"]),
        (["run", "--image-size", "abc"], ["Error: --image-size: recipe.image_size: 'abc' is not an integer"]),
        (["run", "--task", "tri"], ["Error: --task: task: 'tri' is not one of multiclass, binary"]),
        (["run", "--set", "schedule=cosnie"],
         ["Error: --set schedule=cosnie: recipe.schedule: 'cosnie' is not one of constant, cosine"]),
        (["plan", "--seeds", "1-2", "--epochs", "0"], ["Error: --epochs: recipe.epochs: '0' must be at least 1"]),
    ],
)
def test_bad_names_and_parameters(args, fragments, tmp_path):
    given = set(args)
    extra = [arg for flag, value in (("--epochs", "1"), ("--image-size", "32"), ("-R", "per_class=2"))
             if flag not in given for arg in (flag, value)]
    out = ["--write", str(tmp_path / "plan")] if args[0] == "plan" else ["--out", str(tmp_path)]
    result, lines = _run([*args, *extra, *out])
    _assert_one_line_error(result, lines, *fragments)
    assert list(Path(tmp_path).glob("*")) == []  # nothing written


def test_image_too_small_for_seed_cnn(image_folder):
    result, lines = _run(["run", "--data", str(image_folder), "--image-size", "32", "--model", "seed-cnn"])
    _assert_one_line_error(result, lines, "needs an image size of at least 84")


def test_report_skips_bad_directories(tmp_path):
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "config.json").write_text("{}")
    result = CliRunner().invoke(cli, ["report", str(tmp_path / "half"), str(tmp_path / "missing")])
    assert result.exit_code != 0
    assert "is not a complete btk run" in result.output
    assert "no complete run to report" in result.output


@pytest.mark.parametrize("name", ["../../x", "a/b", "..", ".hidden", "a\\b"])
def test_a_run_name_is_one_plain_path_component(tmp_path, name):
    out = tmp_path / "deep" / "runs"
    result, lines = _run(["run", "--out", str(out), "--name", name, *FAST])
    _assert_one_line_error(result, lines, f"Error: --name: {name!r} must be a plain name")
    assert not (tmp_path / "deep").exists() and not (tmp_path / "x").exists()  # nothing written anywhere


def test_resume_refuses_options_it_would_ignore(tmp_path):
    partial = tmp_path / ".20261128-000000-run.partial"
    for option in (["--epochs", "3"], ["--seed", "7"], ["--set", "epochs=3"]):  # resume has no configuration
        result, lines = _run(["resume", str(partial), *option])
        _assert_one_line_error(result, lines, f"No such option '{option[0]}'", exit_code=2)
    result, lines = _run(["resume", str(partial), "--reporter", "none"])
    _assert_one_line_error(result, lines, "not an interrupted run")  # --reporter goes with resume


def test_set_reaches_any_recipe_field_and_checks_it():
    from btk.config import Setting, canonical_key, convert, make_run_config, resolve_config

    config = make_run_config(data="DATA", recipe={"warmup_epochs": 2, "class_weight": False, "learning_rate": None})
    assert (config.recipe.warmup_epochs, config.recipe.class_weight, config.recipe.learning_rate) == (2, False, None)
    assert config.recipe.epochs == 30  # the fast preset's, untouched
    assert convert(canonical_key("augment_images"), "off") is False and convert(canonical_key("scale"), "1") == 1.0
    result, lines = _run(["run", "--set", "warmup=2", *FAST])
    _assert_one_line_error(result, lines, "Error: --set warmup=2: unknown field 'warmup'", "warmup_epochs")
    result, lines = _run(["run", "--set", "patience=soon", *FAST])
    _assert_one_line_error(result, lines, "Error: --set patience=soon: recipe.patience: 'soon' is not an integer")
    # --set overrides a flag (no "given both" error), whatever order the settings come in:
    # preset < --config file < flags < --set
    settings = [Setting("epochs", "2", "--set", "set"), Setting("recipe.epochs", "1", "--epochs", "flag"),
                Setting("epochs", 5, "c.toml", "file"), Setting("preset", "btk", "--preset", "flag")]
    assert resolve_config(settings).recipe.epochs == 2
    assert resolve_config(settings[1:]).recipe.epochs == 1
    assert resolve_config(settings[2:]).recipe.epochs == 5
    assert resolve_config(settings[3:]).recipe.epochs == 60  # the btk preset's
