"""The shift check: is a cohort exchangeable with a run's calibration images?

The coverage promise of btk's prediction sets (:mod:`btk.conformal`) holds for images
exchangeable with the run's calibration images. This module tests that without labels, and
gives one verdict per cohort that agrees with the labels where there are some.

What is compared. A run keeps its calibration images' *features*: the input of the network's
last layer (after global pooling, the "penultimate" features; for an ensemble, every member's,
side by side), written beside the sets (:data:`REFERENCE_FILE`, :class:`Reference`) and
computed by the run's scorer (:meth:`btk.scoring.Scorer.features`). A cohort's features are
compared with them. Older runs without them fall back to the network's doubt about its top
answer, ``1 - max P``, which misses a site where the network is wrong with its usual confidence,
and say so.

What counts once. Slices of one series (or volume, or one group id) are one observation: their
mean feature vector (or mean doubt) is compared, so a series of 30 slices weighs as much as one
image. Below :data:`MIN_GROUPS` observations in the cohort or the reference no verdict is given:
a two-sample test on so few sees only gross shifts, and "no shift seen" would be read as "no shift".

The tests (each returns a one-sided p-value; small: the cohort differs):

- :func:`mahalanobis_test`: the Mahalanobis distance of each observation from the reference's
  mean, under a Ledoit-Wolf shrinkage covariance (scikit-learn). The covariance is fitted five
  times, each time without one fifth of the reference: a reference observation is scored by the
  fit that did not see it, and a fifth of the cohort (at random) by each fit, so under
  exchangeability both are "new points against a fit on 4/5 of the reference". In each fold the
  two are compared by their Mann-Whitney statistic (cohort farther), and the five are summed
  (van Elteren's stratified rank test).
- :func:`classifier_test`: a classifier two-sample test (Lopez-Paz and Oquab 2017): a logistic
  regression told to separate cohort from reference on standardised features, five-fold
  cross-validated (grouped); in each fold the held-out scores of the two samples are compared
  by their Mann-Whitney statistic, and the five are summed (van Elteren's stratified test), which
  is valid under exchangeability because each fold's classifier never saw the points it scores.
- :func:`ks_test`: the check btk used before: a two-sample Kolmogorov-Smirnov test of
  ``1 - max P`` (SciPy), kept as the fallback for runs without features.

Which one decides (:data:`CHOSEN`) was chosen by the measurement in ``docs/shift.md``, under a
rule written down before it ran.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["CHOSEN", "MIN_GROUPS", "REFERENCE_FILE", "SHIFT_LEVEL", "TESTS", "Reference", "ShiftCheck",
           "by_group", "classifier_test", "ks_test", "mahalanobis_test", "read_reference", "shift_check",
           "shift_sentence"]

SHIFT_LEVEL = 0.01
"""The check fires below this p-value."""
MIN_GROUPS = 20
"""The fewest observations (images, or series counted once) in a cohort, and in the reference,
for which a verdict is given."""
REFERENCE_FILE = "shift_reference.npz"
"""The calibration images' features in a run directory."""
FOLDS = 5
"""Cross-fitting folds of the feature tests."""
TESTS = ("mahalanobis", "classifier", "ks")
"""The tests :func:`shift_check` can run (:data:`CHOSEN` decides; the others are reported beside it)."""
CHOSEN = "mahalanobis"
"""The test whose p-value is the verdict (``docs/shift.md``: the rule and the measurement)."""
TEST_NAMES = {"mahalanobis": "Mahalanobis distance of the network's features",
              "classifier": "classifier two-sample test on the network's features",
              "ks": "Kolmogorov-Smirnov test of the top probability"}


