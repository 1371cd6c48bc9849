"""Where ``btk predict`` writes its rows as they come: a CSV file (in its result directory,
:class:`btk.run_files.ResultDir`, complete or absent), or a JSON list on standard output that is
closed whatever happens, so it always parses.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Sequence
from contextlib import ExitStack, closing
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import numpy as np

from btk.dataset import unread_records
from btk.errors import BtkError
from btk.predict import Prediction, PredictionTally
from btk.runs import Run
from btk.shift import ShiftCheck


def csv_header(classes: Sequence[str], sets: bool = False) -> list[str]:
    """The CSV columns: path, slice, predicted, then ``p_<class>`` for each class; with
    ``sets`` (``--coverage``), then ``set`` (classes joined by ``|``, ``(empty)`` for none) and
    ``set_size``."""
    return ["path", "slice", "predicted", *[f"p_{c}" for c in classes], *(["set", "set_size"] if sets else [])]


class PredictionFile:
    """A context manager that writes predictions to a CSV file as they come (:meth:`write`)."""

    def __init__(self, path: str | Path, classes: Sequence[str], sets: bool = False) -> None:
        self.path = Path(path)
        self.classes = list(classes)
        self.sets = sets
        self.rows = 0
        self._fh: IO[str] | None = None
        self._csv: Any = None

    def __enter__(self) -> PredictionFile:
        try:
            self._fh = open(self.path, "w", newline="")
        except OSError as exc:
            raise BtkError(f"cannot write {self.path}: {exc.strerror or exc}") from None
        self._csv = csv.writer(self._fh)
        self._csv.writerow(csv_header(self.classes, self.sets))
        return self

    def write(self, p: Prediction) -> None:
        """Append one row."""
        assert self._csv is not None, "PredictionFile.write outside its with block"
        sets = [p.set_label(), len(p.prediction_set or ())] if self.sets else []
        self._csv.writerow([p.path, p.slice_label(), p.predicted, *[repr(p.probabilities[c]) for c in self.classes],
                            *sets])
        self.rows += 1

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        assert self._fh is not None
        self._fh.close()


class JsonList:
    """Predictions written as one JSON list while they come, an object a line, through ``write``
    (e.g. ``click.echo`` without a newline); :meth:`close` ends the list."""

    def __init__(self, write: Callable[[str], None]) -> None:
        self._write = write
        self.rows = 0

    def write(self, p: Prediction) -> None:
        """Append one object."""
        self._write(("[\n" if self.rows == 0 else ",\n") + json.dumps(p.record()))
        self.rows += 1

    def close(self, failed: bool = False) -> None:
        """End the list (an empty one if nothing was written). After a failure (``failed``) with
        nothing written, write nothing: a failed command prints no result; a list already begun
        is ended, so what was printed still parses."""
        if self.rows:
            self._write("\n]\n")
        elif not failed:
            self._write("[]\n")


@dataclass
class PredictResult:
    """What :func:`predict_run` did: the stream's tally (rows, answers, unreadable inputs) and the
    result directory it wrote (``None`` without ``out``)."""

    tally: PredictionTally
    rows: int
    folder: Path | None
    shift: ShiftCheck | None = None  # with check_shift: the cohort against the run's calibration images
    warnings: list[str] = field(default_factory=list)  # what a user must read about the sets (every set holds ...)


def predict_run(run: Run, paths: Sequence[str | Path], out: Path | str | None = None,
                on_row: Callable[[Prediction], None] | None = None, host: Any = None, feedback: Any = None,
                reader_name: str | None = None, reader_options: dict[str, str] | None = None, slices: str = "all",
                min_confidence: float = 0.0, tta: bool | None = None, devices: str = "",
                tally: PredictionTally | None = None, coverage: float | None = None,
                check_shift: bool = False, heat: bool = False, shard: tuple[int, int] | None = None,
                runtime: str = "keras") -> PredictResult:
    """``btk predict``, the whole job: every path checked and scanned before the model loads
    (:func:`btk.predict_inputs.gather_inputs`), then predicted with the run's scorer
    (:func:`btk.predict.predict_stream`); each row handed to ``on_row`` as it comes and, with
    ``out``, written to ``predictions.csv`` in a new result directory under ``out`` (complete or
    absent), with ``predict.json`` (the run, the inputs, the counts, the unreadable inputs);
    ``tally`` (default: a new one) receives the counts and the unreadable inputs as it runs, so a
    caller still has them when nothing could be read.

    ``coverage`` gives every row its conformal prediction set (:mod:`btk.conformal`);
    ``check_shift`` tests whether the images are exchangeable with the run's calibration images
    (:func:`btk.shift.shift_check`, no labels needed; the slices of a series counted once; on the
    network's features where the run keeps its calibration images', else, saying so, on the top
    probability), returned as ``shift``. ``heat`` gives
    each DICOM slice's row its Grad-CAM map (for ``btk predict --maps``). ``shard`` ``(K, N)``:
    only the K-th of N contiguous shares of the inputs' entries
    (:func:`btk.predict_inputs.take_shard`), recorded in ``predict.json`` so ``btk merge`` can
    put the shares' tables back together. ``runtime``: what computes the network
    (:mod:`btk.onnx_runtime`), recorded in ``predict.json``.

    Raises:
        BtkError: a path that does not exist or holds nothing readable, a folder that cannot be
            written, devices that cannot be used, nothing readable at all, a coverage outside
            (0, 1), sets or a shift check asked of a run without prediction sets.
    """
    from btk.conformal import check_coverage, in_every_set_warning
    from btk.distribute import check_devices
    from btk.errors import BtkError
    from btk.explain import answer_maps
    from btk.onnx_runtime import check_runtime, chosen_runtime
    from btk.plugins import get_host
    from btk.predict import PredictionTally, predict_stream
    from btk.predict_inputs import gather_inputs, take_shard
    from btk.run_files import ResultDir, check_writable
    from btk.shift import read_reference, shift_check

    check_devices(devices)
    check_runtime(runtime, devices)
    if heat and runtime in ("onnx", "int8"):
        raise BtkError("--maps needs the network's gradients, which an ONNX graph does not give: "
                       "use --runtime keras")
    runtime = "keras" if heat else chosen_runtime(run, runtime, run.tta if tta is None else bool(tta), devices)
    if coverage is not None:
        coverage = check_coverage(coverage)
    conformal = run.require_conformal() if coverage is not None or check_shift else None
    held: dict[str, int] = {}  # classes that every set holds (too few calibration images)
    if conformal is not None and coverage is not None:
        held = conformal.thin_classes(coverage)
    warnings = [in_every_set_warning(held, coverage, conformal.delta)] if held and conformal and coverage else []
    reference = read_reference(run.path) if check_shift else None
    parent = check_writable(out) if out is not None else None
    inputs = gather_inputs(paths, host or get_host(), run.read_options({}), reader_name, reader_options, slices)
    share = take_shard(inputs, shard) if shard is not None else None
    tally = tally if tally is not None else PredictionTally()
    with ExitStack() as stack:
        folder = stack.enter_context(ResultDir(parent, f"predict-{run.name}")) if parent is not None else None
        sink = stack.enter_context(PredictionFile(folder.path("predictions.csv"), run.classes,
                                                  coverage is not None)) if folder else None
        stream = stack.enter_context(closing(predict_stream(run, inputs, feedback, tally=tally,
                                                            min_confidence=min_confidence, tta=tta,
                                                            devices=devices, coverage=coverage,
                                                            keep_probabilities=check_shift,
                                                            keep_features=reference is not None,
                                                            heat=answer_maps if heat else None,
                                                            runtime=runtime)))
        rows = 0
        for prediction in stream:
            rows += 1
            if sink is not None:
                sink.write(prediction)
            if on_row is not None:
                on_row(prediction)
        if not tally.images:
            raise BtkError("nothing could be read to predict")
        shift = None
        if check_shift and conformal is not None:
            features = np.concatenate(tally.features) if tally.features else None
            shift = shift_check(reference, features, tally.groups, conformal.reference(),
                                np.concatenate(tally.probabilities))
        if folder is not None:
            (folder.path("predict.json")).write_text(json.dumps({
                "run": str(run.path), "inputs": [str(p) for p in paths], "rows": rows, "images": tally.images,
                "answers": dict(tally.answers), "min_confidence": min_confidence, "runtime": runtime,
                **({"shard": share} if share is not None else {}),
                **({"coverage": coverage, "set_sizes": {str(k): v for k, v in sorted(tally.set_sizes.items())},
                    "in_every_set": held} if coverage is not None else {}),
                **({"shift": shift.to_json()} if shift is not None else {}),
                **unread_records(tally.skipped, tally.notes)}, indent=1) + "\n")
    return PredictResult(tally, rows, folder.final if folder is not None else None, shift, warnings)
