"""One run, end to end, in four named steps that other commands reuse:

- :func:`prepare`: validate the plan, read the data, label it for the task, split it;
- :func:`fit`: build the model and train it (a checkpoint every epoch);
- :func:`evaluate_test`: predict the test images, clean and under each test degradation;
- :func:`write_run`: write the run directory (atomically: a hidden folder renamed when complete).

:func:`run_experiment` chains them; it is what ``btk run`` calls, and a notebook can call it too.
Progress and messages go to a :class:`btk.feedback.Feedback`; nothing here draws.
"""

from __future__ import annotations

import json
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
from btk.calibration import apply_temperature, fit_temperature, nll
from btk.checkpoint import Checkpoint, save_model_file
from btk.config import RunConfig
from btk.dataset import Dataset, load_dataset
from btk.degraders import Degradation, resolve_degradations
from btk.device import build_with_precision, step_batch_size
from btk.duplicates import copy_mask
from btk.errors import BtkError
from btk.feedback import Feedback
from btk.image_augment import chain, make_image_augmenter
from btk.metrics import evaluate
from btk.model_card import write_card
from btk.plugins import PluginHost, get_host
from btk.provenance import now, provenance
from btk.runs import Run, RunWriter, load_run, new_run_id, to_task_probabilities, unique_dir
from btk.split import fingerprints_of, make_split, task_labels
from btk.stats import reliability
from btk.training import Rows, predict, train
from btk.tta import scoring_model
from btk.types import ModelSpec, ReadOptions

__all__ = [
    "Fitted",
    "Prepared",
    "TestResults",
    "evaluate_test",
    "explain_own_test",
    "explain_test",
    "fit",
    "load_for_config",
    "prepare",
    "resolve_degradations",
    "resume_config",
    "run_experiment",
    "score_images",
    "versions",
    "write_run",
]

RESUME_FILE = "resume.json"


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
    calibration: dict[str, float] | None = None
    distribution: dict[str, Any] | None = None  # the device layout trained on (btk.distribute.begin)


@dataclass
class TestResults:
    """The test images' predictions and metrics per condition (:func:`evaluate_test`).

    Attributes:
        conditions: metrics per condition (``clean`` and each test degradation's label).
        unseen_conditions: the same on the test images with no copy in the training data.
        has_copy: per test image, whether it has an exact or near copy in the training data.
        rows: ``predictions.csv`` rows (condition, source, label, predicted, probabilities).
        examples: thumbnails of a few right and wrong test images per condition (and
            ``heat/clean``, their clean heat maps, when explained).
        example_index: the examples' positions among the test images.
        explanations: the clean test images' heat-map summary (:func:`explain_test`).
    """

    conditions: dict[str, dict[str, Any]]
    unseen_conditions: dict[str, dict[str, Any]]
    has_copy: np.ndarray
    rows: list[list[Any]]
    examples: dict[str, np.ndarray]
    example_index: np.ndarray | None = None
    explanations: dict[str, Any] | None = None

    @property
    def collapsed(self) -> list[str]:
        """The conditions under which the model predicted one class for every image."""
        return [c for c, m in self.conditions.items() if m["collapsed"]]


def example_indices(y: np.ndarray, pred: np.ndarray, seed: int, per_kind: int = 4) -> np.ndarray:
    """Up to ``per_kind`` right and ``per_kind`` wrong test images, drawn with ``seed``."""
    rng = np.random.default_rng(seed)
    right, wrong = np.where(pred == y)[0], np.where(pred != y)[0]
    pick = [rng.choice(group, min(per_kind, len(group)), replace=False) for group in (right, wrong) if len(group)]
    return np.concatenate(pick).astype(int) if pick else np.zeros(0, int)


def thumbnails(images: np.ndarray, size: int = 128) -> np.ndarray:
    """Grayscale ``size`` px copies of uint8 images, for the examples a run keeps."""
    import cv2

    out = [cv2.resize(im.mean(axis=-1).astype(np.uint8) if im.ndim == 3 else im, (size, size),
                      interpolation=cv2.INTER_AREA) for im in images]
    return np.stack(out) if out else np.zeros((0, size, size), np.uint8)


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
    if data.skipped:
        feedback.warn(f"skipped {len(data.skipped)} unreadable input(s), e.g. {data.skipped[0][0]}: "
                      f"{data.skipped[0][1]}")
    return data


