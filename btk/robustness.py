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

import csv
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from btk.degraders import Degradation
from btk.errors import BtkError
from btk.feedback import Feedback, Task
from btk.plugins import PluginHost
from btk.run_files import write_json_atomic
from btk.runs import Run
from btk.scoring import score_conditions

SUBSETS = {"test": "test", "validation": "selection"}
"""The subsets a sweep can run on: the name on the command line -> the role of the run's images
it sweeps (:mod:`btk.record`): ``validation`` is the selection images, held out from training."""


def subset_images(run: Run, subset: str) -> str:
    """The ``split.csv`` subset a sweep of ``run``'s ``subset`` (test or validation) reads.

    Raises:
        BtkError: ``validation`` for a run without selection images it did not train on (a fold
            ensemble, whose validation images each trained K-1 of its members; an evaluation).
    """
    if subset == "test":
        return "test"
    return run.require_role(SUBSETS[subset], f"btk robustness --subset {subset}",
                            "sweep its test images (--subset test), or a run that held out its own validation "
                            "images", untrained=True)


def result_file(subset: str, kind: str = "") -> str:
    """``robustness.json`` for the test images, ``robustness-validation.json`` for the
    validation images; ``kind`` ``scores`` (CE and mCE) or ``predictions`` (per image, CSV)."""
    stem = f"robustness-{kind}" if kind else "robustness"
    suffix = ".csv" if kind == "predictions" else ".json"
    return f"{stem}{suffix}" if subset == "test" else f"{stem}-{subset}{suffix}"


def sweep(run: Run, host: PluginHost, degraders: list[str] | None = None,
          progress: Callable[[str], None] | None = None, extra: list[Degradation] | None = None,
          subset: str = "test", tta: bool | None = None, devices: str = "", runtime: str = "keras") -> dict[str, Any]:
    """Accuracy of ``run``'s scorer on its test (or ``validation``) images (an evaluation's: the
    images it scored), clean and under every level of every degrader that has levels (or those
    named), and under each of the ``extra`` degradations (e.g. the report's own blur); writes
    ``robustness.json`` (or ``robustness-validation.json``) into the run, and every image's
    answer under every condition to ``robustness-predictions.csv``. ``tta``: test-time
    augmentation (default: the run's own choice). ``devices``: split every batch over these
    devices (:func:`btk.distribute.scoring`). ``runtime``: what computes the network
    (:mod:`btk.onnx_runtime`)."""
    names = degraders or [d.name for d in host.degraders if d.levels]
    levels = []
    for name in names:
        degrader = host.degraders.get(name)
        if not degrader.levels:
            raise BtkError(f"degrader '{name}' has no severity levels")
        levels += [Degradation(degrader, {}, level) for level in range(1, len(degrader.levels) + 1)]
    images = run.images(subset_images(run, subset), host)
    with run.scorer(tta, devices, runtime=runtime) as scorer:
        results = score_conditions(scorer, images.images, images.y, images.sources, levels + list(extra or []),
                                   run.config.seed, progress=progress, examples=False)
        runtime = scorer.runtime
    accuracy = {label: m["accuracy"] for label, m in results.conditions.items()}
    result: dict[str, Any] = {"run": run.name, "subset": subset, "tta": run.tta if tta is None else tta,
                              "runtime": runtime, "n": len(images.y), "clean": accuracy["clean"], "degraders": {}}
    for name in names:
        result["degraders"][name] = [accuracy[d.label] for d in levels if d.degrader.name == name]
    if extra:
        result["extra"] = {d.label: accuracy[d.label] for d in extra}
    write_json_atomic(run.path / result_file(subset), result)
    with open(run.path / f".{result_file(subset, 'predictions')}.partial", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["condition", "source", "label", "predicted", *[f"p_{c}" for c in run.classes]])
        writer.writerows(results.rows)
    (run.path / f".{result_file(subset, 'predictions')}.partial").replace(run.path / result_file(subset, "predictions"))
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


@dataclass
class RunRobustness:
    """One run's sweep scored against the baseline's (:func:`compare_runs`)."""

    run: Run
    result: dict[str, Any]
    scores: dict[str, Any]
    extra_losses: list[dict[str, Any]]


def compare_runs(runs: list[Run], baseline: Run, host: PluginHost, degraders: list[str] | None = None,
                 extra: list[Degradation] | None = None, feedback: Feedback | None = None,
                 subset: str = "test", tta: bool | None = None, devices: str = "",
                 runtime: str = "keras") -> list[RunRobustness]:
    """Sweep every run (and the baseline, if it is not among them) on its ``subset`` images
    (:func:`subset_images`),
    score each against the baseline's sweep, write each run's ``robustness-scores.json``
    (``robustness-scores-validation.json``) and, for test images, each run's model card again.

    ``devices``: split every batch over these devices (:func:`btk.distribute.scoring`).

    Raises:
        BtkError: a named degrader has no severity levels, devices that cannot be used, a run
            without such images.
    """
    from btk.distribute import check_devices

    check_devices(devices)
    feedback = feedback or Feedback()
    for name in degraders or []:
        if not host.degraders.get(name).levels:
            raise BtkError(f"degrader '{name}' has no severity levels")
    for run in [baseline, *runs]:  # every run's images checked before any is swept
        subset_images(run, subset)

    def describe(task: Task, name: str) -> Callable[[str], None]:
        return lambda what: task.update(description=f"{name}: {what}")

    results: dict[str, dict[str, Any]] = {}
    for run in ([baseline] if baseline.path not in [r.path for r in runs] else []) + runs:
        with feedback.task(f"sweeping {run.name}") as task:
            results[run.name] = sweep(run, host, degraders, describe(task, run.name), extra=extra, subset=subset,
                                      tta=tta, devices=devices, runtime=runtime)
    base = results[baseline.name]
    out = []
    for run in runs:
        scores = corruption_errors(results[run.name], base)
        write_json_atomic(run.path / result_file(subset, "scores"), scores)
        out.append(RunRobustness(run, results[run.name], scores, extra_losses(results[run.name], base)))
    if subset == "test":  # each run's card shows its sweep
        from btk.model_card import write_card

        for item in out:
            if not item.run.is_evaluation:
                write_card(item.run)
    return out