@dataclass(frozen=True)
class Reference:
    """The calibration images' features, as a run keeps them (:data:`REFERENCE_FILE`).

    Attributes:
        features: ``(n, d)`` penultimate features (:meth:`btk.scoring.Scorer.features`).
        groups: each image's group (patient, series, near-copy cluster): one observation each.
    """

    features: np.ndarray = field(repr=False)
    groups: tuple[str, ...] = field(repr=False)

    def write(self, path: Path | str) -> None:
        """Write the file (compressed NumPy arrays)."""
        with open(path, "wb") as fh:
            np.savez_compressed(fh, features=np.asarray(self.features, np.float32),
                                groups=np.asarray(self.groups, dtype=str))

    @classmethod
    def read(cls, path: Path | str) -> Reference:
        """Read the file written by :meth:`write`."""
        with np.load(path) as data:
            return cls(np.asarray(data["features"], np.float32), tuple(str(g) for g in data["groups"]))


def read_reference(run_dir: Path | str) -> Reference | None:
    """A run's (or evaluation's) reference features, or ``None`` for a run made before btk kept them."""
    path = Path(run_dir) / REFERENCE_FILE
    return Reference.read(path) if path.is_file() else None


def by_group(values: np.ndarray, groups: Sequence[str] | None) -> np.ndarray:
    """One row per group: the mean of its rows (in order of first appearance); ``groups=None``:
    every row its own group."""
    values = np.asarray(values, dtype=np.float64)
    if groups is None or len(values) == 0:
        return values
    keys, first, inverse = np.unique(np.asarray(groups, dtype=str), return_index=True, return_inverse=True)
    sums = np.zeros((len(keys), *values.shape[1:]))
    np.add.at(sums, inverse, values)
    means = sums / np.bincount(inverse, minlength=len(keys)).reshape(-1, *([1] * (values.ndim - 1)))
    return means[np.argsort(first)]


def _folds(n: int, rng: np.random.Generator) -> np.ndarray:
    """Each of ``n`` observations' fold (0..FOLDS-1), balanced, in random order."""
    return rng.permutation(np.arange(n) % FOLDS)


class _Stratified:
    """Van Elteren's stratified rank test: the Mann-Whitney statistics of several strata (folds)
    summed, against their summed null mean and variance (normal approximation, no tie correction)."""

    def __init__(self) -> None:
        self.u = self.mean = self.var = 0.0

    def add(self, new: np.ndarray, ref: np.ndarray) -> None:
        """One stratum's cohort and reference scores (larger: more unlike the reference)."""
        from scipy.stats import mannwhitneyu

        if len(new) and len(ref):
            self.u += float(mannwhitneyu(new, ref).statistic)
            self.mean += len(new) * len(ref) / 2
            self.var += len(new) * len(ref) * (len(new) + len(ref) + 1) / 12

    def p_value(self) -> float:
        """One-sided: the cohort scores larger."""
        from scipy.stats import norm

        return float(norm.sf((self.u - self.mean) / np.sqrt(self.var))) if self.var else 1.0


def mahalanobis_test(reference: np.ndarray, cohort: np.ndarray, seed: int = 0) -> tuple[float, float]:
    """(p-value, effect) of the cohort lying farther from the reference than the reference's own
    points, in Mahalanobis distance under a Ledoit-Wolf covariance, cross-fitted (see the module):
    in each fold, the held-out reference points and the cohort points given that fold are scored
    by the fit on the other folds and compared by rank; the folds are combined as strata.
    ``reference`` and ``cohort``: one feature row per observation. The effect is the share of
    cohort-reference pairs (within a fold) in which the cohort point is the farther (0.5: none)."""
    from sklearn.covariance import LedoitWolf

    ref, new = np.asarray(reference, np.float64), np.asarray(cohort, np.float64)
    rng = np.random.default_rng(seed)
    ref_fold, new_fold = _folds(len(ref), rng), _folds(len(new), rng)
    test = _Stratified()
    for k in range(FOLDS):
        fit = LedoitWolf().fit(ref[ref_fold != k])
        test.add(fit.mahalanobis(new[new_fold == k]), fit.mahalanobis(ref[ref_fold == k]))
    return test.p_value(), test.u / (2 * test.mean) if test.mean else 0.5


