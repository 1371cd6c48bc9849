"""Where ``btk predict`` writes its rows as they come: a CSV or JSON-lines file, or a JSON list.

A file is written under ``FILE.partial`` and renamed to ``FILE`` when the stream is complete;
an error or an interruption removes the partial file, so ``FILE`` is either whole or absent.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from btk.errors import BtkError
from btk.predict import Prediction

OUT_KINDS = {".csv": "csv", ".jsonl": "jsonl"}


def out_kind(path: str | Path) -> str:
    """``csv`` or ``jsonl``, from ``path``'s suffix.

    Raises:
        BtkError: any other suffix.
    """
    kind = OUT_KINDS.get(Path(path).suffix.lower())
    if kind is None:
        raise BtkError(f"--out must name a .csv or .jsonl file: {path}")
    return kind


def csv_header(classes: Sequence[str]) -> list[str]:
    """The CSV columns: path, slice, predicted, then ``p_<class>`` for each class."""
    return ["path", "slice", "predicted", *[f"p_{c}" for c in classes]]


class PredictionFile:
    """A context manager that writes predictions to a ``.csv`` or ``.jsonl`` file as they come
    (:meth:`write`), under ``FILE.partial`` until the ``with`` block ends without an error."""

    def __init__(self, path: str | Path, classes: Sequence[str]) -> None:
        self.path = Path(path)
        self.kind = out_kind(path)
        self.partial = self.path.with_name(self.path.name + ".partial")
        self.classes = list(classes)
        self.rows = 0
        self._fh: IO[str] | None = None
        self._csv: Any = None

    def __enter__(self) -> PredictionFile:
        try:
            self._fh = open(self.partial, "w", newline="" if self.kind == "csv" else None)
        except OSError as exc:
            raise BtkError(f"cannot write {self.path}: {exc.strerror or exc}") from None
        if self.kind == "csv":
            self._csv = csv.writer(self._fh)
            self._csv.writerow(csv_header(self.classes))
        return self

    def write(self, p: Prediction) -> None:
        """Append one row."""
        assert self._fh is not None, "PredictionFile.write outside its with block"
        if self._csv is not None:
            probabilities = [repr(p.probabilities[c]) for c in self.classes]
            self._csv.writerow([p.path, p.slice_label(), p.predicted, *probabilities])
        else:
            self._fh.write(json.dumps(p.record()) + "\n")
        self.rows += 1

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        assert self._fh is not None
        self._fh.close()
        if exc_type is None:
            os.replace(self.partial, self.path)
        else:
            self.partial.unlink(missing_ok=True)


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

    def close(self) -> None:
        """End the list (an empty one if nothing was written)."""
        self._write("[]\n" if self.rows == 0 else "\n]\n")
