"""Run directories: written under a temporary name and renamed when complete, then read back
once, through :func:`load_run`, into one typed record (:class:`Run`). Nothing else in btk reads
a run's JSON files. The record's parts are in :mod:`btk.record`, the methods that read its data
again in :mod:`btk.run_data`, those that read its files and the writing in :mod:`btk.run_files`.

A run directory holds:

- ``config.json``: the resolved configuration, classes, input shape, resolved degradations,
  which plugin provided what, library versions, ``provenance`` (:mod:`btk.provenance`: the
  command, the folder it ran in, backend version, btk's commit, device, precision, a
  fingerprint of the files read, start and end) and ``calibration`` (the temperature fitted on
  the validation split, with the validation ECE and NLL before and after,
  :mod:`btk.calibration`); ``btk run --config`` reads it back, ``btk rerun`` repeats it;
- ``split.csv``: which sample went to which subset (train, val, test, or another name) and
  whether a test image has a copy in the training data; ``config.json``'s ``roles`` says what
  each subset was used for (:mod:`btk.record`: training, selection, calibration, test, out of
  fold, site sample);
- ``history.json``: per-epoch training history;
- ``model.keras``: the trained model;
- ``predictions.csv``: per test image and condition (clean, each degradation): true label,
  predicted label and the calibrated probabilities of the task's classes (every command that
  scores the image gives these same numbers: :mod:`btk.scoring`);
- ``metrics.json``: metrics per condition, timings and skipped inputs;
- ``examples.npz``: a few right and wrong test images (128 px grayscale) under every test
  condition, for reports;
- ``MODEL_CARD.md``: the model card (:mod:`btk.model_card`; ``btk card`` writes it again);
- ``btk-run.json``: the format version, kind and completion time, written last.

``btk evaluate`` writes an evaluation directory (by default into the run's ``evaluations/``)
in the same format, with ``"kind": "evaluation"`` in its ``config.json``: the run's model
scored on other data. Everything that reads runs reads it too.

While a run trains, its hidden ``.<id>.partial`` directory holds ``resume.json`` and a
checkpoint of the last epoch; an interrupted run leaves it for ``btk resume``. Readers of runs
skip it; a finished run has neither file.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from btk.config import RunConfig
from btk.errors import BtkError
from btk.record import (  # re-exported: the record's parts are read through this module
    PLAIN_ROLES,
    ROLE_WORDS,
    ROLES,
    SUBSETS,
    TRAINED_ON,
    Calibration,
    DegradationRecord,
    Ensemble,
    EvaluationSource,
    Images,
    Member,
    Provenance,
    infer_roles,
    locate,
    parse_degradations,
    parse_ensemble,
    parse_evaluation,
)
from btk.run_data import RunData
from btk.run_files import EVALUATIONS, FORMAT_VERSION, MARKER, RunFiles

__all__ = ["ROLES", "SUBSETS", "Calibration", "DegradationRecord", "Ensemble", "EvaluationSource", "Images",
           "Member", "Provenance", "Run", "load_run", "locate", "parse_record"]


@dataclass(frozen=True)
class Run(RunFiles, RunData):
    """A finished run (or evaluation), read once from its directory by :func:`load_run`.

    Attributes:
        path: the directory; ``kind``: ``run`` or ``evaluation``.
        config: the configuration (recipe included) the run was made with; for an evaluation,
            its run's, with the evaluated data and reader.
        classes: the task's classes, in the order of the probabilities; ``trained_classes``:
            the network's outputs (the same unless a binary task was learned through the classes).
        input_shape: the network's input (H, W, C).
        calibration: the temperature fitted on the validation images, if any.
        calibrated_predictions: whether ``predictions.csv`` holds calibrated probabilities (every
            run since the one scorer; older runs hold the network's own).
        provenance, versions, plugins, distribution: what made it.
        evaluation: for an evaluation, what it scored; ``ensemble``: an ensemble's members;
        adaptation: what ``btk adapt`` adapted it on.
        metrics, history: ``metrics.json`` and ``history.json`` as written.
        roles: which ``split.csv`` subset serves each role (:data:`btk.record.ROLES`), as
            recorded or, for a run written before roles, inferred (:func:`btk.record.infer_roles`).
    """

    path: Path
    kind: str
    config: RunConfig
    classes: tuple[str, ...]
    trained_classes: tuple[str, ...]
    input_shape: tuple[int, ...]
    train_degrade: tuple[DegradationRecord, ...]
    test_degrade: tuple[DegradationRecord, ...]
    calibration: Calibration | None
    calibrated_predictions: bool
    provenance: Provenance | None
    versions: Mapping[str, str]
    plugins: Mapping[str, str]
    distribution: Mapping[str, Any] | None
    evaluation: EvaluationSource | None
    ensemble: Ensemble | None
    adaptation: Mapping[str, Any] | None
    metrics: Mapping[str, Any]
    history: Mapping[str, Any]
    roles: Mapping[str, str] = field(default_factory=lambda: MappingProxyType(dict(PLAIN_ROLES)))
    _cache: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    # --- what it is -------------------------------------------------------------------------
    @property
    def recipe(self) -> Any:
        """The recipe (:class:`btk.config.Recipe`)."""
        return self.config.recipe

    @property
    def task(self) -> str:
        """``multiclass`` or ``binary``."""
        return self.config.task

    @property
    def is_evaluation(self) -> bool:
        """Whether this is an evaluation of a run on other data (``btk evaluate``), not a run."""
        return self.kind == "evaluation"

    @property
    def recalibration(self) -> Mapping[str, Any] | None:
        """What ``btk calibrate`` calibrated this run on, from what (``None``: not a calibrated run)."""
        return self.metrics.get("recalibration") or None

    @property
    def temperature(self) -> float:
        """The temperature fitted on the validation split (1.0 when none was fitted)."""
        return self.calibration.temperature if self.calibration else 1.0

    def conformal(self) -> Any:
        """The calibration of the run's prediction sets (:class:`btk.conformal.Conformal`), or
        ``None`` for a run made before them."""
        if "conformal" not in self._cache:
            from btk.conformal import CONFORMAL_FILE, Conformal

            path = self.path / CONFORMAL_FILE
            found = self.calibration is not None and self.calibration.conformal and path.is_file()
            self._cache["conformal"] = Conformal.read(path, self.classes) if found else None
        return self._cache["conformal"]

    def require_conformal(self) -> Any:
        """:meth:`conformal`, or a one-line error saying how to get one.

        Raises:
            BtkError: the run has no prediction-set calibration.
        """
        found = self.conformal()
        if found is None:
            target = self.evaluation.run_path if self.evaluation else self.path
            raise BtkError(f"{self.name} has no prediction-set calibration (it was made before btk had sets): "
                           f"fit one with `btk calibrate {target}` (on its validation images) or "
                           f"`btk calibrate {target} --data LABELLED` (on a sample of a new site)")
        return found

    @property
    def tta(self) -> bool:
        """Whether the run scores images with test-time augmentation (:mod:`btk.tta`)."""
        return self.config.tta

    @property
    def epochs_run(self) -> int:
        """Epochs trained (0 for an ensemble, an adapted copy or an evaluation)."""
        return len(self.history.get("loss", []))

    @property
    def best_epoch(self) -> int | None:
        """The epoch whose weights were kept, where the run restored one."""
        best = self.history.get("best_epoch")
        return int(best[0]) if best else None

    # --- the roles of its images --------------------------------------------------------------
    def role_subset(self, role: str) -> str | None:
        """The ``split.csv`` subset that serves ``role`` (``None``: no subset does)."""
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r} (roles: {', '.join(ROLES)})")
        return self.roles.get(role)

    def roles_of(self, subset: str) -> tuple[str, ...]:
        """The roles the ``split.csv`` subset ``subset`` serves, in :data:`btk.record.ROLES` order."""
        wanted = SUBSETS.get(subset, subset)
        return tuple(r for r in ROLES if self.roles.get(r) == wanted)

    def role_sources(self, role: str) -> list[str]:
        """The sources of the images that serve ``role``, in ``split.csv`` order (empty: none)."""
        subset = self.role_subset(role)
        return self.subset_sources(subset) if subset else []

    def trained_on(self, subset: str) -> bool:
        """Whether the images of ``subset`` trained the network (or, out of fold, K-1 of its
        members; a fold run's own out-of-fold images did not train it)."""
        trained = TRAINED_ON if self.ensemble is not None else ("training",)
        return any(r in trained for r in self.roles_of(subset))

    def describe_subset(self, subset: str) -> str:
        """What the images of ``subset`` are, in words, e.g. ``"out-of-fold images (each trained
        K-1 of its members)"``."""
        roles = self.roles_of(subset)
        if not roles:
            return f"{subset} images (no role)"
        words = " and ".join(ROLE_WORDS[r] for r in roles) + " images"
        if "out_of_fold" in roles and self.ensemble is not None:
            words += " (each trained K-1 of its fold models)"
        return words

    def require_role(self, role: str, for_what: str, instead: str, untrained: bool = False) -> str:
        """The ``split.csv`` subset that serves ``role``, or a one-line error saying that
        ``for_what`` cannot use this run's images and what to do ``instead``.

        Args:
            untrained: the images must also be ones the network did not train on.

        Raises:
            BtkError: no subset serves ``role``, it has no images, or (``untrained``) its images
                trained the network.
        """
        subset = self.roles.get(role)
        if subset is not None and untrained and self.trained_on(subset):
            why = f"its {role} images are its {self.describe_subset(subset)}, so they trained it"
        elif subset is not None and self.subset_sources(subset):
            return subset
        elif subset is not None:
            why = f"it has no {ROLE_WORDS[role]} images"
        else:
            held = [s for s in dict.fromkeys(self.roles.values()) if s != self.roles.get("test")]
            why = (f"it has no {ROLE_WORDS[role]} images"
                   + (f" (its {', '.join(held)} images are {'; '.join(self.describe_subset(s) for s in held)})"
                      if held else ""))
        raise BtkError(f"{for_what} needs {ROLE_WORDS[role]} images of {self.name}, and {why}: {instead}")

    def evaluations(self) -> list[Run]:
        """This run's evaluations (those that can be read), oldest first."""
        out = []
        for path in self.evaluation_dirs():
            try:
                out.append(load_run(path))
            except BtkError:
                continue
        return out

    def evaluated_run(self) -> Run:
        """The run an evaluation evaluated.

        Raises:
            BtkError: this is not an evaluation, or its run cannot be read.
        """
        if self.evaluation is None:
            raise BtkError(f"{self.path} is a run, not an evaluation")
        path = self.evaluation.run_path
        enclosing = self.path.parent.parent
        if self.path.parent.name == EVALUATIONS and (enclosing / MARKER).is_file():
            path = enclosing  # inside its run's evaluations/: that run, wherever the folder was moved or copied
        return load_run(path)

    def made_by(self) -> tuple[str, str] | None:
        """What made the run, in words, for reports: ``(what, command)``, e.g. ``("made by btk
        0.1.0 (commit ...), keras 3.15 on tensorflow 2.21, CPU ..., mixed_bfloat16; data ...;
        START to END", "btk run ...")``; ``None`` for a run written before provenance was kept."""
        made = self.provenance
        if made is None:
            return None
        commit = f" (commit {made.commit[:10]}{', uncommitted changes' if made.dirty else ''})" if made.commit else ""
        data = made.data
        listing = (f"; data {data.get('path') or data.get('reader')}: {data.get('files') or data.get('entries')} "
                   f"files, sha256 {str(data['sha256'])[:12]}") if data.get("sha256") else ""
        return (f"made by btk {self.versions.get('btk', '?')}{commit}, keras {self.versions.get('keras', '?')} on "
                f"{made.backend} {made.backend_version}, {made.device}, {made.precision}{listing}; {made.started} "
                f"to {made.ended}", made.command)

    def summary(self) -> dict[str, Any]:
        """The run as one JSON-ready object: what ``--json`` prints."""
        return {"run": str(self.path), "kind": self.kind, "name": self.name, "config": self.config.to_json(),
                "classes": list(self.classes), "temperature": self.temperature, "roles": dict(self.roles),
                "metrics": {c: self.condition_metrics(c) for c in self.metrics.get("conditions", {})},
                **({"evaluation": {**self.evaluation.__dict__, "run_path": str(self.evaluation.run_path)}}
                   if self.evaluation else {}),
                **({"ensemble": self.ensemble.to_json()} if self.ensemble else {})}


def parse_record(path: Path, config: Mapping[str, Any], metrics: Mapping[str, Any], history: Mapping[str, Any],
                 kind: str | None = None) -> Run:
    """The typed record of the run at ``path`` from its ``config.json``, ``metrics.json`` and
    ``history.json`` contents (:func:`load_run`; a run being written uses it for its card).

    Raises:
        BtkError: a configuration that does not parse, named with the file.
    """
    try:
        run_config = RunConfig.from_json(config["config"], source=str(path / "config.json"))
        classes = tuple(config["classes"])
    except KeyError as exc:
        raise BtkError(f"{path / 'config.json'}: missing {exc}") from None
    calibration = config.get("calibration")
    return Run(
        path=Path(path), kind=kind or str(config.get("kind", "run")), config=run_config, classes=classes,
        trained_classes=tuple(config.get("trained_classes") or classes),
        input_shape=tuple(config.get("input_shape") or ()),
        train_degrade=parse_degradations(config.get("train_degrade")),
        test_degrade=parse_degradations(config.get("test_degrade")),
        calibration=Calibration(**{k: v for k, v in calibration.items() if k in Calibration.__dataclass_fields__})
        if calibration else None,
        calibrated_predictions=config.get("probabilities") == "calibrated",
        provenance=Provenance.from_json(config.get("provenance")), versions=dict(config.get("versions") or {}),
        plugins=dict(config.get("plugins") or {}), distribution=config.get("distribution"),
        evaluation=parse_evaluation(config.get("evaluation")), ensemble=parse_ensemble(config.get("ensemble")),
        adaptation=config.get("adaptation"), metrics=dict(metrics), history=dict(history),
        roles=MappingProxyType(infer_roles({**config, "kind": kind or config.get("kind", "run")})),
    )


def packaged_run(name: str) -> Path | None:
    """The directory of the run a plugin ships under ``name`` (:class:`btk.types.PackagedRun`),
    or ``None``: a name with a path separator is a path, never a packaged run's name."""
    if not name or "/" in name or "\\" in name:
        return None
    from btk.plugins import get_host

    runs = get_host().runs
    return Path(runs.get(name).path) if name in runs.names() else None


def load_run(path: Path | str) -> Run:
    """Read a complete run (or evaluation) directory into its typed record; ``path`` may also be
    the name of a run a plugin ships (:func:`packaged_run`).

    Raises:
        BtkError: not a run directory, an incomplete one, one of another format version, or a
            damaged one.
    """
    path = Path(path)
    if not path.is_dir():
        packaged = packaged_run(str(path))
        if packaged is None:
            raise BtkError(f"not a run directory: {path}")
        path = packaged
    marker = path / MARKER
    if not marker.exists():
        raise BtkError(f"{path} is not a complete btk run (no {MARKER})")
    try:
        info = json.loads(marker.read_text())
        if info.get("format") != FORMAT_VERSION:
            raise BtkError(f"{path}: run format {info.get('format')} is not supported (expected {FORMAT_VERSION})")
        config = json.loads((path / "config.json").read_text())
        metrics = json.loads((path / "metrics.json").read_text())
        history = json.loads((path / "history.json").read_text())
        if not (path / "predictions.csv").exists():
            raise FileNotFoundError(2, "missing", str(path / "predictions.csv"))
    except FileNotFoundError as exc:
        raise BtkError(f"{path}: run is missing {Path(exc.filename).name}") from None
    except json.JSONDecodeError as exc:
        raise BtkError(f"{path}: damaged run file: {exc}") from None
    return parse_record(path, config, metrics, history, kind=config.get("kind", info.get("kind", "run")))