def classifier_test(reference: np.ndarray, cohort: np.ndarray, seed: int = 0) -> tuple[float, float]:
    """(p-value, effect) of a cross-validated logistic regression telling the cohort from the
    reference better than chance (see the module); the effect is its out-of-fold ROC AUC."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x = np.concatenate([reference, cohort]).astype(np.float64)
    y = np.r_[np.zeros(len(reference), int), np.ones(len(cohort), int)]
    rng = np.random.default_rng(seed)
    fold = np.r_[_folds(len(reference), rng), _folds(len(cohort), rng)]
    score = np.zeros(len(y))
    test = _Stratified()
    for k in range(FOLDS):
        train, held = fold != k, fold == k
        model = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000, class_weight="balanced"))
        model.fit(x[train], y[train])
        score[held] = model.decision_function(x[held])
        test.add(score[held & (y == 1)], score[held & (y == 0)])
    return test.p_value(), float(roc_auc_score(y, score))


def ks_test(reference: np.ndarray, cohort: np.ndarray, seed: int = 0) -> tuple[float, float]:
    """(p-value, statistic) of the two-sample Kolmogorov-Smirnov test (SciPy) of the values in
    ``reference`` and ``cohort`` (one per observation: ``1 - max P``)."""
    from scipy.stats import ks_2samp

    result = ks_2samp(np.ravel(cohort), np.ravel(reference))
    return float(result.pvalue), float(result.statistic)


_TESTS = {"mahalanobis": mahalanobis_test, "classifier": classifier_test, "ks": ks_test}


def doubt(probabilities: np.ndarray) -> np.ndarray:
    """``1 - max P`` of each row: the network's doubt about its top answer."""
    return (1.0 - np.asarray(probabilities, np.float64).max(axis=1))[:, None]


@dataclass(frozen=True)
class ShiftCheck:
    """One cohort's verdict on exchangeability with a run's calibration images.

    Attributes:
        test: the test that decided (a key of :data:`TEST_NAMES`).
        p_value: its p-value (``None``: no verdict, too few observations).
        effect: its effect size (Mahalanobis: share of pairs in which the cohort is farther;
            classifier: ROC AUC; KS: the statistic).
        images: cohort images; ``groups``: observations (a series counted once).
        reference: the reference's observations.
        fallback: why the top-probability test was used (a run without reference features), or "".
        shortfalls: label-based lines (:func:`btk.conformal.shortfalls`): classes whose coverage
            fell below a promise by more than chance on this cohort.
        others: the other tests' p-values (name -> p), reported beside the verdict.
    """

    test: str
    p_value: float | None
    effect: float | None
    images: int
    groups: int
    reference: int
    fallback: str = ""
    shortfalls: tuple[str, ...] = ()
    others: Mapping[str, float] = field(default_factory=dict)

    @property
    def verdict(self) -> str:
        """``differs`` (labels show a shortfall, or the test fires), ``none`` (too few to say)
        or ``quiet`` (no shift seen)."""
        if self.shortfalls:
            return "differs"
        if self.p_value is None:
            return "none"
        return "differs" if self.p_value < SHIFT_LEVEL else "quiet"

    @property
    def differs(self) -> bool:
        """Whether the cohort is called not exchangeable (by labels or by the test)."""
        return self.verdict == "differs"

    def _counts(self) -> str:
        unit = f"{self.images} images" if self.groups == self.images else \
            f"{self.images} images in {self.groups} series or groups, each counted once"
        return f"{unit}; reference {self.reference}"

    def _label_free(self) -> str:
        if self.p_value is None:
            return f"too few for the label-free check ({self._counts()}; it needs {MIN_GROUPS})"
        return f"{TEST_NAMES[self.test]}, p = {self.p_value:.2g}, {self._counts()}"

    def sentence(self) -> str:
        """The one line a user reads (terminal, HTML, model card alike)."""
        note = f" [{self.fallback}]" if self.fallback else ""
        if self.shortfalls:
            fired = "it fires too" if self.p_value is not None and self.p_value < SHIFT_LEVEL else "it did not see it"
            return (f"this cohort is not exchangeable with the calibration images: a class fell short of its "
                    f"coverage promise (labels; listed below); the label-free check ({self._label_free()}): "
                    f"{fired}{note}")
        if self.p_value is None:
            return (f"no verdict on shift: {self._counts()}; at least {MIN_GROUPS} are needed "
                    "(this says nothing for or against the coverage promise)")
        if self.differs:
            return (f"this cohort differs from the calibration images ({self._label_free()}): "
                    f"the coverage promise does not hold for it{note}")
        return (f"no shift seen ({self._label_free()}); a shift this check cannot see may still break the "
                f"coverage promise{note}")

    def to_json(self) -> dict[str, Any]:
        """The record kept in ``metrics.json`` and ``predict.json``."""
        return {"test": self.test, "p_value": self.p_value, "effect": self.effect, "images": self.images,
                "groups": self.groups, "reference": self.reference, "fallback": self.fallback,
                "shortfalls": list(self.shortfalls), "others": dict(self.others), "verdict": self.verdict,
                "differs": self.differs, "level": SHIFT_LEVEL, "min_groups": MIN_GROUPS,
                "description": TEST_NAMES[self.test], "sentence": self.sentence()}

    @classmethod
    def from_json(cls, record: Mapping[str, Any]) -> ShiftCheck:
        """The check from its record (:meth:`to_json`); a record of btk's older check (a KS test
        with no groups) is read as that test."""
        images = int(record["images"])
        p = record.get("p_value")
        return cls(str(record.get("test", "ks")), None if p is None else float(p),
                   None if record.get("effect") is None else float(record["effect"]), images,
                   int(record.get("groups", images)), int(record["reference"]), str(record.get("fallback", "")),
                   tuple(record.get("shortfalls") or ()), dict(record.get("others") or {}))


