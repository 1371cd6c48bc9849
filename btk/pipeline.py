"""One run, end to end, in four named steps that other commands reuse:

- :func:`prepare`: validate the plan, read the data, label it for the task, split it;
- :func:`fit`: build the model and train it (a checkpoint every epoch);
- :func:`evaluate_test`: predict the test images, clean and under each test degradation;
- :func:`write_run`: write the run directory (atomically: a hidden folder renamed when complete).

:func:`run_experiment` chains them; it is what ``btk run`` calls, and a notebook can call it too.
Progress and messages go to a :class:`btk.feedback.Feedback`; nothing here draws.
"""

from __future__ import annotations

import platform
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np

from btk import __version__, distribute
from btk.augment import augment_names, make_augmenter
from btk.cache import gather
from btk.calibration import fit_temperature, nll
from btk.checkpoint import Checkpoint, PartialRun, save_model_file
from btk.config import RunConfig
from btk.conformal import CONFORMAL_FILE, Conformal
from btk.dataset import Dataset, load_dataset, unread_records, warn_unread
from btk.degraders import Degradation, resolve_degradations
from btk.device import build_with_precision, step_batch_size
from btk.duplicates import copy_mask
from btk.errors import BtkError
from btk.feedback import Feedback
from btk.folds import FOLD_ROLES, parse_fold
from btk.folds import folds_for as fold_parts
from btk.image_augment import chain, make_image_augmenter
from btk.lesions import LabelAugment
from btk.model_card import write_card
from btk.plugins import PluginHost, get_host
from btk.provenance import now, provenance
from btk.record import check_roles, infer_roles
from btk.run_files import RunWriter, check_writable, new_run_id, unique_dir
from btk.runs import Calibration, Run, load_run, parse_record
from btk.scoring import Scorer, TestResults, score_conditions
from btk.shift import REFERENCE_FILE, Reference
from btk.split import fingerprints_of, label_data, make_split
from btk.stats import reliability
from btk.training import Rows, train
from btk.tta import scoring_model
from btk.types import ModelSpec, ReadOptions

__all__ = [
    "Fitted",
    "Prepared",
    "calibrate",
    "evaluate_test",
    "explain_test",
    "fit",
    "folds_for",
    "label_data",
    "load_for_config",
    "parse_fold",
    "prepare",
    "prepared_from_run",
    "run_experiment",
    "train_run",
    "versions",
    "write_run",
]


@dataclass
class Prepared:
    """A run's plan, checked, with its data read, labelled and split (:func:`prepare`).

    Attributes:
        y, classes: the task's labels and class names (what is evaluated).
        y_fit, fit_classes: what the network learns: the task's labels, or every class when a
            binary task is learned through the classes (``recipe.binary_via_classes``).
        split: indices of ``train``, ``val`` and ``test`` into ``data``.
    """

    config: RunConfig
    host: PluginHost
    model_spec: ModelSpec
    data: Dataset
    y: np.ndarray
    classes: list[str]
    y_fit: np.ndarray
    fit_classes: list[str]
    split: dict[str, np.ndarray]
    train_degradations: list[Degradation]
    test_degradations: list[Degradation]
    augment: Callable[[np.ndarray, np.random.Generator], np.ndarray] | None
    load_seconds: float

    @property
    def via_classes(self) -> bool:
        """Whether the network learns more classes than the task reports."""
        return self.fit_classes is not self.classes

    @property
    def pool(self) -> np.ndarray:
        """The training and validation images: what the model saw."""
        return np.concatenate([self.split["train"], self.split["val"]])


@dataclass
class Fitted:
    """A trained model (:func:`fit`) and what its training recorded."""

    model: Any
    history: dict[str, Any]
    train_seconds: float
    epochs_run: int
    step: int
    n_train: int
    calibration: Calibration | None = None
    distribution: dict[str, Any] | None = None  # the device layout trained on (btk.distribute.begin)


def model_precision(model: Any) -> str:
    """The dtype policy a Keras model computes in (``float32``, ``mixed_bfloat16``, ...)."""
    policy = getattr(model, "dtype_policy", None)
    return str(getattr(policy, "name", policy) or "float32")


