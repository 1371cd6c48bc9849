"""Ensembles: several runs' networks averaged into one model, written as one run.

``btk run --ensemble N`` trains N members (seeds ``seed`` .. ``seed + N - 1``) on one split
(the first seed's), each written as its own run, then :func:`combine` writes the ensemble run:
its ``model.keras`` is a plain Keras model that feeds the image to every member and averages
their probabilities, so ``predict``, ``evaluate``, ``explain``, ``robustness`` and ``report``
treat it as one model, and ``keras.saving.load_model`` reads it without btk. ``btk ensemble
RUN...`` combines runs that already exist.

The ensemble's temperature is fitted on the validation images, which works only when every
member held out the same ones (members of one ``--ensemble`` do); runs with other validation
splits are combined without a temperature, and the run says so.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from btk.config import RunConfig
from btk.errors import BtkError
from btk.feedback import Feedback
from btk.plugins import PluginHost, get_host
from btk.runs import Run, new_run_id, unique_dir

# what members must share: their inputs are read and scored alike
SAME_RECIPE = ("image_size", "channels", "crop", "intensity", "scale")
SAME_CONFIG = ("reader", "data", "task", "negative_class")


def ensemble_model(models: Sequence[Any], name: str = "ensemble") -> Any:
    """One Keras model whose output is the mean of ``models``' outputs (each model becomes a
    layer named ``member_K``). Plain Keras saves and loads it; no custom layer is involved."""
    import keras

    first = models[0]
    inputs = keras.Input(shape=tuple(first.input_shape[1:]), dtype=first.inputs[0].dtype, name="image")
    outputs = []
    for k, model in enumerate(models, 1):
        model.name = f"member_{k}"
        outputs.append(model(inputs))
    mean = keras.layers.Average(dtype="float32", name="mean_probability")(outputs)
    return keras.Model(inputs, mean, name=name)


def _subset_sources(run: Run, subset: str) -> set[str]:
    with open(run.path / "split.csv", newline="") as fh:
        return {r["source"] for r in csv.DictReader(fh) if r["subset"] == subset}


def check_members(runs: Sequence[Run]) -> None:
    """Members must be runs (not evaluations) of the same data, task, classes and input
    preparation, scored on the same test images.

    Raises:
        BtkError: fewer than two runs, or one that differs from the first (named, with what).
    """
    if len(runs) < 2:
        raise BtkError("an ensemble needs at least two runs")
    first = runs[0]
    tests = _subset_sources(first, "test")
    for run in runs:
        if run.is_evaluation:
            raise BtkError(f"{run.path} is an evaluation, not a run")
        if run.config.get("ensemble"):
            raise BtkError(f"{run.path} is an ensemble already; combine its members instead")
    for run in runs[1:]:
        if run.classes != first.classes:
            raise BtkError(f"{run.name} has classes {run.classes}; {first.name} has {first.classes}")
        for key in SAME_RECIPE:
            if run.config["recipe"].get(key) != first.config["recipe"].get(key):
                raise BtkError(f"{run.name} reads images differently from {first.name}: {key} "
                               f"{run.config['recipe'].get(key)} against {first.config['recipe'].get(key)}")
        for key in SAME_CONFIG:
            if run.config["config"].get(key) != first.config["config"].get(key):
                raise BtkError(f"{run.name} differs from {first.name} in {key}: {run.config['config'].get(key)} "
                               f"against {first.config['config'].get(key)}")
        if _subset_sources(run, "test") != tests:
            raise BtkError(f"{run.name} was tested on other images than {first.name}")


def combine(runs: Sequence[Run], out_dir: Path | str, host: PluginHost | None = None,
            feedback: Feedback | None = None, name: str = "", tta: bool | None = None,
            command: str | None = None, data: Any = None) -> Run:
    """Write one run whose model averages the ``runs``' models, scored on their test images
    (and on their validation images when all held out the same ones: its temperature).

    Args:
        out_dir: parent folder of the new run.
        name: the run's name [``ensembleN``].
        tta: test-time augmentation around the ensemble [the first member's choice].
        data: the members' dataset, already loaded (``btk run --ensemble`` passes it).

    Raises:
        BtkError: members that cannot be combined (:func:`check_members`).
    """
    from btk.pipeline import Fitted, calibrate, evaluate_test, prepare, write_run
    from btk.provenance import now
    from btk.training import predict
    from btk.tta import scoring_model

    host = host or get_host()
    feedback = feedback or Feedback()
    t_start, started = time.perf_counter(), now()
    check_members(runs)
    first = runs[0]
    cfg = first.config["config"]
    base = RunConfig.from_json(cfg)
    split_seed = cfg.get("split_seed") if cfg.get("split_seed") is not None else cfg["seed"]
    config = base.with_changes(name=name or f"ensemble{len(runs)}", ensemble=len(runs), split_seed=split_seed,
                               tta=first.tta if tta is None else tta)
    prep = prepare(config, host, feedback, data)
    val = prep.split["val"]
    val_sources = {str(s) for s in prep.data.sources[val]}
    shared_val = all(_subset_sources(r, "val") == val_sources for r in runs)
    feedback.info(f"combining {len(runs)} runs: " + ", ".join(r.name for r in runs))
    model = ensemble_model([r.load_model(tta=False) for r in runs], name=config.name or "ensemble")
    scorer = scoring_model(model, config.tta)
    recipe = config.recipe
    members = []
    for run in runs:
        clean = run.metrics.get("conditions", {}).get("clean", {})
        members.append({"run": run.name, "path": str(run.path.resolve()), "seed": run.config["config"].get("seed"),
                        "test_accuracy": clean.get("accuracy"), "val_accuracy": _best_val_accuracy(run),
                        "train_seconds": run.metrics.get("timing", {}).get("train_seconds")})
    summary: dict[str, Any] = {"members": members, "shared_validation": shared_val}
    calibration = None
    if shared_val:
        from btk.cache import gather

        probs = predict(scorer, gather(prep.data.images, val), recipe.scale, intensity=recipe.intensity)
        summary["val_accuracy"] = float((probs.argmax(axis=1) == prep.y_fit[val]).mean())
        calibration = calibrate(prep, scorer, raw=probs)
    else:
        feedback.warn("the members held out different validation images (each trained on some of the others'): "
                      "no temperature fitted and no validation accuracy for the ensemble")
    results = evaluate_test(prep, scorer)
    train_seconds = sum(m["train_seconds"] or 0.0 for m in members)
    fitted = Fitted(model, {}, train_seconds, 0, recipe.batch_size, len(prep.split["train"]), calibration)
    final = unique_dir(Path(out_dir), new_run_id(config.name))
    return write_run(final, prep, fitted, results, time.perf_counter() - t_start, started, command,
                     extra={"config": {"ensemble": summary}, "metrics": {"ensemble": summary}})


def _best_val_accuracy(run: Run) -> float | None:
    history = run.history
    values = history.get("val_accuracy") or []
    if not values:
        return None
    best = int((history.get("best_epoch") or [0])[0])
    return float(values[best - 1]) if best else float(max(values))


def run_ensemble(config: RunConfig, out_dir: Path | str = "runs", feedback: Feedback | None = None,
                 host: PluginHost | None = None, command: str | None = None) -> tuple[list[Run], Run]:
    """``btk run --ensemble N``: train ``config.ensemble`` members on one split (seeds
    ``config.seed`` onwards), each written as a run of its own, then :func:`combine` them.

    Returns:
        (members, ensemble run).
    """
    from btk.pipeline import load_for_config, run_experiment

    host = host or get_host()
    feedback = feedback or Feedback()
    n = config.ensemble
    if n < 2:
        raise BtkError(f"--ensemble needs at least 2 members, got {n}")
    data = load_for_config(config, host, feedback)
    split_seed = config.seed if config.split_seed is None else config.split_seed
    stem = config.name or config.task
    members = []
    for k in range(n):
        member = config.with_changes(seed=config.seed + k, split_seed=split_seed, ensemble=1,
                                     name=f"{stem}-member{k + 1}")
        feedback.info(f"member {k + 1} of {n}: seed {member.seed}")
        members.append(run_experiment(member, out_dir, feedback, host, data=data, command=command))
    ensemble = combine(members, out_dir, host, feedback, name=f"{stem}-ensemble{n}", tta=config.tta,
                       command=command, data=data)
    return members, ensemble

