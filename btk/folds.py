"""Fold ensembles' folds: which images each fold trains, selects, is answered and is calibrated on,
and the check that runs given to ``btk ensemble`` are the K folds of one split.

The parts (:func:`btk.split.fold_splits`), each grouped by patient and near-copy cluster and
stratified by class:

- ``calibration``: drawn from the pool before folding; no fold trains or selects on it. The fold
  ensemble fits its temperature and prediction sets on the ensemble's own scores of it (split
  conformal: the guarantee holds for the predictor it is fitted on), and each fold run its own.
- ``oof``: fold ``k`` of the rest, which fold ``k`` never trains or selects on: its out-of-fold answers.
- ``val``: an inner share of fold ``k``'s training part, on which it stops early and picks its best
  epoch (``selection``); ``train``: the rest of that part.

A fold run's ``split.csv`` names each part, and its ``config.json`` records the roles
(:data:`FOLD_ROLES`); a fold ensemble's ``train`` holds every image some member trained or
selected on, each with its out-of-fold answer in ``oof.csv`` (:data:`ENSEMBLE_ROLES`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from btk.errors import BtkError

if TYPE_CHECKING:
    from btk.config import RunConfig
    from btk.dataset import Dataset
    from btk.runs import Run

FOLD_ROLES = {"training": "train", "selection": "val", "calibration": "calibration", "out_of_fold": "oof",
              "test": "test"}
"""A fold run's roles: role -> its subset in ``split.csv``."""

ENSEMBLE_ROLES = {"training": "train", "selection": "train", "out_of_fold": "train", "calibration": "calibration",
                  "test": "test"}
"""A fold ensemble's roles: every ``train`` image trained or selected K-1 members and has its
out-of-fold answer (``oof.csv``) from the one member that did neither."""


def parse_fold(text: str) -> tuple[int, int]:
    """``(k, n)`` from a run's ``fold`` field ``K/N`` (fold K of N, 1-based).

    Raises:
        BtkError: anything else.
    """
    try:
        k, n = (int(v) for v in str(text).split("/"))
    except ValueError:
        raise BtkError(f"fold {text!r}: write K/N, e.g. 2/5") from None
    if not 1 <= k <= n:
        raise BtkError(f"fold {text!r}: K must be between 1 and N")
    return k, n


def folds_for(config: RunConfig, data: Dataset, y_fit: np.ndarray, classes: list[str], folds: int,
              as_read: Dataset | None = None) -> list[dict[str, np.ndarray]]:
    """The ``folds`` splits of a fold ensemble (:func:`btk.split.fold_splits`), as positions in
    ``data``. With ``--labels`` the folds are drawn on ``as_read`` (the data as the reader read it,
    before the corrections) and then carried over (a dropped image leaves its part): runs with and
    without a corrections file hold out the same images, so they compare image for image.

    Raises:
        BtkError: the folds cannot be drawn (:func:`btk.split.fold_splits`).
    """
    from btk.split import fold_splits, label_data

    if not config.labels:
        return fold_splits(data, y_fit, config, folds, classes)
    if as_read is None:
        raise ValueError("folds_for: a run with label corrections needs its data as read (as_read)")
    unlabelled = config.with_changes(labels=None)
    _, _, raw_y, raw_classes = label_data(unlabelled, as_read)
    position = {str(s): i for i, s in enumerate(data.sources)}
    raw_sources = [str(s) for s in as_read.sources]
    return [{part: np.array([position[raw_sources[i]] for i in sorted(idx) if raw_sources[i] in position], int)
             for part, idx in split.items()}
            for split in fold_splits(as_read, raw_y, unlabelled, folds, list(raw_classes))]


def _effective_split_seed(run: Run) -> int:
    return run.config.seed if run.config.split_seed is None else run.config.split_seed


def check_folds(runs: Sequence[Run]) -> list[Run]:
    """That ``runs`` are the K folds of one split, and them in fold order: folds 1..K each once,
    each made with held-out ``oof`` and ``calibration`` parts, with one split seed, one label
    corrections file, one near-copy threshold and one calibration part, their held-out parts
    disjoint and together the pool (every image some fold trained, selected or was answered on).

    Raises:
        BtkError: one line naming the first run that differs and how.
    """
    numbered = sorted((parse_fold(r.config.fold) if r.config.fold else (0, 0), r.name) for r in runs)
    n = len(runs)
    if [k for (k, _), _ in numbered] != list(range(1, n + 1)) or any(m != n for (_, m), _ in numbered):
        raise BtkError("a fold ensemble needs the runs of folds 1..N of one split, each once")
    runs = sorted(runs, key=lambda r: parse_fold(r.config.fold)[0])
    for run in runs:
        if not run.subset_sources("oof") or not run.subset_sources("calibration"):
            raise BtkError(f"{run.name} was made by an older btk that selected its epoch on its held-out images: "
                           "train the folds again (btk ensemble --folds K)")
    first = runs[0]
    pool = set().union(*(first.subset_sources(p) for p in ("train", "val", "oof")))
    calibration = set(first.subset_sources("calibration"))
    held: set[str] = set()
    for run in runs:
        for what, mine, theirs in (("split seed", _effective_split_seed(run), _effective_split_seed(first)),
                                   ("label corrections", run.config.labels, first.config.labels),
                                   ("near-copy threshold", run.config.duplicate_threshold,
                                    first.config.duplicate_threshold)):
            if mine != theirs:
                raise BtkError(f"{run.name} is not a fold of {first.name}'s split: {what} {mine} against {theirs}")
        if set(run.subset_sources("calibration")) != calibration:
            raise BtkError(f"{run.name} is not a fold of {first.name}'s split: another calibration part")
        if set().union(*(run.subset_sources(p) for p in ("train", "val", "oof"))) != pool:
            raise BtkError(f"{run.name} is not a fold of {first.name}'s split: another pool of training images")
        oof = set(run.subset_sources("oof"))
        if oof & held:
            raise BtkError(f"{run.name} is not a fold of {first.name}'s split: its held-out images overlap another "
                           f"fold's ({len(oof & held)} shared)")
        held |= oof
    if held != pool:
        raise BtkError(f"the folds' held-out images do not cover the pool: {len(pool - held)} image(s) held out by "
                       "no fold")
    return runs
