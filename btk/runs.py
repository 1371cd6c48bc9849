"""Run directories: written under a temporary name and renamed when complete, then read back
once, through :func:`load_run`, into one typed record (:class:`Run`). Nothing else in btk reads
a run's JSON files.

A run directory holds:

- ``config.json``: the resolved configuration, classes, input shape, resolved degradations,
  which plugin provided what, library versions, ``provenance`` (:mod:`btk.provenance`: the
  command, the folder it ran in, backend version, btk's commit, device, precision, a
  fingerprint of the files read, start and end) and ``calibration`` (the temperature fitted on
  the validation split, with the validation ECE and NLL before and after,
  :mod:`btk.calibration`); ``btk run --config`` reads it back, ``btk rerun`` repeats it;
- ``split.csv``: which sample went to train, val or test (and whether a test image has a copy
  in the training data);
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

import csv
import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from btk.config import RunConfig
from btk.errors import BtkError
from btk.run_files import EVALUATIONS, FORMAT_VERSION, MARKER
from btk.types import ReadOptions

SUBSETS = {"train": "train", "training": "train", "val": "val", "validation": "val", "test": "test"}
"""Subset names a caller may use -> the names in ``split.csv``."""


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


@dataclass(frozen=True)
class Run:
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
    _cache: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    # --- what it is -------------------------------------------------------------------------
    @property
    def name(self) -> str:
        """The run directory's name."""
        return self.path.name

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

    def read_options(self, extra: Mapping[str, str] | None = None) -> ReadOptions:
        """The image options the run read its data with (size, channels, crop), with reader
        options ``extra`` (default: the run's)."""
        recipe = self.config.recipe
        return ReadOptions(int(recipe.image_size), int(recipe.channels),
                           dict(self.config.reader_options if extra is None else extra), crop=recipe.crop)

    @property
    def data_path(self) -> Path | None:
        """The run's data folder, found from here: as recorded, or, for a relative path, relative
        to the folder the run was made in when it is not there from the current one."""
        return locate(self.config.data, self.provenance)

    # --- its files ----------------------------------------------------------------------------
    def predictions(self) -> list[dict[str, str]]:
        """The rows of ``predictions.csv``."""
        with open(self.path / "predictions.csv", newline="") as fh:
            return list(csv.DictReader(fh))

    def label_issues(self) -> list[dict[str, str]]:
        """The rows of ``label_issues.csv`` (a fold ensemble's: path, given, likely,
        self_confidence, margin; least self-confident first).

        Raises:
            BtkError: the run has none (only a fold ensemble, ``btk ensemble --folds K``, finds them).
        """
        path = self.path / "label_issues.csv"
        if not path.is_file():
            raise BtkError(f"{self.name} has no label issues: they come from a fold ensemble's out-of-fold "
                           "probabilities (btk ensemble --folds K)")
        with open(path, newline="") as fh:
            return list(csv.DictReader(fh))

    def condition_arrays(self, condition: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(sources, true class indices, probabilities)`` of the test images under ``condition``."""
        arrays = self._cache.get("arrays")
        if arrays is None:
            arrays = {}
            rows = self.predictions()
            index = {c: k for k, c in enumerate(self.classes)}
            cols = [f"p_{c}" for c in self.classes]
            for cond in dict.fromkeys(r["condition"] for r in rows):
                sel = [r for r in rows if r["condition"] == cond]
                arrays[cond] = (np.array([r["source"] for r in sel]), np.array([index[r["label"]] for r in sel]),
                                np.array([[float(r[c]) for c in cols] for r in sel]))
            self._cache["arrays"] = arrays
        return arrays[condition]

    def condition_metrics(self, condition: str) -> dict[str, Any]:
        """The metrics of ``condition`` (``metrics.json``), with ``ece`` from the predictions for
        runs that did not record it."""
        m = dict(self.metrics["conditions"][condition])
        if "ece" not in m:
            from btk.stats import reliability

            _, y, probs = self.condition_arrays(condition)
            m["ece"] = reliability(y, probs)["ece"]
        return m

    def split_rows(self) -> list[dict[str, str]]:
        """The rows of ``split.csv`` (source, label, group, subset, copy_in_train).

        Raises:
            BtkError: a directory without one (an evaluation made before evaluations kept theirs).
        """
        rows = self._cache.get("split")
        if rows is None:
            path = self.path / "split.csv"
            if not path.is_file():
                raise BtkError(f"{self.path}: no split.csv (an evaluation made before evaluations recorded their "
                               "images): evaluate the run again")
            with open(path, newline="") as fh:
                rows = list(csv.DictReader(fh))
            self._cache["split"] = rows
        return rows

    def subset_sources(self, subset: str) -> list[str]:
        """The sources of ``subset`` (train, val or test), in ``split.csv`` order."""
        wanted = SUBSETS.get(subset, subset)
        return [r["source"] for r in self.split_rows() if r["subset"] == wanted]

    def data_vocabulary(self) -> list[str]:
        """The class names of the data the run was trained on (``split.csv``)."""
        return sorted({r["label"] for r in self.split_rows()})

    def examples(self) -> dict[str, np.ndarray]:
        """The example images kept with the run (empty if there are none)."""
        path = self.path / "examples.npz"
        if not path.exists():
            return {}
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}

    def _json(self, name: str) -> dict[str, Any] | None:
        try:
            return json.loads((self.path / name).read_text())
        except (OSError, ValueError):
            return None

    def sweep(self, subset: str = "test") -> dict[str, Any] | None:
        """The robustness sweep ``btk robustness`` kept (``None``: not measured)."""
        return self._json("robustness.json" if subset == "test" else f"robustness-{subset}.json")

    def sweep_scores(self, subset: str = "test") -> dict[str, Any] | None:
        """The sweep's CE and mCE against its baseline (``None``: not measured)."""
        return self._json("robustness-scores.json" if subset == "test" else f"robustness-scores-{subset}.json")

    def explained(self) -> dict[str, Any] | None:
        """The summary of the latest ``btk explain`` of this run (``None``: never explained)."""
        return self._json("explain.json")

    def evaluation_dirs(self) -> list[Path]:
        """The evaluation directories ``btk evaluate`` wrote into this run, oldest first."""
        folder = self.path / EVALUATIONS
        if not folder.is_dir():
            return []
        return sorted(p for p in folder.iterdir() if (p / MARKER).is_file())

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

    # --- its model and images -------------------------------------------------------------------
    def load_model(self, tta: bool | None = None) -> Any:
        """The run's trained Keras model (``model.keras``), loaded in Keras' safe mode; with
        ``tta`` (default: the run's own choice) wrapped to average it over the image and its
        mirror image (:func:`btk.tta.with_tta`).

        Raises:
            BtkError: no model file, a damaged one, or one Keras refuses to load safely (a
                ``Lambda`` layer holds arbitrary Python code).
        """
        from btk.checkpoint import load_model_file
        from btk.tta import scoring_model

        model_dir = self.evaluated_run().path if self.is_evaluation else self.path
        return scoring_model(load_model_file(model_dir / "model.keras"), self.tta if tta is None else tta)

    @contextmanager
    def scorer(self, tta: bool | None = None, devices: str = "", calibrated: bool = True,
               feedback: Any = None) -> Iterator[Any]:
        """The run's :class:`btk.scoring.Scorer` inside a ``with`` block: its model loaded (over
        ``devices``, :func:`btk.distribute.scoring`), with test-time augmentation as ``tta``
        says (default: the run's choice) and its temperature unless ``calibrated`` is false.

        Raises:
            BtkError: the model cannot be loaded, or the devices cannot be used.
        """
        from btk.distribute import scoring
        from btk.scoring import Scorer

        with scoring(devices, feedback) as layout:
            model = self.load_model(tta)
            scorer = Scorer.for_recipe(model, self.config.recipe, self.trained_classes, self.classes,
                                       self.config.negative_class, self.temperature, calibrated,
                                       self.conformal())
            scorer.layout = layout
            yield scorer

    def targets(self, labels: list[str]) -> np.ndarray:
        """The task's class indices of data labels ``labels``: renamed by an evaluation's class
        map, then the run's classes (binary: 0 for the negative class, 1 for any other)."""
        mapping = dict(self.evaluation.class_map) if self.evaluation else {}
        names = [mapping.get(str(label), str(label)) for label in labels]
        if self.config.task == "binary":
            return np.array([0 if n == self.config.negative_class else 1 for n in names], dtype=int)
        index = {c: k for k, c in enumerate(self.classes)}
        unknown = sorted({n for n in names if n not in index})
        if unknown:
            raise BtkError(f"{self.path}: labels {', '.join(unknown)} are not among the run's classes "
                           f"{', '.join(self.classes)}")
        return np.array([index[n] for n in names], dtype=int)

    def dataset(self, host: Any = None, feedback: Any = None) -> Any:
        """The run's data read again as the run read it (:class:`btk.dataset.Dataset`; the decode
        cache makes this cheap), from where :attr:`data_path` finds it.

        Raises:
            BtkError: the data is no longer where it was.
        """
        from btk.dataset import load_dataset
        from btk.feedback import Feedback
        from btk.plugins import get_host

        host = host or get_host()
        feedback = feedback or Feedback()
        reader = host.readers.get(self.config.reader)
        path = self.data_path
        if self.config.data is not None and path is None:
            raise BtkError(f"{self.path}: its data {self.config.data} is not here (nor relative to the folder the "
                           f"run was made in, {self.provenance.cwd if self.provenance else 'not recorded'})")
        with feedback.task(f"reading {path or reader.name}") as task:
            data = load_dataset(reader, path, self.read_options(),
                                progress=lambda done, total: task.update(completed=done, total=total))
        if self.config.labels:  # the corrections the run was made with, found as its data is
            from btk.label_corrections import apply_corrections

            corrections = locate(self.config.labels, self.provenance)
            if corrections is None:
                raise BtkError(f"{self.path}: its label corrections {self.config.labels} are not here")
            data = apply_corrections(data, corrections)[0]
        return data

    def positions(self, data: Any, subset: str) -> np.ndarray:
        """The rows of ``data`` (:meth:`dataset`) that ``subset`` (train, val, test) holds, in
        ``split.csv`` order.

        Raises:
            BtkError: the run has no such images, or some are no longer in the data.
        """
        wanted = SUBSETS.get(subset, subset)
        sources = [r["source"] for r in self.split_rows() if r["subset"] == wanted]
        if not sources:
            raise BtkError(f"{self.path}: the run has no {subset} images")
        position = {str(s): i for i, s in enumerate(data.sources)}
        missing = [s for s in sources if s not in position]
        if missing:
            raise BtkError(f"{self.path}: {len(missing)} {subset} image(s) of the run are missing from its data "
                           f"{self.data_path}, e.g. {missing[0]}")
        return np.array([position[s] for s in sources], dtype=int)

    def images(self, subset: str = "test", host: Any = None, feedback: Any = None, data: Any = None) -> Images:
        """The images of ``subset`` (test, val or train; for an evaluation, test: the images it
        scored) read again as the run read them, in ``split.csv`` order, with their labels
        (``data``: the run's dataset, when already read).

        Raises:
            BtkError: the run has no such images, or its data is no longer where it was.
        """
        from btk.cache import gather

        data = data if data is not None else self.dataset(host, feedback)
        index = self.positions(data, subset)
        wanted = SUBSETS.get(subset, subset)
        rows = [r for r in self.split_rows() if r["subset"] == wanted]
        return Images(gather(data.images, index), self.targets([r["label"] for r in rows]),
                      np.array([r["source"] for r in rows], dtype=object),
                      np.array([r.get("copy_in_train") == "1" for r in rows], dtype=bool))

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
                "classes": list(self.classes), "temperature": self.temperature,
                "metrics": {c: self.condition_metrics(c) for c in self.metrics.get("conditions", {})},
                **({"evaluation": {**self.evaluation.__dict__, "run_path": str(self.evaluation.run_path)}}
                   if self.evaluation else {}),
                **({"ensemble": self.ensemble.to_json()} if self.ensemble else {})}


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


