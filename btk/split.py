"""Train / validation / test splits that keep a group (patient, volume, file) on one side."""

from __future__ import annotations

import numpy as np

from btk.errors import BtkError


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
