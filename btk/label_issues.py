"""Label issues found by confident learning, from out-of-fold probabilities.

Confident learning (Northcutt, Jiang and Chuang, "Confident Learning: Estimating Uncertainty in
Dataset Labels", JAIR 70, 2021) counts, for every pair (given label i, likely true label j), the
examples the model is *confident* belong to j although they are labelled i: an example counts
for class j when its probability of j is at least that class's threshold, the mean probability
of j over the examples labelled j (its self-confidence). These counts are the confident joint.
Calibrated so that each row sums to the number of examples labelled i, the off-diagonal cell
(i, j) estimates how many examples labelled i are really j; the issues are, for each cell, that
many examples labelled i with the largest margin ``P(j) - P(i)`` ("prune by noise rate").

The probabilities must be out-of-fold: each example scored by a model that did not train on it.

cleanlab implements the same method, but it is AGPL-3.0 and btk is MIT: this is a small module
of its own, written from the paper and tested against injected label noise
(``tests/test_label_issues.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["LabelIssue", "class_thresholds", "confident_joint", "find_label_issues"]


def class_thresholds(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per class ``j``: the mean probability of ``j`` over the examples labelled ``j`` (NaN for a
    class no example has)."""
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels, int)
    return np.array([probs[labels == j, j].mean() if (labels == j).any() else np.nan
                     for j in range(probs.shape[1])])


def confident_joint(probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(C, likely)``: the K x K confident joint (rows: given label, columns: confident label)
    and, per example, its confident label (the most probable class among those at or above their
    threshold; -1 when none is)."""
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels, int)
    k = probs.shape[1]
    above = probs >= np.nan_to_num(class_thresholds(probs, labels), nan=np.inf)[None, :]
    masked = np.where(above, probs, -np.inf)
    likely = np.where(above.any(axis=1), masked.argmax(axis=1), -1)
    joint = np.zeros((k, k), dtype=np.int64)
    for given, conf in zip(labels, likely):
        if conf >= 0:
            joint[given, conf] += 1
    return joint, likely


@dataclass(frozen=True)
class LabelIssue:
    """One example whose given label is likely wrong.

    Attributes:
        index: its position; ``given``, ``likely``: class indices.
        self_confidence: the out-of-fold probability of its given label.
        margin: ``P(likely) - P(given)``.
    """

    index: int
    given: int
    likely: int
    self_confidence: float
    margin: float


def find_label_issues(probs: np.ndarray, labels: np.ndarray) -> list[LabelIssue]:
    """The label issues of examples with out-of-fold ``probs`` and given ``labels``, ranked by
    self-confidence (lowest first): for each off-diagonal cell of the calibrated confident joint,
    that many examples of the given class with the largest margin towards the other class."""
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels, int)
    joint, _ = confident_joint(probs, labels)
    counts = np.bincount(labels, minlength=probs.shape[1]).astype(np.float64)
    row = joint.sum(axis=1, keepdims=True).astype(np.float64)
    calibrated = np.divide(joint, row, out=np.zeros_like(joint, dtype=np.float64), where=row > 0) * counts[:, None]
    chosen: dict[int, int] = {}
    for i in range(probs.shape[1]):
        mine = np.where(labels == i)[0]
        for j in range(probs.shape[1]):
            n = int(round(calibrated[i, j]))
            if i == j or n == 0 or not len(mine):
                continue
            margin = probs[mine, j] - probs[mine, i]
            for idx in mine[np.argsort(-margin)[:n]]:
                if probs[idx, j] > probs[idx, i]:  # only examples that lean towards j
                    best = chosen.get(int(idx))
                    if best is None or probs[idx, j] > probs[idx, best]:
                        chosen[int(idx)] = j
    issues = [LabelIssue(idx, int(labels[idx]), j, float(probs[idx, labels[idx]]),
                         float(probs[idx, j] - probs[idx, labels[idx]])) for idx, j in chosen.items()]
    return sorted(issues, key=lambda x: (x.self_confidence, -x.margin))


def issue_rows(issues: Sequence[LabelIssue], sources: Sequence[str], classes: Sequence[str]) -> list[list[object]]:
    """``label_issues.csv`` rows: path, given label, likely label, self-confidence, margin."""
    return [[sources[x.index], classes[x.given], classes[x.likely], f"{x.self_confidence:.6f}", f"{x.margin:.6f}"]
            for x in issues]