def versions() -> dict[str, str]:
    """The versions of btk and the libraries a run depends on, and the machine."""
    import cv2
    import keras
    import sklearn

    return {"btk": __version__, "keras": keras.__version__, "backend": keras.backend.backend(),
            "numpy": np.__version__, "opencv": cv2.__version__, "scikit-learn": sklearn.__version__,
            "python": platform.python_version(), "machine": platform.platform()}


def load_for_config(config: RunConfig, host: PluginHost, feedback: Feedback | None = None) -> Dataset:
    """Read the config's data, reporting progress and skipped inputs to ``feedback``."""
    feedback = feedback or Feedback()
    reader = host.readers.get(config.reader)
    options = ReadOptions(config.recipe.image_size, config.recipe.channels, dict(config.reader_options),
                          crop=config.recipe.crop)
    path = Path(config.data) if config.data else None
    with feedback.task(f"reading ({reader.name})") as task:
        data = load_dataset(reader, path, options, strict=config.strict,
                            progress=lambda done, total: task.update(completed=done, total=total))
    warn_unread(data, feedback.warn)
    if config.labels:
        from btk.label_corrections import apply_corrections

        data, record = apply_corrections(data, config.labels)
        feedback.info(f"--labels {config.labels}: {record['changed']} label(s) changed, {record['dropped']} "
                      f"image(s) dropped (SHA-256 {record['sha256'][:12]}...)")
    return data


def folds_for(config: RunConfig, data: Dataset, y_fit: np.ndarray, classes: list[str], folds: int,
              host: PluginHost | None = None, feedback: Feedback | None = None) -> list[dict[str, np.ndarray]]:
    """The ``folds`` splits of a fold ensemble (:func:`btk.folds.folds_for`), as positions in
    ``data``; with ``--labels`` the data is read again as the reader read it, to draw them there.

    Raises:
        BtkError: the folds cannot be drawn (:func:`btk.split.fold_splits`).
    """
    as_read = load_for_config(config.with_changes(labels=None), host or get_host(), Feedback()) if config.labels \
        else None
    return fold_parts(config, data, y_fit, classes, folds, as_read)


def prepare(config: RunConfig, host: PluginHost | None = None, feedback: Feedback | None = None,
            data: Dataset | None = None, split: dict[str, np.ndarray] | None = None) -> Prepared:
    """Check everything that can be checked before reading, then read, label and split the data.

    Args:
        data: an already loaded dataset for this config's reader, data and image options
            (a suite loads once and reuses it).
        split: train, val and test positions to use instead of splitting (a fold of a fold
            ensemble, :func:`btk.split.fold_splits`, adds its ``oof`` and ``calibration`` parts).

    Raises:
        BtkError: an unknown plugin, a bad degradation, an image too small for the model, too
            few classes, no test or no validation images.
    """
    host = host or get_host()
    recipe = config.recipe
    model_spec = host.models.get(config.model_name)
    host.readers.get(config.reader)
    train_deg = resolve_degradations(host, config.train_degrade)
    test_deg = resolve_degradations(host, config.test_degrade)
    augment_with = augment_names(host, recipe.augment_degraders)
    degrade_augment = make_augmenter([host.degraders.get(n) for n in augment_with], recipe.augment_probability,
                                     recipe.augment_max_level) if augment_with else None
    augment = chain(make_image_augmenter() if recipe.augment_images else None, degrade_augment)
    if recipe.image_size < model_spec.min_image_size:
        raise BtkError(f"model '{model_spec.name}' needs an image size of at least {model_spec.min_image_size}, "
                       f"got {recipe.image_size}")
    distribute.check_devices(config.devices, "training")  # before the data is read
    if config.labels and data is None:
        from btk.label_corrections import read_corrections

        read_corrections(config.labels)  # an unreadable or empty file, before the data is read
    t_start = time.perf_counter()
    if data is None:
        data = load_for_config(config, host, feedback)
    load_seconds = time.perf_counter() - t_start
    y, classes, y_fit, fit_classes = label_data(config, data)
    if split is None and config.fold:
        k, n = parse_fold(config.fold)
        split = folds_for(config, data, y_fit, list(fit_classes), n, host, feedback)[k - 1]
    split = split if split is not None else make_split(data, y_fit, config)
    if len(split["test"]) == 0:
        raise BtkError("no test images")
    if recipe.intensity == "nyul":  # learned from the training images; the run records the scale
        from dataclasses import replace

        from btk.intensity import fit_nyul

        config = config.with_changes(recipe=replace(recipe, intensity=fit_nyul(gather(data.images, split["train"]))))
    if len(split["val"]) == 0:
        raise BtkError("no validation images: use more data or a larger --val-fraction")
    return Prepared(config, host, model_spec, data, y, classes, y_fit, fit_classes, split, train_deg, test_deg,
                    augment, load_seconds)


