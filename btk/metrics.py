"""Classification metrics with scikit-learn, and collapse detection."""

from __future__ import annotations

from typing import Any

import numpy as np


def _balanced_accuracy(y_true: np.ndarray, pred: np.ndarray) -> float:
    """Mean recall over the classes present in ``y_true`` (scikit-learn), without its warning
    about predicted classes that are absent from the truth."""
    import warnings

    from sklearn.metrics import balanced_accuracy_score

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return float(balanced_accuracy_score(y_true, pred))


def evaluate(y_true: np.ndarray, probs: np.ndarray, classes: list[str]) -> dict[str, Any]:
    """Metrics of predicted class probabilities against integer labels.

    Returns accuracy, balanced accuracy, macro precision / recall / F1, per-class precision /
    recall / F1 / support / one-vs-rest ROC AUC, the confusion matrix (rows true, columns
    predicted, in ``classes`` order), macro AUC, how many were right, the predicted class
    counts and ``collapsed``: one class predicted for every image while more are present.
    """
    from sklearn.metrics import (
        accuracy_score,
        confusion_matrix,
        precision_recall_fscore_support,
        roc_auc_score,
    )

    y_true = np.asarray(y_true, dtype=int)
    probs = np.asarray(probs, dtype=np.float64)
    pred = probs.argmax(axis=1)
    labels = list(range(len(classes)))
    p, r, f, s = precision_recall_fscore_support(y_true, pred, labels=labels, zero_division=0)
    pm, rm, fm, _ = precision_recall_fscore_support(y_true, pred, labels=labels, average="macro", zero_division=0)
    per_class: dict[str, dict[str, Any]] = {}
    aucs = []
    for k, name in enumerate(classes):
        positives = y_true == k
        auc = None
        if 0 < positives.sum() < len(y_true):
            auc = float(roc_auc_score(positives, probs[:, k]))
            aucs.append(auc)
        per_class[name] = {"precision": float(p[k]), "recall": float(r[k]), "f1": float(f[k]),
                           "support": int(s[k]), "auc": auc}
    present = np.unique(y_true)
    predicted = np.unique(pred)
    return {
        "n": len(y_true),
        "correct": int((pred == y_true).sum()),
        "accuracy": float(accuracy_score(y_true, pred)),
        "balanced_accuracy": _balanced_accuracy(y_true, pred),
        "precision_macro": float(pm),
        "recall_macro": float(rm),
        "f1_macro": float(fm),
        "auc_macro": float(np.mean(aucs)) if aucs else None,
        "per_class": per_class,
        "confusion": confusion_matrix(y_true, pred, labels=labels).tolist(),
        "predicted_counts": {classes[k]: int((pred == k).sum()) for k in labels},
        "collapsed": bool(len(present) > 1 and len(predicted) == 1),
    }
