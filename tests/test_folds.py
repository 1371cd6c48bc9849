"""Fold ensembles (btk ensemble --folds K): grouped, stratified folds of the training images,
out-of-fold probabilities, a calibration part no fold saw, and bad K in one line."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from click.testing import CliRunner

from btk.cli import cli
from btk.runs import load_run

pytestmark = pytest.mark.slow

TINY = ["--model", "small-cnn", "--image-size", "32", "--epochs", "1", "--reporter", "none"]


def test_a_fold_ensemble_holds_every_training_image_out_once(sartaj_small, tmp_path):
    result = CliRunner().invoke(cli, ["ensemble", "--folds", "2", "--data", str(sartaj_small), *TINY,
                                      "--out", str(tmp_path), "--name", "cv"])
    assert result.exit_code == 0, result.output
    runs = {p.name.split("-", 2)[-1]: p for p in tmp_path.iterdir()}
    assert sorted(runs) == ["cv-fold1", "cv-fold2", "cv-folds2"]
    folds = [load_run(runs[f"cv-fold{k}"]) for k in (1, 2)]
    assert [f.config.fold for f in folds] == ["1/2", "2/2"]
    vals = [set(f.subset_sources("oof")) for f in folds]  # each fold's held-out images
    seen = [set(f.subset_sources("train")) | set(f.subset_sources("val")) for f in folds]
    calibration = set(folds[0].subset_sources("calibration"))
    assert not vals[0] & vals[1] and vals[0] <= seen[1] and vals[1] <= seen[0]  # each image held out once
    assert not vals[0] & seen[0] and not vals[1] & seen[1]  # by the fold that neither trained nor selected on it
    assert calibration == set(folds[1].subset_sources("calibration")) and not calibration & (seen[0] | seen[1])
    assert len(vals[0] | vals[1] | calibration) == 32  # every Training image of the 8 per class
    ens = load_run(runs["cv-folds2"])
    rows = list(csv.DictReader((ens.path / "oof.csv").open()))
    assert sorted(r["source"] for r in rows) == sorted(vals[0] | vals[1])
    assert {r["source"]: int(r["fold"]) for r in rows} == {s: k + 1 for k in (0, 1) for s in vals[k]}
    # the out-of-fold probabilities are each fold model's own (its own temperature)
    data = folds[0].dataset()
    position = {str(s): i for i, s in enumerate(data.sources)}
    with load_run(folds[0].path).scorer() as member:
        mine = [r for r in rows if r["fold"] == "1"]
        expected = member(data.images[[position[r["source"]] for r in mine]])
    got = np.array([[float(r[f"p_{c}"]) for c in ens.classes] for r in mine])
    assert np.allclose(got, expected, atol=1e-5)
    cv = ens.metrics["cv"]
    assert len(cv["accuracy_per_fold"]) == 2 and abs(cv["accuracy_mean"] - np.mean(cv["accuracy_per_fold"])) < 1e-12
    assert sorted(ens.conformal().sources) == sorted(calibration)  # sets calibrated on the held-back part
    assert json.loads((ens.path / "config.json").read_text())["cv"] == {"folds": 2}
    # fold runs given to btk ensemble (e.g. trained one at a time) make the same fold ensemble
    again = CliRunner().invoke(cli, ["ensemble", str(runs["cv-fold2"]), str(runs["cv-fold1"]), "--out",
                                     str(tmp_path.parent / "again")])
    assert again.exit_code == 0, again.output
    redo = load_run(next((tmp_path.parent / "again").iterdir()))
    assert redo.metrics["cv"]["accuracy_per_fold"] == cv["accuracy_per_fold"]
    assert (redo.path / "oof.csv").read_text() == (ens.path / "oof.csv").read_text()
    issues = list(csv.DictReader((ens.path / "label_issues.csv").open()))  # ranked, each a real training image
    assert {r["path"] for r in issues} <= {r["source"] for r in rows} and all(r["given"] != r["likely"] for r in issues)
    assert sum(cv["label_issues"].values()) == len(issues)
    # btk audit writes them as a corrections file that --labels reads
    fixes = tmp_path.parent / "fixes.csv"
    out = CliRunner().invoke(cli, ["audit", "--issues", str(ens.path), "--labels-out", str(fixes), "--top", "3"])
    assert out.exit_code == 0, out.output
    written = list(csv.DictReader(fixes.open()))
    assert [(r["path"], r["label"]) for r in written] == [(r["path"], r["likely"]) for r in issues[:3]]
    shown = CliRunner().invoke(cli, ["audit", "--issues", str(ens.path)])
    assert shown.exit_code == 0 and f"{len(issues)} likely label issue(s)" in shown.output
    if issues:  # the report shows the most doubtful images, their labels and the likely class's heat map
        html = tmp_path.parent / "cv.html"
        report = CliRunner().invoke(cli, ["report", str(ens.path), "--html", str(html)])
        assert report.exit_code == 0, report.output
        text = html.read_text()
        assert "label issues (the " in text and f"likely {issues[0]['likely']}" in text
    member = CliRunner().invoke(cli, ["audit", "--issues", str(folds[0].path)])
    assert member.exit_code == 1 and "has no label issues" in member.output


@pytest.mark.parametrize("k,message", [
    ("1", "--folds 1: a fold ensemble needs at least 2 folds"),
    ("9", "--folds 9: class glioma_tumor has only 7 training image(s) in 7 group(s) outside the ensemble's "
           "calibration part"),
])
def test_bad_fold_counts_are_one_line(sartaj_small, tmp_path, k, message):
    result = CliRunner().invoke(cli, ["ensemble", "--folds", k, "--data", str(sartaj_small), *TINY,
                                      "--out", str(tmp_path)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert message in result.output and not list(tmp_path.iterdir())


def test_a_bad_fold_field_is_one_line(sartaj_small, tmp_path):
    result = CliRunner().invoke(cli, ["run", "--data", str(sartaj_small), *TINY, "--set", "fold=7/5",
                                      "--out", str(tmp_path)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "fold=7/5: fold: K must be between 1 and N" in result.output and not list(tmp_path.iterdir())
