"""Every image of a run has a role (training, selection, calibration, test, out of fold, site
sample): recorded or inferred, asked for by the commands that fit or check something, and used by
btk rerun to make a calibrated run, a fold ensemble and an adapted run again."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import one_line_refusal

from btk.cli import cli
from btk.errors import BtkError
from btk.record import FOLD_ROLES, PLAIN_ROLES, SITE_ROLES, infer_roles
from btk.runs import load_run
from btk.testing import make_run

CLASSES = ["a", "b"]
TINY = ["--model", "small-cnn", "--image-size", "32", "--epochs", "1", "--reporter", "none"]


@pytest.mark.parametrize("config,roles", [
    ({}, PLAIN_ROLES),
    ({"kind": "evaluation"}, {"test": "test"}),
    ({"ensemble": {"members": [], "shared_validation": True}}, PLAIN_ROLES),
    ({"ensemble": {"members": [], "shared_validation": False}, "cv": {"folds": 5}}, FOLD_ROLES),
    ({"recalibration": {"data": "site/"}}, SITE_ROLES),
    ({"recalibration": {"on": "the run's validation images"}}, PLAIN_ROLES),
    # an old fold ensemble calibrated on its own images: its calibration is its members' out-of-fold images
    ({"recalibration": {"on": "the run's validation images"}, "ensemble": {"shared_validation": False}}, FOLD_ROLES),
    ({"adaptation": {"data": ["x"]}, "ensemble": {"shared_validation": False}}, FOLD_ROLES),
    ({"adaptation": {"data": ["x"]}}, PLAIN_ROLES),
    ({"roles": {"out_of_fold": "val", "calibration": "cal", "test": "test"}, "cv": {"folds": 5}},
     {"out_of_fold": "val", "calibration": "cal", "test": "test"}),
])
def test_roles_are_read_or_inferred_from_what_made_the_run(config, roles):
    assert infer_roles(config) == roles


def test_an_unknown_role_is_one_line():
    with pytest.raises(BtkError, match="'tuning' -> 'val' is not a role"):
        infer_roles({"roles": {"tuning": "val"}})


def fold_ensemble(tmp_path: Path, roles: dict[str, str] | None = None) -> Path:
    """A finished run recorded as an old fold ensemble (``cv``, members that held out different
    images): 6 out-of-fold validation images, 4 test images; no network or data is read."""
    y = np.array([0, 1, 0, 1])
    path = make_run(tmp_path, "folds2", y, np.eye(2)[y] * 0.8 + 0.1, CLASSES)
    config = json.loads((path / "config.json").read_text())
    config["ensemble"] = {"members": [], "shared_validation": False}
    config["cv"] = {"folds": 2}
    if roles:
        config["roles"] = roles
    (path / "config.json").write_text(json.dumps(config))
    with open(path / "split.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["source", "label", "group", "subset", "copy_in_train"])
        writer.writerows([[f"oof{i}.png", CLASSES[i % 2], f"g{i}", "val", ""] for i in range(6)])
        writer.writerows([[f"img{i:05d}.png", CLASSES[t], f"t{i}", "test", "0"] for i, t in enumerate(y)])
    return path


def test_the_typed_record_answers_by_role(tmp_path):
    run = load_run(fold_ensemble(tmp_path))
    assert dict(run.roles) == FOLD_ROLES
    assert run.role_subset("out_of_fold") == "val" and run.role_subset("selection") is None
    assert run.roles_of("val") == ("calibration", "out_of_fold") and run.trained_on("val")
    assert run.role_sources("out_of_fold") == [f"oof{i}.png" for i in range(6)] and run.role_sources("training") == []
    assert run.require_role("test", "scoring", "nothing") == "test"
    with pytest.raises(TypeError):
        run.roles["selection"] = "val"  # type: ignore[index]  # the mapping is frozen
    with pytest.raises(BtkError, match="its calibration images are its calibration .* and out-of-fold images "
                                       r"\(each trained K-1 of its fold models\), so they trained it: do this"):
        run.require_role("calibration", "fitting", "do this", untrained=True)
    # a fold ensemble that recorded a calibration part no member trained on offers it
    other = load_run(fold_ensemble(tmp_path / "new", {"out_of_fold": "val", "calibration": "test", "test": "test"}))
    assert other.require_role("calibration", "fitting", "do this", untrained=True) == "test"


def test_calibrate_without_data_refuses_a_fold_ensemble_in_one_line(tmp_path):
    path = fold_ensemble(tmp_path)
    line = one_line_refusal(["calibrate", str(path), "--out", str(tmp_path / "out")])
    assert "btk calibrate without --data needs calibration (temperature, prediction sets) images of folds2" in line
    assert "out-of-fold images (each trained K-1 of its fold models), so they trained it" in line
    assert line.endswith(f"`btk calibrate {path} --data LABELLED`")
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_calibrate_on_a_site_keeps_no_class_on_a_fold_ensembles_own_images(tmp_path):
    import cv2

    rng = np.random.default_rng(0)
    for c, n in (("a", 12), ("b", 2)):  # b: 1 scan in a half sample, too few for 80%: kept from the run
        (tmp_path / "site" / c).mkdir(parents=True)
        for i in range(n):
            cv2.imwrite(str(tmp_path / "site" / c / f"{i}.png"), rng.integers(0, 255, (40, 40), dtype=np.uint8))
    path = fold_ensemble(tmp_path)
    line = one_line_refusal(["calibrate", str(path), "--data", str(tmp_path / "site"), "--split", "all",
                             "--coverage", "0.8", "--thin-classes", "keep", "--out", str(tmp_path / "out")])
    assert line.startswith("Error: keeping the run's own calibration for b needs calibration")
    assert "out-of-fold images (each trained K-1 of its fold models), so they trained it" in line
    assert line.endswith("label at least 5 scans of each class in the sample")


def test_the_record_is_split_and_still_read_through_btk_runs():
    import btk.record
    import btk.run_data
    import btk.run_files
    import btk.runs

    for name in ("Run", "load_run", "parse_record", "Calibration", "Images", "Member", "Ensemble", "locate"):
        assert hasattr(btk.runs, name)
    assert btk.runs.Images is btk.record.Images and issubclass(btk.runs.Run, btk.run_data.RunData)
    assert issubclass(btk.runs.Run, btk.run_files.RunFiles)
    for module in (btk.record, btk.run_data, btk.run_files, btk.runs):
        assert len(Path(module.__file__).read_text().splitlines()) < 500


def test_adapt_refuses_a_fold_ensemble_in_one_line(tmp_path):
    path = fold_ensemble(tmp_path)
    (tmp_path / "site").mkdir()
    line = one_line_refusal(["adapt", str(path), "--data", str(tmp_path / "site")])
    assert "btk adapt (its accuracy check before and after) needs selection (early stopping, best epoch) images" in line
    assert "it has no selection (early stopping, best epoch) images (its val images are calibration" in line
    assert "out-of-fold images (each trained K-1 of its fold models))" in line
    assert line.endswith("adapt a run that held out its own validation images (btk run, or one fold run of the "
                         "ensemble)")


def test_robustness_on_validation_images_refuses_a_fold_ensemble_in_one_line(tmp_path):
    path = fold_ensemble(tmp_path)
    line = one_line_refusal(["robustness", str(path), "--subset", "validation"])
    assert "btk robustness --subset validation needs selection (early stopping, best epoch) images of folds2" in line
    assert line.endswith("sweep its test images (--subset test), or a run that held out its own validation images")
    assert not (path / "robustness-validation.json").exists()


def test_rerun_of_a_calibrated_run_whose_origin_is_gone_is_one_line(tmp_path):
    y = np.array([0, 1])
    path = make_run(tmp_path, "site", y, np.eye(2)[y], CLASSES)
    metrics = json.loads((path / "metrics.json").read_text())
    metrics["recalibration"] = {"from_run": "gone", "from_path": str(tmp_path / "gone"), "data": "site/"}
    (path / "metrics.json").write_text(json.dumps(metrics))
    line = one_line_refusal(["rerun", str(path), "--out", str(tmp_path / "again")])
    assert line == (f"Error: site: the run it was calibrated from, gone, is not at {tmp_path / 'gone'}; a rerun "
                    "reuses it (its network)")


# --- btk rerun of a calibrated run, an adapted run and a fold ensemble ------------------------------


def identical(done) -> None:
    """The rerun scored the same test images and gave each the same probabilities."""
    assert done.agreement, "no test condition in common"
    for row in done.agreement:
        assert row["n"] == done.original.metrics["conditions"][row["condition"]]["n"]
        assert row["same_class"] == row["n"] and row["max_probability_difference"] == 0.0, row


@pytest.fixture(scope="module")
def base_run(tmp_path_factory, sartaj_small):
    out = tmp_path_factory.mktemp("roles-runs")
    result = CliRunner().invoke(cli, ["run", "--data", str(sartaj_small), *TINY, "--set", "val_fraction=0.3",
                                      "--name", "base", "--out", str(out)])
    assert result.exit_code == 0, result.output
    return next(out.iterdir())


@pytest.mark.slow
def test_a_plain_run_records_its_roles_and_reads_its_images_by_role(base_run):
    assert json.loads((base_run / "config.json").read_text())["roles"] == PLAIN_ROLES
    run = load_run(base_run)
    selection = run.images(role="selection")
    assert list(selection.sources) == run.subset_sources("val") == run.role_sources("calibration")
    assert len(selection.images) == len(selection.y) > 0 and not run.trained_on("val") and run.trained_on("train")


@pytest.mark.slow
def test_rerun_calibrates_a_calibrated_run_again_on_its_recorded_sample(base_run, sartaj_small, tmp_path):
    from btk.rerun import rerun

    made = CliRunner().invoke(cli, ["calibrate", str(base_run), "--data", str(sartaj_small), "--split", "all",
                                    "--coverage", "0.8", "--thin-classes", "keep", "--name", "site", "--out",
                                    str(tmp_path / "cal"), "--reporter", "none"])
    assert made.exit_code == 0, made.output
    calibrated = load_run(next((tmp_path / "cal").iterdir()))
    assert dict(calibrated.roles) == SITE_ROLES and len(calibrated.role_sources("site_sample")) == 22
    done = rerun(calibrated.path, out=tmp_path / "again")
    assert done.how == f"calibrated again on its recorded site sample (22 scans), its origin {base_run.name} reused"
    assert done.run.role_sources("site_sample") == calibrated.role_sources("site_sample")
    assert done.run.temperature == calibrated.temperature
    assert [p.name for p in (tmp_path / "again").iterdir()] == [done.run.name]  # no network trained
    identical(done)
    # with another seed the origin is trained again first, then calibrated on the same sample
    other = rerun(calibrated.path, seed=calibrated.config.seed + 1, out=tmp_path / "seed")
    assert other.how == ("calibrated again on its recorded site sample (22 scans), its origin made again (trained "
                         "again from its configuration)")
    origin = load_run(other.run.recalibration["from_path"])
    assert origin.path.parent == tmp_path / "seed" and origin.config.seed == calibrated.config.seed + 1
    assert other.run.role_sources("site_sample") == calibrated.role_sources("site_sample")


@pytest.mark.slow
def test_rerun_adapts_an_adapted_run_again(base_run, sartaj_small, tmp_path):
    from btk.rerun import rerun

    made = CliRunner().invoke(cli, ["adapt", str(base_run), "--data", str(sartaj_small), "--name", "site",
                                    "--depth", "all", "--out", str(tmp_path / "ada"), "--reporter", "none"])
    assert made.exit_code == 0, made.output
    adapted = load_run(next((tmp_path / "ada").iterdir()))
    assert dict(adapted.roles) == PLAIN_ROLES and adapted.split_rows() == load_run(base_run).split_rows()
    done = rerun(adapted.path, out=tmp_path / "again")
    assert done.how.startswith("adapted again on its recorded images") and done.run.adaptation is not None
    assert done.run.adaptation["inputs_sha256"] == adapted.adaptation["inputs_sha256"]
    identical(done)


@pytest.mark.slow
def test_rerun_combines_a_fold_ensemble_again_as_one(sartaj_small, tmp_path):
    from btk.rerun import rerun

    made = CliRunner().invoke(cli, ["ensemble", "--folds", "2", "--data", str(sartaj_small), *TINY, "--out",
                                    str(tmp_path / "cv"), "--name", "cv"])
    assert made.exit_code == 0, made.output
    folds = load_run(next(p for p in (tmp_path / "cv").iterdir() if p.name.endswith("cv-folds2")))
    assert "out_of_fold" in folds.roles
    done = rerun(folds.path, out=tmp_path / "again")
    assert done.how == "2 fold runs trained again and combined again as a fold ensemble"
    assert done.run.metrics["cv"]["accuracy_per_fold"] == folds.metrics["cv"]["accuracy_per_fold"]
    assert (done.run.path / "oof.csv").read_text() == (folds.path / "oof.csv").read_text()
    assert done.run.temperature == folds.temperature
    identical(done)
