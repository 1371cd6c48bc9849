"""One configuration schema: a preset, a file, the flags and --set override one another in that
order, and every value from every source goes through the same checks (one line naming the
source when it is wrong). The resolved configuration is read from `btk plan --write`, which
trains nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from btk.cli import cli


def _resolved(tmp_path: Path, *args: str) -> dict:
    """The configuration `btk plan --seeds 7 --write` writes for the given options."""
    plan = tmp_path / f"plan{len(list(tmp_path.iterdir()))}"
    result = CliRunner().invoke(cli, ["plan", "--seeds", "7", "--write", str(plan), *args])
    assert result.exit_code == 0, result.output
    (member,) = (plan / "members").glob("*.json")
    return json.loads(member.read_text())["config"]


def _error(*args: str) -> str:
    """The one error line of a refused command (exit status 1, nothing else printed)."""
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 1, result.output
    lines = [x for x in result.output.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    return lines[0]


def test_sources_override_in_the_written_order(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text('data = "DATA"\npreset = "fast"\n[recipe]\nepochs = 5\nschedule = "constant"\n')
    assert _resolved(tmp_path, "--data", "DATA")["recipe"]["epochs"] == 30  # the preset: fast
    from_file = _resolved(tmp_path, "--config", str(config))
    assert from_file["recipe"]["epochs"] == 5 and from_file["recipe"]["schedule"] == "constant"
    assert from_file["recipe"]["image_size"] == 128  # the rest of the file's preset
    assert _resolved(tmp_path, "--config", str(config), "--epochs", "3")["recipe"]["epochs"] == 3  # flag over file
    # --set over the flag, wherever it is written on the command line
    for args in (["--epochs", "3", "--set", "epochs=2"], ["--set", "epochs=2", "--epochs", "3"]):
        assert _resolved(tmp_path, "--config", str(config), *args)["recipe"]["epochs"] == 2
    # a run field takes the same path: file, then flag, then --set
    assert _resolved(tmp_path, "--config", str(config), "--limit-train", "9",
                     "--set", "limit_train=4")["limit_train"] == 4


def test_a_preset_given_with_a_file_is_that_preset(tmp_path):
    """`--config FILE --preset fast`, no --data: the fast recipe (the file has the data), not the demo."""
    config = tmp_path / "c.toml"
    config.write_text('data = "DATA"\nseed = 5\n')
    resolved = _resolved(tmp_path, "--config", str(config), "--preset", "fast")
    recipe = resolved["recipe"]
    assert (recipe["name"], recipe["model"], recipe["image_size"], recipe["epochs"]) == ("fast", "res-cnn", 128, 30)
    # a written plan's member runs from any folder: its relative data path is recorded absolute
    assert resolved["data"] == str(Path("DATA").absolute()) and resolved["reader"] == "folder"
    # a run directory's config.json as the file: its own changes stay on the new preset
    run_config = tmp_path / "config.json"
    run_config.write_text(json.dumps({"config": {**resolved, "recipe": {**recipe, "epochs": 4}}}))
    moved = _resolved(tmp_path, "--config", str(run_config), "--preset", "btk")["recipe"]
    assert (moved["name"], moved["model"], moved["epochs"]) == ("btk", "seed-cnn", 4)
    # no data anywhere: the demo preset on the synthetic phantoms, and its name says so
    demo = _resolved(tmp_path)
    assert demo["reader"] == "synthetic" and demo["recipe"]["name"] == "demo"
    assert (demo["recipe"]["model"], demo["recipe"]["image_size"], demo["recipe"]["epochs"]) == ("small-cnn", 96, 10)


def test_a_file_keeps_every_field(tmp_path):
    """--tta and the ensemble count go through a file (and the flag) like any other field."""
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"data": "DATA", "tta": True, "ensemble": 3}))
    resolved = _resolved(tmp_path, "--config", str(config))
    assert resolved["tta"] is True and resolved["ensemble"] == 3
    assert _resolved(tmp_path, "--data", "DATA", "--tta")["tta"] is True


@pytest.mark.parametrize(("args", "expected"), [
    (["--preset", "quick"], "Error: --preset: preset: 'quick' is not one of fast, btk, report, demo"),
    (["--epochs", "0"], "Error: --epochs: recipe.epochs: '0' must be at least 1"),
    (["--learning-rate", "fast"], "Error: --learning-rate: recipe.learning_rate: 'fast' is not a number"),
    (["--set", "schedule=cosnie"], "Error: --set schedule=cosnie: recipe.schedule: 'cosnie' is not one of constant, "
                                   "cosine"),
    (["--set", "epochs=0"], "Error: --set epochs=0: recipe.epochs: '0' must be at least 1"),
    (["--set", "colour=red"], "Error: --set colour=red: unknown field 'colour'"),
    (["--task", "ternary"], "Error: --task: task: 'ternary' is not one of multiclass, binary"),
    (["--set", "micro_batch=12"], "micro-batch 12 must divide the batch size 32"),
])
def test_a_bad_flag_or_setting_is_one_line(tmp_path, args, expected):
    line = _error("run", "--out", str(tmp_path / "runs"), *args)
    assert line.startswith(expected) or (not expected.startswith("Error") and expected in line), line
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(("text", "expected"), [
    ("[recipe]\nepochs = 0\n", "recipe.epochs: 0 must be at least 1"),
    ('[recipe]\nlearning_rate = "fast"\n', "recipe.learning_rate: 'fast' is not a number"),
    ('[recipe]\nschedule = "cosnie"\n', "recipe.schedule: 'cosnie' is not one of constant, cosine"),
    ('preset = "quick"\n', "preset: 'quick' is not one of"),
    ("seed = 1.5\n", "seed: 1.5 is not an integer"),
    ("colour = 1\n", "unknown field 'colour'"),
])
def test_a_bad_value_in_a_file_is_one_line_naming_the_file(tmp_path, text, expected):
    config = tmp_path / "c.toml"
    config.write_text('data = "DATA"\n' + text)
    line = _error("run", "--config", str(config), "--out", str(tmp_path / "runs"))
    assert line.startswith(f"Error: {config}: ") and expected in line, line
    # the plan that wrote such values into job files before now refuses them, writing nothing
    assert _error("plan", "--config", str(config), "--seeds", "1-2", "--write", str(tmp_path / "plan")) == line
    assert not (tmp_path / "plan").exists()


def test_the_library_checks_alike():
    """Notebooks go through the same schema: make_run_config and get_recipe name the field."""
    from btk.config import get_recipe, make_run_config
    from btk.errors import BtkError

    assert make_run_config(data="DATA", recipe={"epochs": 2}, seed=3).recipe.epochs == 2
    with pytest.raises(BtkError, match=r"schedule: recipe\.schedule: 'step' is not one of constant, cosine"):
        get_recipe("btk", schedule="step")
    with pytest.raises(BtkError, match="seed: seed: 'x' is not an integer"):
        make_run_config(seed="x")


def test_every_field_is_documented_with_its_flag():
    """The flags of btk run come from the schema; docs/cli.md lists every field."""
    from dataclasses import fields

    from btk.config import Recipe, RunConfig, flagged_fields

    run = cli.commands["run"]
    options = {o for p in run.params for o in getattr(p, "opts", [])}
    for _key, decls, _metavar, _kind in flagged_fields():
        assert set(decls) <= options, decls
    text = (Path(__file__).resolve().parents[1] / "docs" / "cli.md").read_text()
    for cls in (Recipe, RunConfig):
        for f in fields(cls):
            if f.name not in ("name", "recipe"):
                assert f"| `{f.name}` |" in text, f.name
