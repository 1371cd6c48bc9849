"""btk evaluate: a finished run scored on another labelled dataset, and btk report beside it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import SARTAJ  # the shared data, found as conftest.py finds it

from btk.cli import cli
from btk.runs import load_run

CLASSES = ("glioma_tumor", "meningioma_tumor", "no_tumor")
RENAMED = {"glioma_tumor": "glioma", "meningioma_tumor": "meningioma", "no_tumor": "notumor"}


@pytest.fixture(scope="module")
def trained(tmp_path_factory, request):
    """A two-epoch small-cnn run at 32 px on real SARTAJ images (Training 10 and Testing 6 per
    class, one Testing image a copy of a Training one), tested also under blur@2, and a
    renamed plain class-folder copy of its Testing images."""
    if not SARTAJ.exists():
        pytest.skip(f"dataset not found at {SARTAJ}")
    root = tmp_path_factory.mktemp("evaluate")
    data = root / "data"
    for split, n in (("Training", 10), ("Testing", 6)):
        for c in CLASSES:
            (data / split / c).mkdir(parents=True)
            for f in sorted((SARTAJ / split / c).glob("*.jpg"))[:n]:
                shutil.copy(f, data / split / c / f.name)
    leaked = sorted((data / "Training" / "no_tumor").glob("*.jpg"))[0]
    shutil.copy(leaked, data / "Testing" / "no_tumor" / "leaked.jpg")
    renamed = root / "other"
    for c in CLASSES:
        shutil.copytree(data / "Testing" / c, renamed / RENAMED[c])
    result = CliRunner().invoke(cli, ["run", "--data", str(data), "--model", "small-cnn", "--image-size", "32",
                                      "--epochs", "2", "--degrade", "blur@2", "--out", str(root / "runs"),
                                      "--reporter", "none"])
    assert result.exit_code == 0, result.output
    return next((root / "runs").iterdir()), data, renamed


def _metrics(path: Path) -> dict:
    return json.loads((path / "metrics.json").read_text())


def _evaluate(run_dir: Path, *args: str):
    before = set((run_dir / "evaluations").glob("*")) if (run_dir / "evaluations").exists() else set()
    result = CliRunner().invoke(cli, ["evaluate", str(run_dir), *args])
    after = set((run_dir / "evaluations").glob("*")) if (run_dir / "evaluations").exists() else set()
    return result, sorted(after - before)


@pytest.mark.slow
def test_evaluating_a_run_on_its_own_testing_split_reproduces_its_test_metrics(trained):
    run_dir, data, _ = trained
    result, made = _evaluate(run_dir, "--data", str(data), "--degrade", "blur@2")
    assert result.exit_code == 0, result.output
    (evaluation,) = made
    own, again = _metrics(run_dir), _metrics(evaluation)
    assert set(own["conditions"]) == {"clean", "blur@2"}
    assert again["conditions"] == own["conditions"]  # every metric, bit for bit
    assert own["leakage"]["test_with_copy_in_train"] == again["leakage"]["test_with_copy_in_train"] == 1
    assert again["leakage"]["conditions_without_copies"] == own["leakage"]["conditions_without_copies"]
    assert (evaluation / "predictions.csv").read_text() == (run_dir / "predictions.csv").read_text()
    config = json.loads((evaluation / "config.json").read_text())
    assert config["kind"] == "evaluation" and config["evaluation"]["split"] == "Testing"
    own_config = json.loads((run_dir / "config.json").read_text())
    assert config["calibration"] == own_config["calibration"]  # the run's temperature, copied
    assert config["probabilities"] == "calibrated"
    tested = [r for r in load_run(run_dir).split_rows() if r["subset"] == "test"]
    scored = load_run(evaluation).split_rows()  # the images the evaluation scored, as the run's test rows
    assert [(r["source"], r["label"], r["copy_in_train"]) for r in scored] == \
        [(r["source"], r["label"], r["copy_in_train"]) for r in tested]
    assert {r["subset"] for r in scored} == {"test"}
    assert "Testing" in evaluation.name and "1 of 19 test images have an exact or near copy" in result.output
    assert "McNemar (clean, 19 images)" in result.output and "only A right 0, only B right 0" in result.output

    report = CliRunner().invoke(cli, ["report", str(evaluation)], env={"COLUMNS": "200"})
    assert report.exit_code == 0, report.output
    assert f"{run_dir.name}: its own test images and 1 evaluation(s)" in report.output
    assert "95% CI" in report.output and "ECE" in report.output
    whole = CliRunner().invoke(cli, ["report", str(run_dir)])
    assert "its own test images and 1 evaluation(s)" in whole.output


@pytest.mark.slow
def test_a_dataset_with_other_class_names_needs_a_map(trained):
    run_dir, _, renamed = trained
    refused, made = _evaluate(run_dir, "--data", str(renamed), "--map", "glioma=glioma_tumor")
    assert refused.exit_code == 1 and made == []
    (line,) = refused.output.strip().splitlines()
    assert "other has glioma_tumor, meningioma, notumor" in line
    assert f"run {run_dir.name} has glioma_tumor, meningioma_tumor, no_tumor" in line
    assert "not in run" in line and "meningioma, notumor" in line

    maps = [arg for src, dst in RENAMED.items() for arg in ("--map", f"{dst}={src}")]
    result, made = _evaluate(run_dir, "--data", str(renamed), *maps, "--name", "renamed")
    assert result.exit_code == 0, result.output
    (evaluation,) = made
    own, again = _metrics(run_dir)["conditions"]["clean"], _metrics(evaluation)["conditions"]["clean"]
    assert again == own  # the same images under other names: the same answers
    config = json.loads((evaluation / "config.json").read_text())
    assert config["evaluation"]["split"] == "all" and config["evaluation"]["class_map"]["notumor"] == "no_tumor"
    assert "renamed" in evaluation.name

    wrong = CliRunner().invoke(cli, ["evaluate", str(run_dir), "--data", str(renamed), "--map", "tumour=no_tumor"])
    assert wrong.exit_code == 1 and "other does not have: tumour" in wrong.output
    split = CliRunner().invoke(cli, ["evaluate", str(run_dir), "--data", str(renamed), *maps, "--split", "Testing"])
    assert split.exit_code == 1 and "no images in split 'Testing'" in split.output


def test_evaluate_checks_its_inputs_before_reading(tmp_path, image_folder):
    not_a_run = CliRunner().invoke(cli, ["evaluate", str(tmp_path), "--data", str(image_folder)])
    assert not_a_run.exit_code == 1 and "is not a complete btk run" in not_a_run.output
    assert len(not_a_run.output.strip().splitlines()) == 1


def test_a_binary_run_reads_other_data_as_tumour_vs_none(tmp_path):
    from btk.classmap import map_labels
    from btk.config import make_run_config
    from btk.errors import BtkError
    from btk.evaluate import check_vocabulary
    from btk.runs import parse_record

    (tmp_path / "split.csv").write_text("source,label,group,subset,copy_in_train\n"
                                        "a.jpg,glioma_tumor,a,train,\nb.jpg,no_tumor,b,train,\nc.jpg,no_tumor,c,test,0\n")
    binary = make_run_config(task="binary", negative_class="no_tumor")
    config = {"classes": ["no_tumor", "tumor"], "config": binary.to_json()}
    run = parse_record(tmp_path, config, {}, {})
    labels = ["notumor", "glioma", "notumor", "pituitary"]
    with pytest.raises(BtkError, match=r"not in run .*: glioma, notumor, pituitary"):
        check_vocabulary(run, labels, {}, "other")
    mapping = {"notumor": "no_tumor", "glioma": "glioma_tumor", "pituitary": "tumor"}
    check_vocabulary(run, labels, mapping, "other")
    assert run.targets(map_labels(labels, mapping)).tolist() == [0, 1, 0, 1]
    # an evaluation with that class map reads the data's own labels the same way
    evaluation = parse_record(tmp_path / "evaluation", {**config, "kind": "evaluation",
                                                        "evaluation": {"run": str(tmp_path), "class_map": mapping}},
                              {}, {})
    assert evaluation.is_evaluation and evaluation.targets(labels).tolist() == [0, 1, 0, 1]
    with pytest.raises(BtkError, match=r"not in run .*: pituitary"):
        check_vocabulary(run, labels, {"notumor": "no_tumor", "glioma": "tumor"}, "other")
