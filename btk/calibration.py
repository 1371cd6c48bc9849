"""Confidence calibration: temperature scaling and abstention.

Temperature scaling (Guo et al., "On Calibration of Modern Neural Networks", 2017) divides a
network's logits by one number ``T`` fitted on held-out data: ``softmax(log(p) / T)``. ``T > 1``
softens overconfident probabilities, ``T < 1`` sharpens underconfident ones; the class with the
highest probability never changes, so accuracy is untouched. btk's networks output softmax
probabilities, whose logarithms are the logits up to a constant per image (which softmax
ignores), so everything here works from log-probabilities.

A run fits ``T`` on its validation split at the end of training (:func:`btk.pipeline.calibrate`)
and keeps it in ``config.json``; ``btk predict`` applies it, and ``--min-confidence`` abstains
where the calibrated top probability is low (:func:`coverage_curve` measures what that costs).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

#: the probabilities are clipped to this before their logarithm is taken
EPS = 1e-12
#: the search range of log T
LOG_T_RANGE = (-4.0, 4.0)
#: thresholds of the accuracy-against-coverage table
COVERAGE_THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95)


def _log_probs(probs_or_logits: np.ndarray) -> np.ndarray:
    """Logits from probabilities (rows that are non-negative and sum to 1) or logits as given."""
    x = np.asarray(probs_or_logits, dtype=np.float64)
    if x.min() >= 0 and np.allclose(x.sum(axis=1), 1.0, atol=1e-3):
        return np.log(np.clip(x, EPS, 1.0))
    return x


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def nll(probs: np.ndarray, y: np.ndarray) -> float:
    """Mean negative log-likelihood of the true classes ``y`` under ``probs``."""
    probs = np.asarray(probs, dtype=np.float64)
    y = np.asarray(y, dtype=int)
    return float(-np.mean(np.log(np.clip(probs[np.arange(len(y)), y], EPS, 1.0))))


def _nll_at(logits: np.ndarray, y: np.ndarray, temperature: float) -> float:
    z = logits / temperature
    z = z - z.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(z).sum(axis=1))
    return float(np.mean(log_norm - z[np.arange(len(y)), y]))


def fit_temperature(probs_or_logits: np.ndarray, y: np.ndarray) -> float:
    """The temperature ``T > 0`` that minimises the negative log-likelihood of
    ``softmax(logits / T)`` for the true classes ``y``.

    Args:
        probs_or_logits: ``(n, classes)`` softmax probabilities (their logarithms are used) or
            logits.
        y: the true class indices.

    A coarse grid over log T in [-4, 4] then a fine one around its best point (the likelihood
    is smooth in T); 1.0 when there is nothing to fit (no images).
    """
    y = np.asarray(y, dtype=int)
    if len(y) == 0:
        return 1.0
    logits = _log_probs(probs_or_logits)
    lo, hi = LOG_T_RANGE
    grid = np.linspace(lo, hi, 161)
    for _ in range(3):
        losses = [_nll_at(logits, y, float(np.exp(g))) for g in grid]
        best = int(np.argmin(losses))
        step = grid[1] - grid[0]
        grid = np.linspace(max(lo, grid[best] - step), min(hi, grid[best] + step), 41)
    return float(np.exp(grid[int(np.argmin([_nll_at(logits, y, float(np.exp(g))) for g in grid]))]))


def apply_temperature(probs: np.ndarray, temperature: float) -> np.ndarray:
    """``softmax(log(probs) / temperature)``: the same ranking of classes, softened (T > 1) or
    sharpened (T < 1). ``temperature == 1`` returns ``probs`` unchanged."""
    if temperature == 1.0:
        return probs
    return _softmax(_log_probs(probs) / temperature)


def coverage_curve(y: np.ndarray, probs: np.ndarray,
                   thresholds: Sequence[float] = COVERAGE_THRESHOLDS) -> list[dict[str, Any]]:
    """Accuracy against coverage when answers whose top probability is below a threshold are
    withheld.

    Returns:
        per threshold ``{"threshold", "answered", "coverage", "accuracy"}``: how many images
        have a top probability of at least the threshold, their share, and the accuracy among
        them (``None`` when none is answered).
    """
    y = np.asarray(y, dtype=int)
    probs = np.asarray(probs, dtype=np.float64)
    confidence = probs.max(axis=1) if len(probs) else np.zeros(0)
    correct = probs.argmax(axis=1) == y if len(probs) else np.zeros(0, bool)
    out: list[dict[str, Any]] = []
    for t in thresholds:
        sel = confidence >= t
        n = int(sel.sum())
        out.append({"threshold": float(t), "answered": n, "coverage": n / len(y) if len(y) else 0.0,
                    "accuracy": float(correct[sel].mean()) if n else None})
    return out
