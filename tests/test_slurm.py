"""``btk predict --write DIR --shards N`` and ``btk plan --write DIR``: Slurm job arrays, submitted
to a real one-node Slurm started here (btk.testing.slurm_cluster) and checked against the same
work done without Slurm: the merged shares are byte for byte the unsharded table."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from btk.cli import cli
from btk.testing import slurm_cluster, slurm_missing

MISSING = slurm_missing()
NEEDS_SLURM = pytest.mark.skipif(MISSING is not None and os.environ.get("CI") != "true",
                                 reason=f"no local Slurm: {MISSING} (.ci/run installs it)")
"""Skipped before any fixture is made where Slurm is missing, except in CI (CI=true), where the
:func:`slurm` fixture fails instead."""


def _ok(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    """One Slurm for the file's tests; skipped where it is not installed, but never in CI."""
    if MISSING:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run the Slurm tests: {MISSING} (.ci/run installs slurm-wlm and munge)")
        pytest.skip(f"no local Slurm: {MISSING} (.ci/run installs it)")
    with slurm_cluster(tmp_path_factory.mktemp("slurm")) as cluster:
        yield cluster


def _logs(folder: Path) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in sorted(folder.glob("*")))


@NEEDS_SLURM
def test_the_written_predict_array_on_slurm_merges_into_the_unsharded_table(slurm, sartaj_small_run, sartaj_small,
                                                                            tmp_path):
    data = str(sartaj_small / "Testing")
    # --coverage adds two columns: the tasks get it only if the script passes the options on
    _ok("predict", str(sartaj_small_run), "--data", data, "--coverage", "0.9", "--out", str(tmp_path / "whole"))
    [whole] = list((tmp_path / "whole").iterdir())
    assert "set_size" in (whole / "predictions.csv").read_text().splitlines()[0]
    printed = _ok("predict", str(sartaj_small_run), "--data", data, "--coverage", "0.9",
                  "--write", str(tmp_path / "slurm"), "--shards", "3", "--sbatch", "cpus-per-task=1",
                  "--out", str(tmp_path / "out"))
    script = (tmp_path / "slurm" / "predict.sbatch").read_text()
    lines = script.splitlines()
    assert lines[0] == "#!/bin/bash"
    assert "#SBATCH --array=1-3" in lines and "#SBATCH --cpus-per-task=1" in lines
    assert "#SBATCH --cpus-per-task=2" not in lines  # the default, replaced
    assert f"#SBATCH --output={tmp_path / 'slurm' / 'logs'}/%A_%a.out" in lines
    assert any(x.startswith("#SBATCH --job-name=btk-predict-") for x in lines)
    [task] = [x for x in lines if " -m btk predict " in x]
    assert task == (f"{sys.executable} -m btk predict {sartaj_small_run} --data {data} --coverage 0.9 "
                    f'--shard "$SLURM_ARRAY_TASK_ID"/3 --out {tmp_path / "out" / "shares"}')
    merge = (tmp_path / "slurm" / "merge.sbatch").read_text()
    assert "#SBATCH --array" not in merge
    assert f"{sys.executable} -m btk merge {tmp_path / 'out' / 'shares'}/* --out {tmp_path / 'out'}" in merge

    [submit] = [x for x in printed.splitlines() if x.startswith("jid=$(sbatch")]
    shown = slurm.shell(submit + ' && echo "array job ${jid%%;*}"').split()
    merge_job, array_job = shown[shown.index("Submitted") + 3], shown[-1]
    states = slurm.wait(merge_job, timeout=400)
    assert states == {merge_job: "COMPLETED"}, _logs(tmp_path / "slurm" / "logs")
    tasks = slurm.wait(array_job, timeout=10)
    assert len(tasks) == 3 and set(tasks.values()) == {"COMPLETED"}, tasks

    shares = sorted((tmp_path / "out" / "shares").iterdir(),
                    key=lambda f: json.loads((f / "predict.json").read_text())["shard"]["k"])
    assert [json.loads((f / "predict.json").read_text())["shard"]["n"] for f in shares] == [3, 3, 3]
    sizes = [len((f / "predictions.csv").read_text().splitlines()) - 1 for f in shares]
    assert all(size > 0 for size in sizes)  # each task did its part
    [merged] = [f for f in (tmp_path / "out").iterdir() if f.name != "shares"]
    assert (merged / "predictions.csv").read_bytes() == (whole / "predictions.csv").read_bytes()
    logs = sorted((tmp_path / "slurm" / "logs").iterdir())
    assert len(logs) == 4  # three tasks and the merge, each its own log