def resume_config(partial: Path) -> tuple[RunConfig, str]:
    """The configuration and run id of the interrupted run in ``partial`` (its hidden
    ``.<id>.partial`` folder, or the run path it would have had).

    Raises:
        BtkError: the folder holds no interrupted run.
    """
    partial = Path(partial)
    if not partial.name.endswith(".partial"):
        partial = partial.parent / f".{partial.name}.partial"
    info = partial / RESUME_FILE
    if not info.is_file():
        raise BtkError(f"{partial}: not an interrupted run (no {RESUME_FILE}); nothing to resume")
    saved = json.loads(info.read_text())
    try:
        return RunConfig.from_json(saved["config"]), saved["id"]
    except (KeyError, TypeError) as exc:
        raise BtkError(f"{info}: unreadable run configuration ({exc})") from None


def prepare(config: RunConfig, host: PluginHost | None = None, feedback: Feedback | None = None,
            data: Dataset | None = None) -> Prepared:
    """Check everything that can be checked before reading, then read, label and split the data.

    Args:
        data: an already loaded dataset for this config's reader, data and image options
            (a suite loads once and reuses it).

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
    t_start = time.perf_counter()
    if data is None:
        data = load_for_config(config, host, feedback)
    load_seconds = time.perf_counter() - t_start
    y, classes = task_labels(data, config.task, config.negative_class)
    # binary via classes: the network learns every class (each tumour type is its own target, so
    # a subgroup of one type is not absorbed into "tumour"); evaluation reads 1 - P(negative)
    y_fit, fit_classes = y, classes
    if config.task == "binary" and recipe.binary_via_classes:
        all_y, all_classes = task_labels(data, "multiclass", config.negative_class)
        if len(all_classes) > 2:
            y_fit, fit_classes = all_y, all_classes
    split = make_split(data, y_fit, config)
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
    options: dict[str, Any] = {"learning_rate": recipe.learning_rate, **config.model_options}
    model = build_with_precision(
        lambda: prep.model_spec.build(tuple(data.images.shape[1:]), len(prep.fit_classes), options), recipe.precision)
    checkpoint_epochs = checkpoint.epoch if checkpoint is not None else 0
    step = step_batch_size(recipe, model)
    feedback.info(f"{config.name or 'run'}: {len(x_train)} train, {len(x_val)} val, "
                  f"{len(split['test'])} test images, {len(prep.classes)} classes"
                  + (f" (trained on all {len(prep.fit_classes)})" if prep.via_classes else "")
                  + f", model {prep.model_spec.name} "
                  f"({model.count_params():,} parameters), {recipe.epochs} epochs, backend {keras.backend.backend()}"
                  + (f", micro-batches of {step}" if step < recipe.batch_size else "")
                  + (", resumed from its checkpoint" if checkpoint_epochs > 0 else ""))
    with feedback.task("training", total=recipe.epochs) as epochs_task, feedback.task("  epoch 1") as batch_task:

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
                               len(prep.fit_classes), recipe, config.seed, on_epoch=on_epoch, on_batch=on_batch,
                               augment=prep.augment, checkpoint=checkpoint)
        train_seconds = time.perf_counter() - t_train
    distribute.end()
    if "stopped_epoch" in history:
        feedback.info(f"early stop after epoch {history['stopped_epoch'][0]} (best: epoch "
                      f"{history.get('best_epoch', ['?'])[0]})")
    epochs_run = len(history.get("loss", [])) - checkpoint_epochs
    return Fitted(model, history, train_seconds, epochs_run, step, len(x_train), distribution=layout)


def calibrate(prep: Prepared, model: Any, step: int | None = None, raw: np.ndarray | None = None
              ) -> dict[str, float] | None:
    """Fit a temperature (:func:`btk.calibration.fit_temperature`) on the network's outputs for
    the clean validation images (``raw``: those outputs, when already predicted), and measure
    ECE and NLL over the task's classes before and after.

    Returns:
        ``{"temperature", "val_ece_raw", "val_ece_calibrated", "val_nll_raw", "val_nll_calibrated"}``,
        or None when there are no validation images.
    """
    config, recipe, val = prep.config, prep.config.recipe, prep.split["val"]
    if len(val) == 0:
        return None
    if raw is None:
        step = step or step_batch_size(recipe, model)
        raw = predict(model, gather(prep.data.images, val), recipe.scale, step, intensity=recipe.intensity)
    temperature = fit_temperature(raw, prep.y_fit[val])
    calibrated = apply_temperature(raw, temperature)
    if prep.via_classes:
        raw = to_task_probabilities(raw, prep.fit_classes, config.negative_class)
        calibrated = to_task_probabilities(calibrated, prep.fit_classes, config.negative_class)
    y = prep.y[val]
    return {"temperature": temperature,
            "val_ece_raw": reliability(y, raw)["ece"], "val_ece_calibrated": reliability(y, calibrated)["ece"],
            "val_nll_raw": nll(raw, y), "val_nll_calibrated": nll(calibrated, y)}


def score_images(images: np.ndarray, y: np.ndarray, classes: list[str], sources: np.ndarray,
                 probabilities: Callable[[np.ndarray], np.ndarray], degradations: list[Degradation], seed: int,
                 has_copy: np.ndarray) -> TestResults:
    """Predict ``images`` clean and under each degradation (seeded with ``seed``) and score them
    against ``y``; the images with ``has_copy`` set are also left out in a second score.

    Args:
        probabilities: uint8 images -> probabilities over ``classes`` (the model and its
            preprocessing, task probabilities included).
    """
    unseen = ~has_copy
    conditions: dict[str, dict[str, Any]] = {}
    unseen_conditions: dict[str, dict[str, Any]] = {}
    rows: list[list[Any]] = []
    examples: dict[str, np.ndarray] = {}
    for label, deg in [("clean", None)] + [(d.label, d) for d in degradations]:
        x = images if deg is None else deg.apply(images, seed=seed)
        probs = probabilities(x)
        if deg is None:
            picked = example_indices(y, probs.argmax(axis=1), seed)
            examples["index"] = picked
            examples["sources"] = np.asarray(sources)[picked].astype(str)
        examples[f"images/{label}"] = thumbnails(x[examples["index"]])
        conditions[label] = evaluate(y, probs, classes)
        if has_copy.any() and unseen.sum() >= 2:
            unseen_conditions[label] = evaluate(y[unseen], probs[unseen], classes)
        for source, truth, p in zip(sources, y, probs):
            rows.append([label, source, classes[truth], classes[int(p.argmax())], *[f"{v:.6f}" for v in p]])
    index = examples.pop("index", None)
    return TestResults(conditions, unseen_conditions, has_copy, rows, examples, index)


def evaluate_test(prep: Prepared, model: Any, step: int | None = None, feedback: Feedback | None = None,
                  explain: bool = True) -> TestResults:
    """Predict the test images, clean and under each test degradation, and score them; test
    images with an exact or near copy among the training images are also scored apart. The
    clean test images are then explained (:func:`explain_test`; ``explain=False`` leaves that
    to :func:`explain_own_test`)."""
    config, recipe, data = prep.config, prep.config.recipe, prep.data
    step = step or step_batch_size(recipe, model)
    test = prep.split["test"]
    has_copy = np.zeros(len(test), bool)
    if config.duplicate_threshold > 0:
        fps = fingerprints_of(data)
        has_copy = copy_mask(fps.subset(test), fps.subset(prep.pool), config.duplicate_threshold)

    def probabilities(images: np.ndarray) -> np.ndarray:
        probs = predict(model, images, recipe.scale, step, intensity=recipe.intensity)
        return to_task_probabilities(probs, prep.fit_classes, config.negative_class) if prep.via_classes else probs

    images = gather(data.images, test)
    results = score_images(images, prep.y[test], prep.classes, data.sources[test], probabilities,
                           prep.test_degradations, config.seed, has_copy)
    return explain_own_test(prep, results, model, feedback) if explain else results


def explain_own_test(prep: Prepared, results: TestResults, model: Any, feedback: Feedback | None = None) -> TestResults:
    """:func:`explain_test` on the run's own clean test images."""
    config, recipe, test = prep.config, prep.config.recipe, prep.split["test"]
    return explain_test(results, model, gather(prep.data.images, test), prep.y[test], recipe.scale, recipe.intensity,
                        config.seed, feedback, getattr(prep.model_spec, "gradcam_layer", None))