def prepared_from_run(run: Run, host: PluginHost | None = None, feedback: Feedback | None = None,
                      data: Dataset | None = None, config: RunConfig | None = None) -> Prepared:
    """A finished run's :class:`Prepared` again, without splitting anything: its data read
    again (:meth:`btk.runs.Run.dataset`; ``data``: already read) and its images taken from its
    ``split.csv`` by role (:func:`split_by_role`). ``config``: the configuration to record instead
    of the run's (an ensemble's, an adapted run's).

    Raises:
        BtkError: an evaluation, or a run whose data is no longer where it was.
    """
    if run.is_evaluation:
        raise BtkError(f"{run.path} is an evaluation, not a run")
    host = host or get_host()
    config = config or run.config
    t_start = time.perf_counter()
    data = data if data is not None else run.dataset(host, feedback)
    load_seconds = time.perf_counter() - t_start
    y, classes, y_fit, fit_classes = label_data(config, data)
    split = split_by_role(run, data)
    return Prepared(config, host, host.models.get(config.model_name), data, y, classes, y_fit, fit_classes, split,
                    resolve_degradations(host, config.train_degrade), resolve_degradations(host, config.test_degrade),
                    None, load_seconds)


def split_by_role(run: Run, data: Dataset) -> dict[str, np.ndarray]:
    """A finished run's images as a prepared split, by their roles (:mod:`btk.record`), as
    positions in ``data``:

    - ``train``: every image that trained the network (``training``; an ensemble's
      ``out_of_fold``, each of which trained K-1 members) or selected its epoch where that subset
      also trained it (a fold ensemble's);
    - ``val``: its ``selection`` images, where they did not train it (empty otherwise);
    - ``calibration``: its ``calibration`` images, only where they are another subset than ``val``
      and did not train it (a fold run's, a fold ensemble's calibration part; a site sample);
    - ``test``: its ``test`` images.

    ``train`` and ``val`` together are what the network saw (:attr:`Prepared.pool`, the copy check).
    """
    def at(*roles: str) -> np.ndarray:
        subsets = {s for s in (run.role_subset(r) for r in roles) if s and run.subset_sources(s)}
        found = [run.positions(data, s) for s in sorted(subsets)]
        if len(found) == 1:
            return found[0]  # in split.csv order, as before roles
        return np.unique(np.concatenate(found)).astype(int) if found else np.zeros(0, int)

    selection, calibration = run.role_subset("selection"), run.role_subset("calibration")
    untrained_selection = selection is not None and not run.trained_on(selection)
    trained = ("training", "out_of_fold") if run.ensemble is not None else ("training",)
    split = {"train": at(*trained, *(() if untrained_selection else ("selection",))),
             "val": at("selection") if untrained_selection else np.zeros(0, int), "test": at("test")}
    if calibration is not None and calibration != (selection if untrained_selection else None) \
            and not run.trained_on(calibration):
        split["calibration"] = at("calibration")
    return split


def negative_spots(prep: Prepared) -> LabelAugment | None:
    """The recipe's ``negative_spots`` augmentation of the negative class's training images
    (:func:`btk.lesions.negative_spot_augmenter`), or ``None`` when it is off.

    Raises:
        BtkError: it is on, but the negative class is not among the classes trained on.
    """
    share = prep.config.recipe.negative_spots
    if share <= 0:
        return None
    negative = prep.config.negative_class
    if negative not in prep.fit_classes:
        raise BtkError(f"negative_spots {share}: the negative class '{negative}' is not among the training classes "
                       f"({', '.join(prep.fit_classes)}); set --negative-class")
    from btk.lesions import negative_spot_augmenter

    return negative_spot_augmenter(share, list(prep.fit_classes).index(negative))


