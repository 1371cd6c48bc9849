"""Classify new images with a trained run: its model and the preprocessing it recorded.

:func:`predict_stream` yields predictions as they come. The inputs (:mod:`btk.predict_inputs`)
are decoded on a thread pool, ahead of the model within a fixed memory budget, starting while
the model loads; the model is called once per batch of ``batch_size`` images, which may come
from many files. Memory stays flat in the number of files: decoded images live only until their
batch is predicted, and each row is handed on as soon as its file (series, volume) is complete.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from btk.dataset import as_hwc, input_notes, iter_entries, opencv_threads
from btk.errors import BtkError
from btk.feedback import Feedback
from btk.onnx_runtime import chosen_runtime
from btk.predict_inputs import PredictInput, pick_reader
from btk.read_ahead import ReadAhead
from btk.runs import Run
from btk.types import Entry, ReadOptions, Sample

__all__ = ["Prediction", "PredictionTally", "pick_reader", "predict_stream"]

BATCH_SIZE = 128  # images gathered per call of the scorer (which cuts them into its own batches)
UNCERTAIN = "uncertain"  # the answer of a row below --min-confidence
READ_AHEAD_BYTES = 64 * 2**20  # decoded images held ready ahead of the model, at most (about)


@dataclass
class Prediction:
    """One image's or slice's answer, or a series' / volume's mean over its slices.

    Attributes:
        path: the input as the user named it (a given file, or a file inside a given folder).
        slice: the slice index in a series or volume; ``None`` for a 2D image and a mean.
        predicted: the class with the highest probability, or ``"uncertain"`` when that is
            below the ``--min-confidence`` asked for.
        probabilities: class name -> probability.
        aggregated_over: for a mean, the number of slices averaged; ``None`` otherwise.
        prediction_set: with ``--coverage``, the classes in the conformal prediction set
            (:mod:`btk.conformal`; empty: no class fits, flagged); ``None`` otherwise.
        identity: for a DICOM slice, what it is in DICOM terms (study, series, SOP instance and
            class, frame: the reader's ``meta["dicom"]``); for a series' mean, its slices'
            identities in ``members``; ``None`` for other images.
    """

    path: str
    slice: int | None
    predicted: str
    probabilities: dict[str, float]
    aggregated_over: int | None = None
    prediction_set: tuple[str, ...] | None = None
    identity: dict[str, Any] | None = field(default=None, compare=False)

    def slice_label(self) -> str:
        """The slice column: empty for a 2D image, ``all N (mean)`` for a mean."""
        if self.aggregated_over is not None:
            return f"all {self.aggregated_over} (mean)"
        return "" if self.slice is None else str(self.slice)

    def record(self) -> dict[str, Any]:
        """The prediction as a JSON object."""
        return {"path": self.path, "slice": self.slice, "predicted": self.predicted,
                "probabilities": self.probabilities, "aggregated_over": self.aggregated_over,
                **({"set": list(self.prediction_set)} if self.prediction_set is not None else {}),
                **({"dicom": {k: v for k, v in self.identity.items() if k not in ("where", "framing", "heat")}}
                   if self.identity and "sop" in self.identity else {})}

    def set_label(self) -> str:
        """The set column: its classes joined by ``|``; ``(empty)`` for an empty set (no class
        fits: look at this image); ``""`` without ``--coverage``."""
        if self.prediction_set is None:
            return ""
        return "|".join(self.prediction_set) or "(empty)"


@dataclass
class PredictionTally:
    """What a prediction stream did, filled in as it runs: the inputs it could not read (with
    the reason), how many images and slices it predicted, and each file's (series', volume's)
    answer counted by class."""

    skipped: list[tuple[str, str]] = field(default_factory=list)
    notes: list[tuple[str, str]] = field(default_factory=list)  # inputs read in part: (input, what was left out)
    images: int = 0
    answers: Counter[str] = field(default_factory=Counter)
    set_sizes: Counter[int] = field(default_factory=Counter)  # with --coverage: each file's answer's set size
    probabilities: list[np.ndarray] = field(default_factory=list)  # kept for a shift check: each image's
    features: list[np.ndarray] = field(default_factory=list)  # kept for a shift check: each image's (Scorer.features)
    groups: list[str] = field(default_factory=list)  # kept for a shift check: each image's series (patient, file)


class InputsReader:
    """One reader over every input: each entry is loaded by its own input's reader, with that
    input's reader options (so one thread pool decodes them all)."""

    name = "predict"
    description = "the inputs of btk predict, each read by its own reader"

    def __init__(self, inputs: Sequence[PredictInput]) -> None:
        self.inputs = inputs
        self.notes: dict[str, list[tuple[str, str]]] = {}  # inputs read in part (Dataset.notes)

    def scan(self, path: Path | None, options: ReadOptions) -> list[Entry]:
        return [Entry(inp.name(e), None, inp.name(e), payload=(k, e))
                for k, inp in enumerate(self.inputs) for e in inp.entries]

    def load(self, entry: Entry, options: ReadOptions) -> list[Sample]:
        k, inner = entry.payload
        inp = self.inputs[k]
        samples = inp.reader.load(inner, replace(options, extra=inp.options.extra))
        notes = input_notes(entry.source, samples)
        if notes:  # what the reader left out of this input, for the tally
            self.notes[entry.source] = notes
        return samples


_Slice = tuple[int | None, np.ndarray, dict[str, Any] | None, str]
"""One decoded image of an entry: slice index, image, DICOM identity, group (patient; "": the entry)."""


@dataclass
class _Pending:
    """A file (series, volume) whose slices are in batches not yet predicted."""

    path: str
    slices: list[int | None]
    probs: np.ndarray
    left: int
    group: str = ""  # what a shift check counts once: the series' group (patient), else the file
    sets: np.ndarray | None = None
    identities: list[dict[str, Any] | None] = field(default_factory=list)


class _Batcher:
    """Images of consecutive entries gathered into groups of ``batch_size`` for ``predict``
    (uint8 images -> probabilities: the run's scorer, which calls the network on batches of one
    shape); each entry's rows come out, in order, once its last image is predicted."""

    def __init__(self, predict: Callable[[np.ndarray], np.ndarray], batch_size: int, classes: list[str],
                 tally: PredictionTally, min_confidence: float = 0.0,
                 set_of: Callable[[np.ndarray], np.ndarray] | None = None, keep: bool = False,
                 explain: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
                 featurize: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]] | None = None) -> None:
        self.predict, self.batch_size, self.classes, self.tally = predict, batch_size, classes, tally
        self.min_confidence = min_confidence
        self.set_of = set_of  # probabilities -> prediction sets (booleans), with --coverage
        self.keep = keep  # keep every image's probabilities and group in the tally (a shift check)
        self.featurize = featurize  # images -> (probabilities, features): with keep, instead of predict (a shift check)
        self.explain = explain  # (images, probabilities) -> heat maps, kept with DICOM slices (--maps)
        self.pending: deque[_Pending] = deque()
        self.images: list[np.ndarray] = []
        self.owners: list[tuple[_Pending, int]] = []
        self.done = 0  # entries whose rows came out

    def add(self, path: str, slices: list[_Slice]) -> Iterator[Prediction]:
        """Queue an entry's images (slice index, image, DICOM identity, group: what a shift check
        counts once, default ``path``); yields the rows of the entries a full batch completed."""
        n_classes = len(self.classes)
        group = next((g for *_, g in slices if g), path)
        record = _Pending(path, [k for k, *_ in slices], np.zeros((len(slices), n_classes)), len(slices),
                          group, np.zeros((len(slices), n_classes), bool) if self.set_of is not None else None,
                          [ident for _, _, ident, _ in slices])
        self.pending.append(record)
        for k, (_, image, *_) in enumerate(slices):
            self.images.append(image)
            self.owners.append((record, k))
            if len(self.images) == self.batch_size:
                self._predict()
                yield from self._complete()

    def finish(self) -> Iterator[Prediction]:
        """Predict what is queued; yields the remaining rows."""
        if self.images:
            self._predict()
        yield from self._complete()

    def _predict(self) -> None:
        x = np.stack(self.images)
        n = len(x)
        features = None
        if self.keep and self.featurize is not None:  # one pass of the network for both
            probs, features = self.featurize(x)
        else:
            probs = self.predict(x)
        sets = self.set_of(probs) if self.set_of is not None else None
        wanted = [i for i, (record, k) in enumerate(self.owners) if record.identities[k] is not None]
        if self.explain is not None and wanted:
            for i, heat in zip(wanted, self.explain(x[wanted], probs[wanted])):
                record, k = self.owners[i]
                record.identities[k] = {**(record.identities[k] or {}), "heat": heat}
        if self.keep:
            self.tally.probabilities.append(np.asarray(probs))
            self.tally.groups += [record.group for record, _ in self.owners]
            if features is not None:
                self.tally.features.append(features)
        for i, ((record, k), p) in enumerate(zip(self.owners, probs)):
            record.probs[k] = p
            if sets is not None and record.sets is not None:
                record.sets[k] = sets[i]
            record.left -= 1
        self.tally.images += n
        self.images.clear()
        self.owners.clear()

    def _complete(self) -> Iterator[Prediction]:
        classes = self.classes
        while self.pending and self.pending[0].left == 0:
            record = self.pending.popleft()
            self.done += 1
            sets = record.sets
            for i, (k, p) in enumerate(zip(record.slices, record.probs)):
                yield _row(record.path, k, p, classes, min_confidence=self.min_confidence,
                           members=None if sets is None else sets[i], identity=record.identities[i])
            answer, answer_set = record.probs[0], None if sets is None else sets[0]
            if len(record.slices) > 1:
                answer = record.probs.mean(axis=0)
                answer_set = None if self.set_of is None else self.set_of(answer[None])[0]
                members = [i for i in record.identities if i is not None]
                yield _row(record.path, None, answer, classes, len(record.slices), self.min_confidence, answer_set,
                           {"members": members} if members else None)
            self.tally.answers[_answer(answer, classes, self.min_confidence)] += 1
            if answer_set is not None:
                self.tally.set_sizes[int(np.sum(answer_set))] += 1


