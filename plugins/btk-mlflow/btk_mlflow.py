"""The ``mlflow`` reporter: logs a finished btk run to a local MLflow tracking store.

Parameters: the run's configuration and recipe (flattened). Metrics: accuracy, balanced
accuracy, macro precision / recall / F1 and macro AUC per test condition (``clean_accuracy``,
``blur_accuracy``, ...), and the same on the test images with no copy in training
(``clean_nocopy_accuracy``, ...). Artefacts: the model file, ``metrics.json``, ``config.json``,
``predictions.csv`` and the HTML report. Tags: the btk run directory.

Where: ``BTK_MLFLOW_DIR`` (default ``./mlruns``) holds ``mlflow.db`` (SQLite) and the artefacts;
``BTK_MLFLOW_EXPERIMENT`` names the experiment (default ``btk``). No server is needed::

    mlflow.set_tracking_uri("sqlite:///mlruns/mlflow.db"); mlflow.search_runs(experiment_names=["btk"])
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from btk.api import RegisterReporter, Reporter, build_report, get_host, hookimpl

METRICS = ("accuracy", "balanced_accuracy", "precision_macro", "recall_macro", "f1_macro", "auc_macro")


def _flatten(obj, prefix=""):
    out = {}
    for key, value in obj.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, name + "."))
        else:
            out[name] = str(value)[:500]
    return out


def _key(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "_-./ " else "_" for ch in text)


def tracking_dir() -> Path:
    """The folder of the tracking store."""
    return Path(os.environ.get("BTK_MLFLOW_DIR", "mlruns")).resolve()


def log_run(run, console) -> str:
    """Log ``run`` to MLflow; returns the MLflow run id."""
    import mlflow
    from mlflow.tracking import MlflowClient

    folder = tracking_dir()
    folder.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(f"sqlite:///{folder / 'mlflow.db'}")
    name = os.environ.get("BTK_MLFLOW_EXPERIMENT", "btk")
    client = MlflowClient()
    experiment = client.get_experiment_by_name(name)
    experiment_id = (experiment.experiment_id if experiment else
                     client.create_experiment(name, artifact_location=(folder / "artifacts").as_uri()))
    metrics = {}
    for cond, m in run.metrics["conditions"].items():
        metrics.update({_key(f"{cond}_{k}"): float(m[k]) for k in METRICS if m.get(k) is not None})
    leak = (run.metrics.get("leakage") or {}).get("conditions_without_copies") or {}
    for cond, m in leak.items():
        metrics.update({_key(f"{cond}_nocopy_{k}"): float(m[k]) for k in METRICS if m.get(k) is not None})
    with mlflow.start_run(experiment_id=experiment_id, run_name=run.name) as active:
        params = _flatten({"config": {k: v for k, v in run.config.to_json().items() if k != "recipe"},
                           "recipe": run.config.recipe.__dict__})
        mlflow.log_params(dict(list(params.items())[:100]))
        mlflow.log_metrics(metrics)
        mlflow.set_tag("btk.run_dir", str(run.path))
        for file in ("model.keras", "metrics.json", "config.json", "predictions.csv"):
            if (run.path / file).exists():
                mlflow.log_artifact(str(run.path / file))

        html = get_host().reporters.get("html").write
        with tempfile.TemporaryDirectory() as tmp:
            report = Path(tmp) / "report.html"
            html(build_report([run]), report)
            mlflow.log_artifact(str(report))
        console.print(f"MLflow: run {active.info.run_id} in {folder}")
        return active.info.run_id


@hookimpl
def btk_register_reporters(register: RegisterReporter) -> None:
    register(Reporter("mlflow", log_run, "log the run to a local MLflow store (BTK_MLFLOW_DIR, default ./mlruns)"))
