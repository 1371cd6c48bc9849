"""Robustness sweeps: a trained run's test images under every degrader at every severity level,
scored the way ImageNet-C scores corruption robustness.

For a model f and degrader d with error E(f, d, s) at severity s and clean error E(f, clean):

- corruption error CE(f, d) = sum_s E(f, d, s) / sum_s E(base, d, s),
- relative CE(f, d) = sum_s [E(f, d, s) - E(f, clean)] / sum_s [E(base, d, s) - E(base, clean)],
- mCE and relative mCE: their means over the degraders, against a baseline run.

The sweep is written to ``robustness.json`` in the run directory; :func:`btk.render.plots.robustness_plot`
draws it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from btk.dataset import load_dataset
from btk.degraders import Degradation
from btk.errors import BtkError
from btk.feedback import Feedback, Task
from btk.plugins import PluginHost
from btk.runs import Run, recipe_read_options

SUBSETS = {"test": "test", "validation": "val"}
"""The subsets a sweep can run on: the name on the command line -> the name in ``split.csv``."""


def result_file(subset: str, scores: bool = False) -> str:
    """``robustness.json`` for the test images, ``robustness-validation.json`` for the
    validation images (``robustness-scores[-validation].json`` for the scores)."""
    stem = "robustness-scores" if scores else "robustness"
    return f"{stem}.json" if subset == "test" else f"{stem}-{subset}.json"


def test_images(run: Run, host: PluginHost, subset: str = "test") -> tuple[np.ndarray, np.ndarray]:
    """The run's test (or ``validation``) images, read again as the run read them, and their
    class indices."""
    import csv

    cfg, recipe = run.config["config"], run.config["recipe"]
    with open(run.path / "split.csv", newline="") as fh:
        wanted = {r["source"] for r in csv.DictReader(fh) if r["subset"] == SUBSETS[subset]}
    if not wanted:
        raise BtkError(f"{run.path}: the run has no {subset} images")
    reader = host.readers.get(cfg["reader"])
    options = recipe_read_options(recipe, cfg.get("reader_options"))
    data = load_dataset(reader, Path(cfg["data"]) if cfg.get("data") else None, options)
    keep = np.array([s in wanted for s in data.sources])
    if keep.sum() != len(wanted):
        raise BtkError(f"{run.path}: {len(wanted) - int(keep.sum())} {subset} images of the run are missing "
                       f"from {cfg['data']}")
    classes = run.classes
    if cfg["task"] == "binary":
        y = np.array([0 if str(label) == classes[0] else 1 for label in data.labels[keep]])
    else:
        index = {c: k for k, c in enumerate(classes)}
        y = np.array([index[str(label)] for label in data.labels[keep]])
    return data.images[keep], y


def sweep(run: Run, host: PluginHost, degraders: list[str] | None = None,
          progress: Callable[[str], None] | None = None, extra: list[Degradation] | None = None,
          subset: str = "test", tta: bool | None = None, devices: str = "") -> dict[str, Any]:
    """Accuracy of ``run``'s model on its test (or ``validation``) images, clean and under every
    level of every degrader that has levels (or those named), and under each of the ``extra``
    degradations (e.g. the report's own blur); writes ``robustness.json`` (or
    ``robustness-validation.json``) into the run. ``tta``: test-time augmentation (default: the
    run's own choice). ``devices``: split every batch over these devices
    (:func:`btk.distribute.scoring`)."""
    from btk.distribute import scoring

    with scoring(devices):
        return _sweep(run, host, degraders, progress, extra, subset, tta)


def _sweep(run: Run, host: PluginHost, degraders: list[str] | None, progress: Callable[[str], None] | None,
           extra: list[Degradation] | None, subset: str, tta: bool | None) -> dict[str, Any]:
    from btk.training import predict

    names = degraders or [d.name for d in host.degraders if d.levels]
    model = run.load_model(tta)
    images, y = test_images(run, host, subset)
    scale = run.config["recipe"]["scale"]
    intensity = run.config["recipe"].get("intensity", "none")
    seed = run.config["config"].get("seed", 0)

    def accuracy(x: np.ndarray) -> float:
        return float((run.task_probabilities(predict(model, x, scale, intensity=intensity)).argmax(axis=1) == y).mean())

    result: dict[str, Any] = {"run": run.name, "subset": subset, "tta": run.tta if tta is None else tta,
                              "n": len(y), "clean": accuracy(images), "degraders": {}}
    for name in names:
        degrader = host.degraders.get(name)
        if not degrader.levels:
            raise BtkError(f"degrader '{name}' has no severity levels")
        accs = []
        for level in range(1, len(degrader.levels) + 1):
            accs.append(accuracy(Degradation(degrader, {}, level).apply(images, seed=seed)))
            if progress:
                progress(f"{name}@{level}")
        result["degraders"][name] = accs
    if extra:
        result["extra"] = {d.label: accuracy(d.apply(images, seed=seed)) for d in extra}
    _write_json(run.path / result_file(subset), result)
    return result


def corruption_errors(model: dict[str, Any], baseline: dict[str, Any]) -> dict[str, Any]:
    """CE and relative CE per degrader, mCE and relative mCE of ``model`` against ``baseline``
    (sweep results on the same test images)."""
    if model["n"] != baseline["n"]:
        raise BtkError("the two sweeps were not made on the same number of test images")
    ce, rel = {}, {}
    for name, accs in model["degraders"].items():
        if name not in baseline["degraders"]:
            continue
        err = 1 - np.array(accs)
        base = 1 - np.array(baseline["degraders"][name])
        ce[name] = float(err.sum() / max(base.sum(), 1e-9))
        drop_base = float((base - (1 - baseline["clean"])).sum())
        rel[name] = float((err - (1 - model["clean"])).sum() / drop_base) if abs(drop_base) > 1e-9 else None
    rel_values = [v for v in rel.values() if v is not None]
    return {"baseline": baseline["run"], "ce": ce, "relative_ce": rel,
            "mce": float(np.mean(list(ce.values()))) if ce else None,
            "relative_mce": float(np.mean(rel_values)) if rel_values else None}


def level_count(result: dict[str, Any]) -> int:
    """The most severity levels any degrader of a sweep has (degraders may have any number)."""
    return max((len(accs) for accs in result["degraders"].values()), default=0)


def extra_losses(result: dict[str, Any], baseline: dict[str, Any]) -> list[dict[str, Any]]:
    """For each explicit degradation of a sweep (``extra``): the accuracy, the loss against the
    clean accuracy, the baseline's loss, and the loss as a share of the baseline's (``None``
    when the baseline lost nothing)."""
    rows = []
    for label, acc in (result.get("extra") or {}).items():
        loss = result["clean"] - acc
        base_loss = baseline["clean"] - baseline["extra"][label] if label in (baseline.get("extra") or {}) else None
        share = loss / base_loss if base_loss is not None and base_loss > 1e-9 else None
        rows.append({"label": label, "accuracy": acc, "loss": loss, "baseline_loss": base_loss, "share": share})
    return rows


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text(json.dumps(obj, indent=1) + "\n")
    tmp.replace(path)


@dataclass
class RunRobustness:
    """One run's sweep scored against the baseline's (:func:`compare_runs`)."""

    run: Run
    result: dict[str, Any]
    scores: dict[str, Any]
    extra_losses: list[dict[str, Any]]


def compare_runs(runs: list[Run], baseline: Run, host: PluginHost, degraders: list[str] | None = None,
                 extra: list[Degradation] | None = None, feedback: Feedback | None = None,
                 subset: str = "test", tta: bool | None = None, devices: str = "") -> list[RunRobustness]:
    """Sweep every run (and the baseline, if it is not among them) on its ``subset`` images,
    score each against the baseline's sweep, and write each run's ``robustness-scores.json``
    (``robustness-scores-validation.json``).

    ``devices``: split every batch over these devices (:func:`btk.distribute.scoring`).

    Raises:
        BtkError: a named degrader has no severity levels, devices that cannot be used.
    """
    feedback = feedback or Feedback()
    for name in degraders or []:
        if not host.degraders.get(name).levels:
            raise BtkError(f"degrader '{name}' has no severity levels")
    def describe(task: Task, name: str) -> Callable[[str], None]:
        return lambda what: task.update(description=f"{name}: {what}")

    results: dict[str, dict[str, Any]] = {}
    for run in ([baseline] if baseline.path not in [r.path for r in runs] else []) + runs:
        with feedback.task(f"sweeping {run.name}") as task:
            results[run.name] = sweep(run, host, degraders, describe(task, run.name), extra=extra, subset=subset,
                                      tta=tta, devices=devices)
    base = results[baseline.name]
    out = []
    for run in runs:
        scores = corruption_errors(results[run.name], base)
        (run.path / result_file(subset, scores=True)).write_text(json.dumps(scores, indent=1) + "\n")
        out.append(RunRobustness(run, results[run.name], scores, extra_losses(results[run.name], base)))
    return out
