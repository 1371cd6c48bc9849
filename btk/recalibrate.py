"""``btk calibrate``: a run's temperature and prediction sets fitted again, on a labelled sample
of a new site or on the run's own validation images.

A run's probabilities and its prediction sets (:mod:`btk.conformal`) are calibrated on its
validation images; their promise holds for scans exchangeable with those. A new site usually is
not. Given a few labelled scans of that site, :func:`calibrate_run` draws a sample of them
(whole groups: the reader's patients and near-copy clusters, stratified by class as far as
whole groups allow, seeded; :func:`draw_sample`), fits the temperature and the sets' calibration
on it, and scores the rest of the site's scans with the result: a new run (same network) that
records the sample (paths in ``split.csv`` as ``val``, counts, SHA-256) and holds the rest as its
test images. No patient and no near-copy pair has images on both sides.

Each class needs enough scans in the sample for the coverage wanted (:func:`btk.conformal.scans_needed`:
20 for 95%). A class with none in the sample keeps the run's own calibration (its validation
images, scored again with the new temperature); a class with too few is refused, or kept the
same way with ``thin="keep"``. ``pac_delta`` asks for the training-conditional promise
(:func:`btk.conformal.order_index`).

Without data the run's own calibration images are used (how a run made before prediction sets
gets them), and only where they did not train it (:meth:`btk.runs.Run.require_role`): a run's
validation images; a fold ensemble's calibration part, which no member trained or selected on,
scored by the whole ensemble (as :func:`btk.ensemble.combine_folds` fits it). A fold ensemble made
before it had a calibration part was calibrated on its members' out-of-fold images, each of which
trained K-1 of them: it is refused and told to give ``--data``.

The new run records its images by role (:mod:`btk.record`): the site sample serves its
calibration; :func:`calibrate_again` repeats a calibration on the sample it recorded.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from btk.conformal import (
    DEFAULT_COVERAGES,
    Conformal,
    check_coverage,
    check_delta,
    coverage_interval,
    in_every_set,
    scans_needed,
)
from btk.errors import BtkError
from btk.record import SITE_ROLES
from btk.run_files import listing_sha256

THIN_CHOICES = ("error", "keep")
"""What :func:`calibrate_run` does with a class that has too few scans in the sample."""


def draw_sample(y: np.ndarray, fraction: float, seed: int,
                groups: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Positions of a seeded sample of about ``fraction`` of labelled images and of the rest:
    whole ``groups`` only (patients, near-copy clusters: :func:`btk.split.split_groups`), stratified
    by class as far as whole groups allow (:func:`btk.split.grouped_holdout`: scikit-learn's
    ``StratifiedGroupKFold``, else ``GroupShuffleSplit``). Without ``groups`` each image is its own.

    Raises:
        BtkError: a fraction outside (0, 1), or too few images or groups to leave some on both sides.
    """
    from btk.split import grouped_holdout

    if not 0.0 < fraction < 1.0:
        raise BtkError(f"--sample {fraction:g}: the share of the labelled scans to calibrate on, between 0 and 1")
    y = np.asarray(y)
    groups = np.arange(len(y)) if groups is None else np.asarray(groups)
    distinct = len(np.unique(groups))
    if distinct < 2:
        raise BtkError(f"cannot draw a {fraction:g} sample of {len(y)} labelled scans: they form {distinct} group "
                       "(patient or near-copy cluster), and a group is never split")
    # grouped_holdout takes one of round(1 / share) folds: the smaller side is drawn, the larger is the rest
    small = grouped_holdout(y, groups, min(fraction, 1.0 - fraction), seed)
    mask = small if fraction <= 0.5 else ~small
    if mask.all() or not mask.any():
        raise BtkError(f"cannot draw a {fraction:g} sample of {len(y)} labelled scans in {distinct} groups with "
                       "scans on both sides")
    return np.flatnonzero(mask), np.flatnonzero(~mask)


def thin_classes(counts: dict[str, int], coverage: float, delta: float | None = None) -> dict[str, int]:
    """The classes with some, but too few, scans for ``coverage`` (name -> count): those
    :func:`btk.conformal.in_every_set` finds, less those with none."""
    return {c: n for c, n in in_every_set(counts, coverage, delta).items() if n > 0}


