"""Labels for a task, and train / validation / test splits that keep a group (patient, volume,
file, near-copies) on one side."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

import numpy as np

from btk.cache import iter_rows
from btk.duplicates import Fingerprints, clusters_from_pairs, find_pairs, fingerprint_all
from btk.errors import BtkError

if TYPE_CHECKING:
    from btk.config import RunConfig
    from btk.dataset import Dataset


def grouped_holdout(labels: np.ndarray, groups: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """A boolean mask of about ``fraction`` of the samples, whole groups only, stratified by label.

    Uses scikit-learn's ``StratifiedGroupKFold`` with ``round(1 / fraction)`` folds and takes
    the first fold as the held-out part.
    """
    from sklearn.model_selection import GroupShuffleSplit, StratifiedGroupKFold

    n = len(labels)
    if not 0 < fraction < 1:
        raise BtkError(f"a split fraction must be between 0 and 1, got {fraction}")
    folds = max(2, int(round(1 / fraction)))
    _, counts = np.unique(labels, return_counts=True)
    mask = np.zeros(n, bool)
    if counts.min() >= folds and len(np.unique(groups)) >= folds:
        splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
        _, held = next(splitter.split(np.zeros(n), labels, groups))
    else:
        splitter = GroupShuffleSplit(n_splits=1, test_size=fraction, random_state=seed)
        try:
            _, held = next(splitter.split(np.zeros(n), labels, groups))
        except ValueError:  # too few groups to leave some on each side
            raise BtkError(f"{n} image(s) in {len(np.unique(groups))} group(s) are too few to hold out a share of "
                           f"{fraction:g} and keep the rest: use more images") from None
    mask[held] = True
    return mask


def tail_holdout(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The report's way: shuffle with ``seed``, then hold out the last ``fraction`` (Keras'
    ``validation_split`` takes the tail of the arrays it is given).

    Returns:
        (train_index, val_index) into the ``n`` samples.
    """
    order = np.random.default_rng(seed).permutation(n)
    n_val = int(n * fraction)
    return order[: n - n_val], order[n - n_val:]


def stratified_limit(labels: np.ndarray, index: np.ndarray, limit: int, seed: int) -> np.ndarray:
    """At most ``limit`` of ``index``, drawn with the class proportions kept."""
    if limit <= 0 or limit >= len(index):
        return index
    from sklearn.model_selection import train_test_split

    _, counts = np.unique(labels[index], return_counts=True)
    stratify = labels[index] if counts.min() >= 2 and limit >= len(counts) else None
    kept, _ = train_test_split(index, train_size=limit, stratify=stratify, random_state=seed)
    return np.sort(kept)


def label_data(config: RunConfig, data: Dataset) -> tuple[np.ndarray, list[str], np.ndarray, list[str]]:
    """``(y, classes, y_fit, fit_classes)``: the task's labels and classes, and what the network
    learns: the same, or every class when a binary task is learned through the classes
    (``recipe.binary_via_classes``: each tumour type is its own target, so a subgroup of one type
    is not absorbed into "tumour"; the task then reads 1 - P(negative))."""
    y, classes = task_labels(data, config.task, config.negative_class)
    y_fit, fit_classes = y, classes
    if config.task == "binary" and config.recipe.binary_via_classes:
        all_y, all_classes = task_labels(data, "multiclass", config.negative_class)
        if len(all_classes) > 2:
            y_fit, fit_classes = all_y, all_classes
    return y, classes, y_fit, fit_classes


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
            raise BtkError(f"binary task: negative class '{negative_class}' not in the data "
                           f"(classes: {', '.join(names)})")
        return np.array([0 if str(x) == negative_class else 1 for x in data.labels]), [negative_class, "tumor"]
    raise BtkError(f"unknown task '{task}' (tasks: multiclass, binary)")


