"""The typed parts of a run record (:class:`btk.runs.Run` holds them), and the roles of its images.

Every image a run used has a **role**: what it was used for. ``split.csv`` names each image's
subset (``train``, ``val``, ``test``, or another name a command wrote), and ``config.json``'s
``roles`` says which subset serves which role:

- ``training``: the network learned from them;
- ``selection``: early stopping and the best epoch were chosen on them;
- ``calibration``: the temperature and the prediction sets were fitted on them;
- ``test``: scored for the run's figures, used for nothing else;
- ``out_of_fold``: a fold ensemble's pool, each image scored by the one fold model that did not
  train on it; it trained the other K-1 members;
- ``site_sample``: labelled scans of a new site drawn for ``btk calibrate --data``.

One subset may serve several roles (a plain run's ``val`` is its selection and its calibration
images). A run written before roles were recorded gets them from what made it
(:func:`infer_roles`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from btk.errors import BtkError

SUBSETS = {"train": "train", "training": "train", "val": "val", "validation": "val", "test": "test"}
"""Subset names a caller may use -> the names in ``split.csv``."""

ROLES = ("training", "selection", "calibration", "test", "out_of_fold", "site_sample")
"""Every role an image can have in a run, in this order."""

ROLE_WORDS = {"training": "training", "selection": "selection (early stopping, best epoch)",
              "calibration": "calibration (temperature, prediction sets)", "test": "test",
              "out_of_fold": "out-of-fold", "site_sample": "site-sample"}
"""Each role in words, for messages."""

TRAINED_ON = ("training", "out_of_fold")
"""Roles whose images trained the network (an out-of-fold image trained K-1 members of its ensemble)."""

PLAIN_ROLES = {"training": "train", "selection": "val", "calibration": "val", "test": "test"}
"""A run trained on its own split (``btk run``, a fold run, a seed ensemble)."""

FOLD_ROLES = {"out_of_fold": "val", "calibration": "val", "test": "test"}
"""A fold ensemble made before it recorded roles: calibrated on its members' out-of-fold images."""

SITE_ROLES = {"site_sample": "val", "calibration": "val", "test": "test"}
"""A run calibrated again on a labelled sample of a new site (``btk calibrate --data``)."""

EVALUATION_ROLES = {"test": "test"}
"""An evaluation (``btk evaluate``): every image it scored is a test image."""


def check_roles(roles: Mapping[str, Any], where: str) -> dict[str, str]:
    """``roles`` (role -> subset name) as a plain dict, after checking every role is known.

    Raises:
        BtkError: an unknown role or a subset that is not a name.
    """
    out = {}
    for role, subset in roles.items():
        if role not in ROLES or not isinstance(subset, str) or not subset:
            raise BtkError(f"{where}: roles: {role!r} -> {subset!r} is not a role and a subset name (roles: "
                           f"{', '.join(ROLES)})")
        out[role] = subset
    return out


def infer_roles(config: Mapping[str, Any]) -> dict[str, str]:
    """The roles of a run's subsets from its ``config.json`` contents: its own ``roles`` where it
    recorded them, else from what made it (a run written before roles were recorded).

    An evaluation: its images are test images. A calibrated run: the site sample serves its
    calibration (``btk calibrate --data``), or its origin's roles (on its own images). A fold
    ensemble (``cv``), or a run calibrated or adapted from one: its validation images are out of
    fold, and its calibration was fitted on them. Anything else: the plain roles.
    """
    if config.get("roles"):
        return check_roles(config["roles"], "config.json")
    if config.get("kind") == "evaluation":
        return dict(EVALUATION_ROLES)
    recalibration = config.get("recalibration") or {}
    if recalibration.get("data"):
        return dict(SITE_ROLES)
    ensemble = config.get("ensemble") or {}
    # a calibration or an adaptation of an ensemble whose members held out different images: only
    # a fold ensemble has validation images then (a seed ensemble's were dropped)
    derived = bool(recalibration or config.get("adaptation"))
    if config.get("cv") or (derived and ensemble and not ensemble.get("shared_validation")):
        return dict(FOLD_ROLES)
    return dict(PLAIN_ROLES)


@dataclass(frozen=True)
class Calibration:
    """The temperature a run fitted on its validation images (or ``btk calibrate`` on a new
    site's sample), what it changed there, and the calibration of its prediction sets.

    Attributes:
        conformal: the summary of the prediction sets' calibration (:meth:`btk.conformal.Conformal.summary`);
            ``None`` for a run made before prediction sets.
        sets: the calibration itself while a run is being written (read back from
            ``conformal.csv`` by :meth:`Run.conformal`).
        shift_reference: the calibration images' features while a run is being written
            (:class:`btk.shift.Reference`; read back by :func:`btk.shift.read_reference`).
    """

    temperature: float
    val_ece_raw: float | None = None
    val_ece_calibrated: float | None = None
    val_nll_raw: float | None = None
    val_nll_calibrated: float | None = None
    conformal: Mapping[str, Any] | None = None
    sets: Any = field(default=None, compare=False, repr=False)
    shift_reference: Any = field(default=None, compare=False, repr=False)

    def to_json(self) -> dict[str, Any]:
        """The record kept in ``config.json``."""
        return {"temperature": self.temperature, "val_ece_raw": self.val_ece_raw,
                "val_ece_calibrated": self.val_ece_calibrated, "val_nll_raw": self.val_nll_raw,
                "val_nll_calibrated": self.val_nll_calibrated,
                **({"conformal": dict(self.conformal)} if self.conformal else {})}


