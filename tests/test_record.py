"""A run is a record: --config, btk rerun, provenance."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
from click.testing import CliRunner

from btk.cli import cli


@pytest.mark.slow
def test_a_runs_own_config_reproduces_its_predictions_and_rerun_says_so(tiny_sartaj_run, tmp_path):
    run_dir, _ = tiny_sartaj_run("--degrade", "blur@2", "--seed", "7")
    again = CliRunner().invoke(cli, ["run", "--config", str(run_dir / "config.json"), "--out", str(tmp_path / "again"),
                                     "--reporter", "none"])
    assert again.exit_code == 0, again.output
    (copy,) = (tmp_path / "again").iterdir()
    assert (copy / "predictions.csv").read_text() == (run_dir / "predictions.csv").read_text()
    assert json.loads((copy / "config.json").read_text())["config"] == json.loads(
        (run_dir / "config.json").read_text())["config"]

    result = CliRunner().invoke(cli, ["rerun", str(run_dir), "--out", str(tmp_path / "rerun")],
                                env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "clean: identical predictions" in result.output and "blur@2: identical predictions" in result.output
    n = json.loads((run_dir / "metrics.json").read_text())["conditions"]["clean"]["n"]
    assert f"{n}/{n}" in result.output

    other = CliRunner().invoke(cli, ["rerun", str(run_dir), "--seed", "8", "--out", str(tmp_path / "rerun")],
                               env={"COLUMNS": "200"})
    assert other.exit_code == 0, other.output
    (seed8,) = [p for p in (tmp_path / "rerun").iterdir() if json.loads(
        (p / "config.json").read_text())["config"]["seed"] == 8]
    assert "McNemar p" in other.output and seed8.name in other.output


def test_a_config_file_sets_fields_and_typed_options_override_it(tmp_path):
    from btk.config import Setting, resolve_config
    from btk.config_file import read_config_file
    from btk.errors import BtkError

    path = tmp_path / "plan.toml"
    path.write_text('data = "DATA/sartaj"\nseed = 3\ntest_degrade = ["blur@3"]\npreset = "btk"\n\n'
                    "[recipe]\nepochs = 5\nimage_size = 64\n")
    settings = read_config_file(path)
    assert {s.source for s in settings} == {str(path)} and {s.origin for s in settings} == {"file"}
    base = resolve_config(settings)
    assert (base.data, base.seed, base.test_degrade, base.recipe.name) == ("DATA/sartaj", 3, ("blur@3",), "btk")
    assert (base.recipe.epochs, base.recipe.image_size, base.recipe.model) == (5, 64, "seed-cnn")
    # flags typed on the command line (and --set) override the file, whatever the order given
    flags = [Setting("recipe.epochs", "2", "--epochs", "flag"), Setting("seed", "9", "--seed", "flag"),
             Setting("patience", "4", "--set patience=4", "set")]
    merged = resolve_config(flags + read_config_file(path))
    assert (merged.data, merged.seed, merged.recipe.epochs, merged.recipe.patience) == ("DATA/sartaj", 9, 2, 4)
    assert merged.recipe.image_size == 64 and merged.test_degrade == ("blur@3",) and merged.recipe.name == "btk"

    # the same on the command line: --config FILE plus flags and --set (a plan's file shows the result)
    result = CliRunner().invoke(cli, ["plan", "--config", str(path), "--seeds", "11", "--write", str(tmp_path / "w"),
                                      "--epochs", "2", "--set", "patience=4", "--model", "small-cnn"])
    assert result.exit_code == 0, result.output
    (member,) = (tmp_path / "w" / "members").iterdir()
    written = json.loads(member.read_text())["config"]
    # a written plan runs from any folder: the relative data path is recorded from the folder it was typed in
    assert (written["data"], written["seed"], written["test_degrade"]) == (str(Path("DATA/sartaj").absolute()), 11,
                                                                         ["blur@3"])
    assert (written["recipe"]["name"], written["recipe"]["epochs"], written["recipe"]["patience"],
            written["recipe"]["image_size"]) == ("btk", 2, 4, 64)

    problems = (('seeed = 3\n', r"plan\.toml: unknown field 'seeed'"),
                ('[recipe]\nepoch = 3\n', r"plan\.toml: unknown field 'recipe\.epoch'"),
                ('[recipe]\nschedule = "cosnie"\n', r"plan\.toml: recipe\.schedule: 'cosnie' is not one of"),
                ('x = [\n', "not valid TOML"))
    for text, problem in problems:
        path.write_text(text)
        with pytest.raises(BtkError, match=problem):
            resolve_config(read_config_file(path))
    result = CliRunner().invoke(cli, ["run", "--config", str(tmp_path / "missing.json")])
    assert result.exit_code == 1 and "config file not found" in result.output


@pytest.mark.slow
def test_runs_and_evaluations_record_what_made_them_and_report_shows_it(tiny_sartaj_run):
    run_dir, data = tiny_sartaj_run()
    made = json.loads((run_dir / "config.json").read_text())["provenance"]
    assert made["backend"]["name"] in ("tensorflow", "jax", "torch") and made["backend"]["version"]
    assert made["device"] and made["precision"] in ("float32", "mixed_bfloat16", "mixed_float16")
    # the command as typed, also where the process is another (a test runner, a worker)
    assert shlex.split(made["command"])[:4] == ["btk", "run", "--data", str(data)] and Path(made["cwd"]).is_dir()
    assert made["data"]["files"] == 12 and len(made["data"]["sha256"]) == 64 and made["data"]["cache_key"]
    assert made["started"] <= made["ended"]
    if (Path(__file__).resolve().parents[1] / ".git").exists():
        assert len(made["source"]["commit"]) == 40

    evaluation = CliRunner().invoke(cli, ["evaluate", str(run_dir), "--data", str(data)])
    assert evaluation.exit_code == 0, evaluation.output
    (eval_dir,) = (run_dir / "evaluations").iterdir()
    assert json.loads((eval_dir / "config.json").read_text())["provenance"]["data"]["sha256"] == made["data"]["sha256"]

    report = CliRunner().invoke(cli, ["report", str(run_dir)], env={"COLUMNS": "250"})
    assert report.exit_code == 0, report.output
    text = " ".join(report.output.split())
    assert f"on {made['backend']['name']} {made['backend']['version']}" in text
    assert made["precision"] in text and made["data"]["sha256"][:12] in text and "command: btk" in text
