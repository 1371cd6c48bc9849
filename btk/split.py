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
    if counts.min() >= folds:
        splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
        _, held = next(splitter.split(np.zeros(n), labels, groups))
    else:
        splitter = GroupShuffleSplit(n_splits=1, test_size=fraction, random_state=seed)
        _, held = next(splitter.split(np.zeros(n), labels, groups))
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
    """``folds`` splits of the training images for a fold ensemble: StratifiedGroupKFold
    (scikit-learn) over the pool :func:`make_split` would use (every image but the test images),
    grouped as btk's splits are (the reader's groups, e.g. a DICOM patient or a NIfTI subject,
    joined with near-copy clusters), stratified by class, shuffled with the split seed. Fold
    ``k`` validates on its held-out part and trains on the rest; every fold has the same test
    images.

    Raises:
        BtkError: fewer than 2 folds, or more folds than the smallest class has images or groups.
    """
    from sklearn.model_selection import StratifiedGroupKFold

    if folds < 2:
        raise BtkError(f"--folds {folds}: a fold ensemble needs at least 2 folds (K = 1 leaves nothing out)")
    seed = config.seed if config.split_seed is None else config.split_seed
    base = make_split(data, y, config)
    pool = np.sort(np.concatenate([base["train"], base["val"]]))
    groups = split_groups(data, config.duplicate_threshold, pool)
    for cls in np.unique(y[pool]):
        mine = y[pool] == cls
        n_images, n_groups = int(mine.sum()), len(np.unique(groups[mine]))
        if min(n_images, n_groups) < folds:
            name = classes[int(cls)] if classes else str(cls)
            raise BtkError(f"--folds {folds}: class {name} has only {n_images} training image(s) in {n_groups} "
                           f"group(s); every fold needs one of each class (use at most {min(n_images, n_groups)})")
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    out = []
    for train, val in splitter.split(pool, y[pool], groups):
        out.append({"train": pool[train], "val": pool[val], "test": base["test"]})
    return out
