"""``btk evaluate``: a finished run's model scored on another labelled dataset (external
validation), read exactly as the run read its own data (image size, channels, crop, intensity,
scaling, the task's labels), clean and under degradations. Images with an exact or near copy
among the run's training images are found and scored apart too. The result is an evaluation
directory in the run format (:mod:`btk.runs`), written atomically, that ``btk report`` reads.
"""

from __future__ import annotations

import csv
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np

from btk.cache import gather
from btk.classmap import map_labels, unknown_classes, vocabulary_error
from btk.config import Recipe, RunConfig
from btk.dataset import Dataset, load_dataset
from btk.degraders import Degradation, resolve_degradations
from btk.duplicates import Fingerprints, copy_mask
from btk.errors import BtkError
from btk.feedback import Feedback
from btk.pipeline import TestResults, load_for_config, model_precision, score_images, versions
from btk.plugins import PluginHost, get_host
from btk.provenance import now, provenance
from btk.runs import EVALUATIONS, Run, RunWriter, load_run, new_run_id, recipe_read_options, unique_dir
from btk.split import fingerprints_of

SPLIT_NAMES = {"testing": "test", "test": "test", "training": "train", "train": "train"}
SPLIT_TITLES = {"test": "Testing", "train": "Training"}


@dataclass
class EvaluationPlan:
    """What to evaluate: a run on a dataset (:func:`plan_evaluation` checks it)."""

    run: Run
    data: Path
    reader: str
    reader_options: dict[str, str]
    split: str | None = None
    class_map: dict[str, str] = field(default_factory=dict)
    degradations: list[Degradation] = field(default_factory=list)
    duplicate_threshold: float = 0.95
    strict: bool = False
    tta: bool | None = None  # None: the run's own choice
    devices: str = ""  # split every batch over these devices (btk.distribute.scoring); "": Keras' default


def plan_evaluation(run_dir: Path | str, data: Path | str, host: PluginHost | None = None, reader: str | None = None,
                    reader_options: dict[str, str] | None = None, split: str | None = None,
                    class_map: dict[str, str] | None = None, degrade: tuple[str, ...] | list[str] = (),
                    duplicate_threshold: float | None = None, strict: bool = False,
                    tta: bool | None = None, devices: str = "") -> EvaluationPlan:
    """Check everything that can be checked before any image is read.

    The reader defaults to the run's; its options default to the run's when the reader is the
    same. The copy threshold defaults to the run's.

    Raises:
        BtkError: not a finished run, a missing data path, an unknown reader or degrader,
            devices that cannot be used (:func:`btk.distribute.check_devices`).
    """
    from btk.distribute import check_devices

    check_devices(devices)
    host = host or get_host()
    run = load_run(run_dir)
    if run.is_evaluation:
        raise BtkError(f"{run.path} is an evaluation, not a run: give the run it evaluated")
    cfg = run.config["config"]
    data = Path(data)
    if not data.exists():
        raise BtkError(f"data not found: {data}")
    reader_name = reader or cfg["reader"]
    host.readers.get(reader_name)
    options = dict(reader_options or {})
    if not reader_options and reader_name == cfg["reader"]:
        options = dict(cfg.get("reader_options") or {})
    threshold = cfg.get("duplicate_threshold", 0.95) if duplicate_threshold is None else duplicate_threshold
    degradations = resolve_degradations(host, tuple(degrade))
    return EvaluationPlan(run, data, reader_name, options, split, dict(class_map or {}), degradations, threshold,
                          strict, tta, devices)


def select_split(data: Dataset, split: str | None) -> tuple[np.ndarray, str]:
    """Indices of the images to evaluate and the split's name: ``split`` (Testing, Training or
    all); by default the data's Testing split if it has one, else everything.

    Raises:
        BtkError: the split names no image.
    """
    present = sorted({str(s) for s in data.splits if s})
    if split is None:
        if (data.splits == "test").any():
            return np.where(data.splits == "test")[0], "Testing"
        return np.arange(len(data)), "all"
    if split.lower() == "all":
        return np.arange(len(data)), "all"
    wanted = SPLIT_NAMES.get(split.lower(), split)
    index = np.where(data.splits == wanted)[0]
    if not len(index):
        known = ", ".join(SPLIT_TITLES.get(s, s) for s in present) or "none (one class-folder tree: use all)"
        raise BtkError(f"no images in split '{split}' (splits in the data: {known})")
    return index, SPLIT_TITLES.get(wanted, wanted)


def run_vocabulary(run: Run) -> list[str]:
    """The class names of the data the run was trained on (``split.csv``)."""
    with open(run.path / "split.csv", newline="") as fh:
        return sorted({row["label"] for row in csv.DictReader(fh)})


