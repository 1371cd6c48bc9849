"""One run, end to end: read, split, degrade, train, evaluate, write the run directory.

:func:`run_experiment` is what ``btk run`` calls; a notebook can call it too.
"""

from __future__ import annotations

import json
import platform
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.panel import Panel
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from btk import __version__
from btk.augment import make_augmenter
from btk.cache import gather, iter_rows
from btk.image_augment import chain, make_image_augmenter
from btk.config import RunConfig
from btk.dataset import Dataset, load_dataset
from btk.degraders import Degradation, parse_spec
from btk.duplicates import Fingerprints, copy_mask, duplicate_clusters, fingerprint_all
from btk.errors import BtkError
from btk.metrics import evaluate
from btk.plugins import PluginHost, get_host
from btk.runs import Run, RunWriter, load_run, new_run_id, to_task_probabilities, unique_dir
from btk.split import grouped_holdout, stratified_limit, tail_holdout
from btk.training import (Checkpoint, Rows, build_with_precision, predict, save_model_file, step_batch_size,
                          train)
from btk.types import ReadOptions


def resolve_degradations(host: PluginHost, specs: tuple[str, ...] | list[str]) -> list[Degradation]:
    """Parse and validate ``NAME[:K=V,...]`` specs against the registered degraders."""
    out = []
    for spec in specs:
        name, params, level = parse_spec(spec)
        degrader = host.degraders.get(name)
        if level is not None:
            degrader.level_params(level)  # validates the level
            out.append(Degradation(degrader, {}, level))
        else:
            out.append(Degradation(degrader, degrader.resolve(params)))
    return out


def task_labels(data: Dataset, task: str, negative_class: str) -> tuple[np.ndarray, list[str]]:
    """Integer labels and class names for ``multiclass`` or ``binary`` (tumour vs ``negative_class``)."""
    names = sorted({str(x) for x in data.labels})
    if task == "multiclass":
        if len(names) < 2:
            raise BtkError(f"need at least two classes, found {names}")
        lookup = {n: i for i, n in enumerate(names)}
        return np.array([lookup[str(x)] for x in data.labels]), names
    if task == "binary":
        if negative_class not in names:
            raise BtkError(f"binary task: negative class '{negative_class}' not in the data (classes: {', '.join(names)})")
        return np.array([0 if str(x) == negative_class else 1 for x in data.labels]), [negative_class, "tumor"]
    raise BtkError(f"unknown task '{task}' (tasks: multiclass, binary)")


def split_groups(data: Dataset, threshold: float) -> np.ndarray:
    """Group ids for splitting: the reader's groups joined with near-duplicate clusters."""
    if threshold <= 0:
        return data.groups
    key = f"clusters@{threshold}"
    if key not in data.cache:
        data.cache[key] = duplicate_clusters(fingerprints_of(data), threshold, data.groups)
    return data.cache[key]


def fingerprints_of(data: Dataset) -> Fingerprints:
    """The dataset's duplicate fingerprints, computed once."""
    if "fingerprints" not in data.cache:
        data.cache["fingerprints"] = fingerprint_all(iter_rows(data.images))
    return data.cache["fingerprints"]


def make_split(data: Dataset, y: np.ndarray, config: RunConfig) -> dict[str, np.ndarray]:
    """Indices of train, val and test. The data's own test split is used when it has one.

    Splits that btk makes keep each group (the reader's group ids joined with near-duplicate
    clusters) on one side; the report preset's validation is the tail of a shuffle, as Keras'.
    """
    recipe, seed = config.recipe, config.seed
    groups = split_groups(data, config.duplicate_threshold)
    declared_test = data.splits == "test"
    if declared_test.any():
        test = np.where(declared_test)[0]
        pool = np.where(~declared_test)[0]
    else:
        held = grouped_holdout(y, groups, config.test_fraction, seed)
        test, pool = np.where(held)[0], np.where(~held)[0]
    if len(pool) == 0:
        raise BtkError("no training images: every image is in the test split")
    pool = stratified_limit(y, pool, config.limit_train, seed)
    test = stratified_limit(y, test, config.limit_test, seed)
    if recipe.val_method == "tail":
        tr, va = tail_holdout(len(pool), recipe.val_fraction, seed)
        train, val = pool[tr], pool[va]
    else:
        held = grouped_holdout(y[pool], groups[pool], recipe.val_fraction, seed)
        train, val = pool[~held], pool[held]
    return {"train": train, "val": val, "test": test}


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


