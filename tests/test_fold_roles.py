"""A fold ensemble with a calibration part (btk.folds) through the commands that ask for roles:
btk calibrate without --data refits on that part, scored by the whole ensemble; btk adapt and
btk robustness --subset validation refuse in one line (its selection images trained it); btk
rerun trains each fold again and combines them again into the same predictions; an evaluation
records its roles; a fold run's own held-out images did not train it."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import one_line_refusal

from btk.cli import cli
from btk.folds import ENSEMBLE_ROLES
from btk.runs import load_run

TINY = ["--reader", "synthetic", "-R", "per_class=16", "-R", "test_per_class=3", "--model", "small-cnn",
        "--image-size", "32", "--epochs", "1", "--reporter", "none"]


def _subset(run_dir: Path, name: str) -> list[str]:
    with open(run_dir / "split.csv", newline="") as fh:
        return [r["source"] for r in csv.DictReader(fh) if r["subset"] == name]


@pytest.fixture(scope="module")
def folds(tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("fold-roles")
    result = CliRunner().invoke(cli, ["ensemble", "--folds", "2", *TINY, "--out", str(out), "--name", "cv"])
    assert result.exit_code == 0, result.output
    return {p.name.split("-", 2)[-1]: p for p in out.iterdir()}


@pytest.mark.slow
def test_calibrate_without_data_refits_a_fold_ensemble_on_its_calibration_part(folds, tmp_path):
    ens = load_run(folds["cv-folds2"])
    assert dict(ens.roles) == ENSEMBLE_ROLES and not ens.trained_on("calibration") and ens.trained_on("train")
    result = CliRunner().invoke(cli, ["calibrate", str(ens.path), "--coverage", "0.8", "--name", "again",
                                      "--out", str(tmp_path), "--reporter", "none"])
    assert result.exit_code == 0, result.output
    again = load_run(next(tmp_path.iterdir()))
    part = _subset(ens.path, "calibration")
    sets = again.conformal()
    # exactly the calibration part, no member's training or selection image, scored by the ensemble
    assert sorted(sets.sources) == sorted(part) and sets.origin == "calibration"
    assert not set(part) & set(_subset(folds["cv-fold1"], "train") + _subset(folds["cv-fold1"], "val"))
    assert again.recalibration["on"] == "the run's calibration part (no member trained or selected on it)"
    assert again.recalibration["sample"]["images"] == len(part)
    # the same predictor on the same images as combine_folds fitted it: the same temperature and sets
    assert abs(again.temperature - ens.temperature) < 1e-9
    order = {s: i for i, s in enumerate(ens.conformal().sources)}
    assert np.allclose(sets.probabilities, ens.conformal().probabilities[[order[s] for s in sets.sources]],
                       atol=1e-6)
    assert dict(again.roles) == ENSEMBLE_ROLES and again.split_rows() == ens.split_rows()


@pytest.mark.slow
def test_adapt_and_robustness_on_selection_images_refuse_a_fold_ensemble_in_one_line(folds, tmp_path):
    ens = folds["cv-folds2"]
    (tmp_path / "site").mkdir()
    line = one_line_refusal(["adapt", str(ens), "--data", str(tmp_path / "site"), "--out", str(tmp_path / "out")])
    assert "btk adapt (its accuracy check before and after) needs selection" in line
    assert "out-of-fold images (each trained K-1 of its fold models), so they trained it" in line
    assert line.endswith("adapt a run that held out its own validation images (btk run, or one fold run of the "
                         "ensemble)")
    line = one_line_refusal(["robustness", str(ens), "--subset", "validation"])
    assert "btk robustness --subset validation needs selection" in line and "so they trained it" in line
    assert not (ens / "robustness-validation.json").exists()
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_a_fold_runs_own_held_out_parts_did_not_train_it(folds):
    from btk.pipeline import prepared_from_run

    run = load_run(folds["cv-fold1"])
    assert run.trained_on("train") and not run.trained_on("oof") and not run.trained_on("calibration")
    assert run.describe_subset("oof") == "out-of-fold images"
    prep = prepared_from_run(run)
    names = {k: sorted(str(prep.data.sources[i]) for i in v) for k, v in prep.split.items()}
    for subset in ("train", "val", "calibration", "test"):
        assert names[subset] == sorted(_subset(run.path, subset)), subset  # oof is not among what it saw


@pytest.mark.slow
def test_an_evaluation_records_its_roles(folds, tmp_path):
    import cv2

    rng = np.random.default_rng(0)
    classes = load_run(folds["cv-folds2"]).classes
    for c in classes:
        (tmp_path / "site" / c).mkdir(parents=True)
        for i in range(2):
            cv2.imwrite(str(tmp_path / "site" / c / f"{i}.png"), rng.integers(0, 255, (40, 40), dtype=np.uint8))
    result = CliRunner().invoke(cli, ["evaluate", str(folds["cv-folds2"]), "--data", str(tmp_path / "site"),
                                      "--split", "all", "--out", str(tmp_path / "ev"), "--reporter", "none"])
    assert result.exit_code == 0, result.output
    done = next((tmp_path / "ev").iterdir())
    assert json.loads((done / "config.json").read_text())["roles"] == {"test": "test"}
    assert dict(load_run(done).roles) == {"test": "test"}


@pytest.mark.slow
def test_rerun_of_a_fold_ensemble_gives_the_same_predictions(folds, tmp_path):
    from btk.rerun import rerun

    original = load_run(folds["cv-folds2"])
    done = rerun(original.path, out=tmp_path)
    assert done.how == "2 fold runs trained again and combined again as a fold ensemble"
    assert dict(done.run.roles) == ENSEMBLE_ROLES
    for subset in ("train", "calibration", "test"):
        assert _subset(done.run.path, subset) == _subset(original.path, subset)
    assert (done.run.path / "oof.csv").read_text() == (original.path / "oof.csv").read_text()
    assert done.run.temperature == original.temperature
    assert done.run.conformal().sources == original.conformal().sources
    assert done.agreement
    for row in done.agreement:  # every test image, the same answer and the same probabilities
        assert row["n"] == original.metrics["conditions"][row["condition"]]["n"]
        assert row["same_class"] == row["n"] and row["max_probability_difference"] == 0.0, row


@pytest.mark.slow
def test_fold_runs_averaged_with_tta_are_calibrated_on_their_calibration_part(folds, tmp_path):
    result = CliRunner().invoke(cli, ["ensemble", str(folds["cv-fold1"]), str(folds["cv-fold2"]), "--tta",
                                      "--out", str(tmp_path), "--name", "avg", "--reporter", "none"])
    assert result.exit_code == 0, result.output
    assert "different validation images" not in result.output
    avg = load_run(next(tmp_path.iterdir()))
    part = _subset(folds["cv-fold1"], "calibration")
    assert avg.tta and avg.ensemble is not None and avg.calibration is not None
    assert dict(avg.roles) == {"training": "train", "calibration": "calibration", "test": "test"}
    assert sorted(avg.conformal().sources) == sorted(part) and avg.conformal().origin == "calibration"
    # what trained or selected a fold is its training data; the calibration part is not
    pool = {s for k in ("train", "val", "oof") for s in _subset(folds["cv-fold1"], k)}
    assert set(_subset(avg.path, "train")) == pool and not set(part) & pool
