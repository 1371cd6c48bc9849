"""Run directories written before the typed record still load, report and predict. The fixture
(``old_run``, ``old_run_data`` in conftest.py) is a real run and its evaluation written by btk at
commit ad61e95 (a one-epoch small-cnn on 48 SARTAJ images), its recorded paths made relative."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from btk.cli import cli
from btk.runs import load_run


def test_an_old_run_loads_into_the_typed_record(old_run):
    run = load_run(old_run)
    assert run.kind == "run" and not run.is_evaluation
    # the run-level "model" of old runs moved into the recipe; the preset name is kept
    assert run.config.model_name == run.recipe.model == "small-cnn" and run.recipe.name == "fast"
    assert run.config.data == "fixdata" and run.data_path is None  # not built here (old_run_data builds it)
    assert run.classes == ("glioma_tumor", "meningioma_tumor", "no_tumor", "pituitary_tumor")
    assert run.input_shape == (16, 16, 1) and run.recipe.crop == "head"
    assert run.calibration is not None and run.temperature == pytest.approx(0.452123457673083)
    assert not run.calibrated_predictions  # written before every answer was calibrated
    assert run.provenance is not None and run.provenance.commit == "ad61e954d7906a64b959dccb5ac46e452c372d33"
    assert run.condition_metrics("clean")["ece"] >= 0  # ECE from its predictions: old runs did not record it
    (evaluation,) = run.evaluations()
    assert evaluation.kind == "evaluation" and evaluation.evaluation is not None
    assert evaluation.evaluation.split == "all"
    # its run moved with it: found beside the evaluation, not at the absolute path it recorded
    assert evaluation.evaluated_run().path == old_run


def test_an_old_run_reports_and_predicts(old_run, tmp_path, sartaj):
    shown = CliRunner().invoke(cli, ["report", str(old_run)], env={"COLUMNS": "200"})
    assert shown.exit_code == 0, shown.output
    assert "its own test images and 1 evaluation(s)" in shown.output
    html = tmp_path / "r.html"
    assert CliRunner().invoke(cli, ["report", str(old_run), "--reporter", "none", "--html", str(html)]).exit_code == 0
    assert "eval-old-eval" in html.read_text()
    image = sorted((sartaj / "Testing" / "no_tumor").glob("*.jpg"))[0]
    result = CliRunner().invoke(cli, ["predict", str(old_run), "--data", str(image), "--json"])
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.stdout)
    assert set(row["probabilities"]) == set(load_run(old_run).classes)
    assert abs(sum(row["probabilities"].values()) - 1) < 1e-6


def test_an_old_evaluation_without_its_images_is_one_line(old_run, old_run_data):
    assert load_run(old_run).data_path == Path("fixdata")  # found from the current folder
    (evaluation,) = (old_run / "evaluations").iterdir()
    result = CliRunner().invoke(cli, ["robustness", str(evaluation)])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        f"Error: {evaluation}: no split.csv (an evaluation made before evaluations recorded their images): "
        "evaluate the run again"]
