"""``btk evaluate``: a finished run's model scored on another labelled dataset (external
validation), read exactly as the run read its own data (image size, channels, crop, intensity,
scaling, the task's labels) and scored by the run's own scorer (:mod:`btk.scoring`), clean and
under degradations. Images with an exact or near copy among the run's training images are found
and scored apart too. The result is an evaluation directory in the run format (:mod:`btk.runs`),
written atomically, that ``btk report``, ``btk robustness`` and the run's model card read.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np

from btk.cache import gather
from btk.classmap import map_labels, unknown_classes, vocabulary_error
from btk.config import require_run_name
from btk.conformal import CONFORMAL_FILE
from btk.dataset import Dataset, load_dataset, unread_records, warn_unread
from btk.degraders import Degradation, resolve_degradations
from btk.duplicates import Fingerprints, copy_mask
from btk.errors import BtkError
from btk.feedback import Feedback
from btk.pipeline import model_precision, versions
from btk.plugins import PluginHost, get_host
from btk.provenance import now, provenance
from btk.record import EVALUATION_ROLES
from btk.run_files import EVALUATIONS, RunWriter, check_writable, new_run_id, unique_dir
from btk.runs import Run, load_run
from btk.scoring import TestResults, score_conditions
from btk.shift import REFERENCE_FILE, read_reference
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
    out: Path | None = None  # the parent of the evaluation directory (None: the run's evaluations/)
    name: str = ""
    coverages: tuple[float, ...] = ()  # prediction-set coverages to measure (btk.conformal); (): the defaults
    runtime: str = "keras"  # what computes the network (btk.onnx_runtime): keras, onnx or auto


def evaluation_reader(run: Run, data: Path, host: PluginHost, reader: str | None) -> str:
    """The reader for ``data``: ``reader`` if given; else the run's, unless the run read
    generated data (no data path, e.g. the synthetic phantoms), whose reader would ignore
    ``data``: then the reader that recognises it (:func:`btk.predict_inputs.pick_reader`)."""
    if reader:
        host.readers.get(reader)
        return reader
    if run.config.data is None:
        from btk.predict_inputs import pick_reader

        return str(pick_reader(host, data, None).name)
    return run.config.reader


def reader_for_data(run: Run, data: Path, host: PluginHost, reader: str | None,
                    reader_options: dict[str, str] | None) -> tuple[str, dict[str, str]]:
    """The reader for another dataset ``data`` (:func:`evaluation_reader`) and its options: those
    given, else the run's when the reader is the run's."""
    reader_name = evaluation_reader(run, data, host, reader)
    options = dict(reader_options or {})
    if not reader_options and reader_name == run.config.reader:
        options = dict(run.config.reader_options)
    return reader_name, options


def plan_evaluation(run_dir: Path | str, data: Path | str, host: PluginHost | None = None, reader: str | None = None,
                    reader_options: dict[str, str] | None = None, split: str | None = None,
                    class_map: dict[str, str] | None = None, degrade: tuple[str, ...] | list[str] = (),
                    duplicate_threshold: float | None = None, strict: bool = False,
                    tta: bool | None = None, devices: str = "", out: Path | str | None = None,
                    name: str = "", coverages: tuple[float, ...] | list[float] = (),
                    runtime: str = "keras") -> EvaluationPlan:
    """Check everything that can be checked before any image is read.

    The reader defaults to the run's (:func:`evaluation_reader`); its options default to the
    run's when the reader is the same. The copy threshold defaults to the run's. ``coverages``:
    the prediction-set coverages to measure (default :data:`btk.conformal.DEFAULT_COVERAGES`
    where the run has prediction sets).

    Raises:
        BtkError: not a finished run, a missing data path, an unknown reader or degrader,
            devices that cannot be used (:func:`btk.distribute.check_devices`), a bad name, an
            output folder that cannot be written, a coverage outside (0, 1), coverages asked of
            a run without prediction sets.
    """
    from btk.conformal import check_coverage
    from btk.distribute import check_devices
    from btk.onnx_runtime import check_runtime, chosen_runtime

    require_run_name(name)
    check_devices(devices)
    check_runtime(runtime, devices)
    coverages = tuple(check_coverage(c) for c in coverages)
    host = host or get_host()
    run = load_run(run_dir)
    if run.is_evaluation:
        raise BtkError(f"{run.path} is an evaluation, not a run: give the run it evaluated")
    if coverages:
        run.require_conformal()
    data = Path(data)
    if not data.exists():
        raise BtkError(f"data not found: {data}")
    reader_name, options = reader_for_data(run, data, host, reader, reader_options)
    threshold = run.config.duplicate_threshold if duplicate_threshold is None else duplicate_threshold
    degradations = resolve_degradations(host, tuple(degrade))
    parent = check_writable(out if out is not None else run.path / EVALUATIONS)
    return EvaluationPlan(run, data, reader_name, options, split, dict(class_map or {}), degradations, threshold,
                          strict, tta, devices, parent, name, coverages,
                          chosen_runtime(run, runtime, run.tta if tta is None else tta, devices))


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


def check_vocabulary(run: Run, labels: list[str], class_map: dict[str, str], data_name: str) -> None:
    """Refuse labels the run cannot score: a multiclass run needs every (renamed) class among
    its classes; a binary run needs its negative class present and every other name among the
    classes it was trained on (or ``tumor``).

    Raises:
        BtkError: a mapped class the data does not have, or names that do not match (both
            vocabularies listed).
    """
    unmapped = unknown_classes(class_map, labels)
    if unmapped:
        raise BtkError(f"--map names classes {data_name} does not have: {', '.join(unmapped)} "
                       f"({data_name} has {', '.join(sorted(set(labels)))})")
    mapped = map_labels(labels, class_map)
    if run.config.task == "binary":
        negative = run.config.negative_class
        vocabulary = sorted({*run.data_vocabulary(), negative, run.classes[1]})
        if unknown_classes(mapped, vocabulary) or negative not in mapped:
            raise vocabulary_error(data_name, mapped, f"run {run.name}", vocabulary, class_map)
    elif unknown_classes(mapped, run.classes):
        raise vocabulary_error(data_name, mapped, f"run {run.name}", list(run.classes), class_map)


def training_fingerprints(run: Run, host: PluginHost, feedback: Feedback) -> Fingerprints | None:
    """Fingerprints of the images the run trained and validated on, read again from its data
    (:meth:`btk.runs.Run.dataset`); ``None`` (with a warning) where they cannot be read."""
    try:
        data = run.dataset(host, feedback)
    except BtkError as exc:
        feedback.warn(f"copy check skipped: the run's training data could not be read ({exc})")
        return None
    rows = run.split_rows()
    # by role: the images that trained it or selected its epoch (not a fold run's held-out parts)
    subsets = {r["subset"] for r in rows}
    seen_subsets = {s for s in subsets if run.trained_on(s) or "selection" in run.roles_of(s)}
    seen = {r["source"] for r in rows if r["subset"] in seen_subsets}
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
    rows: list[list[Any]] = field(default_factory=list)  # split.csv: the images scored
    data_fingerprint: dict[str, Any] = field(default_factory=dict)
    precision: str = "float32"
    started: str = ""
    distribution: dict[str, Any] | None = None  # the devices scored on (btk.distribute.scoring)
    notes: list[tuple[str, str]] = field(default_factory=list)  # inputs read in part (Dataset.notes)


def evaluate_run(plan: EvaluationPlan, host: PluginHost | None = None, feedback: Feedback | None = None) -> Evaluation:
    """Read the plan's data as its run read its own, score it with the run's scorer, clean and
    under each degradation; the images with a copy in the run's training data are also scored
    apart.

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
        data = load_dataset(reader, plan.data, run.read_options(plan.reader_options), strict=plan.strict,
                            progress=lambda done, total: task.update(completed=done, total=total))
    warn_unread(data, feedback.warn)
    index, split = select_split(data, plan.split)
    labels = [str(x) for x in data.labels[index]]
    check_vocabulary(run, labels, plan.class_map, plan.data.name)
    y = run.targets(map_labels(labels, plan.class_map))
    has_copy = np.zeros(len(index), bool)
    copies_checked = False
    if plan.duplicate_threshold > 0:
        reference = training_fingerprints(run, host, feedback)
        if reference is not None:
            has_copy = copy_mask(fingerprints_of(data).subset(index), reference, plan.duplicate_threshold)
            copies_checked = True
    load_seconds = time.perf_counter() - t_load
    rows = [[data.sources[i], data.labels[i], data.groups[i], "test", int(c) if copies_checked else ""]
            for i, c in zip(index, has_copy)]
    with run.scorer(plan.tta, plan.devices, feedback=feedback, runtime=plan.runtime) as scorer:
        scorer = scorer.with_shift_reference(read_reference(run.path))  # the shift check's (btk.shift)
        feedback.info(f"evaluating {run.name} on {len(index)} images of {plan.data} ({split}), "
                      f"{1 + len(plan.degradations)} condition(s)")
        t_predict = time.perf_counter()
        with feedback.task("predicting", total=1 + len(plan.degradations)) as task:
            done = [0]

            def counted(_label: str) -> None:
                done[0] += 1
                task.update(completed=done[0])

            results = score_conditions(scorer, gather(data.images, index), y, data.sources[index],
                                       plan.degradations, run.config.seed, has_copy, counted,
                                       coverages=plan.coverages or None, groups=data.groups[index])
        predict_seconds = time.perf_counter() - t_predict
        precision, layout = model_precision(scorer.model), scorer.layout
    return Evaluation(plan, split, len(index), results, copies_checked, list(data.skipped), load_seconds,
                      predict_seconds, rows, data.fingerprint, precision, started, layout, list(data.notes))