def explain_test(results: TestResults, model: Any, images: np.ndarray, y: np.ndarray, scale: float,
                 intensity: str, seed: int, feedback: Feedback | None = None,
                 layer_name: str | None = None) -> TestResults:
    """Add heat maps of the clean test ``images`` (labels ``y``) to ``results``
    (:func:`btk.explain.explain_test_images`): the summary as ``results.explanations``, the
    examples' maps as ``examples["heat/clean"]``. Never fails: any error is one warning."""
    from btk.explain import explain_test_images

    t0 = time.perf_counter()
    try:
        index = results.example_index if results.example_index is not None else np.zeros(0, int)
        summary, heat = explain_test_images(model, images, scale, intensity, index, y, layer_name, seed=seed)
    except Exception as e:  # an explanation never fails a run
        (feedback or Feedback()).warn(f"no heat maps of the test images: {type(e).__name__}: {e}"[:300])
        return results
    results.explanations = {**summary, "seconds": round(time.perf_counter() - t0, 3)}
    results.examples["heat/clean"] = heat
    return results


def write_run(final: Path, prep: Prepared, fitted: Fitted, results: TestResults, total_seconds: float,
              started: str | None = None, command: str | None = None, extra: dict[str, Any] | None = None) -> Run:
    """Write the run directory ``final`` (through its hidden ``.partial`` folder) and read it back.

    Args:
        started: when the run started (:func:`btk.provenance.now`); ``command``: the command
            line (default: this process's), both for the provenance record.
        extra: more top-level entries for ``config.json`` and ``metrics.json`` (an ensemble's
            members), as ``{"config": {...}, "metrics": {...}}``.
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
        **({"calibration": fitted.calibration} if fitted.calibration else {}),
        **({"distribution": fitted.distribution} if fitted.distribution else {}),
        "provenance": provenance(model_precision(fitted.model), data.fingerprint, started or now(), command),
        **((extra or {}).get("config") or {}),
    }
    with RunWriter(final) as writer:
        writer.write_json("config.json", resolved)
        subset = np.empty(len(data), dtype=object)
        for part, idx in split.items():
            subset[idx] = part
        copy_in_train = dict(zip(test.tolist(), results.has_copy.tolist()))
        writer.write_csv("split.csv", ["source", "label", "group", "subset", "copy_in_train"],
                         ([data.sources[i], data.labels[i], data.groups[i], subset[i],
                           int(copy_in_train[i]) if i in copy_in_train else ""]
                          for i in range(len(data)) if subset[i] is not None))
        writer.write_json("history.json", fitted.history)
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
            "skipped": [{"source": s, "reason": r} for s, r in data.skipped],
            **({"explanations": results.explanations} if results.explanations else {}),
            **((extra or {}).get("metrics") or {}),
        }
        writer.write_json("metrics.json", metrics)
        write_card(Run(writer.tmp, resolved, metrics, fitted.history), final.name)
    return load_run(final)


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
            (a suite loads once and reuses it).
        run_id: the id of an interrupted run to resume (see :func:`resume_config`): training
            continues from its last checkpoint.
        command: the command line kept in the run's provenance (default: this process's).

    Training writes a checkpoint after every epoch into the hidden ``.<id>.partial`` folder;
    if the run is interrupted the folder stays, and ``btk run --resume`` continues it.

    Returns:
        The finished :class:`btk.runs.Run`.

    Raises:
        BtkError: any problem the user can fix, before anything is written where possible.
    """
    feedback = feedback or Feedback()
    t_start, started = time.perf_counter(), now()
    prep = prepare(config, host, feedback, data)
    out_dir = Path(out_dir)
    final = out_dir / run_id if run_id else unique_dir(out_dir, new_run_id(config.name or config.task))
    partial = final.parent / f".{final.name}.partial"
    partial.mkdir(parents=True, exist_ok=True)
    (partial / RESUME_FILE).write_text(json.dumps({"id": final.name, "config": config.to_json()}, indent=1))
    try:
        fitted = fit(prep, Checkpoint(partial / "checkpoint"), feedback)
        # validation and test images are scored on the training devices (one process), heat maps on one
        with distribute.scoring(distribute.scoring_after_training(config.devices), feedback):
            scorer = scoring_model(fitted.model, config.tta)
            fitted.calibration = calibrate(prep, scorer, fitted.step)
            results = evaluate_test(prep, scorer, fitted.step, feedback, explain=False)
        results = explain_own_test(prep, results, scorer, feedback)
        if results.collapsed:
            counts = results.conditions[results.collapsed[0]]["predicted_counts"]
            only = max(counts, key=counts.get)
            feedback.alert("training collapsed",
                           f"COLLAPSED: the model predicts one class ('{only}') for every test image "
                           f"({', '.join(results.collapsed)}).\nIts accuracy is only the share of that class: "
                           "training failed. The report's raw 0..255 input does this; see docs/recipes.md.")
        return write_run(final, prep, fitted, results, time.perf_counter() - t_start, started, command)
    except BtkError:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    except BaseException as exc:  # interrupted or crashed: the checkpoint stays for --resume
        if (partial / "checkpoint").is_dir():
            what = "interrupted" if isinstance(exc, KeyboardInterrupt) else "stopped by an error"
            feedback.warn(f"{what}: resume with btk run --resume {partial}")
        else:
            shutil.rmtree(partial, ignore_errors=True)
        raise