def test_write_refuses_in_one_line(sartaj_small_run, sartaj_small, tmp_path):
    from conftest import one_line_refusal

    base = ["predict", str(sartaj_small_run), "--data", str(sartaj_small / "Testing")]
    out = str(tmp_path / "w")
    assert one_line_refusal([*base, "--write", out]) == \
        "Error: --write DIR needs --shards N: the job array's number of tasks"
    assert one_line_refusal([*base, "--shards", "3"]) == \
        "Error: --shards goes with --write DIR (a Slurm job array's scripts)"
    assert one_line_refusal([*base, "--sbatch", "time=1:00:00"]) == \
        "Error: --sbatch goes with --write DIR (a Slurm job array's scripts)"
    assert one_line_refusal([*base, "--write", out, "--shards", "0"]) == "Error: --shards 0: give at least 1"
    assert one_line_refusal([*base, "--write", out, "--shards", "3", "--shard", "1/3"]) == \
        "Error: --write gives each task its own --shard K/N: leave out --shard"
    assert one_line_refusal([*base, "--write", out, "--shards", "3", "--sbatch", "array=1-9"]) == \
        "Error: --sbatch array=1-9: btk sets --array itself"
    assert one_line_refusal([*base, "--write", out, "--shards", "3", "--sbatch", "time=1 day"]) == \
        "Error: --sbatch time=1 day: a value with spaces, quotes or backslashes cannot go on an #SBATCH line"
    assert one_line_refusal(["predict", str(sartaj_small_run), "--data", str(tmp_path / "none"), "--write", out,
                             "--shards", "2"]) == f"Error: --data {tmp_path / 'none'}: no such file or folder"
    assert not (tmp_path / "w").exists()  # nothing written by a refused command
    _ok(*base, "--write", out, "--shards", "2")
    assert one_line_refusal([*base, "--write", out, "--shards", "2"]) == \
        f"Error: {tmp_path / 'w' / 'predict.sbatch'} exists already: give a new folder"


def test_options_reach_the_tasks_as_given_with_paths_made_absolute(sartaj_small_run, sartaj_small, tmp_path,
                                                                   monkeypatch):
    import shutil

    monkeypatch.chdir(tmp_path)
    shutil.copytree(sartaj_small / "Testing", tmp_path / "scans")
    _ok("predict", str(sartaj_small_run), "--data", "scans", "--data", "http://pacs:8042/dicom-web",
        "-R", "study=1.2.3", "--slices", "middle", "--no-tta", "--min-confidence", "0.6", "--check-shift",
        "--write", "w", "--shards", "4", "--sbatch", "--time=02:00:00", "--sbatch", "gres=gpu:1", "--json")
    lines = (tmp_path / "w" / "predict.sbatch").read_text().splitlines()
    [task] = [x for x in lines if " -m btk predict " in x]
    assert task.split(" -m btk predict ")[1] == (
        f"{sartaj_small_run} --data {tmp_path / 'scans'} --data http://pacs:8042/dicom-web "
        "--reader-option study=1.2.3 --slices middle --min-confidence 0.6 --check-shift --no-tta "
        f'--shard "$SLURM_ARRAY_TASK_ID"/4 --out {tmp_path / "w" / "shares"}')
    assert "#SBATCH --time=02:00:00" in lines and "#SBATCH --gres=gpu:1" in lines
    merge = (tmp_path / "w" / "merge.sbatch").read_text().splitlines()
    assert "#SBATCH --time=02:00:00" in merge and not any("gres" in x for x in merge)  # the merge needs no GPU


@NEEDS_SLURM
def test_plan_write_makes_a_job_array_of_its_runs_in_plan_order(slurm, sartaj_small, tmp_path):
    """plan.sbatch lists the members' files; task I trains the I-th; btk report puts them together."""
    printed = _ok("plan", "--data", str(sartaj_small), "--seeds", "102,101", "--model", "small-cnn",
                  "--image-size", "32", "--epochs", "1", "--write", str(tmp_path / "plan"),
                  "--sbatch", "cpus-per-task=1", "--out", str(tmp_path / "runs"))
    lines = (tmp_path / "plan" / "plan.sbatch").read_text().splitlines()
    assert "#SBATCH --array=1-2" in lines and "#SBATCH --job-name=btk-plan" in lines
    members = [str(tmp_path / "plan" / "members" / f"multiclass-seed{s}.json") for s in (102, 101)]
    start = lines.index("members=(")
    assert lines[start + 1:start + 4] == [f"  {members[0]}", f"  {members[1]}", ")"]  # the plan's order, not a glob's
    assert lines[start + 4] == (f'{sys.executable} -m btk run --config "${{members[$SLURM_ARRAY_TASK_ID - 1]}}" '
                                f"--out {tmp_path / 'runs'}")
    [submit] = [x for x in printed.splitlines() if x.startswith("sbatch ")]
    assert f"btk report {tmp_path / 'runs'}/*" in printed.splitlines()

    job = slurm.shell(submit).split()[-1]
    states = slurm.wait(job, timeout=400)
    assert len(states) == 2 and set(states.values()) == {"COMPLETED"}, _logs(tmp_path / "plan" / "logs")
    runs = sorted((tmp_path / "runs").iterdir())
    seeds = {json.loads((r / "config.json").read_text())["config"]["seed"] for r in runs}
    assert len(runs) == 2 and seeds == {101, 102}
    for k, seed in ((1, 102), (2, 101)):  # task I ran the I-th file
        [log] = (tmp_path / "plan" / "logs").glob(f"{job}_{k}.out")
        assert f"multiclass-seed{seed}" in log.read_text() and f"multiclass-seed{203 - seed}" not in log.read_text()
    report = _ok("report", *map(str, runs), "--reporter", "none", "--json")
    assert json.loads(report)
