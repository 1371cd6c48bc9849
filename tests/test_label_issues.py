"""Confident learning (btk.label_issues) finds injected label noise from out-of-fold probabilities."""

from __future__ import annotations

import numpy as np

from btk.label_issues import class_thresholds, confident_joint, find_label_issues, issue_rows


def _noisy(seed: int, n: int = 2000, flip: float = 0.05, signal: float = 2.5):
    """True classes, out-of-fold probabilities of a decent model of them, and labels with a
    seeded ``flip`` share changed to another class at random."""
    rng = np.random.default_rng(seed)
    y = rng.choice(4, size=n, p=(0.3, 0.3, 0.15, 0.25))
    logits = rng.normal(size=(n, 4))
    logits[np.arange(n), y] += signal
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    given = y.copy()
    flipped = rng.choice(n, size=int(flip * n), replace=False)
    given[flipped] = (y[flipped] + rng.integers(1, 4, size=len(flipped))) % 4
    return probs, given, set(flipped.tolist())


def test_injected_flips_are_found_with_high_precision_and_recall():
    for seed in (0, 1, 2):
        probs, given, flipped = _noisy(seed)
        issues = find_label_issues(probs, given)
        found = {x.index for x in issues}
        precision = len(found & flipped) / len(found)
        recall = len(found & flipped) / len(flipped)
        assert precision >= 0.6 and recall >= 0.6, (seed, precision, recall)
        # the ranked list starts with the least self-confident examples
        confidences = [x.self_confidence for x in issues]
        assert confidences == sorted(confidences)
        assert all(x.likely != x.given and x.margin > 0 for x in issues)


def test_clean_labels_give_few_issues_and_the_joint_is_what_the_paper_defines():
    probs, _, _ = _noisy(3, flip=0.0)
    labels = probs.argmax(axis=1)  # labels the model agrees with
    assert len(find_label_issues(probs, labels)) <= 0.01 * len(labels)
    tiny = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
    given = np.array([0, 0, 1, 1])
    assert np.allclose(class_thresholds(tiny, given), [0.85, 0.55])
    joint, likely = confident_joint(tiny, given)
    # example 3 (labelled 1): P(0) = 0.6 < 0.85 and P(1) = 0.4 < 0.55: no confident label
    assert likely.tolist() == [0, -1, 1, -1] and joint.tolist() == [[1, 0], [0, 1]]
    rows = issue_rows(find_label_issues(probs[:50], (labels[:50] + 1) % 4), [f"f{i}" for i in range(50)], "abcd")
    assert rows and all(r[1] != r[2] for r in rows)