def fit(prep: Prepared, checkpoint: Checkpoint | None = None, feedback: Feedback | None = None) -> Fitted:
    """Build the model and train it on the prepared split.

    Args:
        checkpoint: written after every epoch; when it already holds epochs, training resumes
            from it and continues as the interrupted run would have.
    """
    import keras

    feedback = feedback or Feedback()
    config, recipe, data, split = prep.config, prep.config.recipe, prep.data, prep.split
    x_train: np.ndarray | Rows
    x_val: np.ndarray | Rows
    if prep.train_degradations:
        x_pool = gather(data.images, prep.pool)
        for deg in prep.train_degradations:
            x_pool = deg.apply(x_pool, seed=config.seed)
        n_train = len(split["train"])
        x_train, x_val = x_pool[:n_train], x_pool[n_train:]
    else:  # no copy of the images: batches are gathered from the (memory-mapped) dataset
        x_train, x_val = Rows(data.images, split["train"]), Rows(data.images, split["val"])
    keras.utils.set_random_seed(config.seed)
    layout = distribute.begin(config.devices, recipe.batch_size, feedback)  # before the model is built
    try:
        options: dict[str, Any] = {"learning_rate": recipe.learning_rate, "label_smoothing": recipe.label_smoothing,
                                   "ema": recipe.ema, **config.model_options}
        model = build_with_precision(
            lambda: prep.model_spec.build(tuple(data.images.shape[1:]), len(prep.fit_classes), options),
            recipe.precision)
        checkpoint_epochs = checkpoint.epoch if checkpoint is not None else 0
        step = step_batch_size(recipe, model)
        feedback.info(f"{config.name or 'run'}: {len(x_train)} train, {len(x_val)} val, "
                      f"{len(split['test'])} test images, {len(prep.classes)} classes"
                      + (f" (trained on all {len(prep.fit_classes)})" if prep.via_classes else "")
                      + f", model {prep.model_spec.name} ({model.count_params():,} parameters), preset "
                      f"{recipe.name}, {recipe.epochs} epochs, backend {keras.backend.backend()}"
                      + (f", micro-batches of {step}" if step < recipe.batch_size else "")
                      + (", resumed from its checkpoint" if checkpoint_epochs > 0 else ""))
        with feedback.task("training", total=recipe.epochs) as epochs_task, \
                feedback.task("  epoch 1") as batch_task:

            def on_epoch(epoch: int, logs: dict[str, float], seconds: float) -> None:
                info = "  ".join(f"{k} {v:.3f}" for k, v in logs.items() if "accuracy" in k or "loss" in k)
                if "learning_rate" in logs:
                    info += f"  lr {logs['learning_rate']:.2g}"
                epochs_task.update(completed=epoch + 1, info=info)
                batch_task.update(description=f"  epoch {epoch + 2}", completed=0)
                feedback.info(f"epoch {epoch + 1:>3}/{recipe.epochs}  {info}  ({seconds:.1f} s)")

            def on_batch(batch: int, total: int) -> None:
                batch_task.update(completed=batch, total=total)

            t_train = time.perf_counter()
            model, history = train(model, x_train, prep.y_fit[split["train"]], x_val, prep.y_fit[split["val"]],
                                   len(prep.fit_classes), recipe, config.seed, on_epoch=on_epoch,
                                   on_batch=on_batch, augment=prep.augment, checkpoint=checkpoint,
                                   label_augment=negative_spots(prep))
            train_seconds = time.perf_counter() - t_train
    finally:
        distribute.end()
    if "stopped_epoch" in history:
        feedback.info(f"early stop after epoch {history['stopped_epoch'][0]} (best: epoch "
                      f"{history.get('best_epoch', ['?'])[0]})")
    epochs_run = len(history.get("loss", [])) - checkpoint_epochs
    return Fitted(model, history, train_seconds, epochs_run, step, len(x_train), distribution=layout)


def scorer_for(prep: Prepared, model: Any, temperature: float = 1.0) -> Scorer:
    """The :class:`btk.scoring.Scorer` of a model trained on ``prep``: the run's test-time
    augmentation around it, its classes and ``temperature``."""
    config = prep.config
    return Scorer.for_recipe(scoring_model(model, config.tta), config.recipe, prep.fit_classes, prep.classes,
                             config.negative_class, temperature)