def _versions() -> dict[str, str]:
    import cv2
    import keras
    import sklearn

    return {"btk": __version__, "keras": keras.__version__, "backend": keras.backend.backend(),
            "numpy": np.__version__, "opencv": cv2.__version__, "scikit-learn": sklearn.__version__,
            "python": platform.python_version(), "machine": platform.platform()}


def _progress(console: Console) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TimeRemainingColumn(), TextColumn("{task.fields[info]}"), console=console, transient=True)


def load_for_config(config: RunConfig, host: PluginHost, console: Console) -> Dataset:
    """Read the config's data with a progress bar; reports skipped inputs."""
    reader = host.readers.get(config.reader)
    options = ReadOptions(config.recipe.image_size, config.recipe.channels, dict(config.reader_options),
                          crop=config.recipe.crop)
    path = Path(config.data) if config.data else None
    with _progress(console) as bar:
        task = bar.add_task(f"reading ({reader.name})", total=None, info="")
        data = load_dataset(reader, path, options, strict=config.strict,
                            progress=lambda done, total: bar.update(task, completed=done, total=total))
    if data.skipped:
        console.print(f"[yellow]skipped {len(data.skipped)} unreadable input(s)[/], e.g. {data.skipped[0][0]}: "
                      f"{data.skipped[0][1]}")
    return data


RESUME_FILE = "resume.json"


def _train_with_progress(console: Console, model: Any, x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray,
                         y_val: np.ndarray, classes: list[str], config: RunConfig, augment: Any,
                         checkpoint: Checkpoint) -> tuple[Any, dict[str, Any], float]:
    recipe = config.recipe
    with _progress(console) as bar:
        task = bar.add_task("training", total=recipe.epochs, info="")
        batch_task = bar.add_task("  epoch 1", total=None, info="")

        def on_epoch(epoch: int, logs: dict[str, float], seconds: float) -> None:
            info = "  ".join(f"{k} {v:.3f}" for k, v in logs.items() if "accuracy" in k or "loss" in k)
            if "learning_rate" in logs:
                info += f"  lr {logs['learning_rate']:.2g}"
            bar.update(task, completed=epoch + 1, info=info)
            bar.update(batch_task, description=f"  epoch {epoch + 2}", completed=0)
            console.print(f"epoch {epoch + 1:>3}/{recipe.epochs}  {info}  ({seconds:.1f} s)", highlight=False)

        def on_batch(batch: int, total: int) -> None:
            bar.update(batch_task, completed=batch, total=total)

        t_train = time.perf_counter()
        model, history = train(model, x_train, y_train, x_val, y_val, len(classes), recipe, config.seed,
                               on_epoch=on_epoch, on_batch=on_batch, augment=augment, checkpoint=checkpoint)
        if "stopped_epoch" in history:
            console.print(f"early stop after epoch {history['stopped_epoch'][0]} (best: epoch "
                          f"{history.get('best_epoch', ['?'])[0]})", highlight=False)
    return model, history, time.perf_counter() - t_train


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