@dataclass(frozen=True)
class Provenance:
    """What made a run (:func:`btk.provenance.provenance`); every field may be missing in an
    older run."""

    command: str = ""
    cwd: str | None = None
    backend: str = ""
    backend_version: str = ""
    commit: str | None = None
    dirty: bool = False
    device: str = ""
    precision: str = ""
    data: Mapping[str, Any] = field(default_factory=dict)
    started: str = ""
    ended: str = ""

    @classmethod
    def from_json(cls, made: Mapping[str, Any] | None) -> Provenance | None:
        """The record from ``config.json``'s ``provenance`` (``None`` for a run without one)."""
        if not made:
            return None
        backend = made.get("backend") or {}
        source = made.get("source") or {}
        return cls(str(made.get("command", "")), made.get("cwd"), str(backend.get("name", "")),
                   str(backend.get("version", "")), source.get("commit"), bool(source.get("dirty", False)),
                   str(made.get("device", "")), str(made.get("precision", "")), dict(made.get("data") or {}),
                   str(made.get("started", "")), str(made.get("ended", "")))


@dataclass(frozen=True)
class EvaluationSource:
    """What an evaluation scored: the run it evaluated and the data, as given to ``btk evaluate``."""

    run_path: Path
    run_id: str
    data: str
    reader: str
    reader_options: Mapping[str, str]
    split: str
    class_map: Mapping[str, str]
    duplicate_threshold: float


@dataclass(frozen=True)
class Member:
    """One run of an ensemble."""

    run: str
    path: str
    seed: int | None
    test_accuracy: float | None = None
    val_accuracy: float | None = None
    train_seconds: float | None = None


@dataclass(frozen=True)
class Ensemble:
    """An ensemble's members, and whether they held out the same validation images."""

    members: tuple[Member, ...]
    shared_validation: bool
    val_accuracy: float | None = None

    def to_json(self) -> dict[str, Any]:
        """The record kept in ``config.json`` and ``metrics.json``."""
        return {"members": [m.__dict__ for m in self.members], "shared_validation": self.shared_validation,
                **({"val_accuracy": self.val_accuracy} if self.val_accuracy is not None else {})}


@dataclass(frozen=True)
class DegradationRecord:
    """A degradation as a run recorded it (:meth:`btk.degraders.Degradation.to_json`)."""

    label: str
    name: str
    params: Mapping[str, Any]
    level: int | None = None
    reference_width: int | None = None


@dataclass(frozen=True)
class Images:
    """Labelled images of a run's subset, read again as the run read them (:meth:`Run.images`).

    Attributes:
        images: uint8 N x H x W x C; ``y``: the task's class indices; ``sources``: their names;
        has_copy: whether each has a copy in the run's training data (test images).
    """

    images: np.ndarray
    y: np.ndarray
    sources: np.ndarray
    has_copy: np.ndarray


def locate(data: str | None, provenance: Provenance | None) -> Path | None:
    """A recorded data path as found from here: as it is if it exists, else (a relative path)
    relative to the folder the run was made in; ``None`` when it is in neither place or was never
    given."""
    if data is None:
        return None
    path = Path(data)
    if path.exists():
        return path
    if not path.is_absolute() and provenance is not None and provenance.cwd:
        there = Path(provenance.cwd) / path
        if there.exists():
            return there
    return None


def parse_degradations(items: Any) -> tuple[DegradationRecord, ...]:
    out = []
    for d in items or []:
        if isinstance(d, Mapping):
            out.append(DegradationRecord(str(d.get("label", d.get("name", ""))), str(d.get("name", "")),
                                         dict(d.get("params") or {}), d.get("level"), d.get("reference_width")))
        else:
            out.append(DegradationRecord(str(d), str(d), {}))
    return tuple(out)


def parse_ensemble(info: Mapping[str, Any] | None) -> Ensemble | None:
    if not info:
        return None
    members = tuple(Member(str(m.get("run")), str(m.get("path", "")), m.get("seed"), m.get("test_accuracy"),
                           m.get("val_accuracy"), m.get("train_seconds")) for m in info.get("members", []))
    return Ensemble(members, bool(info.get("shared_validation")), info.get("val_accuracy"))


def parse_evaluation(info: Mapping[str, Any] | None) -> EvaluationSource | None:
    if not info:
        return None
    return EvaluationSource(Path(info["run"]), str(info.get("run_id", "")), str(info.get("data", "")),
                            str(info.get("reader", "")), dict(info.get("reader_options") or {}),
                            str(info.get("split", "")), dict(info.get("class_map") or {}),
                            float(info.get("duplicate_threshold", 0.95)))


