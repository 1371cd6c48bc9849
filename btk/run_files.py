"""Writing run directories and other results: each is written under a hidden ``.<id>.partial``
name and renamed when complete, so a reader never sees half of one. :mod:`btk.runs` reads them
back."""

from __future__ import annotations

import csv
import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from btk.errors import BtkError

FORMAT_VERSION = 1
MARKER = "btk-run.json"
EVALUATIONS = "evaluations"  # btk evaluate's default folder inside a run


def new_run_id(name: str) -> str:
    """``YYYYmmdd-HHMMSS-name``: sortable and readable."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{name}" if name else stamp


def unique_dir(parent: Path, run_id: str) -> Path:
    """``parent/run_id``, with a numeric suffix if it exists already."""
    path, k = parent / run_id, 2
    while path.exists() or (parent / f".{path.name}.partial").exists():
        path, k = parent / f"{run_id}-{k}", k + 1
    return path


def check_writable(parent: Path | str, what: str = "--out") -> Path:
    """``parent``, created if needed, after checking that a new directory can be made in it.
    Every command that writes calls this before any long work.

    Raises:
        BtkError: one line naming the folder and why it cannot be written.
    """
    parent = Path(parent)
    try:
        parent.mkdir(parents=True, exist_ok=True)
        probe = parent / f".btk-write-check-{os.getpid()}"
        probe.mkdir()
        probe.rmdir()
    except OSError as exc:
        raise BtkError(f"{what} {parent}: cannot write there ({exc.strerror or exc})") from None
    return parent


class RunWriter:
    """Context manager that writes into ``.<id>.partial`` and renames it to ``<id>`` on success."""

    def __init__(self, final: Path, kind: str = "run") -> None:
        self.final = final
        self.kind = kind
        self.tmp = final.parent / f".{final.name}.partial"

    def __enter__(self) -> RunWriter:
        self.tmp.mkdir(parents=True, exist_ok=True)  # training may have checkpointed into it
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            shutil.rmtree(self.tmp / "checkpoint", ignore_errors=True)
            (self.tmp / "resume.json").unlink(missing_ok=True)
            self.write_json(MARKER, {"format": FORMAT_VERSION, "id": self.final.name, "kind": self.kind,
                                     "completed": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
            self.tmp.rename(self.final)
        elif not (self.tmp / "checkpoint").is_dir():  # a training checkpoint stays for btk resume
            shutil.rmtree(self.tmp, ignore_errors=True)

    def path(self, name: str) -> Path:
        """Where file ``name`` goes while the run is being written."""
        return self.tmp / name

    def write_json(self, name: str, obj: Any) -> None:
        """Write ``obj`` as indented JSON."""
        self.path(name).write_text(json.dumps(obj, indent=1, default=json_default) + "\n")

    def write_csv(self, name: str, header: list[str], rows: Iterator[list[Any]] | list[list[Any]]) -> None:
        """Write rows under ``header``."""
        with open(self.path(name), "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(header)
            writer.writerows(rows)


class ResultDir:
    """A new result directory under ``parent`` (``<time>-<label>``, made unique) that is written
    under a hidden ``.<id>.partial`` name and renamed when the ``with`` block ends without an
    error; an error or an interruption removes it. For results that are not runs (predictions,
    heat maps, degraded copies)."""

    def __init__(self, parent: Path | str, label: str) -> None:
        self.final = unique_dir(Path(parent), new_run_id(label))
        self.tmp = self.final.parent / f".{self.final.name}.partial"

    def __enter__(self) -> ResultDir:
        self.tmp.mkdir(parents=True)
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.tmp.rename(self.final)
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def path(self, name: str) -> Path:
        """Where file ``name`` goes while the directory is being written."""
        return self.tmp / name


def json_default(obj: Any) -> Any:
    """What ``json.dumps`` cannot write by itself: NumPy values, paths, frozen records."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, tuple):
        return list(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write ``obj`` to ``path`` as indented JSON through a temporary file (never half-written)."""
    tmp = path.with_name(f".{path.name}.partial")
    tmp.write_text(json.dumps(obj, indent=1, default=json_default) + "\n")
    tmp.replace(path)


def listing_sha256(sources: list[str]) -> str:
    """SHA-256 over the sorted input names with their file sizes: what a run was adapted or
    calibrated on."""
    import hashlib

    h = hashlib.sha256()
    for src in sorted(sources):
        size = os.path.getsize(src) if os.path.isfile(src) else -1
        h.update(f"{src}\t{size}\n".encode())
    return h.hexdigest()
