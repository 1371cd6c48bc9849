"""Conformal prediction sets: answers with a per-class guarantee, and a check that it holds.

A run keeps the calibrated probabilities of its validation images (``conformal.csv``). For a
new image and a coverage ``1 - a`` (say 95%), the *set* holds every class ``c`` whose conformal
p-value is at least ``a``: the share of validation images *of class c* whose probability of
their own class was at most this image's probability of ``c`` (nonconformity ``1 - P(c)``,
crepes' ``hinge``). Fitting class by class (Mondrian, by the true class) gives the promise per
class: if new images are exchangeable with the validation images, the true class is in the set
at least ``1 - a`` of the time, for each class separately, whatever the network.

The p-values come from crepes (Boström, BSD-3-Clause): its :class:`crepes.WrapClassifier`,
calibrated class-conditionally, over a learner that hands back the probabilities it is given.
btk asks for unsmoothed p-values, so one image always gets the same set (and the promise is
met or exceeded, by at most ``1 / (n + 1)`` for a class of ``n`` calibration images).

With ``n`` calibration images of a class the p-values move in steps of ``1 / (n + 1)`` and the
smallest is ``1 / (n + 1)``; a class is left out of a set only where its p-value is below ``a``,
so only where ``n > 1 / a - 1`` (:func:`scans_needed`): 10 images for 90%, 20 for 95%, 100 for
99%. With fewer, the class is in every set (:func:`in_every_set`). btk compares the p-values'
ranks with the promise in exact arithmetic (the coverage read as the decimal it was written as),
so the boundary does not move with floating-point rounding.

**What kind of guarantee.** The promise "at least ``C`` for each class" is an average over
calibration draws (marginal over calibration and test images). For one calibration, a class's
coverage is a random quantity: with ``n`` calibration images of the class and a set bounded by
the ``k``-th smallest of their nonconformity scores (btk's sets: ``k = floor((n + 1) C) + 1``,
which is ``ceil((n + 1) C)`` unless ``(n + 1) C`` is a whole number, where btk's unsmoothed
p-values are one step more cautious), the coverage given this calibration is distributed
``Beta(k, n + 1 - k)`` for continuous scores (Vovk 2012, "Conditional validity of inductive
conformal predictors"; Angelopoulos and Bates 2021, "A Gentle Introduction to Conformal
Prediction", section 3.2 on the coverage conditional on the calibration set). Ties only raise
it. :func:`coverage_interval` gives that law's central interval, the range in which this
calibration's coverage lies with :data:`INTERVAL_LEVEL` probability. The training-conditional
(PAC) form, ``delta`` (:func:`order_index`), picks instead the smallest ``k`` whose
``Beta(k, n + 1 - k)`` puts at most ``delta`` below ``C``: then, for each class separately,
the coverage of this calibration is at least ``C`` with probability at least ``1 - delta`` over
the calibration draw (per class, not for all classes at once). It needs more images per class
(``n`` with ``C ** n <= delta``: 22 for 90% at ``delta = 0.1``, 45 for 95%) and gives larger sets.

The promise rests on exchangeability. :mod:`btk.shift` tests it without labels, against the
calibration images (:meth:`Conformal.reference`); :func:`shortfalls` says where labels show a
class below its promise, and the two give one verdict per cohort.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from btk.errors import BtkError

__all__ = ["CONFORMAL_FILE", "DEFAULT_COVERAGES", "INTERVAL_LEVEL", "Conformal", "check_coverage", "check_delta",
           "coverage_interval", "guarantee_lines", "in_every_set", "in_every_set_warning", "order_index",
           "scans_needed", "set_labels", "set_metrics", "set_rows", "set_warnings", "shortfalls"]

CONFORMAL_FILE = "conformal.csv"
"""The calibration images' probabilities in a run directory."""
DEFAULT_COVERAGES = (0.9, 0.95)
"""The coverages a run's test step and ``btk evaluate`` measure unless asked for others."""
INTERVAL_LEVEL = 0.9
"""The probability of the printed interval of a calibration's coverage (:func:`coverage_interval`)."""
SHORTFALL_LEVEL = 0.05
"""A class's coverage below the promise is called a failure below this one-sided binomial p-value."""


def check_coverage(value: float, flag: str = "--coverage") -> float:
    """``value`` as a coverage (a share strictly between 0 and 1).

    Raises:
        BtkError: anything else, named with ``flag``.
    """
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise BtkError(f"{flag} {value!r}: a coverage is a share between 0 and 1, e.g. 0.95") from None
    if not 0.0 < value < 1.0:
        raise BtkError(f"{flag} {value:g}: a coverage is a share between 0 and 1 (exclusive), e.g. 0.95")
    return value


