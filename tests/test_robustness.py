"""Robustness sweeps, corruption errors, degradation augmentation and btk degrade."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from btk.augment import make_augmenter
from btk.cli import cli
from btk.errors import BtkError
from btk.plugins import get_host
from btk.robustness import corruption_errors


def test_corruption_errors_of_a_hand_worked_case():
    model = {"run": "m", "n": 100, "clean": 0.95, "degraders": {"blur": [0.9, 0.8], "noise": [0.95, 0.95]}}
    base = {"run": "b", "n": 100, "clean": 0.9, "degraders": {"blur": [0.8, 0.6], "noise": [0.9, 0.7]}}
    scores = corruption_errors(model, base)
    assert scores["ce"]["blur"] == pytest.approx((0.1 + 0.2) / (0.2 + 0.4))
    assert scores["relative_ce"]["blur"] == pytest.approx((0.05 + 0.15) / (0.1 + 0.3))
    assert scores["ce"]["noise"] == pytest.approx((0.05 + 0.05) / (0.1 + 0.3))
    assert scores["relative_ce"]["noise"] == pytest.approx(0.0)
    assert scores["mce"] == pytest.approx((0.5 + 0.25) / 2)
    assert corruption_errors(base, base)["mce"] == pytest.approx(1.0)


def test_result_files_of_each_subset_and_kind():
    from btk.robustness import result_file

    assert [result_file("test", k) for k in ("", "scores", "predictions")] == \
        ["robustness.json", "robustness-scores.json", "robustness-predictions.csv"]
    assert [result_file("validation", k) for k in ("", "scores", "predictions")] == \
        ["robustness-validation.json", "robustness-scores-validation.json", "robustness-predictions-validation.csv"]


def test_augmenter_is_reproducible_and_uses_levels():
    host = get_host()
    augment = make_augmenter([host.degraders.get("noise"), host.degraders.get("blur")], probability=1.0)
    batch = np.stack([cv2.resize(np.full((8, 8), v, np.uint8), (64, 64)) for v in (60, 120, 180, 240)])
    batch[:, 20:40, 20:40] = 30
    a = augment(batch, np.random.default_rng([1, 0, 3]))
    b = augment(batch, np.random.default_rng([1, 0, 3]))
    assert np.array_equal(a, b) and a.shape == batch.shape and a.dtype == np.uint8
    assert all(not np.array_equal(x, y) for x, y in zip(a, batch))  # probability 1: every image changed
    with pytest.raises(BtkError, match="has no severity levels"):
        from btk.degraders import Degrader

        make_augmenter([Degrader("plain", lambda im, rng: im)])


def test_augmenter_draws_levels_up_to_its_highest():
    from btk.degraders import Degradation

    blur = get_host().degraders.get("blur")
    batch = np.random.default_rng(0).integers(0, 256, (6, 64, 64), dtype=np.uint8)
    out = make_augmenter([blur], probability=1.0, max_level=1)(batch, np.random.default_rng(3))
    assert np.array_equal(out, Degradation(blur, {}, 1).apply(batch))  # only level 1 can be drawn
    with pytest.raises(BtkError, match="at least 1"):
        make_augmenter([blur], max_level=0)


def test_old_configs_with_augmentation_beside_the_recipe_still_load(tmp_path):
    from btk.config import RunConfig, get_recipe, resolve_config
    from btk.config_file import read_config_file

    old = RunConfig(recipe=get_recipe("fast")).to_json()
    for key in ("augment_degraders", "augment_probability", "augment_max_level"):
        old["recipe"].pop(key)
    old.update(augment=["blur", "noise"], augment_probability=0.3)
    config = RunConfig.from_json(old)
    assert (config.recipe.augment_degraders, config.recipe.augment_probability) == ("blur,noise", 0.3)
    (tmp_path / "config.json").write_text(json.dumps({"config": old}))
    again = resolve_config(read_config_file(tmp_path / "config.json"))
    assert (again.recipe.augment_degraders, again.recipe.augment_probability) == ("blur,noise", 0.3)


@pytest.mark.slow
def test_sweep_and_scores_through_the_cli(tmp_path):
    runner = CliRunner()
    common = ["-R", "per_class=15", "-R", "test_per_class=5", "--image-size", "48", "--epochs", "3",
              "--out", str(tmp_path / "runs"), "--reporter", "none"]
    assert runner.invoke(cli, ["run", *common, "--name", "plain"]).exit_code == 0
    result = runner.invoke(cli, ["run", *common, "--name", "augmented", "--augment-degraders", "blur,noise"])
    assert result.exit_code == 0, result.output
    plain, augmented = sorted((tmp_path / "runs").iterdir())  # names sort by time: plain first
    assert json.loads((augmented / "config.json").read_text())["config"]["recipe"]["augment_degraders"] == "blur,noise"
    out = runner.invoke(cli, ["robustness", str(plain), str(augmented), "--degraders", "blur,noise",
                              "--also", "resolution", "--also", "blur:ksize=9",
                              "--plot", str(tmp_path / "plot.png")], env={"COLUMNS": "150"})
    assert out.exit_code == 0, out.output
    sweep = json.loads((augmented / "robustness.json").read_text())
    assert set(sweep["degraders"]) == {"blur", "noise"} and all(len(v) == 5 for v in sweep["degraders"].values())
    assert sweep["n"] == 20
    assert set(sweep["extra"]) == {"resolution", "blur:ksize=9"}
    # the extra settings agree with the run's own evaluation of the same degradation
    from btk.runs import load_run

    run_ = load_run(augmented)
    assert "share of the baseline's loss" in out.output
    assert 0 <= sweep["extra"]["resolution"] <= 1 and run_.metrics["conditions"]["clean"]["accuracy"] == \
        pytest.approx(sweep["clean"])
    # every image's answer under every condition, from the run's scorer: the clean answers are the run's own
    with open(augmented / "robustness-predictions.csv", newline="") as fh:
        swept = list(csv.DictReader(fh))
    assert len(swept) == 20 * (1 + 2 * 5 + 2)
    assert {r["condition"] for r in swept} == {"clean", *[f"{d}@{k}" for d in ("blur", "noise") for k in range(1, 6)],
                                               "resolution", "blur:ksize=9"}
    own = run_.predictions()
    clean = [r for r in swept if r["condition"] == "clean"]
    assert [(r["source"], r["label"], r["predicted"]) for r in clean] == \
        [(r["source"], r["label"], r["predicted"]) for r in own if r["condition"] == "clean"]
    columns = [f"p_{c}" for c in run_.classes]
    assert np.allclose([[float(r[c]) for c in columns] for r in clean],
                       [[float(r[c]) for c in columns] for r in own if r["condition"] == "clean"], atol=1e-5)
    assert sum(r["predicted"] == r["label"] for r in clean) / 20 == pytest.approx(sweep["clean"])
    scores = json.loads((plain / "robustness-scores.json").read_text())
    assert scores["mce"] == pytest.approx(1.0)  # the baseline against itself
    assert "mCE 1.000" in out.output and (tmp_path / "plot.png").stat().st_size > 10_000
    # on the validation images (for choosing a recipe without Testing), with the report's settings at its scale
    out = runner.invoke(cli, ["robustness", str(augmented), "--subset", "validation", "--degraders", "blur",
                              "--also", "blur@report", "--also", "resolution@report"], env={"COLUMNS": "150"})
    assert out.exit_code == 0, out.output
    on_val = json.loads((augmented / "robustness-validation.json").read_text())
    with open(augmented / "split.csv", newline="") as fh:
        n_val = sum(r["subset"] == "val" for r in csv.DictReader(fh))
    assert on_val["subset"] == "validation" and on_val["n"] == n_val > 0
    assert set(on_val["extra"]) == {"blur@report", "resolution@report"}
    assert (augmented / "robustness-validation.png").exists()
    with open(augmented / "robustness-predictions-validation.csv", newline="") as fh:
        assert len(list(csv.DictReader(fh))) == n_val * (1 + 5 + 2)
    with open(augmented / "robustness-predictions.csv", newline="") as fh:
        assert list(csv.DictReader(fh)) == swept  # the test sweep's answers are kept
    assert json.loads((augmented / "robustness.json").read_text()) == sweep  # the test sweep is kept
    bad = runner.invoke(cli, ["robustness", str(plain), "--degraders", "haze"])
    assert bad.exit_code != 0 and "unknown degrader 'haze'" in bad.output


def test_degrade_writes_copies_and_a_preview(image_folder, tmp_path):
    runner = CliRunner()
    out = tmp_path / "out"
    result = runner.invoke(cli, ["degrade", "--data", str(image_folder), "--degrader", "gibbs", "--severity", "4",
                                 "--out", str(out)])
    assert result.exit_code == 0, result.output
    (first,) = out.iterdir()
    assert "-degrade-gibbs" in first.name
    written = sorted(first.rglob("*.png"))
    assert len(written) == 12
    original = cv2.imread(str(image_folder / "a" / "0.png"))
    expected = get_host().degraders.get("gibbs").apply(original[None], {"keep": 0.3})[0]
    assert np.array_equal(cv2.imread(str(first / "a" / "0.png")), expected)
    preview = runner.invoke(cli, ["degrade", "--data", str(image_folder), "--preview", str(tmp_path / "grid.png")])
    assert preview.exit_code == 0 and cv2.imread(str(tmp_path / "grid.png")).shape[0] > 10 * 160
    before = {p: p.read_bytes() for p in written}
    again = runner.invoke(cli, ["degrade", "--data", str(image_folder), "--degrader", "gibbs", "--severity", "4",
                                "--out", str(out), "--json"])
    assert again.exit_code == 0, again.output
    second = Path(json.loads(again.stdout)["folder"])
    assert second.parent == out and second != first and sorted(out.iterdir()) == sorted([first, second])
    assert len(list(second.rglob("*.png"))) == 12
    assert {p: p.read_bytes() for p in sorted(first.rglob("*.png"))} == before  # the first one is left as it was
    level = runner.invoke(cli, ["degrade", "--data", str(image_folder), "--degrader", "gibbs", "--severity", "7",
                                "--out", str(tmp_path / "o2")])
    assert level.exit_code != 0 and "level must be 1..5, got 7" in level.output and not (tmp_path / "o2").exists()
    both = runner.invoke(cli, ["degrade", "--data", str(image_folder), "--degrader", "blur", "--severity", "2",
                               "--params", "sigma=3", "--out", str(tmp_path / "o3")])
    assert both.exit_code != 0 and "not both" in both.output and not (tmp_path / "o3").exists()


def _three_level_degrader():
    from btk.degraders import Degrader, Param

    def darken(image, rng, amount):
        return (image * (1 - amount)).astype(np.uint8)

    return Degrader("darken", darken, (Param("amount", float, 0.0, 0.0, 1.0),), "three levels only",
                    levels=({"amount": 0.2}, {"amount": 0.4}, {"amount": 0.6}))


def test_tables_and_previews_follow_each_degraders_number_of_levels(image_folder, tmp_path):
    """A plugin degrader with three levels beside the built-in five: the preview grid, the sweep
    table and the HTML table give it three cells and keep the CE column in place."""
    from rich.console import Console

    from btk.render.images import LABEL_WIDTH, TILE, degrader_preview
    from btk.render.tables import render_robustness

    darken = _three_level_degrader()
    blur = get_host().degraders.get("blur")
    image = cv2.imread(str(image_folder / "a" / "0.png"))
    grid = degrader_preview(image, [darken, blur], seed=0)
    assert grid.shape == (30 + 2 * TILE, LABEL_WIDTH + 6 * TILE, 3)
    assert not grid[30:30 + TILE, LABEL_WIDTH + 4 * TILE:].any()  # darken's row ends in black tiles
    assert grid[30 + TILE:, LABEL_WIDTH + 5 * TILE:].any()  # blur's fifth level is drawn
    result = {"run": "r", "n": 10, "clean": 0.9, "degraders": {"darken": [0.8, 0.7, 0.6],
                                                                 "blur": [0.8, 0.7, 0.6, 0.5, 0.4]}}
    scores = {"ce": {"darken": 1.25, "blur": 1.0}, "relative_ce": {"darken": None, "blur": 1.0}}
    console = Console(record=True, width=200)
    render_robustness("r", result, scores, console)
    lines = {line.split("│")[1].strip(): [c.strip() for c in line.split("│")[2:-1]]
             for line in console.export_text().splitlines() if line.count("│") > 3}
    assert lines["darken"] == ["80.0", "70.0", "60.0", "", "", "1.250", "-"]
    assert lines["blur"] == ["80.0", "70.0", "60.0", "50.0", "40.0", "1.000", "1.000"]
    from btk.testing import make_run

    run = make_run(tmp_path, "three", np.array([0, 1, 0, 1]), np.eye(2)[[0, 1, 0, 1]] * 0.8 + 0.1, ["a", "b"])
    (run / "robustness.json").write_text(json.dumps(result))
    (run / "robustness-scores.json").write_text(json.dumps({**scores, "baseline": "r", "mce": 1.1}))
    out = CliRunner().invoke(cli, ["report", str(run), "--html", str(tmp_path / "r.html")])
    assert out.exit_code == 0, out.output
    page = (tmp_path / "r.html").read_text()
    assert "<td>60.0</td><td></td><td></td><td>1.250</td>" in page and "<th>5</th><th>CE</th>" in page


def test_html_report_shows_the_sweep(btk_sample_run, tmp_path):
    sweep = {"run": "sample-run", "n": 60, "clean": 0.9, "degraders": {"blur": [0.8, 0.7, 0.6, 0.5, 0.4]}}
    (btk_sample_run / "robustness.json").write_text(json.dumps(sweep))
    out = CliRunner().invoke(cli, ["report", str(btk_sample_run), "--html", str(tmp_path / "r.html")])
    assert out.exit_code == 0, out.output
    page = (tmp_path / "r.html").read_text()
    assert "robustness (accuracy %, clean 90.0)" in page and 'alt="accuracy against severity"' in page
