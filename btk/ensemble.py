"""Ensembles: several runs' networks averaged into one model, written as one run.

``btk ensemble --train N`` trains N members (seeds ``seed`` .. ``seed + N - 1``) on one split
(the first seed's), each written as its own run, then :func:`combine` writes the ensemble run:
its ``model.keras`` is a plain Keras model that feeds the image to every member and averages
their probabilities, so ``predict``, ``evaluate``, ``explain``, ``robustness`` and ``report``
treat it as one model, and ``keras.saving.load_model`` reads it without btk. ``btk ensemble
RUN...`` combines runs that already exist.

Nothing is split again: the ensemble is scored on its members' test images (the same for all,
from their ``split.csv``). Its temperature is fitted on the members' calibration images (by role,
:mod:`btk.record`: their validation images; fold runs' calibration part), which works only when
every member held out the same ones (members of one ``--train`` do); runs with other validation
splits are combined without a temperature, and the run says so. Every image a member trained or
selected its epoch on counts as a training image of the ensemble (its copy check).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from btk.config import RunConfig, require_run_name
from btk.errors import BtkError
from btk.feedback import Feedback
from btk.plugins import PluginHost, get_host
from btk.run_files import check_writable, new_run_id, unique_dir
from btk.runs import Ensemble, Member, Run, load_run

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


def check_members(runs: Sequence[Run]) -> None:
    """Members must be distinct runs (not evaluations, not ensembles) of the same data, task,
    classes and input preparation, scored on the same test images.

    Raises:
        BtkError: fewer than two runs, one given twice, or one that differs from the first
            (named, with what).
    """
    if len(runs) < 2:
        raise BtkError("an ensemble needs at least two runs")
    seen: dict[Path, str] = {}
    models: dict[str, str] = {}
    for run in runs:
        if run.is_evaluation:
            raise BtkError(f"{run.path} is an evaluation, not a run: give the run it evaluated")
        if run.ensemble is not None:
            raise BtkError(f"{run.path} is an ensemble already; combine its members instead")
        where = run.path.resolve()
        if where in seen:
            raise BtkError(f"{run.path}: the same run is given twice ({seen[where]}): an ensemble needs different "
                           "runs")
        seen[where] = str(run.path)
        digest = run.model_sha256()
        if digest is not None and digest in models:
            raise BtkError(f"{run.path} has the same model as {models[digest]} (a copy: model.keras SHA-256 "
                           f"{digest[:16]}): an ensemble needs different runs")
        if digest is not None:
            models[digest] = str(run.path)
    first = runs[0]
    tests = set(first.role_sources("test"))
    for run in runs[1:]:
        if run.classes != first.classes or run.trained_classes != first.trained_classes:
            raise BtkError(f"{run.name} has classes {list(run.classes)}; {first.name} has {list(first.classes)}")
        for key in SAME_RECIPE:
            mine, theirs = getattr(run.recipe, key), getattr(first.recipe, key)
            if mine != theirs:
                raise BtkError(f"{run.name} reads images differently from {first.name}: {key} {mine} against {theirs}")
        for key in SAME_CONFIG:
            mine, theirs = getattr(run.config, key), getattr(first.config, key)
            if mine != theirs:
                raise BtkError(f"{run.name} differs from {first.name} in {key}: {mine} against {theirs}")
        if set(run.role_sources("test")) != tests:
            raise BtkError(f"{run.name} was tested on other images than {first.name}")


def _best_val_accuracy(run: Run) -> float | None:
    values = run.history.get("val_accuracy") or []
    if not values:
        return None
    best = run.best_epoch
    return float(values[best - 1]) if best else float(max(values))


def combine(runs: Sequence[Run], out_dir: Path | str, host: PluginHost | None = None,
            feedback: Feedback | None = None, name: str = "", tta: bool | None = None,
            command: str | None = None, data: Any = None) -> Run:
    """Write one run whose model averages the ``runs``' models, scored on their test images
    (and on their calibration images when all held out the same ones: its temperature; the
    members' shared validation images, or the calibration part of fold runs combined as a plain
    average, which no fold trained or selected on).

    Args:
        out_dir: parent folder of the new run.
        name: the run's name [``ensembleN``].
        tta: test-time augmentation around the ensemble [the first member's choice].
        data: the members' dataset, already loaded (``btk ensemble --train`` passes it).

    Raises:
        BtkError: members that cannot be combined (:func:`check_members`), a bad name, an
            output folder that cannot be written.
    """
    from btk.cache import gather
    from btk.pipeline import Fitted, calibrate, collapse_alert, evaluate_test, prepared_from_run, scorer_for, write_run
    from btk.provenance import now

    host = host or get_host()
    feedback = feedback or Feedback()
    t_start, started = time.perf_counter(), now()
    require_run_name(name)
    check_members(runs)
    out_dir = check_writable(out_dir)
    first = runs[0]
    split_seed = first.config.split_seed if first.config.split_seed is not None else first.config.seed
    config = first.config.with_changes(name=name or f"ensemble{len(runs)}", ensemble=len(runs),
                                       split_seed=split_seed, tta=first.tta if tta is None else tta)
    prep = prepared_from_run(first, host, feedback, data, config)
    position = {str(s): i for i, s in enumerate(prep.data.sources)}
    # by role (btk.record): what calibrates each member, and what trained or selected it (the copy check)
    calibration_sets = [set(r.role_sources("calibration")) for r in runs]
    shared_val = all(v == calibration_sets[0] for v in calibration_sets)
    own_part = first.role_subset("calibration") != first.role_subset("selection")  # fold runs: a calibration part
    seen = set().union(*[set(r.role_sources("training")) | set(r.role_sources("selection")) for r in runs])
    val = first.positions(prep.data, role="calibration") if shared_val else np.zeros(0, int)
    val_names = {str(prep.data.sources[i]) for i in val}
    prep.split = {"train": np.array(sorted(position[s] for s in seen if s not in val_names and s in position), int),
                  "val": np.zeros(0, int) if own_part else val, "test": prep.split["test"]}
    roles = None
    if own_part and shared_val:
        prep.split["calibration"] = val
        roles = {"training": "train", "calibration": "calibration", "test": "test"}
    feedback.info(f"combining {len(runs)} runs: " + ", ".join(r.name for r in runs))
    model = ensemble_model([r.load_model(tta=False) for r in runs], name=config.name or "ensemble")
    scorer = scorer_for(prep, model)
    members = tuple(Member(r.name, str(r.path.resolve()), r.config.seed,
                           r.metrics.get("conditions", {}).get("clean", {}).get("accuracy"), _best_val_accuracy(r),
                           r.metrics.get("timing", {}).get("train_seconds")) for r in runs)
    calibration, val_accuracy = None, None
    if shared_val and len(val):
        outputs = scorer.outputs(gather(prep.data.images, val))
        val_accuracy = float((outputs.argmax(axis=1) == prep.y_fit[val]).mean())
        calibration = calibrate(prep, scorer, outputs, scored_here=True)
        scorer = scorer.with_calibration(calibration)
    else:
        feedback.warn("the members held out different validation images (each trained on some of the others'): "
                      "no temperature, no prediction sets and no validation accuracy for the ensemble")
    results = evaluate_test(prep, scorer, feedback)  # copies looked for among train and val: what it saw
    collapse_alert(results, feedback)
    summary = Ensemble(members, shared_val, val_accuracy).to_json()
    train_seconds = sum(m.train_seconds or 0.0 for m in members)
    fitted = Fitted(model, {}, train_seconds, 0, config.recipe.batch_size, len(prep.split["train"]), calibration)
    final = unique_dir(out_dir, new_run_id(config.name))
    return write_run(final, prep, fitted, results, time.perf_counter() - t_start, started, command,
                     extra={"config": {"ensemble": summary}, "metrics": {"ensemble": summary}}, roles=roles)


def combine_paths(paths: Sequence[Path | str], out_dir: Path | str | None = None, host: PluginHost | None = None,
                  feedback: Feedback | None = None, name: str = "", tta: bool | None = None) -> Run:
    """``btk ensemble RUN...``: the runs at ``paths`` combined into a new run under ``out_dir``
    [the first run's parent folder]: when every run is a fold of a K-fold split (``--set
    fold=k/K``, also folds trained one at a time), a fold ensemble (:func:`combine_folds`: they must
    be the K folds of one split; out-of-fold answers, label issues, calibrated on its own scores of
    the calibration part), else a plain average (:func:`combine`)."""
    require_run_name(name)
    runs = [load_run(p) for p in paths]
    where = Path(out_dir) if out_dir else runs[0].path.parent
    if runs and all(r.config.fold for r in runs) and not tta:
        return combine_folds(runs, where, host, feedback, name)
    return combine(runs, where, host, feedback, name, tta)


def train_ensemble(config: RunConfig, members: int, out_dir: Path | str = "runs", feedback: Feedback | None = None,
                   host: PluginHost | None = None, command: str | None = None,
                   seeds: Sequence[int] | None = None, split_seed: int | None = None) -> tuple[list[Run], Run]:
    """``btk ensemble --train N``: train ``members`` runs on one split (seeds ``config.seed``
    onwards, or ``seeds``; the split of ``split_seed``, default the first seed's), each written
    as a run of its own, then :func:`combine` them.

    Returns:
        (members, ensemble run).
    """
    from btk.pipeline import load_for_config, run_experiment

    host = host or get_host()
    feedback = feedback or Feedback()
    if members < 2:
        raise BtkError(f"an ensemble needs at least 2 members, got {members}")
    out_dir = check_writable(out_dir)
    seeds = list(seeds) if seeds is not None else [config.seed + k for k in range(members)]
    split_seed = split_seed if split_seed is not None else (
        config.split_seed if config.split_seed is not None else seeds[0])
    data = load_for_config(config, host, feedback)
    stem = config.name or config.task
    runs = []
    for k, seed in enumerate(seeds):
        member = config.with_changes(seed=seed, split_seed=split_seed, ensemble=1, name=f"{stem}-member{k + 1}")
        feedback.info(f"member {k + 1} of {len(seeds)}: seed {seed}")
        runs.append(run_experiment(member, out_dir, feedback, host, data=data, command=command))
    ensemble = combine(runs, out_dir, host, feedback, name=f"{stem}-ensemble{len(seeds)}", tta=config.tta,
                       command=command, data=data)
    return runs, ensemble


def train_folds(config: RunConfig, folds: int, out_dir: Path | str = "runs", feedback: Feedback | None = None,
                host: PluginHost | None = None, command: str | None = None) -> tuple[list[Run], Run]:
    """``btk ensemble --folds K``: train one run per fold of the training images
    (:func:`btk.split.fold_splits`: a calibration part held back first, then K grouped, stratified
    folds; each fold stops early and picks its best epoch on an inner share of its own training
    part, never on the fold it answers), then :func:`combine_folds` them.

    Returns:
        (the fold runs, the fold ensemble run).

    Raises:
        BtkError: fewer than 2 folds, more folds than the smallest class or group count allows.
    """
    from btk.pipeline import folds_for, label_data, load_for_config, run_experiment

    host = host or get_host()
    feedback = feedback or Feedback()
    out_dir = check_writable(out_dir)
    data = load_for_config(config, host, feedback)
    _, _, y_fit, fit_classes = label_data(config, data)
    folds_for(config, data, y_fit, list(fit_classes), folds, host)  # refused here, before any training
    stem = config.name or config.task
    split_seed = config.split_seed if config.split_seed is not None else config.seed
    runs = []
    for k in range(1, folds + 1):
        member = config.with_changes(fold=f"{k}/{folds}", split_seed=split_seed, ensemble=1, name=f"{stem}-fold{k}")
        feedback.info(f"fold {k} of {folds}")
        runs.append(run_experiment(member, out_dir, feedback, host, data=data, command=command))
    ensemble = combine_folds(runs, out_dir, host, feedback, name=f"{stem}-folds{folds}", command=command, data=data)
    return runs, ensemble


def combine_folds(runs: Sequence[Run], out_dir: Path | str, host: PluginHost | None = None,
                  feedback: Feedback | None = None, name: str = "", command: str | None = None,
                  data: Any = None) -> Run:
    """One run averaging the fold runs' models (:func:`btk.folds.check_folds`: they must be the K
    folds of one split).

    - **Out of fold.** Every image some fold trained or selected on is answered by the one fold
      model that did neither (its own test-time augmentation and temperature): ``oof.csv``, with the
      fold. Its metrics add the cross-validated accuracy per fold, mean and spread, and the label
      issues confident learning finds in those probabilities (``label_issues.csv``,
      :mod:`btk.label_issues`), counted per given class.
    - **Calibration.** The temperature and the prediction sets are fitted on the ensemble's own
      scores (the averaged model, with the test-time augmentation it is used with) of the
      calibration part, which no fold trained or selected on: split conformal for the predictor
      the sets are applied to.

    Raises:
        BtkError: runs that are not the folds of one split.
    """
    from btk.cache import gather
    from btk.folds import ENSEMBLE_ROLES, check_folds
    from btk.label_issues import find_label_issues, issue_rows
    from btk.pipeline import Fitted, calibrate, collapse_alert, evaluate_test, prepared_from_run, scorer_for, write_run
    from btk.provenance import now

    host = host or get_host()
    feedback = feedback or Feedback()
    t_start, started = time.perf_counter(), now()
    require_run_name(name)
    check_members(runs)
    runs = check_folds(runs)  # in fold order, however given
    n = len(runs)
    first = runs[0]
    config = first.config.with_changes(name=name or f"folds{n}", ensemble=n, fold="")
    prep = prepared_from_run(first, host, feedback, data, config)
    oof_index, oof_fold, oof_probs_list = [], [], []
    accuracies = []
    for k, run in enumerate(runs, 1):
        held = run.positions(prep.data, "oof")
        with run.scorer() as member:
            probs = member.probabilities(member.outputs(gather(prep.data.images, held)))
        accuracies.append(float((probs.argmax(axis=1) == prep.y[held]).mean()))
        oof_index.append(held)
        oof_fold.append(np.full(len(held), k))
        oof_probs_list.append(probs)
    index = np.concatenate(oof_index)
    oof_probs = np.concatenate(oof_probs_list)
    folds = np.concatenate(oof_fold)
    prep.split = {"train": np.sort(index), "val": np.zeros(0, int),
                  "calibration": first.positions(prep.data, "calibration"), "test": prep.split["test"]}
    feedback.info(f"combining {n} folds: out-of-fold accuracy {100 * np.mean(accuracies):.1f} "
                  f"(folds {', '.join(f'{100 * a:.1f}' for a in accuracies)})")
    model = ensemble_model([r.load_model(tta=False) for r in runs], name=config.name or "folds")
    scorer = scorer_for(prep, model)
    calibration_outputs = scorer.outputs(gather(prep.data.images, prep.split["calibration"]))
    calibration = calibrate(prep, scorer, calibration_outputs, origin="calibration", scored_here=True)
    scorer = scorer.with_calibration(calibration)
    calibration_accuracy = float((scorer.probabilities(calibration_outputs).argmax(axis=1)
                                  == prep.y[prep.split["calibration"]]).mean())
    oof_accuracy = float((oof_probs.argmax(axis=1) == prep.y[index]).mean())
    results = evaluate_test(prep, scorer, feedback)  # copies looked for among the members' images: what it saw
    collapse_alert(results, feedback)
    members = tuple(Member(r.name, str(r.path.resolve()), r.config.seed,
                           r.metrics.get("conditions", {}).get("clean", {}).get("accuracy"), _best_val_accuracy(r),
                           r.metrics.get("timing", {}).get("train_seconds")) for r in runs)
    # no validation accuracy: the members' are on their own selection parts, not comparable (cv has the
    # ensemble's accuracy on the calibration part)
    summary = Ensemble(members, False, None).to_json()
    cv = {"folds": n, "accuracy_per_fold": accuracies, "accuracy_mean": float(np.mean(accuracies)),
          "accuracy_std": float(np.std(accuracies)), "oof_accuracy": oof_accuracy,
          "oof_recall": {c: float((oof_probs.argmax(axis=1)[prep.y[index] == k] == k).mean())
                         for k, c in enumerate(prep.classes) if (prep.y[index] == k).any()},
          "calibration_images": int(len(prep.split["calibration"])), "calibration_accuracy": calibration_accuracy}
    classes = list(prep.classes)
    rows = [[prep.data.sources[i], classes[prep.y[i]], int(f), classes[int(p.argmax())], *[f"{v:.6f}" for v in p]]
            for i, f, p in zip(index, folds, oof_probs)]
    issues = find_label_issues(oof_probs, prep.y[index])
    cv["label_issues"] = {c: sum(1 for x in issues if x.given == k) for k, c in enumerate(classes)}
    if issues:  # the most doubtful, for a person to look at: thumbnails and the map of the likely class
        import cv2

        from btk.explain import heat_maps
        from btk.scoring import thumbnails

        top = issues[:32]
        flagged = gather(prep.data.images, index[[x.index for x in top]])
        likely = np.array([x.likely for x in top])
        results.examples["issues/images"] = thumbnails(flagged)
        targets = scorer.fine_class(scorer.outputs(flagged), likely)
        side = results.examples["issues/images"].shape[1]  # maps at the thumbnails' size
        results.examples["issues/heat"] = np.stack([cv2.resize(np.asarray(h, np.float32), (side, side))
                                                    for h in heat_maps(scorer, flagged, targets)[0]])
        results.examples["issues/sources"] = np.array([str(prep.data.sources[index[x.index]]) for x in top])
        results.examples["issues/labels"] = np.array([[classes[x.given], classes[x.likely]] for x in top])
    feedback.info(f"{len(issues)} likely label issue(s) among {len(index)} training images (label_issues.csv)")
    train_seconds = sum(m.train_seconds or 0.0 for m in members)
    fitted = Fitted(model, {}, train_seconds, 0, config.recipe.batch_size, len(index), calibration)
    final = unique_dir(check_writable(out_dir), new_run_id(config.name))
    return write_run(final, prep, fitted, results, time.perf_counter() - t_start, started, command,
                     extra={"config": {"ensemble": summary, "cv": {"folds": n}, "roles": ENSEMBLE_ROLES},
                            "metrics": {"ensemble": summary, "cv": cv},
                            "tables": {"oof.csv": (["source", "label", "fold", "predicted",
                                                    *[f"p_{c}" for c in classes]], rows),
                                       "label_issues.csv": (["path", "given", "likely", "self_confidence",
                                                             "margin"],
                                                            issue_rows(issues, [str(prep.data.sources[i])
                                                                                for i in index], classes))}})