def calibrate(prep: Prepared, scorer: Scorer, outputs: np.ndarray | None = None,
              origin: str | None = None, scored_here: bool = False) -> Calibration | None:
    """Fit a temperature (:func:`btk.calibration.fit_temperature`) on the network's outputs for
    the clean validation images (``outputs``: those, when already scored), measure ECE and NLL
    over the task's classes before and after, and keep the images' calibrated probabilities as
    the calibration of the prediction sets (:class:`btk.conformal.Conformal`; ``origin``: what
    the images are; default ``calibration`` for a ``calibration`` part, else ``validation``), and
    their features for the shift check (:class:`btk.shift.Reference`; not when ``outputs`` are
    given, unless ``scored_here`` says that this scorer gave them: they may come from other
    networks). A split with a ``calibration``
    part (a fold run's, a fold ensemble's: :mod:`btk.folds`; a site sample) is calibrated on it
    instead of its validation images.

    Returns:
        The calibration, or None when there are no validation images.
    """
    val = prep.split["calibration"] if "calibration" in prep.split else prep.split["val"]
    origin = origin or ("calibration" if "calibration" in prep.split else "validation")
    if len(val) == 0:
        return None
    reference = None
    if outputs is None or scored_here:
        images = gather(prep.data.images, val)
        outputs = scorer.outputs(images) if outputs is None else outputs
        reference = Reference(scorer.features(images), tuple(str(g) for g in prep.data.groups[val]))
    temperature = fit_temperature(outputs, prep.y_fit[val])
    fitted = scorer.with_temperature(temperature)
    raw, calibrated = fitted.probabilities(outputs, calibrated=False), fitted.probabilities(outputs)
    y = prep.y[val]
    sets = Conformal(tuple(prep.classes), calibrated, y, tuple(str(s) for s in prep.data.sources[val]), origin,
                     delta=prep.config.pac_delta)
    return Calibration(temperature, reliability(y, raw)["ece"], reliability(y, calibrated)["ece"], nll(raw, y),
                       nll(calibrated, y), sets.summary(), sets, reference)


def evaluate_test(prep: Prepared, scorer: Scorer, feedback: Feedback | None = None,
                  explain: bool = True) -> TestResults:
    """Score the test images with ``scorer``, clean and under each test degradation; test images
    with an exact or near copy among the training images are also scored apart. The clean test
    images are then explained (:func:`explain_test`; ``explain=False`` leaves that out)."""
    config, data = prep.config, prep.data
    test = prep.split["test"]
    has_copy = np.zeros(len(test), bool)
    if config.duplicate_threshold > 0:
        fps = fingerprints_of(data)
        has_copy = copy_mask(fps.subset(test), fps.subset(prep.pool), config.duplicate_threshold)
    images = gather(data.images, test)
    results = score_conditions(scorer, images, prep.y[test], data.sources[test], prep.test_degradations,
                               config.seed, has_copy, groups=data.groups[test])
    if explain:
        layer = getattr(prep.model_spec, "gradcam_layer", None)
        results = explain_test(results, scorer, images, prep.y[test], config.seed, feedback, layer)
    return results


def explain_test(results: TestResults, scorer: Scorer, images: np.ndarray, y: np.ndarray, seed: int,
                 feedback: Feedback | None = None, layer_name: str | None = None) -> TestResults:
    """Add heat maps of the clean test ``images`` (labels ``y``) to ``results``
    (:func:`btk.explain.explain_test_images`): the summary as ``results.explanations``, the
    examples' maps as ``examples["heat/clean"]``. Never fails: any error is one warning."""
    from btk.explain import explain_test_images

    t0 = time.perf_counter()
    try:
        index = results.example_index if results.example_index is not None else np.zeros(0, int)
        summary, heat = explain_test_images(scorer, images, index, y, layer_name, seed=seed)
    except Exception as e:  # an explanation never fails a run
        (feedback or Feedback()).warn(f"no heat maps of the test images: {type(e).__name__}: {e}"[:300])
        return results
    results.explanations = {**summary, "seconds": round(time.perf_counter() - t0, 3)}
    results.examples["heat/clean"] = heat
    return results


def split_rows(data: Dataset, split: dict[str, np.ndarray], has_copy: np.ndarray) -> list[list[Any]]:
    """The rows of ``split.csv``: each image of the split with its subset, and for test images
    whether a copy is in the training data."""
    subset = np.empty(len(data), dtype=object)
    for part, idx in split.items():
        subset[idx] = part
    copy_in_train = dict(zip(split["test"].tolist(), has_copy.tolist()))
    return [[data.sources[i], data.labels[i], data.groups[i], subset[i],
             int(copy_in_train[i]) if i in copy_in_train else ""]
            for i in range(len(data)) if subset[i] is not None]