def check_delta(value: float | None, flag: str = "--pac-delta") -> float | None:
    """``value`` as the failure probability of a training-conditional promise (``None``: none).

    Raises:
        BtkError: anything but a share in (0, 0.5], named with ``flag``.
    """
    if value is None:
        return None
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise BtkError(f"{flag} {value!r}: the chance that a calibration misses its promise, e.g. 0.1") from None
    if not 0.0 < value <= 0.5:
        raise BtkError(f"{flag} {value:g}: the chance that a calibration misses its promise is a share in (0, 0.5], "
                       "e.g. 0.1")
    return value


def _exact(coverage: float) -> Fraction:
    """``coverage`` as the decimal it was written as (0.95 is 19/20, not the float next to it)."""
    return Fraction(repr(float(coverage)))


def order_index(n: int, coverage: float, delta: float | None = None) -> int:
    """The rank ``k`` (1 to ``n + 1``) of the calibration score that bounds a class's sets: the
    class is in an image's set when the image's nonconformity for it is at most the ``k``-th
    smallest of the class's ``n`` calibration scores; ``n + 1``: in every set.

    Without ``delta``: ``floor((n + 1) coverage) + 1`` in exact arithmetic (btk's unsmoothed
    p-values at least ``1 - coverage``). With ``delta`` (training-conditional): the smallest
    ``k`` with ``P(Beta(k, n + 1 - k) < coverage) <= delta``.
    """
    n = int(n)
    if delta is None:
        return min(n + 1, math.floor((n + 1) * _exact(coverage)) + 1)
    if n == 0:
        return 1
    from scipy.stats import beta

    ks = np.arange(1, n + 1)
    ok = np.flatnonzero(beta.cdf(float(coverage), ks, n + 1 - ks) <= delta)
    return int(ks[ok[0]]) if len(ok) else n + 1


def scans_needed(coverage: float, delta: float | None = None) -> int:
    """The fewest calibration images of a class for which a set can leave that class out at
    ``coverage``: ``n > 1 / (1 - coverage) - 1`` (exactly: 10 for 90%, 20 for 95%); with
    ``delta`` (training-conditional), ``n`` with ``coverage ** n <= delta``."""
    if delta is None:
        return math.floor(1 / (1 - _exact(coverage)))
    n = max(1, math.ceil(math.log(delta) / math.log(coverage)) - 1)
    while order_index(n, coverage, delta) > n:
        n += 1
    return n


def in_every_set(counts: Mapping[str, int], coverage: float, delta: float | None = None) -> dict[str, int]:
    """The classes that every set holds at ``coverage`` (name -> calibration images): too few
    calibration images for a set ever to leave them out (:func:`order_index`). Every place that
    says so asks this function."""
    return {c: int(n) for c, n in counts.items() if order_index(int(n), coverage, delta) > int(n)}


def in_every_set_warning(held: Mapping[str, int], coverage: float, delta: float | None = None) -> str:
    """The line a user reads about the classes :func:`in_every_set` found (empty: none)."""
    if not held:
        return ""
    need = scans_needed(coverage, delta)
    form = f" (at least C with probability {1 - delta:g})" if delta is not None else ""
    named = ", ".join(f"{c} ({n})" for c, n in held.items())
    return (f"{100 * coverage:g}% sets{form}: every set holds {named}: too few calibration images to leave "
            f"{'it' if len(held) == 1 else 'them'} out (at least {need} of a class are needed), so the promise says "
            "nothing about " + ("it" if len(held) == 1 else "them"))


def coverage_interval(n: int, coverage: float, delta: float | None = None,
                      level: float = INTERVAL_LEVEL) -> tuple[float, float]:
    """The central ``level`` interval of a class's coverage given one calibration with ``n``
    images of it: ``Beta(k, n + 1 - k)`` with ``k`` of :func:`order_index` (continuous scores;
    ties only raise it). ``(1, 1)`` for a class in every set."""
    from scipy.stats import beta

    k = order_index(n, coverage, delta)
    if k > n:
        return 1.0, 1.0
    tail = (1.0 - level) / 2
    return float(beta.ppf(tail, k, n + 1 - k)), float(beta.ppf(1.0 - tail, k, n + 1 - k))


