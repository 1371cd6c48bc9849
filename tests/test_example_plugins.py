"""The example third-party plugin packages in plugins/: installed for real, used, uninstalled."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from btk import plugins
from btk.cli import cli
from btk.testing import check_degrader, check_reporter

ROOT = Path(__file__).resolve().parents[1]
ARTEFACTS = ROOT / "plugins" / "btk-mri-artefacts"
MLFLOW = ROOT / "plugins" / "btk-mlflow"


def _import_from(folder: Path, name: str):
    sys.path.insert(0, str(folder))
    try:
        return __import__(name)
    finally:
        sys.path.pop(0)


def test_zipper_degrader_passes_the_contract_kit():
    module = _import_from(ARTEFACTS, "btk_mri_artefacts")
    check_degrader(module.ZIPPER, identity={"strength": 0})
    image = np.full((64, 64), 50, np.uint8)
    zipped = module.ZIPPER.apply(image[None], {"strength": 0.5, "position": 0.25})[0].astype(int)
    changed = np.abs(zipped - 50).mean(axis=0)
    assert changed.argmax() == 16 and changed[16] > 20  # one column, a quarter of the way across
    assert np.delete(changed, 16).max() < 1


@pytest.mark.slow
def test_example_package_installs_lists_runs_and_uninstalls(tmp_path):
    """A fresh virtual environment; its dependencies come from this one's site-packages."""
    env_dir = tmp_path / "venv"
    subprocess.run([sys._base_executable, "-m", "venv", str(env_dir)], check=True)
    py = env_dir / "bin" / "python"
    site = subprocess.run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    Path(site, "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("BTK_LOAD_PLUGINS", "PYTHONPATH")}
    pip = [str(py), "-m", "pip", "install", "-q", "--no-deps"]
    subprocess.run([*pip, "-e", str(ROOT)], check=True, env=env, capture_output=True)
    btk = [str(env_dir / "bin" / "btk")]
    before = subprocess.run([*btk, "plugins"], capture_output=True, text=True, env={**env, "COLUMNS": "200"})
    assert before.returncode == 0 and "zipper" not in before.stdout
    subprocess.run([*pip, str(ARTEFACTS)], check=True, env=env, capture_output=True)
    listed = subprocess.run([*btk, "plugins"], capture_output=True, text=True, env={**env, "COLUMNS": "200"})
    line = next(line for line in listed.stdout.splitlines() if "btk-mri-artefacts" in line)
    assert "btk-mri-artefacts 0.1.0" in line and "degraders: zipper" in line
    run_args = [*btk, "run", "-R", "per_class=4", "-R", "test_per_class=2", "--image-size", "32", "--epochs", "1",
                "--degrade", "zipper:strength=0.9", "--out", str(tmp_path / "runs"), "--json"]
    used = subprocess.run(run_args, capture_output=True, text=True, env=env, timeout=300)
    assert used.returncode == 0, used.stderr
    import json

    summary = json.loads(used.stdout)  # --json: the run's summary alone on standard output
    assert summary["config"]["test_degrade"] == ["zipper:strength=0.9"]
    assert len(summary["metrics"]) == 2 and "clean" in summary["metrics"]  # clean and zipped
    subprocess.run([str(py), "-m", "pip", "uninstall", "-y", "-q", "btk-mri-artefacts"], check=True, env=env)
    after = subprocess.run([*btk, "plugins"], capture_output=True, text=True, env={**env, "COLUMNS": "200"})
    assert "zipper" not in after.stdout
    gone = subprocess.run(run_args, capture_output=True, text=True, env=env, timeout=300)
    assert gone.returncode != 0 and "unknown degrader 'zipper'" in gone.stderr


@pytest.mark.slow
def test_mlflow_reporter_logs_the_run(tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    import mlflow
    from mlflow.tracking import MlflowClient

    module = _import_from(MLFLOW, "btk_mlflow")
    plugins.register_plugin(module)
    monkeypatch.setenv("BTK_MLFLOW_DIR", str(tmp_path / "store"))
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["run", "-R", "per_class=6", "-R", "test_per_class=3", "--image-size", "32",
                                      "--epochs", "1", "--degrade", "blur", "--out", str(tmp_path / "runs"),
                                      "--reporter", "mlflow"])
    assert result.exit_code == 0, result.output
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}")
    found = mlflow.search_runs(experiment_names=["btk"])
    assert len(found) == 1
    row = found.iloc[0]
    run_dir = next((tmp_path / "runs").iterdir())
    import json

    metrics = json.loads((run_dir / "metrics.json").read_text())["conditions"]
    assert row["metrics.clean_accuracy"] == pytest.approx(metrics["clean"]["accuracy"])
    assert row["metrics.blur_accuracy"] == pytest.approx(metrics["blur"]["accuracy"])
    assert row["params.config.reader"] == "synthetic"
    artefacts = {a.path for a in MlflowClient().list_artifacts(row["run_id"])}
    assert {"model.keras", "report.html", "metrics.json", "predictions.csv"} <= artefacts
    assert not (tmp_path / "mlruns").exists()  # everything went to BTK_MLFLOW_DIR


@pytest.mark.slow
def test_mlflow_reporter_passes_the_contract_kit(btk_sample_run, tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    module = _import_from(MLFLOW, "btk_mlflow")
    plugins.register_plugin(module)
    monkeypatch.setenv("BTK_MLFLOW_DIR", str(tmp_path / "store"))
    reporter = plugins.get_host().reporters.get("mlflow")
    assert "MLflow: run" in check_reporter(reporter, btk_sample_run)
    assert (tmp_path / "store" / "mlflow.db").exists()
