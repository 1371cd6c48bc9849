"""Statistics for reports: calibration (ECE), bootstrap confidence intervals, McNemar's test."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

ECE_BINS = 15


def reliability(y_true: np.ndarray, probs: np.ndarray, bins: int = ECE_BINS) -> dict[str, Any]:
    """Expected calibration error of the top-class confidence, with the reliability table.

    Confidence (the largest probability) is binned into ``bins`` equal-width bins on [0, 1]
    (a confidence of exactly 1 falls in the last bin). ECE = sum over bins of
    (bin count / n) * |accuracy in bin - mean confidence in bin|.

    Returns:
        ``{"ece", "bins", "edges", "count", "accuracy", "confidence"}`` (per-bin lists; empty
        bins have count 0 and ``None`` accuracy and confidence).
    """
    y_true = np.asarray(y_true, dtype=int)
    probs = np.asarray(probs, dtype=np.float64)
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == y_true
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    count: list[int] = []
    acc: list[float | None] = []  # None for an empty bin
    conf: list[float | None] = []
    ece = 0.0
    for b in range(bins):
        sel = which == b
        n = int(sel.sum())
        count.append(n)
        if n:
            a, c = float(correct[sel].mean()), float(confidence[sel].mean())
            acc.append(a)
            conf.append(c)
            ece += n / len(y_true) * abs(a - c)
        else:
            acc.append(None)
            conf.append(None)
    return {"ece": float(ece), "bins": bins, "edges": edges.tolist(), "count": count, "accuracy": acc,
            "confidence": conf}


def _confusions(y: np.ndarray, pred: np.ndarray, k: int, idx: np.ndarray) -> np.ndarray:
    """Confusion matrices (R x k x k, rows true) of R resamples given as an R x n index array."""
    codes = (y * k + pred)[idx] + (np.arange(len(idx)) * k * k)[:, None]
    return np.bincount(codes.ravel(), minlength=len(idx) * k * k).reshape(len(idx), k, k)


def weighted_auc(scores: np.ndarray, positive: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """ROC AUC under each row of ``weights`` (R x n multiplicities, as a bootstrap resample gives):
    the weighted Mann-Whitney statistic, ties counted one half. NaN where a row lacks a class."""
    order = np.argsort(scores, kind="mergesort")
    s, pos, w = scores[order], positive[order], weights[:, order].astype(np.float64)
    neg_w = w * ~pos
    _, start, counts = np.unique(s, return_index=True, return_counts=True)
    group = np.repeat(np.arange(len(start)), counts)
    per_group = np.add.reduceat(neg_w, start, axis=1)
    below = np.cumsum(per_group, axis=1) - per_group + 0.5 * per_group
    pos_w = w * pos
    num = (pos_w * below[:, group]).sum(axis=1)
    den = pos_w.sum(axis=1) * neg_w.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / den, np.nan)


def metric_cis(y_true: np.ndarray, probs: np.ndarray, resamples: int = 1000, seed: int = 0,
               level: float = 0.95) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap intervals (``level``, default 95%) of accuracy, balanced accuracy,
    macro F1 and macro one-vs-rest ROC AUC, all from the same ``resamples`` resampled image
    sets (vectorised: no per-resample Python loop)."""
    y = np.asarray(y_true, dtype=int)
    probs = np.asarray(probs, dtype=np.float64)
    k = probs.shape[1]
    pred = probs.argmax(axis=1)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(y), (resamples, len(y)))
    cm = _confusions(y, pred, k, idx).astype(np.float64)
    diag = np.diagonal(cm, axis1=1, axis2=2)
    support, predicted = cm.sum(axis=2), cm.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(support > 0, diag / support, np.nan)
        precision = np.where(predicted > 0, diag / predicted, 0.0)
        f1 = np.where(precision + np.nan_to_num(recall) > 0,
                      2 * precision * np.nan_to_num(recall) / (precision + np.nan_to_num(recall)), 0.0)
    tail = (1 - level) / 2 * 100

    def interval(values: np.ndarray) -> tuple[float, float]:
        values = values[np.isfinite(values)]
        if not len(values):
            return (float("nan"), float("nan"))
        low, high = np.percentile(values, [tail, 100 - tail])
        return float(low), float(high)

    weights = np.stack([np.bincount(row, minlength=len(y)) for row in idx])
    per_class = [weighted_auc(probs[:, c], y == c, weights) for c in range(k) if 0 < (y == c).sum() < len(y)]
    aucs = np.stack(per_class) if per_class else np.zeros((0, resamples))  # one class present: no AUC
    with warnings.catch_warnings():  # a resample of a tiny set may hold one class: its AUC is undefined, skipped
        warnings.simplefilter("ignore", RuntimeWarning)
        return {
            "accuracy": interval(diag.sum(axis=1) / len(y)),
            "balanced_accuracy": interval(np.nanmean(recall, axis=1)),
            "f1_macro": interval(f1.mean(axis=1)),
            "auc_macro": interval(np.nanmean(aucs, axis=0)) if len(aucs) else (float("nan"), float("nan")),
        }


def mcnemar(correct_a: np.ndarray, correct_b: np.ndarray) -> dict[str, Any]:
    """McNemar's exact test of two classifiers on the same images.

    ``b`` counts images A got right and B wrong, ``c`` the reverse; under the null hypothesis
    each discordant image is a fair coin, so the two-sided p-value is the exact binomial
    probability of a split at least as uneven as (b, c) out of b + c.
    """
    from scipy.stats import binomtest

    a = np.asarray(correct_a, bool)
    b_ = np.asarray(correct_b, bool)
    if a.shape != b_.shape:
        raise ValueError("McNemar's test needs predictions on the same images")
    b = int((a & ~b_).sum())
    c = int((~a & b_).sum())
    p = 1.0 if b + c == 0 else float(binomtest(b, b + c, 0.5).pvalue)
    return {"a_only": b, "b_only": c, "both": int((a & b_).sum()), "neither": int((~a & ~b_).sum()), "p_value": p}