def _degradations(items: Any) -> tuple[DegradationRecord, ...]:
    out = []
    for d in items or []:
        if isinstance(d, Mapping):
            out.append(DegradationRecord(str(d.get("label", d.get("name", ""))), str(d.get("name", "")),
                                         dict(d.get("params") or {}), d.get("level"), d.get("reference_width")))
        else:
            out.append(DegradationRecord(str(d), str(d), {}))
    return tuple(out)


def _ensemble(info: Mapping[str, Any] | None) -> Ensemble | None:
    if not info:
        return None
    members = tuple(Member(str(m.get("run")), str(m.get("path", "")), m.get("seed"), m.get("test_accuracy"),
                           m.get("val_accuracy"), m.get("train_seconds")) for m in info.get("members", []))
    return Ensemble(members, bool(info.get("shared_validation")), info.get("val_accuracy"))


def _evaluation(info: Mapping[str, Any] | None) -> EvaluationSource | None:
    if not info:
        return None
    return EvaluationSource(Path(info["run"]), str(info.get("run_id", "")), str(info.get("data", "")),
                            str(info.get("reader", "")), dict(info.get("reader_options") or {}),
                            str(info.get("split", "")), dict(info.get("class_map") or {}),
                            float(info.get("duplicate_threshold", 0.95)))


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
        train_degrade=_degradations(config.get("train_degrade")),
        test_degrade=_degradations(config.get("test_degrade")),
        calibration=Calibration(**{k: v for k, v in calibration.items() if k in Calibration.__dataclass_fields__})
        if calibration else None,
        calibrated_predictions=config.get("probabilities") == "calibrated",
        provenance=Provenance.from_json(config.get("provenance")), versions=dict(config.get("versions") or {}),
        plugins=dict(config.get("plugins") or {}), distribution=config.get("distribution"),
        evaluation=_evaluation(config.get("evaluation")), ensemble=_ensemble(config.get("ensemble")),
        adaptation=config.get("adaptation"), metrics=dict(metrics), history=dict(history),
    )


def load_run(path: Path | str) -> Run:
    """Read a complete run (or evaluation) directory into its typed record.

    Raises:
        BtkError: not a run directory, an incomplete one, one of another format version, or a
            damaged one.
    """
    path = Path(path)
    if not path.is_dir():
        raise BtkError(f"not a run directory: {path}")
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