def thin_message(thin: dict[str, int], coverage: float, delta: float | None = None) -> str:
    """The one-line refusal for classes with too few scans in the sample."""
    need = scans_needed(coverage, delta)
    form = f" (with probability {1 - delta:g})" if delta is not None else ""
    named = "; ".join(f"{c}: {n} labelled scan(s) in the sample, {100 * coverage:g}% coverage{form} needs at least "
                      f"{need} (label {need - n} more)" for c, n in thin.items())
    return (f"{named}. With n scans of a class the promise moves in steps of 1/(n+1). Label more, lower --coverage, "
            "calibrate on a larger --sample, or keep the run's calibration for such classes with --thin-classes keep")


def _site_labels(run: Any, labels: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """``(y, y_fit)``: the task's and the network's class indices of a site's (renamed) labels.

    Raises:
        BtkError: a binary run learned through the classes given labels that name no trained class.
    """
    y = run.targets(labels)
    if run.trained_classes == run.classes:
        return y, y
    index = {c: k for k, c in enumerate(run.trained_classes)}
    unknown = sorted({label for label in labels if label not in index})
    if unknown:
        raise BtkError(f"{run.name} learned the classes {', '.join(run.trained_classes)}: the temperature is fitted "
                       f"on them, so the sample needs those labels, not {', '.join(unknown)}")
    return y, np.array([index[label] for label in labels], dtype=int)


def calibrate_run(run: Any, data: Path | str | None = None, host: Any = None, feedback: Any = None,
                  reader: str | None = None, reader_options: dict[str, str] | None = None, split: str | None = None,
                  class_map: dict[str, str] | None = None, sample: float = 0.5, coverage: float = 0.95,
                  thin: str = "error", seed: int | None = None, out: Path | str | None = None, name: str = "",
                  command: str | None = None, recorded: tuple[list[str], list[str]] | None = None,
                  pac_delta: float | None = None) -> Any:
    """``btk calibrate``, the whole job: fit ``run``'s temperature and prediction sets again on a
    labelled ``sample`` (share) of the site ``data`` (read as the run reads images; ``split`` and
    ``class_map`` as ``btk evaluate`` takes them), score the rest, and write a new run; without
    ``data``, on the run's own calibration images (its validation images; a fold ensemble's calibration
    part, scored by the ensemble), its test images scored again.

    Args:
        coverage: the coverage the sample must support for each class (:func:`btk.conformal.scans_needed`).
        thin: ``error`` refuses a class with too few scans in the sample; ``keep`` keeps the run's
            calibration for it (as for a class absent from the sample).
        seed: draws the sample (default: the run's seed).
        recorded: ``(sample, kept)``: calibrate on these scans of ``data`` (their sources, as a
            calibrated run recorded them) instead of drawing a sample, keeping the run's
            calibration for the classes ``kept`` (:func:`calibrate_again`).
        pac_delta: the training-conditional form of the sets (each class's coverage at least the
            promise with probability ``1 - pac_delta`` over the calibration draw); default: the
            run's (its configuration's ``pac_delta``).

    Returns:
        The new run, read back.

    Raises:
        BtkError: an evaluation, a bad coverage, sample share or choice, unreadable data, labels
            the run does not know, classes with too few scans (``thin="error"``), a bad name, an
            output folder that cannot be written; without ``data``, a run without calibration
            images it did not train on (a fold ensemble).
    """
    from btk.config import require_run_name
    from btk.feedback import Feedback
    from btk.plugins import get_host
    from btk.provenance import now
    from btk.run_files import check_writable, new_run_id, unique_dir

    host = host or get_host()
    feedback = feedback or Feedback()
    t_start, started = time.perf_counter(), now()
    coverage = check_coverage(coverage)
    delta = check_delta(pac_delta) if pac_delta is not None else run.config.pac_delta
    if thin not in THIN_CHOICES:
        raise BtkError(f"--thin-classes {thin!r}: give {' or '.join(THIN_CHOICES)}")
    require_run_name(name)
    if run.is_evaluation:
        raise BtkError(f"{run.path} is an evaluation, not a run: give the run it evaluated")
    if data is None:
        run.require_role("calibration", "btk calibrate without --data", f"calibrate on labelled images that no "
                         f"member trained on with `btk calibrate {run.path} --data LABELLED`", untrained=True)
    parent = check_writable(Path(out) if out is not None else Path(run.path).parent)
    seed = run.config.seed if seed is None else int(seed)
    if data is None:
        prep, record = _own_validation(run, host, feedback, name, coverage, delta)
    else:
        prep, record = _site_sample(run, Path(data), host, feedback, reader, reader_options, split, class_map or {},
                                    sample, coverage, thin, seed, name, delta, recorded)
    record["coverage"], record["pac_delta"] = coverage, delta
    return _write(run, prep, record, parent, host, feedback, t_start, started, command,
                  unique_dir, new_run_id)


def _own_validation(run: Any, host: Any, feedback: Any, name: str, coverage: float,
                    delta: float | None) -> tuple[Any, dict[str, Any]]:
    """The run's own split, to calibrate on its calibration images (its validation images; a fold
    ensemble's calibration part, scored by the whole ensemble); ``split.csv`` and the roles are
    kept as they are."""
    from btk.conformal import in_every_set_warning
    from btk.pipeline import prepared_from_run

    config = run.config.with_changes(name=name or f"{run.config.name or run.config.task}-calibrated",
                                     pac_delta=delta)
    prep = prepared_from_run(run, host, feedback, config=config)
    part = run.positions(prep.data, role="calibration")
    prep.split = {**prep.split, "calibration": part}
    own_part = run.role_subset("calibration") != run.role_subset("selection")
    words = "calibration part (no member trained or selected on it)" if own_part else "validation images"
    counts = {c: int((prep.y[part] == k).sum()) for k, c in enumerate(prep.classes)}
    short = in_every_set(counts, coverage, delta)
    if short:
        feedback.warn(f"the run's {words}: " + in_every_set_warning(short, coverage, delta))
    feedback.info(f"calibrating on the run's {words}: {len(part)} images")
    record = {"on": f"the run's {words}", "sample": {"images": int(len(part)), "per_class": counts},
              "kept_from_run": [], "rows": run.split_table(), "roles": dict(run.roles),
              "origin": "calibration" if own_part else "validation"}
    return prep, record


def _site_sample(run: Any, data: Path, host: Any, feedback: Any, reader: str | None,
                 reader_options: dict[str, str] | None, split: str | None, class_map: dict[str, str],
                 fraction: float, coverage: float, thin: str, seed: int, name: str,
                 delta: float | None, recorded: tuple[list[str], list[str]] | None = None
                 ) -> tuple[Any, dict[str, Any]]:
    """The site's labelled scans as a prepared split: the sample (whole patients and near-copy
    clusters, drawn; or ``recorded``) as validation, the rest as test."""
    from btk.cache import gather
    from btk.classmap import map_labels
    from btk.dataset import Dataset, load_dataset
    from btk.degraders import resolve_degradations
    from btk.evaluate import check_vocabulary, reader_for_data, select_split
    from btk.pipeline import Prepared
    from btk.split import split_groups

    if not data.exists():
        raise BtkError(f"data not found: {data}")
    reader_name, options = reader_for_data(run, data, host, reader, reader_options)
    t_load = time.perf_counter()
    with feedback.task(f"reading {data} ({reader_name})") as task:
        read = load_dataset(host.readers.get(reader_name), data, run.read_options(options),
                            progress=lambda done, total: task.update(completed=done, total=total))
    if read.skipped:
        feedback.warn(f"skipped {len(read.skipped)} unreadable input(s), e.g. {read.skipped[0][0]}: "
                      f"{read.skipped[0][1]}")
    index, split_name = select_split(read, split)
    labels = [str(x) for x in read.labels[index]]
    check_vocabulary(run, labels, class_map, data.name)
    mapped = map_labels(labels, class_map)
    y, y_fit = _site_labels(run, mapped)
    site = Dataset(gather(read.images, index), np.array(mapped), read.groups[index], read.sources[index],
                   np.array([""] * len(index)), list(read.skipped), fingerprint=dict(read.fingerprint))
    threshold = run.config.duplicate_threshold
    groups = split_groups(site, threshold)  # the reader's groups (patients) joined with near-copy clusters
    classes = list(run.classes)
    if recorded is None:
        sample, rest = draw_sample(y, fraction, seed, groups)
        counts = {c: int((y[sample] == k).sum()) for k, c in enumerate(classes)}
        short = thin_classes(counts, coverage, delta)
        if short and thin == "error":
            raise BtkError(thin_message(short, coverage, delta))
        kept = [c for c, n in counts.items() if n == 0] + list(short)
    else:
        sample, rest = _recorded_sample(site.sources, recorded[0], data)
        counts = {c: int((y[sample] == k).sum()) for k, c in enumerate(classes)}
        kept = list(recorded[1])
    if kept:  # the run's own calibration images, scored again, stand in for these classes
        run.require_role("calibration", f"keeping the run's own calibration for {', '.join(kept)}",
                         f"label at least {scans_needed(coverage)} scans of each class in the sample", untrained=True)
    config = run.config.with_changes(name=name or f"{run.config.name or run.config.task}-calibrated",
                                     data=str(data), reader=reader_name, reader_options=options, pac_delta=delta)
    fit_classes = classes if run.trained_classes == run.classes else list(run.trained_classes)
    prep = Prepared(config, host, host.models.get(config.model_name), site, y, classes, y_fit, fit_classes,
                    {"train": np.zeros(0, int), "val": sample, "test": rest}, [],
                    resolve_degradations(host, config.test_degrade), None, time.perf_counter() - t_load)
    feedback.info(f"calibrating on {len(sample)} of {len(index)} labelled scans of {data} ({split_name}): "
                  + ", ".join(f"{c} {n}" for c, n in counts.items() if n)
                  + f"; {100 * coverage:g}% coverage needs at least {scans_needed(coverage, delta)} per class"
                  + (f"; the run's own calibration is kept for {', '.join(kept)}" if kept else ""))
    sample_sources = [str(s) for s in site.sources[sample]]
    record = {"on": "a labelled sample of a new site", "data": str(data), "split": split_name,
              "class_map": class_map, "fraction": fraction, "seed": seed,
              "grouped_by": f"the reader's groups joined with near-copy clusters (score >= {threshold:g})"
                            if threshold > 0 else "the reader's groups",
              "groups": {"sample": int(len(np.unique(groups[sample]))), "rest": int(len(np.unique(groups[rest])))},
              "sample": {"images": int(len(sample)), "per_class": counts, "sha256": listing_sha256(sample_sources)},
              "rest": {"images": int(len(rest)), "per_class": {c: int((y[rest] == k).sum())
                                                              for k, c in enumerate(classes)}},
              "kept_from_run": kept, "coverage": coverage, "thin_classes": thin, "roles": dict(SITE_ROLES)}
    return prep, record


def _recorded_sample(sources: np.ndarray, sample: list[str], data: Path) -> tuple[np.ndarray, np.ndarray]:
    """Positions of the recorded ``sample`` among the site's ``sources``, and of the rest.

    Raises:
        BtkError: scans of the sample are no longer in the data.
    """
    position = {str(s): i for i, s in enumerate(sources)}
    missing = [s for s in sample if s not in position]
    if missing:
        raise BtkError(f"{len(missing)} scan(s) of the recorded sample are not in {data}, e.g. {missing[0]}: the "
                       "calibration cannot be repeated on its sample")
    chosen = np.array(sorted(position[s] for s in sample), dtype=int)
    return chosen, np.setdiff1d(np.arange(len(sources)), chosen)


def _with_kept_classes(run: Any, scorer: Any, sets: Conformal, kept: list[str], host: Any,
                       feedback: Any) -> Conformal:
    """``sets`` with the run's own validation images of the ``kept`` classes added, scored again
    with ``scorer`` (the new temperature), so every class has a calibration.

    Raises:
        BtkError: the run's data can no longer be read.
    """
    from btk.cache import gather
    from btk.pipeline import prepared_from_run

    try:
        own = prepared_from_run(run, host, feedback)
    except BtkError as exc:
        raise BtkError(f"{', '.join(kept)}: not enough scans in the sample, and the run's own validation images "
                       f"cannot be read to keep its calibration ({exc})") from None
    val = run.positions(own.data, role="calibration")
    wanted = np.isin(own.y[val], [own.classes.index(c) for c in kept])
    picked = val[wanted]
    probs = scorer.probabilities(scorer.outputs(gather(own.data.images, picked)))
    own_part = run.role_subset("calibration") != run.role_subset("selection")  # a fold ensemble's calibration part
    origins = [*sets.row_origins(), *["calibration" if own_part else "validation"] * len(picked)]
    return Conformal(sets.classes, np.concatenate([sets.probabilities, probs]),
                     np.concatenate([sets.labels, own.y[picked]]),
                     (*sets.sources, *[str(s) for s in own.data.sources[picked]]), "site+validation", tuple(origins),
                     sets.delta)


def _write(run: Any, prep: Any, record: dict[str, Any], parent: Path, host: Any, feedback: Any, t_start: float,
           started: str, command: str | None, unique_dir: Any, new_run_id: Any) -> Any:
    """Fit, score the test images and write the new run."""
    from dataclasses import replace

    from btk.pipeline import Fitted, calibrate, collapse_alert, evaluate_test, scorer_for, write_run

    model = run.load_model(tta=False)
    scorer = scorer_for(prep, model)
    origin = record.pop("origin", "site")
    calibration = calibrate(prep, scorer, origin=origin)
    if calibration is None:
        raise BtkError("no calibration images")
    kept = record.get("kept_from_run") or []
    if kept:
        sets = _with_kept_classes(run, scorer.with_temperature(calibration.temperature), calibration.sets, kept,
                                  host, feedback)
        calibration = replace(calibration, conformal=sets.summary(), sets=sets)
    record = {"from_run": run.name, "from_path": str(Path(run.path).resolve()), **record,
              "temperature_before": run.temperature, "temperature_after": calibration.temperature,
              "calibration_per_class": calibration.sets.counts()}
    feedback.info(f"temperature {run.temperature:.3f} -> {calibration.temperature:.3f}; prediction sets calibrated "
                  "on " + ", ".join(f"{c} {n}" for c, n in calibration.sets.counts().items()))
    promises = sorted({*DEFAULT_COVERAGES, record["coverage"]})
    record["conditional_coverage"] = {  # where one calibration's coverage lies (btk.conformal.coverage_interval)
        f"{c:g}": {k: list(coverage_interval(n, c, calibration.sets.delta)) for k, n in
                   calibration.sets.counts().items()} for c in promises}
    scorer = scorer.with_calibration(calibration)
    results = evaluate_test(prep, scorer, feedback, explain=False)
    collapse_alert(results, feedback)
    rows, roles = record.pop("rows", None), record.pop("roles")
    extra_config: dict[str, Any] = {"recalibration": record}
    if run.ensemble is not None:
        extra_config["ensemble"] = run.ensemble.to_json()
    if run.adaptation:
        extra_config["adaptation"] = dict(run.adaptation)
    fitted = Fitted(model, dict(run.history), 0.0, 0, run.config.recipe.batch_size, 0, calibration)
    final = unique_dir(parent, new_run_id(prep.config.name))
    return write_run(final, prep, fitted, results, time.perf_counter() - t_start, started, command,
                     extra={"config": extra_config, "metrics": {"recalibration": record}}, rows=rows, roles=roles)


def calibrate_again(calibrated: Any, origin: Any, out: Path | str, host: Any = None, feedback: Any = None,
                    command: str | None = None) -> Any:
    """``calibrated`` (a run ``btk calibrate`` wrote) made again from ``origin`` (the run it was
    calibrated from, or that run made again): on the same site sample it recorded (its
    ``site_sample`` images), with the same kept classes, or on ``origin``'s own calibration
    images; its test images are scored again.

    Raises:
        BtkError: ``calibrated`` is not a calibrated run, or its site data or sample is not here.
    """
    info = calibrated.metrics.get("recalibration") or {}
    name = calibrated.config.name
    if not info:
        raise BtkError(f"{calibrated.name} was not made by btk calibrate")
    if not info.get("data"):
        return calibrate_run(origin, None, host, feedback, seed=info.get("seed"), out=out, name=name, command=command,
                             pac_delta=info.get("pac_delta"))
    data = calibrated.data_path
    if data is None:
        raise BtkError(f"{calibrated.name}: its site data {calibrated.config.data} is not here, so its calibration "
                       "cannot be repeated on its sample")
    recorded = (calibrated.role_sources("site_sample"), list(info.get("kept_from_run") or []))
    return calibrate_run(origin, data, host, feedback, calibrated.config.reader, dict(calibrated.config.reader_options),
                         info.get("split"), dict(info.get("class_map") or {}), float(info.get("fraction", 0.5)),
                         float(info.get("coverage", 0.95)), "keep", info.get("seed"), out, name, command, recorded,
                         info.get("pac_delta"))
