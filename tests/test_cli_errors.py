"""Bad input: one clear line and a non-zero exit, or a counted skip; never a half-written run."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from btk.cli import cli

FAST = ["--model", "small-cnn", "--image-size", "32", "--epochs", "1", "--channels", "1"]


def _run(args):
    result = CliRunner().invoke(cli, args)
    return result, [line for line in result.output.splitlines() if line.strip()]


def _assert_one_line_error(result, lines, *fragments):
    assert result.exit_code != 0
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
    result, lines = _run(["run", "--data", str(image_folder), "--out", str(tmp_path / "r2"), "--reporter", "json",
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
        (["--reader", "dicomm"], ["unknown reader 'dicomm'", "known: dicom, folder, nifti, synthetic"]),
        (["--model", "resnet"], ["unknown model 'resnet'", "seed-cnn, small-cnn"]),
        (["--degrade", "sharpen"], ["unknown degrader 'sharpen'", "known: bias, blur, contrast, ghosting, gibbs"]),
        (["--train-degrade", "blur:ksize=200"], ["'ksize' must be between 0 and 99, got 200"]),
        (["--degrade", "resolution:factor=abc"], ["'factor' must be float, got 'abc'"]),
        (["--degrade", "blur:ksize"], ["write KEY=VALUE"]),
        (["--preset", "quick"], ["unknown preset 'quick'", "btk, report, fast"]),
        (["--suite", "nope"], ["unknown suite 'nope'", "report"]),
        (["--reporter", "mlflow"], ["unknown reporter 'mlflow'", "html, json, terminal"]),
        (["-R", "per_class=-3"], ["'per_class' must be positive"]),
    ],
)
def test_bad_names_and_parameters(args, fragments, tmp_path):
    extra = ["--epochs", "1", "--image-size", "32", "-R", "per_class=2"] if "-R" not in args else ["--epochs", "1"]
    result, lines = _run(["run", *args, *extra, "--out", str(tmp_path)])
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
    _assert_one_line_error(result, lines, "run name", "plain name")
    assert not (tmp_path / "deep").exists() and not (tmp_path / "x").exists()  # nothing written anywhere


def test_resume_refuses_options_it_would_ignore(tmp_path):
    partial = tmp_path / ".20261128-000000-run.partial"
    result, lines = _run(["run", "--resume", str(partial), "--epochs", "3", "--seed", "7"])
    _assert_one_line_error(result, lines, "--resume", "--epochs", "--seed")
    result, lines = _run(["run", "--resume", str(partial), "--reporter", "json"])
    _assert_one_line_error(result, lines, "not an interrupted run")  # --reporter goes with --resume


def test_set_reaches_any_recipe_field_and_checks_it():
    from btk.config import make_run_config, parse_field

    config = make_run_config(data="DATA", settings={"warmup_epochs": 2, "class_weight": False,
                                                    "learning_rate": None})
    assert (config.recipe.warmup_epochs, config.recipe.class_weight, config.recipe.learning_rate) == (2, False, None)
    assert config.recipe.epochs == 30  # the fast preset's, untouched
    assert parse_field("augment_images", "off") is False and parse_field("scale", "1") == 1.0
    result, lines = _run(["run", "--set", "warmup=2", *FAST])
    _assert_one_line_error(result, lines, "unknown recipe field 'warmup'", "warmup_epochs")
    result, lines = _run(["run", "--set", "patience=soon", *FAST])
    _assert_one_line_error(result, lines, "patience", "soon")
    result, lines = _run(["run", "--set", "epochs=2", *FAST])
    _assert_one_line_error(result, lines, "epochs", "both")