def default_destination(plan: EvaluationPlan, split: str) -> Path:
    """``OUT/<time>-eval-<name>`` (``OUT``: the plan's folder, by default the run's
    ``evaluations``; the name defaults to the data folder's name and the split)."""
    parent = plan.out if plan.out is not None else plan.run.path / EVALUATIONS
    label = plan.name or f"{plan.data.name}-{split}"
    return unique_dir(parent, new_run_id(f"eval-{label}"))


def write_evaluation(final: Path, evaluation: Evaluation, total_seconds: float, command: str | None = None) -> Run:
    """Write the evaluation directory ``final`` (atomically) and read it back (``command``: the
    command line for its provenance; default: this process's)."""
    plan, results, run = evaluation.plan, evaluation.results, evaluation.plan.run
    config = {**run.config.to_json(), "data": str(plan.data), "reader": plan.reader,
              "reader_options": plan.reader_options, "tta": run.tta if plan.tta is None else plan.tta}
    resolved: dict[str, Any] = {
        "kind": "evaluation",
        "roles": dict(EVALUATION_ROLES),
        "evaluation": {"run": str(run.path.resolve()), "run_id": run.name, "data": str(plan.data),
                       "reader": plan.reader, "reader_options": plan.reader_options, "split": evaluation.split,
                       "class_map": plan.class_map, "duplicate_threshold": plan.duplicate_threshold,
                       "runtime": plan.runtime},
        "config": config,
        "recipe": run.config.recipe.__dict__,
        "classes": list(run.classes),
        **({"trained_classes": list(run.trained_classes)} if run.trained_classes != run.classes else {}),
        "input_shape": list(run.input_shape),
        "train_degrade": [dict(d.__dict__) for d in run.train_degrade],
        "test_degrade": [d.to_json() for d in plan.degradations],
        "probabilities": "calibrated",
        **({"calibration": run.calibration.to_json()} if run.calibration else {}),
        **({"distribution": evaluation.distribution} if evaluation.distribution else {}),
        **({"ensemble": run.ensemble.to_json()} if run.ensemble else {}),
        "plugins": dict(run.plugins),
        "versions": versions(),
        "provenance": provenance(evaluation.precision, evaluation.data_fingerprint, evaluation.started or now(),
                                 command),
    }
    n = evaluation.n_images
    with RunWriter(final, kind="evaluation") as writer:
        writer.write_json("config.json", resolved)
        writer.write_json("history.json", {})
        if run.conformal() is not None:  # the evaluation is read on its own: it keeps its sets' calibration
            run.conformal().write(writer.path(CONFORMAL_FILE))
            reference = read_reference(run.path)
            if reference is not None:
                reference.write(writer.path(REFERENCE_FILE))
        writer.write_csv("split.csv", ["source", "label", "group", "subset", "copy_in_train"], evaluation.rows)
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
            **unread_records(evaluation.skipped, evaluation.notes),
        })
    return load_run(final)


def evaluate(run_dir: Path | str, data: Path | str, host: PluginHost | None = None, feedback: Feedback | None = None,
             command: str | None = None, **options: Any) -> Run:
    """``btk evaluate``, the whole job: plan (:func:`plan_evaluation`, every ``options`` there),
    score (:func:`evaluate_run`), write the evaluation directory and, when it went into the
    run's own ``evaluations`` folder, the run's model card again.

    Returns:
        The evaluation, read back (its run: :meth:`btk.runs.Run.evaluated_run`).
    """
    from btk.model_card import write_card

    t_start = time.perf_counter()
    host = host or get_host()
    plan = plan_evaluation(run_dir, data, host, **options)
    evaluation = evaluate_run(plan, host, feedback)
    destination = default_destination(plan, evaluation.split)
    result = write_evaluation(destination, evaluation, time.perf_counter() - t_start, command)
    if destination.parent.resolve() == (plan.run.path / EVALUATIONS).resolve():
        write_card(plan.run)  # its evaluations are read from disk: the new one is among them
    return result