def guarantee_lines(counts: Mapping[str, int], coverages: Sequence[float], delta: float | None = None) -> list[str]:
    """What each printed promise is, class by class, for a calibration of ``counts`` (name ->
    images): the interval in which this calibration's coverage lies (:func:`coverage_interval`),
    after a line saying what kind of promise it is."""
    if delta is None:
        lines = ["each promise is an average over calibration draws (split conformal, per class); for this "
                 f"calibration a class's coverage is Beta(k, n+1-k) and lies, with {100 * INTERVAL_LEVEL:g}% "
                 "probability, in:"]
    else:
        lines = [f"training-conditional promise: for each class, this calibration's coverage is at least C with "
                 f"probability {1 - delta:g} over the calibration draw (Beta(k, n+1-k)); with "
                 f"{100 * INTERVAL_LEVEL:g}% probability it lies in:"]
    for coverage in coverages:
        parts = []
        for c, n in counts.items():
            if order_index(n, coverage, delta) > n:
                parts.append(f"{c} (n={n}) in every set")
            else:
                lo, hi = coverage_interval(n, coverage, delta)
                parts.append(f"{c} (n={n}) [{100 * lo:.1f}, {100 * hi:.1f}]%")
        lines.append(f"  {100 * coverage:g}% sets: " + "; ".join(parts))
    return lines


class _GivenProbabilities:
    """A "learner" whose ``predict_proba`` is its input: the probabilities were computed by the
    run's scorer, so crepes wraps them as they are."""

    def __init__(self, n_classes: int) -> None:
        self.classes_ = np.arange(n_classes)

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x, dtype=np.float64)