def run_experiment(config: RunConfig, out_dir: Path | str = "runs", console: Console | None = None,
                   host: PluginHost | None = None, data: Dataset | None = None, run_id: str | None = None) -> Run:
    """Train and evaluate one configuration and write its run directory.

    Args:
        config: the run's configuration.
        out_dir: parent folder of run directories.
        console: where progress and messages go (a quiet Console silences them).
        host: plugin host (default: the process-wide one).
        data: an already loaded dataset for this config's reader, data and image options
            (a suite loads once and reuses it).
        run_id: the id of an interrupted run to resume (see :func:`resume_config`): training
            continues from its last checkpoint.

    Training writes a checkpoint after every epoch into the hidden ``.<id>.partial`` folder;
    if the run is interrupted the folder stays, and ``btk run --resume`` continues it.

    Returns:
        The finished :class:`btk.runs.Run`.

    Raises:
        BtkError: any problem the user can fix, before anything is written where possible.
    """
    console = console or Console()
    host = host or get_host()
    recipe = config.recipe
    model_spec = host.models.get(config.model_name)
    host.readers.get(config.reader)
    train_deg = resolve_degradations(host, config.train_degrade)
    test_deg = resolve_degradations(host, config.test_degrade)
    degrade_augment = make_augmenter([host.degraders.get(n) for n in config.augment], config.augment_probability) \
        if config.augment else None
    augment = chain(make_image_augmenter() if recipe.augment_images else None, degrade_augment)
    if recipe.image_size < model_spec.min_image_size:
        raise BtkError(f"model '{model_spec.name}' needs an image size of at least {model_spec.min_image_size}, "
                       f"got {recipe.image_size}")
    t_start = time.perf_counter()
    if data is None:
        data = load_for_config(config, host, console)
    t_loaded = time.perf_counter()
    y, classes = task_labels(data, config.task, config.negative_class)
    # binary via classes: the network learns every class (each tumour type is its own target, so
    # a subgroup of one type is not absorbed into "tumour"); evaluation reads 1 - P(negative)
    y_fit, fit_classes = y, classes
    if config.task == "binary" and recipe.binary_via_classes:
        all_y, all_classes = task_labels(data, "multiclass", config.negative_class)
        if len(all_classes) > 2:
            y_fit, fit_classes = all_y, all_classes
    via_classes = fit_classes is not classes
    split = make_split(data, y_fit, config)
    if len(split["test"]) == 0:
        raise BtkError("no test images")
    if len(split["val"]) == 0:
        raise BtkError("no validation images: use more data or a larger --val-fraction")
    pool = np.concatenate([split["train"], split["val"]])
    if train_deg:
        x_pool = gather(data.images, pool)
        for deg in train_deg:
            x_pool = deg.apply(x_pool, seed=config.seed)
        n_train = len(split["train"])
        x_train, x_val = x_pool[:n_train], x_pool[n_train:]
    else:  # no copy of the images: batches are gathered from the (memory-mapped) dataset
        x_train, x_val = Rows(data.images, split["train"]), Rows(data.images, split["val"])

    import keras

    keras.utils.set_random_seed(config.seed)
    options: dict[str, Any] = {"learning_rate": recipe.learning_rate, **config.model_options}
    model = build_with_precision(lambda: model_spec.build(tuple(data.images.shape[1:]), len(fit_classes), options),
                                 recipe.precision)
    out_dir = Path(out_dir)
    final = out_dir / run_id if run_id else unique_dir(out_dir, new_run_id(config.name or config.task))
    partial = final.parent / f".{final.name}.partial"
    partial.mkdir(parents=True, exist_ok=True)
    (partial / RESUME_FILE).write_text(json.dumps({"id": final.name, "config": config.to_json()}, indent=1))
    checkpoint = Checkpoint(partial / "checkpoint")
    checkpoint_epochs = checkpoint.epoch
    resumed = checkpoint_epochs > 0
    step = step_batch_size(recipe, model)
    console.print(f"[bold]{config.name or 'run'}[/]: {len(x_train)} train, {len(x_val)} val, "
                  f"{len(split['test'])} test images, {len(classes)} classes"
                  + (f" (trained on all {len(fit_classes)})" if via_classes else "")
                  + f", model {model_spec.name} "
                  f"({model.count_params():,} parameters), {recipe.epochs} epochs, backend {keras.backend.backend()}"
                  + (f", micro-batches of {step}" if step < recipe.batch_size else "")
                  + (", resumed from its checkpoint" if resumed else ""))
    try:
        model, history, train_seconds = _train_with_progress(
            console, model, x_train, y_fit[split["train"]], x_val, y_fit[split["val"]], fit_classes, config, augment,
            checkpoint)

        epochs_run = len(history.get("loss", [])) - checkpoint_epochs
        test = split["test"]
        x_test, y_test = gather(data.images, test), y[test]
        has_copy = np.zeros(len(test), bool)
        if config.duplicate_threshold > 0:
            fps = fingerprints_of(data)
            has_copy = copy_mask(fps.subset(test), fps.subset(pool), config.duplicate_threshold)
        unseen = ~has_copy
        conditions: dict[str, dict[str, Any]] = {}
        unseen_conditions: dict[str, dict[str, Any]] = {}
        prediction_rows: list[list[Any]] = []
        examples: dict[str, np.ndarray] = {}
        for label, deg in [("clean", None)] + [(d.label, d) for d in test_deg]:
            images = x_test if deg is None else deg.apply(x_test, seed=config.seed)
            probs = predict(model, images, recipe.scale, step, intensity=recipe.intensity)
            if via_classes:
                probs = to_task_probabilities(probs, fit_classes, config.negative_class)
            if deg is None:
                picked = example_indices(y_test, probs.argmax(axis=1), config.seed)
                examples["index"] = picked
                examples["sources"] = data.sources[test][picked].astype(str)
            examples[f"images/{label}"] = thumbnails(images[examples["index"]])
            conditions[label] = evaluate(y_test, probs, classes)
            if has_copy.any() and unseen.sum() >= 2:
                unseen_conditions[label] = evaluate(y_test[unseen], probs[unseen], classes)
            for i, p in zip(test, probs):
                prediction_rows.append([label, data.sources[i], classes[y[i]], classes[int(p.argmax())],
                                        *[f"{v:.6f}" for v in p]])
        collapsed = [c for c, m in conditions.items() if m["collapsed"]]
        if collapsed:
            counts = conditions[collapsed[0]]["predicted_counts"]
            only = max(counts, key=counts.get)
            console.print(Panel(f"COLLAPSED: the model predicts one class ('{only}') for every test image "
                                f"({', '.join(collapsed)}).\nIts accuracy is only the share of that class: training "
                                "failed. The report's raw 0..255 input does this; see docs/recipes.md.",
                                style="bold red", title="training collapsed"))

        readers_plugin = host.readers.owner(config.reader)
        resolved = {
            "config": config.to_json(),
            "recipe": config.recipe.__dict__,
            "classes": classes,
            **({"trained_classes": fit_classes} if via_classes else {}),
            "input_shape": list(data.images.shape[1:]),
            "train_degrade": [d.to_json() for d in train_deg],
            "test_degrade": [d.to_json() for d in test_deg],
            "plugins": {"reader": readers_plugin, "model": host.models.owner(config.model_name)},
            "versions": _versions(),
        }
        with RunWriter(final) as writer:
            writer.write_json("config.json", resolved)
            subset = np.empty(len(data), dtype=object)
            for part, idx in split.items():
                subset[idx] = part
            copy_in_train = dict(zip(test.tolist(), has_copy.tolist()))
            writer.write_csv("split.csv", ["source", "label", "group", "subset", "copy_in_train"],
                             ([data.sources[i], data.labels[i], data.groups[i], subset[i],
                               int(copy_in_train[i]) if i in copy_in_train else ""]
                              for i in range(len(data)) if subset[i] is not None))
            writer.write_json("history.json", history)
            np.savez_compressed(writer.path("examples.npz"), **{k: v for k, v in examples.items() if k != "index"})
            save_model_file(model, writer.path("model.keras"))
            writer.write_csv("predictions.csv", ["condition", "source", "label", "predicted",
                                                 *[f"p_{c}" for c in classes]], prediction_rows)
            writer.write_json("metrics.json", {
                "conditions": conditions,
                "collapsed": any(c["collapsed"] for c in conditions.values()),
                "leakage": {"threshold": config.duplicate_threshold, "test_images": int(len(test)),
                            "test_with_copy_in_train": int(has_copy.sum()),
                            "conditions_without_copies": unseen_conditions},
                "counts": {k: int(len(v)) for k, v in split.items()},
                "timing": {"load_seconds": t_loaded - t_start, "train_seconds": train_seconds,
                           "train_images_per_second": len(x_train) * epochs_run / max(train_seconds, 1e-9),
                           "total_seconds": time.perf_counter() - t_start},
                "skipped": [{"source": s, "reason": r} for s, r in data.skipped],
            })
        return load_run(final)
    except BtkError:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    except BaseException as exc:  # interrupted or crashed: the checkpoint stays for --resume
        if (partial / "checkpoint").is_dir():
            what = "interrupted" if isinstance(exc, KeyboardInterrupt) else "stopped by an error"
            console.print(f"[yellow]{what}[/]: resume with [bold]btk run --resume {partial}[/]")
        else:
            shutil.rmtree(partial, ignore_errors=True)
        raise

