"""Unsupervised adaptation to a new site: re-estimate batch-norm statistics (AdaBN).

A network with batch normalisation keeps, per channel of every normalised layer, the mean and
variance its inputs had on the training images. Another scanner or hospital shifts those
statistics; AdaBN (Li et al. 2016, "Revisiting batch normalization for practical domain
adaptation") replaces them with the new site's, computed on its unlabelled images, and trains
nothing else. :func:`adapt_model` does it exactly, layer by layer in the network's order: each
layer's statistics are measured on its inputs in inference mode, with the layers before it
already adapted (not batch statistics of a training pass). Models nested in a model (the
members of an ensemble) are adapted one by one.

The statistics of a few scans are noise: adaptation wants a whole cohort (hundreds of images);
fewer than :data:`MIN_IMAGES` is refused.

The check before and after the adaptation runs on the run's selection images (:mod:`btk.record`):
images that did not train it. A fold ensemble has none (its selection images trained its other
folds; its calibration part is kept for its temperature and sets, not spent on choosing the
depth) and is refused. :func:`adapt_again` repeats an adaptation from its record.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from btk.errors import BtkError

MIN_IMAGES = 32
"""The fewest images ``btk adapt`` accepts."""
COHORT_IMAGES = 200
"""Below this many images ``btk adapt`` warns that the statistics are rough."""


def batch_norm_layers(model: Any) -> list[Any]:
    """The batch-normalisation layers of ``model`` (not of models nested in it), in order."""
    import keras

    return [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]


def nested_models(model: Any) -> list[Any]:
    """The models used as layers of ``model`` (an ensemble's members)."""
    import keras

    return [layer for layer in model.layers if isinstance(layer, keras.Model)]


def count_batch_norm(model: Any) -> int:
    """Batch-normalisation layers in ``model`` and in the models nested in it."""
    return len(batch_norm_layers(model)) + sum(count_batch_norm(m) for m in nested_models(model))


def _moments(extract: Any, batches: Callable[[], Any], axes: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and (population) variance of ``extract``'s output over all batches."""
    total, total_sq, count = None, None, 0
    for batch in batches():
        out = np.asarray(extract(batch, training=False), dtype=np.float64)
        s, sq = out.sum(axis=axes), np.square(out).sum(axis=axes)
        total = s if total is None else total + s
        total_sq = sq if total_sq is None else total_sq + sq
        count += int(np.prod([out.shape[a] for a in axes]))
    assert total is not None and total_sq is not None
    mean = total / count
    return mean, np.maximum(total_sq / count - np.square(mean), 0.0)


def adapt_model(model: Any, batches: Callable[[], Any], progress: Callable[[int, int], None] | None = None,
                strength: float = 1.0, depth: int = 0, guard: Callable[[], float] | None = None,
                floor: float = 0.0) -> int:
    """Set every batch-norm layer's moving mean and variance (``model``'s own, then those of
    the models nested in it) to the statistics of its inputs over ``batches()`` (an iterable of
    network-ready float batches, made anew for each layer). Returns the layers adapted.

    ``strength`` below 1 mixes the two sites: the statistics become those of a population that
    is ``strength`` new site and the rest training images (mean and variance of the mixture).
    ``depth`` > 0 adapts only the first ``depth`` batch-norm layers of each network (the early
    ones see the acquisition: contrast, noise, texture; the late ones the classes, so a new
    cohort's mix of classes would move them). With ``guard`` (a score of the model, e.g. the
    accuracy on the training site's validation images), every layer is adapted in order and the
    score taken after each; the adaptation kept is the deepest one whose score is at or above
    ``floor``, and the layers after it get their statistics back.

    Raises:
        BtkError: the model has no batch-normalisation layer.
    """
    import keras

    if count_batch_norm(model) == 0:
        raise BtkError(f"model '{model.name}' has no batch-normalisation layer: there are no statistics to adapt")
    done = [0]
    total = count_batch_norm(model)
    history: list[tuple[Any, np.ndarray, np.ndarray, float]] = []  # layer, old statistics, score after it

    def adapt_one(net: Any) -> None:
        for layer in batch_norm_layers(net)[: depth or None]:
            saved = (layer.moving_mean.numpy().copy(), layer.moving_variance.numpy().copy())
            extract = keras.Model(net.input, layer.input)
            axis = layer.axis if isinstance(layer.axis, int) else layer.axis[0]
            rank = len(layer.input.shape)
            axes = tuple(a for a in range(rank) if a != axis % rank)
            mean, var = _moments(extract, batches, axes)
            if strength < 1:
                old_mean = np.asarray(layer.moving_mean.numpy(), np.float64)
                old_var = np.asarray(layer.moving_variance.numpy(), np.float64)
                a = strength
                var = (1 - a) * old_var + a * var + a * (1 - a) * np.square(mean - old_mean)
                mean = (1 - a) * old_mean + a * mean
            layer.moving_mean.assign(mean.astype(layer.moving_mean.dtype))
            layer.moving_variance.assign(var.astype(layer.moving_variance.dtype))
            history.append((layer, saved[0], saved[1], guard() if guard is not None else 0.0))
            done[0] += 1
            if progress:
                progress(done[0], total)
        for inner in nested_models(net):
            adapt_one(inner)

    adapt_one(model)
    if guard is None:
        return done[0]
    keep = max((k + 1 for k, h in enumerate(history) if h[3] >= floor), default=0)
    for layer, mean, var, _ in history[keep:]:
        layer.moving_mean.assign(mean)
        layer.moving_variance.assign(var)
    return keep


def adapt_run(run: Any, paths: list[str], out_dir: Any = None, host: Any = None, feedback: Any = None,
              reader_name: str | None = None, name: str = "", command: str | None = None,
              strength: float = 1.0, depth: int | None = None, tolerance: float = 0.01,
              reader_options: dict[str, str] | None = None) -> Any:
    """``btk adapt``: a new run whose model is ``run``'s with its batch-norm statistics
    re-estimated on the unlabelled images of ``paths`` (read as the run reads images), scored
    again on the run's own validation and test images (from its ``split.csv``: nothing is split
    again); the run records what it was adapted on.

    ``depth`` ``None`` (automatic): layers are adapted in order while the accuracy on the run's
    own validation images stays within ``tolerance`` of the unadapted model's; ``0``: every
    layer; ``N``: the first N.

    Raises:
        BtkError: an evaluation, a run without selection images it did not train on (a fold
            ensemble), a model without batch norm, nothing readable, fewer than
            :data:`MIN_IMAGES` images, a bad name, an output folder that cannot be written.
    """
    import time
    from pathlib import Path

    from btk.cache import gather
    from btk.config import require_run_name
    from btk.explain import read_network_images
    from btk.feedback import Feedback
    from btk.pipeline import Fitted, calibrate, collapse_alert, evaluate_test, prepared_from_run, scorer_for, write_run
    from btk.plugins import get_host
    from btk.provenance import now
    from btk.run_files import check_writable, listing_sha256, new_run_id, unique_dir
    from btk.training import network_input

    host = host or get_host()
    feedback = feedback or Feedback()
    t_start, started = time.perf_counter(), now()
    require_run_name(name)
    if run.is_evaluation:
        raise BtkError(f"{run.path} is an evaluation, not a run")
    selection = run.require_role("selection", "btk adapt (its accuracy check before and after)",
                                 "adapt a run that held out its own validation images (btk run, or one fold run "
                                 "of the ensemble)", untrained=True)
    parent = check_writable(Path(out_dir) if out_dir else Path(run.path).parent)
    model = run.load_model(tta=False)
    if count_batch_norm(model) == 0:
        raise BtkError(f"{run.name}: its model ({model.name}) has no batch-normalisation layer, so there is "
                       "nothing to adapt (AdaBN re-estimates batch-norm statistics)")
    with feedback.task(f"reading {', '.join(map(str, paths))}"):
        pairs, skipped = read_network_images(run, paths, host, reader_name, reader_options, slices="all")
    if skipped:
        feedback.warn(f"skipped {len(skipped)} unreadable input(s), e.g. {skipped[0][0]}: {skipped[0][1]}")
    if not pairs:
        raise BtkError(f"no readable images in {', '.join(map(str, paths))} ({len(skipped)} unreadable)")
    if len(pairs) < MIN_IMAGES:
        raise BtkError(f"only {len(pairs)} image(s) to adapt on: batch-norm statistics need a whole cohort "
                       f"(at least {MIN_IMAGES}; hundreds are better)")
    if len(pairs) < COHORT_IMAGES:
        feedback.warn(f"{len(pairs)} images: the new site's statistics will be rough (a cohort of "
                      f"{COHORT_IMAGES}+ images is better)")
    images = np.stack([im for _, im in pairs])
    recipe = run.config.recipe

    def batches() -> Any:
        for i in range(0, len(images), 64):
            yield network_input(images[i:i + 64], recipe.scale, recipe.intensity)

    config = run.config.with_changes(name=name or f"{run.config.name or run.config.task}-adapted")
    if config.split_seed is None:
        config = config.with_changes(split_seed=config.seed)
    prep = prepared_from_run(run, host, feedback, config=config)
    if selection != "val":
        prep.split = {**prep.split, "val": run.positions(prep.data, selection)}
    val = prep.split["val"]
    x_val = gather(prep.data.images, val)

    def val_outputs(m: Any) -> np.ndarray:
        return scorer_for(prep, m).outputs(x_val)

    def accuracy_of(outputs: np.ndarray) -> float:
        return float((outputs.argmax(axis=1) == prep.y_fit[val]).mean())

    def val_accuracy(m: Any) -> float:
        return accuracy_of(val_outputs(m))

    before = val_accuracy(model)
    with feedback.task("re-estimating batch-norm statistics", total=count_batch_norm(model)) as task:
        guarded = depth is None
        layers = adapt_model(model, batches, lambda done, total: task.update(completed=done), strength,
                             depth or 0, (lambda: val_accuracy(model)) if guarded else None, before - tolerance)
    outputs_after = val_outputs(model)
    after = accuracy_of(outputs_after)
    feedback.info(f"adapted {layers} of {count_batch_norm(model)} batch-norm layers on {len(images)} images; "
                  "validation accuracy "
                  f"{100 * before:.1f} -> {100 * after:.1f}")
    scorer = scorer_for(prep, model)
    # a calibration part of its own (a fold run's) is scored again; else the selection images just scored
    calibration = calibrate(prep, scorer, None if "calibration" in prep.split else outputs_after)
    scorer = scorer.with_calibration(calibration)
    results = evaluate_test(prep, scorer, feedback)
    collapse_alert(results, feedback)
    sources = sorted({src for src, _ in pairs})
    record = {"from_run": run.name, "from_path": str(Path(run.path).resolve()), "data": [str(p) for p in paths],
              "images": len(images), "inputs": len(sources), "skipped": len(skipped),
              "inputs_sha256": listing_sha256(sources),
              "batch_norm_layers": layers, "batch_norm_layers_in_model": count_batch_norm(model),
              "strength": strength, "depth": "auto" if depth is None else depth,
              "tolerance": tolerance if depth is None else None,
              "method": "AdaBN (Li et al. 2016): batch-norm statistics only",
              "val_accuracy_before": before, "val_accuracy_after": after,
              "test_accuracy_before": run.metrics.get("conditions", {}).get("clean", {}).get("accuracy"),
              "reader": reader_name, "reader_options": dict(reader_options or {})}
    extra_config: dict[str, Any] = {"adaptation": record}
    if run.ensemble is not None:
        extra_config["ensemble"] = run.ensemble.to_json()
    fitted = Fitted(model, dict(run.history), 0.0, 0, recipe.batch_size, len(prep.split["train"]), calibration)
    final = unique_dir(parent, new_run_id(config.name))
    return write_run(final, prep, fitted, results, time.perf_counter() - t_start, started, command,
                     extra={"config": extra_config, "metrics": {"adaptation": record}}, rows=run.split_table(),
                     roles=dict(run.roles))


def adapt_again(adapted: Any, origin: Any, out_dir: Any, host: Any = None, feedback: Any = None,
                command: str | None = None) -> Any:
    """``adapted`` (a run ``btk adapt`` wrote) made again from ``origin`` (the run it was adapted
    from, or that run made again): the same images, strength, depth and tolerance, as recorded.
    Says so when the images read now are not the ones it recorded (their SHA-256).

    Raises:
        BtkError: ``adapted`` is not an adapted run, or its images are not here.
    """
    from btk.feedback import Feedback
    from btk.record import locate

    feedback = feedback or Feedback()
    info = dict(adapted.adaptation or {})
    if not info:
        raise BtkError(f"{adapted.name} was not made by btk adapt")
    paths = []
    for given in info.get("data") or []:
        found = locate(str(given), adapted.provenance)
        if found is None:
            raise BtkError(f"{adapted.name}: the images it was adapted on, {given}, are not here")
        paths.append(str(found))
    depth = info.get("depth", "auto")
    again = adapt_run(origin, paths, out_dir, host, feedback, info.get("reader"), adapted.config.name, command,
                      float(info.get("strength", 1.0)), None if depth == "auto" else int(depth),
                      float(info.get("tolerance") or 0.01), info.get("reader_options") or None)
    if (again.adaptation or {}).get("inputs_sha256") != info.get("inputs_sha256"):
        feedback.warn(f"the images read from {', '.join(paths)} are not those {adapted.name} was adapted on "
                      "(their listing's SHA-256 differs)")
    return again