@dataclass(frozen=True)
class Conformal:
    """The calibration of a run's prediction sets: its calibration images' calibrated task
    probabilities and true classes.

    Attributes:
        classes: the task's classes, in the order of the probabilities.
        probabilities: ``(n, K)`` calibrated probabilities of the calibration images.
        labels: their true class indices.
        sources: their paths (what they were).
        origin: where they came from: ``validation`` (the run's own), ``calibration`` (a
            calibration part that no model trained or selected on: a fold run's, a fold
            ensemble's, :mod:`btk.folds`), ``site`` (a sample of a new site, ``btk calibrate``)
            or ``site+validation`` (with the run's own images of the classes the sample lacked).
        origins: each image's origin where they differ (default: ``origin`` for all).
        delta: ``None``: the sets keep the promise on average over calibration draws; a share:
            the training-conditional form (:func:`order_index`), each class's coverage at least
            the promise with probability ``1 - delta`` over the draw.
    """

    classes: tuple[str, ...]
    probabilities: np.ndarray = field(repr=False)
    labels: np.ndarray = field(repr=False)
    sources: tuple[str, ...] = field(default=(), repr=False)
    origin: str = "validation"
    origins: tuple[str, ...] = field(default=(), repr=False)
    delta: float | None = None
    _wrapped: list[Any] = field(default_factory=list, compare=False, repr=False)

    def __post_init__(self) -> None:
        probs = np.asarray(self.probabilities, dtype=np.float64)
        if probs.ndim != 2 or probs.shape[1] != len(self.classes) or len(probs) != len(self.labels):
            raise BtkError(f"conformal calibration: {probs.shape} probabilities for {len(self.labels)} labels "
                           f"and {len(self.classes)} classes")
        check_delta(self.delta, "pac_delta")

    # --- the calibration ------------------------------------------------------------------------
    def row_origins(self) -> tuple[str, ...]:
        """Each calibration image's origin."""
        return self.origins or (self.origin,) * len(self.labels)

    def counts(self) -> dict[str, int]:
        """Calibration images per class."""
        labels = np.asarray(self.labels, int)
        return {c: int((labels == k).sum()) for k, c in enumerate(self.classes)}

    def thin_classes(self, coverage: float) -> dict[str, int]:
        """The classes with too few calibration images for ``coverage`` (name -> count): such a
        class is in every set (:func:`in_every_set`)."""
        return in_every_set(self.counts(), coverage, self.delta)

    def _classifier(self) -> Any:
        if not self._wrapped:
            from crepes import WrapClassifier

            wrapped = WrapClassifier(_GivenProbabilities(len(self.classes)))
            wrapped.calibrate(np.asarray(self.probabilities, np.float64), np.asarray(self.labels, int),
                              class_cond=True)
            self._wrapped.append(wrapped)
        return self._wrapped[0]

    # --- new images -----------------------------------------------------------------------------
    def p_values(self, probabilities: np.ndarray) -> np.ndarray:
        """``(m, K)`` class-conditional conformal p-values of images with calibrated
        ``probabilities`` (unsmoothed: the same images always get the same values)."""
        probs = np.asarray(probabilities, dtype=np.float64)
        if len(probs) == 0:
            return np.zeros((0, len(self.classes)))
        return np.asarray(self._classifier().predict_p(probs, smoothing=False), dtype=np.float64)

    def sets(self, probabilities: np.ndarray, coverage: float) -> np.ndarray:
        """``(m, K)`` booleans: class ``k`` is in image ``i``'s set at ``coverage``.

        A p-value of a class with ``n`` calibration images is ``j / (n + 1)``, ``j`` the number
        of them at least as nonconforming plus one; the class is in the set when the image's
        nonconformity is at most the :func:`order_index`-th smallest calibration score, that is
        when ``j >= n + 2 - k``: integers, so no rounding moves the boundary."""
        coverage = check_coverage(coverage)
        probs = np.asarray(probabilities, dtype=np.float64)
        if len(probs) == 0:
            return np.zeros((0, len(self.classes)), bool)
        counts = np.array(list(self.counts().values()))
        ranks = np.rint(self.p_values(probs) * (counts + 1))
        least = np.array([n + 2 - order_index(n, coverage, self.delta) for n in counts])
        return ranks >= least

    def reference(self) -> np.ndarray:
        """The probabilities a cohort is compared with in a shift check: the calibration images,
        or, where a new site's sample was completed with the run's own validation images of the
        classes it lacked, the site's images alone (what the site should look like)."""
        origins = np.array(self.row_origins())
        site = origins == "site"
        return np.asarray(self.probabilities)[site] if site.any() and not site.all() else np.asarray(self.probabilities)

    # --- the file -------------------------------------------------------------------------------
    def write(self, path: Path | str) -> None:
        """Write ``conformal.csv``: source, label, origin, then ``p_<class>`` per class (and
        ``pac_delta`` on every row for a training-conditional calibration)."""
        with open(path, "w", newline="") as fh:
            out = csv.writer(fh)
            delta = [] if self.delta is None else [repr(float(self.delta))]
            out.writerow(["source", "label", "origin", *[f"p_{c}" for c in self.classes],
                          *(["pac_delta"] if delta else [])])
            sources = self.sources or ("",) * len(self.labels)
            for source, label, origin, p in zip(sources, np.asarray(self.labels, int), self.row_origins(),
                                                np.asarray(self.probabilities)):
                out.writerow([source, self.classes[label], origin, *[repr(float(v)) for v in p], *delta])

    @classmethod
    def read(cls, path: Path | str, classes: Sequence[str]) -> Conformal:
        """Read ``conformal.csv`` for a run of ``classes``.

        Raises:
            BtkError: a damaged file.
        """
        index = {c: k for k, c in enumerate(classes)}
        try:
            with open(path, newline="") as fh:
                rows = list(csv.DictReader(fh))
            probs = np.array([[float(r[f"p_{c}"]) for c in classes] for r in rows], dtype=np.float64)
            labels = np.array([index[r["label"]] for r in rows], dtype=int)
            deltas = {r.get("pac_delta") or "" for r in rows}
            if len(deltas) > 1:
                raise ValueError(f"rows disagree on pac_delta ({', '.join(sorted(deltas))})")
            delta = float(next(iter(deltas))) if deltas and "" not in deltas else None
        except (KeyError, ValueError) as exc:
            raise BtkError(f"{path}: damaged conformal calibration ({type(exc).__name__}: {exc})") from None
        origins = tuple(r.get("origin") or "validation" for r in rows)
        kinds = sorted(set(origins), key=lambda o: (o != "site", o))
        return cls(tuple(classes), probs.reshape(len(rows), len(classes)), labels,
                   tuple(r["source"] for r in rows), "+".join(kinds) or "validation",
                   origins if len(kinds) > 1 else (), delta)

    def summary(self) -> dict[str, Any]:
        """The record kept in ``config.json`` beside the temperature."""
        import crepes

        method = "Mondrian (class-conditional) split conformal, unsmoothed p-values"
        if self.delta is not None:
            method += f", training-conditional: each class's coverage at least C with probability {1 - self.delta:g}"
        return {"file": CONFORMAL_FILE, "images": int(len(self.labels)), "per_class": self.counts(),
                "origin": self.origin, "method": method,
                "nonconformity": "1 - calibrated probability of the class (hinge)",
                **({"pac_delta": self.delta} if self.delta is not None else {}),
                "library": f"crepes {getattr(crepes, '__version__', '')}".strip()}


def set_labels(row: np.ndarray, classes: Sequence[str]) -> list[str]:
    """The class names in one image's set (a boolean row of :meth:`Conformal.sets`)."""
    return [c for c, member in zip(classes, row) if member]