def write_run(final: Path, prep: Prepared, fitted: Fitted, results: TestResults, total_seconds: float,
              started: str | None = None, command: str | None = None, extra: dict[str, Any] | None = None,
              rows: list[list[Any]] | None = None, roles: dict[str, str] | None = None) -> Run:
    """Write the run directory ``final`` (through its hidden ``.partial`` folder) and read it back.

    Args:
        started: when the run started (:func:`btk.provenance.now`); ``command``: the command
            line (default: this process's), both for the provenance record.
        extra: more top-level entries for ``config.json`` and ``metrics.json`` (an ensemble's
            members), as ``{"config": {...}, "metrics": {...}}``, and more CSV files
            (``"tables": {name: (header, rows)}``, a fold ensemble's ``oof.csv``).
        rows: the rows of ``split.csv`` (default: the prepared split's, :func:`split_rows`).
        roles: which subset serves each role (:mod:`btk.record`), kept as ``config.json``'s
            ``roles`` (default: ``extra``'s ``config`` ``roles``, else inferred from what made the
            run, :func:`btk.record.infer_roles`).
    """
    config, data, split, host = prep.config, prep.data, prep.split, prep.host
    test = split["test"]
    resolved = {
        "config": config.to_json(),
        "recipe": config.recipe.__dict__,
        "classes": prep.classes,
        **({"trained_classes": prep.fit_classes} if prep.via_classes else {}),
        "input_shape": list(data.images.shape[1:]),
        "train_degrade": [d.to_json() for d in prep.train_degradations],
        "test_degrade": [d.to_json() for d in prep.test_degradations],
        "plugins": {"reader": host.readers.owner(config.reader), "model": host.models.owner(config.model_name)},
        "versions": versions(),
        "probabilities": "calibrated",
        **({"calibration": fitted.calibration.to_json()} if fitted.calibration else {}),
        **({"distribution": fitted.distribution} if fitted.distribution else {}),
        **({"roles": FOLD_ROLES} if config.fold else {}),
        "provenance": provenance(model_precision(fitted.model), data.fingerprint, started or now(), command),
        **((extra or {}).get("config") or {}),
    }
    resolved["roles"] = check_roles(roles, str(final)) if roles else infer_roles(resolved)
    with RunWriter(final) as writer:
        writer.write_json("config.json", resolved)
        writer.write_csv("split.csv", ["source", "label", "group", "subset", "copy_in_train"],
                         rows if rows is not None else split_rows(data, split, results.has_copy))
        writer.write_json("history.json", fitted.history)
        if fitted.calibration is not None and fitted.calibration.sets is not None:
            fitted.calibration.sets.write(writer.path(CONFORMAL_FILE))
            if fitted.calibration.shift_reference is not None:
                fitted.calibration.shift_reference.write(writer.path(REFERENCE_FILE))
        # Any: with a dict[str, ndarray], numpy's stubs would match **kwargs against allow_pickle
        np.savez_compressed(writer.path("examples.npz"), **cast(dict[str, Any], results.examples))
        save_model_file(fitted.model, writer.path("model.keras"))
        writer.write_csv("predictions.csv", ["condition", "source", "label", "predicted",
                                             *[f"p_{c}" for c in prep.classes]], results.rows)
        metrics = {
            "conditions": results.conditions,
            "collapsed": any(c["collapsed"] for c in results.conditions.values()),
            "leakage": {"threshold": config.duplicate_threshold, "test_images": len(test),
                        "test_with_copy_in_train": int(results.has_copy.sum()),
                        "conditions_without_copies": results.unseen_conditions},
            "counts": {k: len(v) for k, v in split.items()},
            "timing": {"load_seconds": prep.load_seconds, "train_seconds": fitted.train_seconds,
                       "train_images_per_second": fitted.n_train * fitted.epochs_run / max(fitted.train_seconds, 1e-9),
                       "total_seconds": total_seconds},
            **unread_records(data.skipped, data.notes),
            **({"explanations": results.explanations} if results.explanations else {}),
            **((extra or {}).get("metrics") or {}),
        }
        writer.write_json("metrics.json", metrics)
        for table, (header, table_rows) in ((extra or {}).get("tables") or {}).items():
            writer.write_csv(table, header, table_rows)
        write_card(parse_record(writer.tmp, resolved, metrics, fitted.history), final.name)
    return load_run(final)


