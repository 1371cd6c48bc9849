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

With ``n`` calibration images of a class the p-values move in steps of ``1 / (n + 1)``, so a
coverage of ``1 - a`` needs ``n >= 1 / a - 1`` images of each class (:func:`scans_needed`):
19 for 95%, 9 for 90%. With fewer, the class is in every set.

The promise rests on exchangeability. :mod:`btk.shift` tests it without labels, against the
calibration images (:meth:`Conformal.reference`); :func:`shortfalls` says where labels show a
class below its promise, and the two give one verdict per cohort.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from btk.errors import BtkError

__all__ = ["CONFORMAL_FILE", "DEFAULT_COVERAGES", "Conformal", "check_coverage",
           "scans_needed", "set_labels", "set_metrics", "set_rows", "set_warnings", "shortfalls"]

CONFORMAL_FILE = "conformal.csv"
"""The calibration images' probabilities in a run directory."""
DEFAULT_COVERAGES = (0.9, 0.95)
"""The coverages a run's test step and ``btk evaluate`` measure unless asked for others."""
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


def scans_needed(coverage: float) -> int:
    """The fewest calibration images of a class for which a set can leave that class out at
    ``coverage``: ``n`` with ``1 / (n + 1) <= 1 - coverage``."""
    return max(0, math.ceil(1.0 / (1.0 - coverage) - 1.0 - 1e-9))


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
        origin: where they came from: ``validation`` (the run's own), ``site`` (a sample of a
            new site, ``btk calibrate``) or ``site+validation`` (with the run's own images of the
            classes the sample lacked).
        origins: each image's origin where they differ (default: ``origin`` for all).
    """

    classes: tuple[str, ...]
    probabilities: np.ndarray = field(repr=False)
    labels: np.ndarray = field(repr=False)
    sources: tuple[str, ...] = field(default=(), repr=False)
    origin: str = "validation"
    origins: tuple[str, ...] = field(default=(), repr=False)
    _wrapped: list[Any] = field(default_factory=list, compare=False, repr=False)

    def __post_init__(self) -> None:
        probs = np.asarray(self.probabilities, dtype=np.float64)
        if probs.ndim != 2 or probs.shape[1] != len(self.classes) or len(probs) != len(self.labels):
            raise BtkError(f"conformal calibration: {probs.shape} probabilities for {len(self.labels)} labels "
                           f"and {len(self.classes)} classes")

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
        class is in every set (:func:`scans_needed`)."""
        need = scans_needed(coverage)
        return {c: n for c, n in self.counts().items() if n < need}

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
        """``(m, K)`` booleans: class ``k`` is in image ``i``'s set at ``coverage``."""
        coverage = check_coverage(coverage)
        probs = np.asarray(probabilities, dtype=np.float64)
        if len(probs) == 0:
            return np.zeros((0, len(self.classes)), bool)
        return np.asarray(self._classifier().predict_set(probs, labels=None, confidence=coverage,
                                                                smoothing=False), bool)

    def reference(self) -> np.ndarray:
        """The probabilities a cohort is compared with in a shift check: the calibration images,
        or, where a new site's sample was completed with the run's own validation images of the
        classes it lacked, the site's images alone (what the site should look like)."""
        origins = np.array(self.row_origins())
        site = origins == "site"
        return np.asarray(self.probabilities)[site] if site.any() and not site.all() else np.asarray(self.probabilities)

    # --- the file -------------------------------------------------------------------------------
    def write(self, path: Path | str) -> None:
        """Write ``conformal.csv``: source, label, then ``p_<class>`` per class."""
        with open(path, "w", newline="") as fh:
            out = csv.writer(fh)
            out.writerow(["source", "label", "origin", *[f"p_{c}" for c in self.classes]])
            sources = self.sources or ("",) * len(self.labels)
            for source, label, origin, p in zip(sources, np.asarray(self.labels, int), self.row_origins(),
                                                np.asarray(self.probabilities)):
                out.writerow([source, self.classes[label], origin, *[repr(float(v)) for v in p]])

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
        except (KeyError, ValueError) as exc:
            raise BtkError(f"{path}: damaged conformal calibration ({type(exc).__name__}: {exc})") from None
        origins = tuple(r.get("origin") or "validation" for r in rows)
        kinds = sorted(set(origins), key=lambda o: (o != "site", o))
        return cls(tuple(classes), probs.reshape(len(rows), len(classes)), labels,
                   tuple(r["source"] for r in rows), "+".join(kinds) or "validation",
                   origins if len(kinds) > 1 else ())

    def summary(self) -> dict[str, Any]:
        """The record kept in ``config.json`` beside the temperature."""
        import crepes

        return {"file": CONFORMAL_FILE, "images": int(len(self.labels)), "per_class": self.counts(),
                "origin": self.origin, "method": "Mondrian (class-conditional) split conformal, unsmoothed p-values",
                "nonconformity": "1 - calibrated probability of the class (hinge)",
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


def set_rows(conditions: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per condition and coverage of a run's or evaluation's metrics (``sets``, from
    :func:`btk.scoring.set_conditions`), for every report: the promise, the coverage overall and
    per class, the mean set size, the shares of single and empty sets, the single answers'
    accuracy, the shift check's p-value and verdict (:mod:`btk.shift`) and the plain-words failures."""
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
                         "shortfalls": shortfalls(s, promise)})
    return rows


def set_warnings(conditions: Mapping[str, Mapping[str, Any]], condition: str = "clean") -> list[str]:
    """The lines a user must read about ``condition``'s sets: its shift verdict when it says the
    cohort differs (:func:`btk.shift.shift_sentence`), and each class whose coverage fell below a
    promise by more than chance."""
    from btk.shift import shift_sentence

    m = conditions.get(condition) or {}
    lines = []
    shift = m.get("shift")
    if shift and shift.get("differs"):
        lines.append(shift_sentence(shift))
    for row in set_rows({condition: m}):
        lines += row["shortfalls"]
    return lines