def task_targets(run: Run, labels: list[str], class_map: dict[str, str], data_name: str) -> np.ndarray:
    """The run's integer labels for the dataset's ``labels``, renamed by ``class_map``.

    A multiclass run needs every (renamed) class among its classes; a binary run needs its
    negative class present and every other name among the classes it was trained on (or
    ``tumor``).

    Raises:
        BtkError: a mapped class the data does not have, or names that do not match (both
            vocabularies listed).
    """
    unmapped = unknown_classes(class_map, labels)
    if unmapped:
        raise BtkError(f"--map names classes {data_name} does not have: {', '.join(unmapped)} "
                       f"({data_name} has {', '.join(sorted(set(labels)))})")
    mapped = map_labels(labels, class_map)
    cfg = run.config["config"]
    if cfg["task"] == "binary":
        negative = cfg["negative_class"]
        vocabulary = sorted({*run_vocabulary(run), negative, run.classes[1]})
        if unknown_classes(mapped, vocabulary) or negative not in mapped:
            raise vocabulary_error(data_name, mapped, f"run {run.name}", vocabulary, class_map)
        return np.array([0 if m == negative else 1 for m in mapped])
    if unknown_classes(mapped, run.classes):
        raise vocabulary_error(data_name, mapped, f"run {run.name}", run.classes, class_map)
    index = {c: k for k, c in enumerate(run.classes)}
    return np.array([index[m] for m in mapped])


def training_fingerprints(run: Run, host: PluginHost, feedback: Feedback) -> Fingerprints | None:
    """Fingerprints of the images the run trained and validated on, read again from its data
    (the decode cache makes this cheap); ``None`` (with a warning) where they cannot be read."""
    config = RunConfig.from_json(run.config["config"])
    if config.data is not None and not Path(config.data).exists():
        feedback.warn(f"copy check skipped: the run's training data {config.data} is not here")
        return None
    try:
        data = load_for_config(config, host, feedback)
    except BtkError as exc:
        feedback.warn(f"copy check skipped: the run's training data could not be read ({exc})")
        return None
    with open(run.path / "split.csv", newline="") as fh:
        seen = {row["source"] for row in csv.DictReader(fh) if row["subset"] in ("train", "val")}
    pool = np.array([i for i, s in enumerate(data.sources) if s in seen], dtype=int)
    if len(pool) < len(seen):
        feedback.warn(f"copy check: {len(seen) - len(pool)} of the run's {len(seen)} training images are no "
                      "longer in its data; copies of them cannot be found")
    return fingerprints_of(data).subset(pool)


@dataclass
class Evaluation:
    """An evaluation's images, scores and timings (:func:`evaluate_run`)."""

    plan: EvaluationPlan
    split: str
    n_images: int
    results: TestResults
    copies_checked: bool
    skipped: list[tuple[str, str]]
    load_seconds: float
    predict_seconds: float
    data_fingerprint: dict[str, Any] = field(default_factory=dict)
    precision: str = "float32"
    started: str = ""
    distribution: dict[str, Any] | None = None  # the devices scored on (btk.distribute.scoring)


def evaluate_run(plan: EvaluationPlan, host: PluginHost | None = None, feedback: Feedback | None = None) -> Evaluation:
    """Read the plan's data as its run read its own, predict it clean and under each
    degradation, and score it; the images with a copy in the run's training data are also
    scored apart.

    Raises:
        BtkError: nothing readable, an empty split, class names that do not match.
    """
    host = host or get_host()
    feedback = feedback or Feedback()
    run = plan.run
    started = now()
    t_load = time.perf_counter()
    reader = host.readers.get(plan.reader)
    with feedback.task(f"reading {plan.data} ({reader.name})") as task:
        options = recipe_read_options(run.config["recipe"], plan.reader_options)
        data = load_dataset(reader, plan.data, options, strict=plan.strict,
                            progress=lambda done, total: task.update(completed=done, total=total))
    if data.skipped:
        feedback.warn(f"skipped {len(data.skipped)} unreadable input(s), e.g. {data.skipped[0][0]}: "
                      f"{data.skipped[0][1]}")
    index, split = select_split(data, plan.split)
    y = task_targets(run, [str(x) for x in data.labels[index]], plan.class_map, plan.data.name)
    has_copy = np.zeros(len(index), bool)
    copies_checked = False
    if plan.duplicate_threshold > 0:
        reference = training_fingerprints(run, host, feedback)
        if reference is not None:
            has_copy = copy_mask(fingerprints_of(data).subset(index), reference, plan.duplicate_threshold)
            copies_checked = True
    load_seconds = time.perf_counter() - t_load

    from btk.device import step_batch_size
    from btk.distribute import scoring
    from btk.training import predict

    with scoring(plan.devices, feedback) as layout:
        model = run.load_model(plan.tta)
        recipe = Recipe(**run.config["recipe"])
        step = step_batch_size(recipe, model)
        feedback.info(f"evaluating {run.name} on {len(index)} images of {plan.data} ({split}), "
                      f"{1 + len(plan.degradations)} condition(s)")

        def probabilities(images: np.ndarray) -> np.ndarray:
            return run.task_probabilities(predict(model, images, recipe.scale, step, intensity=recipe.intensity))

        t_predict = time.perf_counter()
        with feedback.task("predicting", total=1 + len(plan.degradations)) as task:
            done = [0]

            def counted(images: np.ndarray) -> np.ndarray:
                probs = probabilities(images)
                done[0] += 1
                task.update(completed=done[0])
                return probs

            results = score_images(gather(data.images, index), y, run.classes, data.sources[index], counted,
                                   plan.degradations, int(run.config["config"].get("seed", 0)), has_copy)
        predict_seconds = time.perf_counter() - t_predict
    return Evaluation(plan, split, len(index), results, copies_checked, list(data.skipped), load_seconds,
                      predict_seconds, data.fingerprint, model_precision(model), started, layout)


