"""Plans of runs over seeds, run as parallel processes: members, failures, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from btk.cli import cli
from btk.plan import cpu_threads, member_env, parse_seeds, plan_members, visible_devices

TINY = ["-R", "per_class=15", "-R", "test_per_class=5", "--image-size", "32", "--epochs", "1",
        "--model", "small-cnn"]


def _suite_dir(out: Path) -> Path:
    (folder,) = [p for p in out.iterdir() if (p / "suite.json").is_file()]
    return folder


def test_parse_seeds():
    assert parse_seeds("101-105") == (101, 102, 103, 104, 105)
    assert parse_seeds("101,103,107") == (101, 103, 107)
    assert parse_seeds("101-103,110") == (101, 102, 103, 110)
    assert parse_seeds("7, 7,8") == (7, 8)
    for bad in ("abc", "105-101", "", "1-2-3", "101,"):
        with pytest.raises(ValueError):
            parse_seeds(bad)


def test_report_suite_members_over_seeds():
    from btk.config import make_run_config
    from btk.suite import get_suite

    suite = get_suite("report")
    base = make_run_config(preset="btk")  # a suite's default preset
    members = plan_members(base, [(e.name, e.changes) for e in suite.experiments], (101, 102))
    assert [m.name for m in members] == [f"{e.name}-seed{s}" for s in (101, 102) for e in suite.experiments]
    assert len(members) == 8 and {m.config.seed for m in members} == {101, 102}
    assert all(m.config.name == m.name for m in members)
    binary = next(m for m in members if m.name == "binary-seed102")
    assert binary.config.task == "binary" and binary.experiment == "binary" and binary.seed == 102
    # without seeds a member keeps its experiment's name and the base seed
    assert [m.name for m in plan_members(base, [("binary", {"task": "binary"})])] == ["binary"]


def test_member_environment():
    env = member_env(3, 2, ["0", "1"], environ={"PYTHONPATH": "/elsewhere"}, cpu_count=16)
    assert env["OMP_NUM_THREADS"] == env["TF_NUM_INTRAOP_THREADS"] == env["TF_NUM_INTEROP_THREADS"] == "8"
    assert env["CUDA_VISIBLE_DEVICES"] == "1"
    assert env["PYTHONPATH"].split(":")[0] == str(Path(__file__).resolve().parents[1])
    assert "CUDA_VISIBLE_DEVICES" not in member_env(0, 4, [], environ={}, cpu_count=2)
    # a member is a run of its own: it never joins another run's processes
    joined = member_env(0, 2, [], environ={"JAX_COORDINATOR_ADDRESS": "h:1", "JAX_PROCESS_ID": "0", "HOME": "/h"})
    assert "JAX_COORDINATOR_ADDRESS" not in joined and "JAX_PROCESS_ID" not in joined and joined["HOME"] == "/h"
    assert cpu_threads(4, 2) == 1 and cpu_threads(1, 2) == 2
    assert visible_devices({"CUDA_VISIBLE_DEVICES": "2,3"}) == ["2", "3"]
    assert visible_devices({"CUDA_VISIBLE_DEVICES": ""}) == []


def test_seeds_in_parallel_processes(tmp_path):
    out = tmp_path / "runs"
    result = CliRunner().invoke(cli, ["plan", *TINY, "--seeds", "101-103", "--jobs", "2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    folder = _suite_dir(out)
    info = json.loads((folder / "suite.json").read_text())
    names = [f"multiclass-seed{s}" for s in (101, 102, 103)]
    assert sorted(info["runs"]) == names and info["failed"] == [] and info["seeds"] == [101, 102, 103]
    for name in names:
        run_dir = folder / info["runs"][name]
        assert (run_dir / "metrics.json").is_file()
        assert json.loads((run_dir / "config.json").read_text())["config"]["seed"] == int(name[-3:])
        assert (folder / "members" / f"{name}.log").is_file()
    assert [r["seed"] for r in info["table"]] == [101, 102, 103]
    (agg,) = info["aggregate"]
    assert agg["n"] == 3 and agg["min"]["accuracy"] <= agg["mean"]["accuracy"] <= agg["max"]["accuracy"]
    assert "mean (range) over seeds" in " ".join(result.output.split())  # a table title: wrapped with the path
    # btk report reads the plan's folder as a suite
    from btk.compare import gather_runs

    runs, suites, skipped = gather_runs([folder])
    assert len(runs) == 3 and len(suites) == 1 and not skipped
    shown = CliRunner().invoke(cli, ["report", str(folder)], env={"COLUMNS": "200"})
    assert shown.exit_code == 0 and "over seeds 101, 102, 103: mean (lowest-highest)" in shown.output, shown.output
    assert f"{agg['mean']['accuracy']:.1f} ({agg['min']['accuracy']:.1f}-{agg['max']['accuracy']:.1f})" in shown.output


def test_a_killed_member_is_reported_and_the_others_kept(tmp_path):
    import os
    import signal

    from btk.config import make_run_config
    from btk.feedback import RecordingFeedback
    from btk.suite import run_suite

    config = make_run_config(reader_options={"per_class": "15", "test_per_class": "5"},
                             recipe={"image_size": 32, "epochs": 1, "model": "small-cnn"})
    killed = []

    def kill_102(member, proc):
        if member.name == "multiclass-seed102":
            os.kill(proc.pid, signal.SIGKILL)
            killed.append(proc.pid)

    out = tmp_path / "runs"
    feedback = RecordingFeedback()
    folder = run_suite(None, config, out, feedback, seeds=(101, 102, 103), jobs=2, on_start=kill_102)
    assert len(killed) == 1
    assert "multiclass-seed102: FAILED (exit status -9)" in feedback.texts("info")
    assert folder == _suite_dir(out)
    info = json.loads((folder / "suite.json").read_text())
    (failed,) = info["failed"]
    assert failed["member"] == "multiclass-seed102" and failed["returncode"] == -9
    assert (folder / failed["log"]).is_file()
    assert sorted(info["runs"]) == ["multiclass-seed101", "multiclass-seed103"]
    for name in info["runs"].values():
        assert (folder / name / "metrics.json").is_file()
    assert [r["seed"] for r in info["table"]] == [101, 103]
    shown = CliRunner().invoke(cli, ["report", str(folder)], env={"COLUMNS": "200"})
    assert shown.exit_code == 0 and "FAILED multiclass-seed102: exit status -9" in shown.output, shown.output


@pytest.mark.parametrize(("args", "text"), [
    (["--jobs", "0"], "Error: --jobs 0: give at least 1"),
    (["--seeds", "abc"], "'abc' is not a seed"),
    (["--seeds", "105-101"], "runs backwards"),
    (["--seeds", "101-102", "--seed", "7"], "leave out --seed"),
    (["--seeds", "101-102", "--write", "PLAN", "--jobs", "2"], "Error: --write trains nothing: leave out --jobs"),
])
def test_bad_input(tmp_path, args, text):
    out = tmp_path / "out"
    out.mkdir()
    args = [str(tmp_path / "plan") if a == "PLAN" else a for a in args]
    result = CliRunner().invoke(cli, ["plan", *args, "--out", str(out)])
    assert result.exit_code == 1, result.output  # a one-line BtkError, not a usage error
    errors = [x for x in result.output.splitlines() if x.strip()]
    assert len(errors) == 1 and errors[0].startswith("Error: ") and text in errors[0], result.output
    assert not any(out.iterdir()) and not (tmp_path / "plan").exists()  # nothing was written


def test_a_written_plan_runs_as_separate_runs_and_the_report_puts_them_together(tmp_path):
    """btk plan --write trains nothing and writes one configuration per run; each run as a job array
    task would (btk run --config FILE); btk report of the runs gives the mean and range over seeds."""
    plan = tmp_path / "plan"
    result = CliRunner().invoke(cli, ["plan", *TINY, "--seeds", "101-102", "--write", str(plan),
                                      "--out", str(tmp_path / "unused")])
    assert result.exit_code == 0, result.output
    files = sorted((plan / "members").glob("*.json"))
    assert [f.name for f in files] == ["multiclass-seed101.json", "multiclass-seed102.json"]
    assert f"sbatch {plan.absolute() / 'plan.sbatch'}" in result.output and not (tmp_path / "unused").exists()
    out = tmp_path / "out"
    for f in files:
        done = CliRunner().invoke(cli, ["run", "--config", str(f), "--out", str(out), "--reporter", "none"])
        assert done.exit_code == 0, done.output
    runs = sorted(out.iterdir())
    seeds = [json.loads((r / "config.json").read_text())["config"]["seed"] for r in runs]
    assert seeds == [101, 102]
    shown = CliRunner().invoke(cli, ["report", *map(str, runs)], env={"COLUMNS": "200"})
    assert shown.exit_code == 0 and "differ only in their seed (seeds 101, 102)" in shown.output, shown.output
    accs = [100 * json.loads((r / "metrics.json").read_text())["conditions"]["clean"]["accuracy"] for r in runs]
    assert f"{sum(accs) / 2:.1f} ({min(accs):.1f}-{max(accs):.1f})" in shown.output


def test_write_refuses_a_folder_with_a_plan(tmp_path):
    (tmp_path / "plan" / "members").mkdir(parents=True)
    (tmp_path / "plan" / "members" / "other-seed7.json").write_text("{}")
    result = CliRunner().invoke(cli, ["plan", "--seeds", "1-2", "--write", str(tmp_path / "plan")])
    assert result.exit_code == 1, result.output
    errors = [x for x in result.output.splitlines() if x.startswith("Error:")]
    assert len(errors) == 1 and "already holds 1 run configuration(s)" in errors[0], result.output
    assert [p.name for p in (tmp_path / "plan" / "members").iterdir()] == ["other-seed7.json"]
    # plan has no --ensemble (an ensemble is btk ensemble --train): nothing is written either
    result = CliRunner().invoke(cli, ["plan", "--seeds", "1-2", "--ensemble", "3", "--write", str(tmp_path / "p2")])
    assert result.exit_code == 2 and "--ensemble" in result.output and not (tmp_path / "p2").exists()