def split_groups(data: Dataset, threshold: float, index: np.ndarray | None = None) -> np.ndarray:
    """Group ids for splitting: the reader's groups joined with near-duplicate clusters.

    With ``index``, the groups of those images only, their clusters found among them alone (an
    image outside ``index`` never links two inside it); the result is aligned with ``index``.
    The pairs of the whole data, once found, serve every sorted ``index`` after it: the pairs
    among a subset are the whole data's pairs with both images in it.
    """
    whole = index is None
    if whole:
        index = np.arange(len(data.groups))
        key = f"clusters@{threshold}"
    else:
        index = np.asarray(index)
        digest = hashlib.sha1(np.ascontiguousarray(index, dtype=np.int64).tobytes()).hexdigest()[:16]
        key = f"clusters@{threshold}:{digest}"
    if threshold <= 0:
        return data.groups[index]
    if key in data.cache:
        return data.cache[key]
    pairs_key = f"pairs@{threshold}"
    if whole:
        pairs = data.cache[pairs_key] = find_pairs(fingerprints_of(data), None, threshold)
    elif pairs_key in data.cache and np.all(np.diff(index) > 0):
        position = np.full(len(data.groups), -1)
        position[index] = np.arange(len(index))
        pairs = [(int(position[i]), int(position[j]), kind, score) for i, j, kind, score in data.cache[pairs_key]
                 if position[i] >= 0 and position[j] >= 0]
    else:
        pairs = find_pairs(fingerprints_of(data).subset(index), None, threshold)
    data.cache[key] = clusters_from_pairs(len(index), pairs, data.groups[index])
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
    The validation split's groups are found among the pool (training and validation candidates)
    alone, so it depends on the training images, the options and the seed, not on the test
    images. Without a declared test split, the test images are held out first, over the whole
    data's groups.
    """
    recipe = config.recipe
    seed = config.seed if config.split_seed is None else config.split_seed
    declared_test = data.splits == "test"
    if declared_test.any():
        test = np.where(declared_test)[0]
        pool = np.where(~declared_test)[0]
    else:
        held = grouped_holdout(y, split_groups(data, config.duplicate_threshold), config.test_fraction, seed)
        test, pool = np.where(held)[0], np.where(~held)[0]
    if len(pool) == 0:
        raise BtkError("no training images: every image is in the test split")
    pool = stratified_limit(y, pool, config.limit_train, seed)
    test = stratified_limit(y, test, config.limit_test, seed)
    if recipe.val_method == "tail":
        tr, va = tail_holdout(len(pool), recipe.val_fraction, seed)
        train, val = pool[tr], pool[va]
    else:
        held = grouped_holdout(y[pool], split_groups(data, config.duplicate_threshold, pool), recipe.val_fraction, seed)
        train, val = pool[~held], pool[held]
    return {"train": train, "val": val, "test": test}


def fold_splits(data: Dataset, y: np.ndarray, config: RunConfig, folds: int,
                classes: list[str] | None = None) -> list[dict[str, np.ndarray]]:
    """The ``folds`` splits of a fold ensemble, drawn over the pool :func:`make_split` would use
    (every image but the test images), every part grouped as btk's splits are (the reader's
    groups, e.g. a DICOM patient or a NIfTI subject, joined with near-copy clusters), stratified by
    class and shuffled with the split seed:

    1. ``calibration``: a share ``recipe.val_fraction`` of the pool (:func:`grouped_holdout`), held
       out before folding. No fold trains or selects on it; the fold ensemble, as a whole, fits
       its temperature and prediction sets on it.
    2. The rest is cut into ``folds`` folds (scikit-learn's ``StratifiedGroupKFold``). Fold ``k``
       holds out fold ``k`` (``oof``: answered by the one model that never saw it) and trains
       on the other folds, less ``val``: an inner share ``recipe.val_fraction`` of them
       (:func:`grouped_holdout` again), on which it stops early and picks its best epoch.

    Every fold has the same test and calibration images.

    Returns:
        One dict per fold: ``train``, ``val``, ``oof``, ``calibration`` and ``test`` positions.

    Raises:
        BtkError: fewer than 2 folds, or more folds than the smallest class has images or groups
            outside the calibration part.
    """
    from sklearn.model_selection import StratifiedGroupKFold

    if folds < 2:
        raise BtkError(f"--folds {folds}: a fold ensemble needs at least 2 folds (K = 1 leaves nothing out)")
    seed = config.seed if config.split_seed is None else config.split_seed
    fraction = config.recipe.val_fraction
    base = make_split(data, y, config)
    pool = np.sort(np.concatenate([base["train"], base["val"]]))
    groups = split_groups(data, config.duplicate_threshold, pool)
    held = grouped_holdout(y[pool], groups, fraction, seed)
    calibration, rest, rest_groups = pool[held], pool[~held], groups[~held]
    for cls in np.unique(y[pool]):
        mine = y[rest] == cls
        n_images, n_groups = int(mine.sum()), len(np.unique(rest_groups[mine]))
        if min(n_images, n_groups) < folds:
            name = classes[int(cls)] if classes else str(cls)
            raise BtkError(f"--folds {folds}: class {name} has only {n_images} training image(s) in {n_groups} "
                           f"group(s) outside the ensemble's calibration part; every fold needs one of each class "
                           f"(use at most {min(n_images, n_groups)})")
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    out = []
    for train, oof in splitter.split(rest, y[rest], rest_groups):
        selection = grouped_holdout(y[rest[train]], rest_groups[train], fraction, seed)
        out.append({"train": rest[train][~selection], "val": rest[train][selection], "oof": rest[oof],
                    "calibration": calibration, "test": base["test"]})
    return out