def set_metrics(sets: np.ndarray, y: np.ndarray, probabilities: np.ndarray, classes: Sequence[str]) -> dict[str, Any]:
    """What the sets of labelled images did: coverage (the true class in the set) overall and
    per class, the mean set size, the shares of single-class and empty sets, and the accuracy of
    the single-class answers."""
    sets = np.asarray(sets, bool)
    y = np.asarray(y, int)
    n = len(y)
    if n == 0:
        return {"images": 0}
    covered = sets[np.arange(n), y]
    size = sets.sum(axis=1)
    single = size == 1
    per_class = {}
    for k, c in enumerate(classes):
        mine = y == k
        if mine.any():
            per_class[c] = {"images": int(mine.sum()), "coverage": float(covered[mine].mean()),
                            "mean_size": float(size[mine].mean())}
    return {"images": n, "coverage": float(covered.mean()), "mean_size": float(size.mean()),
            "single": float(single.mean()), "single_accuracy": float(covered[single].mean()) if single.any() else None,
            "empty": float((size == 0).mean()), "per_class": per_class}


def shortfalls(metrics: Mapping[str, Any], coverage: float) -> list[str]:
    """Plain-words lines for the classes whose coverage in ``metrics`` (:func:`set_metrics`) is
    below the promise by more than chance (a one-sided binomial test at
    :data:`SHORTFALL_LEVEL`), e.g. ``no_tumor coverage 88.0% < 95%: ...``."""
    from scipy.stats import binomtest

    lines = []
    for c, m in (metrics.get("per_class") or {}).items():
        n, cov = int(m["images"]), float(m["coverage"])
        if n == 0 or cov >= coverage:
            continue
        p = binomtest(round(cov * n), n, coverage, alternative="less").pvalue
        if p < SHORTFALL_LEVEL:
            lines.append(f"{c} coverage {100 * cov:.1f}% < {100 * coverage:g}% ({n} images, binomial p = {p:.2g}): "
                         "this site is not exchangeable with the training data")
    return lines


def set_rows(conditions: Mapping[str, Mapping[str, Any]],
             calibration: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """One row per condition and coverage of a run's or evaluation's metrics (``sets``, from
    :func:`btk.scoring.set_conditions`), for every report: the promise, the coverage overall and
    per class, the mean set size, the shares of single and empty sets, the single answers'
    accuracy, the shift check's p-value and verdict (:mod:`btk.shift`), the plain-words failures and, given the sets'
    ``calibration`` (:meth:`Conformal.summary`), the classes every set holds
    (:func:`in_every_set`, name -> calibration images)."""
    counts = (calibration or {}).get("per_class") or {}
    delta = (calibration or {}).get("pac_delta")
    rows = []
    for condition, m in conditions.items():
        shift = m.get("shift") or {}
        for level, s in (m.get("sets") or {}).items():
            if not s.get("images"):
                continue
            promise = float(level)
            rows.append({"condition": condition, "promise": promise, "coverage": s["coverage"],
                         "per_class": {c: v["coverage"] for c, v in s["per_class"].items()},
                         "mean_size": s["mean_size"], "single": s["single"],
                         "single_accuracy": s["single_accuracy"], "empty": s["empty"],
                         "shift_p": shift.get("p_value"), "shift_differs": bool(shift.get("differs")),
                         "shift_verdict": shift.get("verdict"),
                         "shortfalls": shortfalls(s, promise),
                         "in_every_set": in_every_set(counts, promise, delta)})
    return rows


def set_warnings(conditions: Mapping[str, Mapping[str, Any]], condition: str = "clean",
                 calibration: Mapping[str, Any] | None = None) -> list[str]:
    """The lines a user must read about ``condition``'s sets: its shift verdict when it says the
    cohort differs (:func:`btk.shift.shift_sentence`),
    each class whose coverage fell below a promise by more than chance and, given the sets'
    ``calibration`` (:meth:`Conformal.summary`), each promise whose sets cannot leave a class
    out (:func:`in_every_set_warning`)."""
    from btk.shift import shift_sentence

    m = conditions.get(condition) or {}
    lines = []
    shift = m.get("shift")
    if shift and shift.get("differs"):
        lines.append(shift_sentence(shift))
    delta = (calibration or {}).get("pac_delta")
    for row in set_rows({condition: m}, calibration):
        lines += row["shortfalls"]
        if row["in_every_set"]:
            lines.append(in_every_set_warning(row["in_every_set"], row["promise"], delta))
    return lines