def default_destination(plan: EvaluationPlan, split: str, out: Path | None = None, name: str = "") -> Path:
    """``OUT/<time>-eval-<name>`` (``OUT`` defaults to the run's ``evaluations`` folder; the
    name to the data folder's name and the split)."""
    parent = Path(out) if out else plan.run.path / EVALUATIONS
    label = name or f"{plan.data.name}-{split}"
    return unique_dir(parent, new_run_id(f"eval-{label}"))


def write_evaluation(final: Path, evaluation: Evaluation, total_seconds: float, command: str | None = None) -> Run:
    """Write the evaluation directory ``final`` (atomically) and read it back (``command``: the
    command line for its provenance; default: this process's)."""
    plan, results, run = evaluation.plan, evaluation.results, evaluation.plan.run
    config = {**run.config["config"], "data": str(plan.data), "reader": plan.reader,
              "reader_options": plan.reader_options, "tta": run.tta if plan.tta is None else plan.tta}
    resolved: dict[str, Any] = {
        "kind": "evaluation",
        "evaluation": {"run": str(run.path.resolve()), "run_id": run.name, "data": str(plan.data),
                       "reader": plan.reader, "reader_options": plan.reader_options, "split": evaluation.split,
                       "class_map": plan.class_map, "duplicate_threshold": plan.duplicate_threshold},
        "config": config,
        "recipe": run.config["recipe"],
        "classes": run.classes,
        **({"trained_classes": run.config["trained_classes"]} if run.config.get("trained_classes") else {}),
        "input_shape": run.config.get("input_shape"),
        "train_degrade": run.config.get("train_degrade", []),
        "test_degrade": [d.to_json() for d in plan.degradations],
        **({"distribution": evaluation.distribution} if evaluation.distribution else {}),
        "plugins": run.config.get("plugins", {}),
        "versions": versions(),
        "provenance": provenance(evaluation.precision, evaluation.data_fingerprint, evaluation.started or now(),
                                 command),
    }
    n = evaluation.n_images
    with RunWriter(final, kind="evaluation") as writer:
        writer.write_json("config.json", resolved)
        writer.write_json("history.json", {})
        np.savez_compressed(writer.path("examples.npz"), **cast(dict[str, Any], results.examples))
        writer.write_csv("predictions.csv", ["condition", "source", "label", "predicted",
                                             *[f"p_{c}" for c in run.classes]], results.rows)
        writer.write_json("metrics.json", {
            "conditions": results.conditions,
            "collapsed": any(c["collapsed"] for c in results.conditions.values()),
            "leakage": {"threshold": plan.duplicate_threshold, "checked": evaluation.copies_checked,
                        "test_images": n, "test_with_copy_in_train": int(results.has_copy.sum()),
                        "conditions_without_copies": results.unseen_conditions},
            "counts": {"test": n},
            "timing": {"load_seconds": evaluation.load_seconds, "predict_seconds": evaluation.predict_seconds,
                       "predicted_images_per_second":
                           n * len(results.conditions) / max(evaluation.predict_seconds, 1e-9),
                       "total_seconds": total_seconds},
            "skipped": [{"source": s, "reason": r} for s, r in evaluation.skipped],
        })
    return load_run(final)
