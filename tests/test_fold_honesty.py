"""Honest fold ensembles: no image is answered out of fold by a model that trained or selected its
epoch on it; the ensemble's temperature and sets are fitted on its own scores of a calibration part
that no member saw; runs that are not the K folds of one split are refused in one line."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from btk.cli import cli
from btk.folds import ENSEMBLE_ROLES, FOLD_ROLES
from btk.runs import load_run

TINY = ["--reader", "synthetic", "-R", "per_class=16", "-R", "test_per_class=3", "--model", "small-cnn",
        "--image-size", "32", "--epochs", "2", "--reporter", "none"]


def _subsets(run_dir: Path) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    with open(run_dir / "split.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            out.setdefault(row["subset"], set()).add(row["source"])
    return out


@pytest.fixture(scope="module")
def folds(tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("folds")
    result = CliRunner().invoke(cli, ["ensemble", "--folds", "3", *TINY, "--tta", "--out", str(out), "--name", "cv"])
    assert result.exit_code == 0, result.output
    return {p.name.split("-", 2)[-1]: p for p in out.iterdir()}


@pytest.mark.slow
def test_no_image_is_answered_out_of_fold_by_a_model_that_trained_or_selected_on_it(folds):
    assert sorted(folds) == ["cv-fold1", "cv-fold2", "cv-fold3", "cv-folds3"]
    parts = [_subsets(folds[f"cv-fold{k}"]) for k in (1, 2, 3)]
    pool = parts[0]["train"] | parts[0]["val"] | parts[0]["oof"]
    for k, mine in enumerate(parts, 1):
        assert json.loads((folds[f"cv-fold{k}"] / "config.json").read_text())["roles"] == FOLD_ROLES
        assert mine["val"] and mine["oof"] and mine["calibration"]  # a selection part of its own
        seen = mine["train"] | mine["val"]
        assert not mine["oof"] & seen and not mine["calibration"] & seen and not mine["oof"] & mine["calibration"]
        assert mine["train"] | mine["val"] | mine["oof"] == pool and mine["calibration"] == parts[0]["calibration"]
        own = load_run(folds[f"cv-fold{k}"]).conformal()  # its own temperature and sets: the calibration part
        assert own.origin == "calibration" and set(own.sources) == mine["calibration"]
    assert set().union(*(p["oof"] for p in parts)) == pool and sum(len(p["oof"]) for p in parts) == len(pool)
    ens = folds["cv-folds3"]
    rows = list(csv.DictReader((ens / "oof.csv").open()))
    assert {r["source"]: int(r["fold"]) for r in rows} == {s: k for k, p in enumerate(parts, 1) for s in p["oof"]}
    # the out-of-fold answers are each fold model's own probabilities
    run1 = load_run(folds["cv-fold1"])
    data = run1.dataset()
    position = {str(s): i for i, s in enumerate(data.sources)}
    mine = [r for r in rows if r["fold"] == "1"]
    with run1.scorer() as member:
        expected = member(data.images[[position[r["source"]] for r in mine]])
    got = np.array([[float(r[f"p_{c}"]) for c in run1.classes] for r in mine])
    assert np.allclose(got, expected, atol=1e-5)


@pytest.mark.slow
def test_the_ensemble_is_calibrated_on_its_own_scores_of_images_no_member_saw(folds):
    from btk.calibration import fit_temperature

    ens = load_run(folds["cv-folds3"])
    parts = _subsets(ens.path)
    assert json.loads((ens.path / "config.json").read_text())["roles"] == ENSEMBLE_ROLES
    calibration = parts["calibration"]
    for k in (1, 2, 3):
        member = _subsets(folds[f"cv-fold{k}"])
        assert not calibration & (member["train"] | member["val"])
    assert parts["train"] == set().union(*(_subsets(folds[f"cv-fold{k}"])["oof"] for k in (1, 2, 3)))
    assert sorted(ens.conformal().sources) == sorted(calibration)
    card = (ens.path / "MODEL_CARD.md").read_text()
    assert "fitted on the calibration part" in card and "none of them trained or selected on" in card
    # a refit of the temperature on the ensemble's own outputs (with its TTA) for those images gives the recorded one
    assert ens.tta
    images = ens.images("calibration")
    with ens.scorer(calibrated=False) as scorer:
        outputs = scorer.outputs(images.images)
    assert ens.trained_classes == ens.classes  # four classes, learned as they are: y is what the network learns
    assert abs(fit_temperature(outputs, images.y) - ens.temperature) < 1e-6
    with ens.scorer() as scorer:
        calibrated = scorer.probabilities(outputs)
        # the shift check's reference: the whole ensemble's features of the same calibration images
        reference = scorer.shift_reference
        assert reference is not None and len(reference.groups) == len(images.sources)
        here = scorer.features(images.images)
        assert reference.features.shape == here.shape  # the same rows, in whatever order they were kept
        assert np.allclose(np.sort(reference.features.sum(axis=1)), np.sort(here.sum(axis=1)), atol=1e-3)
    order = {s: i for i, s in enumerate(images.sources)}
    sets = ens.conformal()
    assert np.allclose(sets.probabilities, calibrated[[order[s] for s in sets.sources]], atol=1e-5)
    # a member's outputs are not the ensemble's: fitted on single folds, it would be another temperature
    with load_run(folds["cv-fold1"]).scorer(calibrated=False) as member:
        assert not np.allclose(member.outputs(images.images), outputs, atol=1e-4)


@pytest.mark.slow
def test_folds_of_two_seeds_are_refused_in_one_line(folds, tmp_path):
    other = CliRunner().invoke(cli, ["run", *TINY, "--tta", "--set", "fold=2/3", "--seed", "7", "--name", "b-fold2",
                                     "--out", str(tmp_path)])
    assert other.exit_code == 0, other.output
    b2 = next(tmp_path.iterdir())
    result = CliRunner().invoke(cli, ["ensemble", str(folds["cv-fold1"]), str(b2), str(folds["cv-fold3"]),
                                      "--out", str(tmp_path / "ens")])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert "is not a fold of" in result.output and "split seed 7 against 101" in result.output
    assert not (tmp_path / "ens").exists() or not list((tmp_path / "ens").iterdir())


@pytest.mark.slow
@pytest.mark.parametrize("change,message", [
    (lambda cfg, split: cfg["config"].update(duplicate_threshold=0.5), "near-copy threshold 0.5 against 0.95"),
    (lambda cfg, split: cfg["config"].update(labels="fixes.csv"), "label corrections fixes.csv against None"),
    (lambda cfg, split: next(r for r in split if r["subset"] == "calibration").update(subset="train"),
     "another calibration part"),
    (lambda cfg, split: next(r for r in split if r["subset"] == "oof").update(subset="train"),
     "the folds' held-out images do not cover the pool: 1 image(s) held out by no fold"),
    (lambda cfg, split: [r.update(subset="val") for r in split if r["subset"] == "oof"],
     "made by an older btk that selected its epoch on its held-out images"),
])
def test_a_fold_of_another_split_is_refused_in_one_line(folds, tmp_path, change, message):
    copy = tmp_path / "fold2"
    shutil.copytree(folds["cv-fold2"], copy)
    cfg = json.loads((copy / "config.json").read_text())
    with open(copy / "split.csv", newline="") as fh:
        split = list(csv.DictReader(fh))
    change(cfg, split)
    (copy / "config.json").write_text(json.dumps(cfg))
    with open(copy / "split.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(split[0]))
        writer.writeheader()
        writer.writerows(split)
    result = CliRunner().invoke(cli, ["ensemble", str(folds["cv-fold1"]), str(copy), str(folds["cv-fold3"]),
                                      "--out", str(tmp_path / "ens")])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1 and message in result.output, result.output


def test_the_parts_of_every_fold_are_disjoint_grouped_and_share_one_calibration_part():
    from btk.config import Setting, resolve_config
    from btk.pipeline import folds_for, label_data, load_for_config
    from btk.plugins import get_host

    config = resolve_config([Setting("reader", "synthetic", "t"), Setting("reader_options.per_class", "20", "t"),
                             Setting("reader_options.test_per_class", "2", "t"), Setting("image_size", "32", "t")])
    data = load_for_config(config, get_host())
    _, classes, y_fit, _ = label_data(config, data)
    parts = folds_for(config, data, y_fit, classes, 3)
    pool = set(range(len(data))) - set(parts[0]["test"].tolist())
    calibration = set(parts[0]["calibration"].tolist())
    assert 0 < len(calibration) < len(pool) / 5 and len(set(y_fit[list(calibration)])) == len(classes)  # stratified
    held: set[int] = set()
    for part in parts:
        sets = {k: set(v.tolist()) for k, v in part.items()}
        assert sets["calibration"] == calibration and sets["val"] and sets["train"]
        names = ["train", "val", "oof", "calibration", "test"]
        assert sum(len(sets[k]) for k in names) == len(set().union(*(sets[k] for k in names)))  # disjoint
        assert sets["train"] | sets["val"] | sets["oof"] | calibration == pool
        held |= sets["oof"]
    assert held == pool - calibration and sum(len(p["oof"]) for p in parts) == len(held)
    groups = data.groups
    for part in parts:  # no group on two sides
        sides = [set(groups[part[k]].tolist()) for k in ("train", "val", "oof", "calibration")]
        assert all(not a & b for i, a in enumerate(sides) for b in sides[i + 1:])