def shift_sentence(record: Mapping[str, Any]) -> str:
    """The sentence of a stored check record (:meth:`ShiftCheck.to_json`, or an older one)."""
    return str(record.get("sentence") or ShiftCheck.from_json(record).sentence())


NO_FEATURES = ("top-probability check only: this run keeps no features of its calibration images (a run, or a "
               "fold ensemble, made before btk kept them: train it again to get them); it misses a site where the "
               "network is wrong with its usual confidence")


def shift_check(reference: Reference | None, cohort_features: np.ndarray | None, cohort_groups: Sequence[str] | None,
                reference_probabilities: np.ndarray, cohort_probabilities: np.ndarray,
                shortfalls: Sequence[str] = (), fallback: str = NO_FEATURES, seed: int = 0,
                tests: Sequence[str] = (CHOSEN,)) -> ShiftCheck:
    """The verdict on a cohort (see the module): the :data:`CHOSEN` test on the features where
    the run keeps a ``reference`` and the cohort's features are given, else the top-probability
    test on the probabilities (saying so with ``fallback``); observations are ``cohort_groups``'
    means (``None``: every image its own); ``shortfalls`` (label-based lines) decide first.
    ``tests``: the tests to run (the first decides, the others are kept in ``others``)."""
    cohort_probabilities = np.asarray(cohort_probabilities, np.float64)
    images = len(cohort_probabilities)
    use_features = reference is not None and cohort_features is not None
    if use_features:
        assert reference is not None and cohort_features is not None
        ref = by_group(reference.features, reference.groups)
        new = by_group(cohort_features, cohort_groups)
        names = [t for t in tests if t != "ks"] or [CHOSEN]
        fallback = ""
    else:
        ref = doubt(reference_probabilities)  # each calibration image its own observation, as the sets count them
        new = by_group(doubt(cohort_probabilities), cohort_groups)
        names = ["ks"]
    results: dict[str, tuple[float, float]] = {}
    if len(new) >= MIN_GROUPS and len(ref) >= MIN_GROUPS:
        for name in names:
            results[name] = _TESTS[name](ref, new, seed)
        if use_features and "ks" in tests:
            results["ks"] = ks_test(doubt(reference_probabilities), by_group(doubt(cohort_probabilities),
                                                                             cohort_groups))
    decider = names[0]
    p, effect = results.get(decider, (None, None))
    return ShiftCheck(decider, p, effect, images, len(new), len(ref), fallback, tuple(shortfalls),
                      {k: v[0] for k, v in results.items() if k != decider})