def _answer(probs: np.ndarray, classes: list[str], min_confidence: float) -> str:
    """The class with the highest probability, or :data:`UNCERTAIN` when that is below
    ``min_confidence``."""
    return UNCERTAIN if float(probs.max()) < min_confidence else classes[int(probs.argmax())]


def _row(path: str, slice_: int | None, probs: np.ndarray, classes: list[str],
         aggregated_over: int | None = None, min_confidence: float = 0.0,
         members: np.ndarray | None = None, identity: dict[str, Any] | None = None) -> Prediction:
    return Prediction(path, slice_, _answer(probs, classes, min_confidence),
                      {c: float(v) for c, v in zip(classes, probs)}, aggregated_over,
                      None if members is None else tuple(c for c, m in zip(classes, members) if m), identity)


def _slice_of(sample: Sample) -> int | None:
    meta = sample.meta
    return meta.get("slice") if meta.get("slices", 1) > 1 else None


def predict_stream(run: Run, inputs: Sequence[PredictInput], feedback: Feedback | None = None,
                   batch_size: int = BATCH_SIZE, tally: PredictionTally | None = None,
                   workers: int | None = None, min_confidence: float = 0.0,
                   tta: bool | None = None, devices: str = "", coverage: float | None = None,
                   keep_probabilities: bool = False, keep_features: bool = False,
                   heat: Callable[[Any, np.ndarray, np.ndarray], np.ndarray] | None = None,
                   runtime: str = "keras") -> Generator[Prediction, None, None]:
    """Predict every entry of ``inputs`` with ``run``'s scorer (:meth:`btk.runs.Run.scorer`),
    yielding rows in input order as soon as each entry is complete: one per image or slice,
    then, for an entry of several slices, their mean (``aggregated_over``). The model is loaded
    when iteration starts, while the first images are being decoded.

    Args:
        feedback: shows the progress (entries done of all).
        batch_size: images gathered per call of the scorer (the answers do not depend on it).
        tally: receives the unreadable entries, counts and answers as the stream runs.
        workers: decoding threads (default: one per CPU).
        min_confidence: rows whose top probability is below this answer :data:`UNCERTAIN`
            (their probabilities are still given).
        tta: test-time augmentation (:mod:`btk.tta`); default: the run's own choice.
        devices: split every batch over these devices (:func:`btk.distribute.scoring`:
            ``auto``, a count or indices; JAX backend); ``""``: Keras' default device.
        coverage: give each row its conformal prediction set at this coverage
            (:meth:`btk.scoring.Scorer.sets`). The guarantee is per image (slice); a series'
            mean row gets the set of its mean probabilities, which carries none.
        keep_probabilities: keep every image's probabilities and group in ``tally`` (a shift
            check; a group: the series' patient where the reader names one, else the file).
        keep_features: with ``keep_probabilities``, keep every image's features too
            (:meth:`btk.scoring.Scorer.features`).
        heat: ``(scorer, images, probabilities) -> maps``: gives each DICOM slice's row a heat map
            of its answer (``identity["heat"]``; :func:`btk.explain.answer_maps`).

    The probabilities are the run's calibrated task probabilities: the same numbers as the run's
    ``predictions.csv``, ``btk evaluate`` and ``btk explain`` give for the same image.

    Raises:
        BtkError: the model cannot be loaded, or a reader returned an image of the wrong kind.
    """
    feedback = feedback or Feedback()
    tally = tally if tally is not None else PredictionTally()
    options = run.read_options({})
    size, channels = int(options.image_size or 0), options.channels
    shape = (size, size, channels)
    adapter = InputsReader(inputs)
    jobs = adapter.scan(None, ReadOptions())

    def prepare(samples: list[Sample]) -> list[_Slice]:  # threads
        out = []
        for s in samples:
            image = as_hwc(s.image, channels, s.source)
            if image.shape != shape:
                raise BtkError(f"reader returned an image of shape {image.shape} for {s.source}; expected {shape}")
            ident = s.meta.get("dicom")
            if ident is not None:  # where the network's view was cut from, for a heat map put back
                ident = {**ident, "framing": s.meta.get("framing")}
            group = str(s.group) if s.group and s.group != s.source else ""  # a file its own group: its input path
            out.append((_slice_of(s), image, ident, group))
        return out

    decoded = iter_entries(adapter, None, options, workers=workers, transform=prepare, entries=jobs)
    limit = max(batch_size, READ_AHEAD_BYTES // (size * size * channels))
    with opencv_threads(1), \
            ReadAhead(decoded, limit, weight=lambda item: len(item[1]) if isinstance(item[1], list) else 1) as ahead:
        # The backend is imported (seconds) while the first images are decoded, before the progress
        # display starts: the command line silences standard error during that import (btk.quiet),
        # and no redraw of the display may fall into it. ONNX Runtime needs no Keras at all.
        if chosen_runtime(run, runtime, run.tta if tta is None else bool(tta), devices) == "keras":
            import keras  # noqa: F401
        else:
            import onnxruntime  # noqa: F401

        with run.scorer(tta, devices, feedback=feedback, runtime=runtime) as scorer, \
                feedback.task("loading the model", total=len(jobs)) as task:
            task.update(description="predicting")
            set_of = (lambda probs: scorer.sets(probs, coverage)) if coverage is not None else None
            explain = (lambda images, probs: heat(scorer, images, probs)) if heat is not None else None
            batcher = _Batcher(scorer, batch_size, list(run.classes), tally, min_confidence, set_of,
                               keep_probabilities, explain,
                               scorer.probabilities_and_features if keep_features else None)
            for job, result in ahead:
                if isinstance(result, str) or not result:
                    tally.skipped.append((job.source, result or "no slices to predict"))
                    continue
                tally.notes += adapter.notes.pop(job.source, [])
                for row in batcher.add(job.source, result):
                    yield row
                    task.update(completed=batcher.done + len(tally.skipped))
            yield from batcher.finish()
            task.update(completed=len(jobs))