def collapse_alert(results: TestResults, feedback: Feedback) -> None:
    """Say so, loudly, when the model predicts one class for every test image."""
    if results.collapsed:
        counts = results.conditions[results.collapsed[0]]["predicted_counts"]
        only = max(counts, key=counts.get)
        feedback.alert("training collapsed",
                       f"COLLAPSED: the model predicts one class ('{only}') for every test image "
                       f"({', '.join(results.collapsed)}).\nIts accuracy is only the share of that class: "
                       "training failed. The report's raw 0..255 input does this; see docs/recipes.md.")


def run_experiment(config: RunConfig, out_dir: Path | str = "runs", feedback: Feedback | None = None,
                   host: PluginHost | None = None, data: Dataset | None = None, run_id: str | None = None,
                   command: str | None = None) -> Run:
    """Train and evaluate one configuration and write its run directory.

    Args:
        config: the run's configuration.
        out_dir: parent folder of run directories.
        feedback: where progress and messages go (default: nowhere).
        host: plugin host (default: the process-wide one).
        data: an already loaded dataset for this config's reader, data and image options
            (a plan loads once and reuses it).
        run_id: the id of an interrupted run to resume (see :func:`btk.resume.resume_run`):
            training continues from its last checkpoint.
        command: the command line kept in the run's provenance (default: this process's).

    Training writes a checkpoint after every epoch into the hidden ``.<id>.partial`` folder
    (:class:`btk.checkpoint.PartialRun`); if the run is interrupted or stops on any error after
    an epoch, the folder stays, and ``btk resume`` continues it.

    Returns:
        The finished :class:`btk.runs.Run`.

    Raises:
        BtkError: any problem the user can fix, before anything is written where possible.
    """
    feedback = feedback or Feedback()
    t_start, started = time.perf_counter(), now()
    out_dir = check_writable(out_dir)
    prep = prepare(config, host, feedback, data)
    final = out_dir / run_id if run_id else unique_dir(out_dir, new_run_id(config.name or config.task))
    partial = PartialRun(final)
    partial.begin(final.name, config.to_json())
    try:
        fitted = fit(prep, partial.checkpoint, feedback)
        # validation and test images are scored on the training devices (one process), heat maps on one
        with distribute.scoring(distribute.scoring_after_training(config.devices), feedback):
            scorer = scorer_for(prep, fitted.model)
            fitted.calibration = calibrate(prep, scorer)
            scorer = scorer.with_calibration(fitted.calibration)
            results = evaluate_test(prep, scorer, feedback, explain=False)
        test = prep.split["test"]
        results = explain_test(results, scorer, gather(prep.data.images, test), prep.y[test], config.seed, feedback,
                               getattr(prep.model_spec, "gradcam_layer", None))
        collapse_alert(results, feedback)
        return write_run(final, prep, fitted, results, time.perf_counter() - t_start, started, command)
    except BaseException as exc:  # interrupted, a BtkError or a crash: a checkpoint stays for btk resume
        partial.stopped(exc, feedback.warn)
        raise


def train_run(config: RunConfig, out_dir: Path | str = "runs", feedback: Feedback | None = None,
              host: PluginHost | None = None) -> Run | None:
    """``btk run``: one run, in this process, or as one process of a multi-host run when the
    environment names a coordinator (``JAX_COORDINATOR_ADDRESS``, :func:`btk.distribute.multihost_from`).
    Every process of a multi-host run trains and evaluates alike (each step's collectives need
    them all); process 0 writes the run directory under ``out_dir``, the others work in a
    temporary folder they delete.

    Returns:
        The finished run; None on a multi-host process other than 0.
    """
    import tempfile

    multihost = distribute.multihost_from()
    if multihost is None:
        return run_experiment(config, out_dir, feedback, host)
    distribute.init_multihost(multihost)  # before anything else touches JAX
    if not config.devices:
        config = config.with_changes(devices="auto")  # every process's devices
    if distribute.is_writer():
        return run_experiment(config, out_dir, feedback, host)
    scratch = Path(tempfile.mkdtemp(prefix="btk-process-"))
    try:
        run_experiment(config, scratch, feedback, host)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return None
