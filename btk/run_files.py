"""A run directory's files: written under a hidden ``.<id>.partial`` name and renamed when
complete, so a reader never sees half of one (the same for other results), and read back by the
run's record (:class:`RunFiles`, the file-reading methods of :class:`btk.runs.Run`)."""

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
from btk.record import SUBSETS

FORMAT_VERSION = 1
MARKER = "btk-run.json"
EVALUATIONS = "evaluations"  # btk evaluate's default folder inside a run


def new_run_id(name: str) -> str:
    """``YYYYmmdd-HHMMSS-name``: sortable and readable."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{name}" if name else stamp


def unique_dir(parent: Path, run_id: str) -> Path:
    """``parent/run_id``, with a numeric suffix if that name is taken, and claimed for this
    process: its hidden ``.<id>.partial`` folder is made here, at once and exclusively (with the
    folders above it), so processes that start in the same second (the tasks of a job array)
    never share a name. The writer that fills the folder (:class:`RunWriter`, :class:`ResultDir`,
    :class:`btk.checkpoint.PartialRun`) renames it when done and removes it, with the folders
    made here, when the work fails."""
    made = make_folder(parent)
    path, k = parent / run_id, 2
    while True:
        hidden = parent / f".{path.name}.partial"
        if not path.exists():
            try:
                hidden.mkdir()
            except FileExistsError:
                pass
            else:
                if not path.exists():  # not finished by another process between the two looks
                    _CLAIMED[hidden] = made
                    return path
                hidden.rmdir()
        path, k = parent / f"{run_id}-{k}", k + 1


_CLAIMED: dict[Path, list[Path]] = {}  # a claimed hidden folder -> the folders made above it


def check_writable(parent: Path | str, what: str = "--out") -> Path:
    """``parent``, after checking that a new directory can be made in it: it, or the nearest folder
    above it that exists, is a folder one can write in. Nothing is created (the result's writer
    makes the folders, and removes the ones it made if the work fails: :func:`make_folder`).
    Every command that writes calls this before any long work.

    Raises:
        BtkError: one line naming the folder and why it cannot be written.
    """
    parent = Path(parent)
    existing = parent
    while not existing.exists() and not existing.is_symlink() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        blocker = "" if existing == parent else f" ({existing} is not a folder)"
        raise BtkError(f"{what} {parent}: cannot write there: not a folder{blocker}")
    try:
        probe = existing / f".btk-write-check-{os.getpid()}"
        probe.mkdir()
        probe.rmdir()
    except OSError as exc:
        raise BtkError(f"{what} {parent}: cannot write there ({exc.strerror or exc})") from None
    return parent


def check_file_writable(path: Path | str, what: str) -> Path:
    """``path``, after checking that a file can be written there (its folder exists and takes a
    new file; it is not a folder). Every command that writes one file (``--pairs``, ``--preview``)
    calls this before its work, and writes through :func:`partial_file`.

    Raises:
        BtkError: one line naming the file and why it cannot be written.
    """
    path = Path(path)
    if path.is_dir():
        raise BtkError(f"{what} {path}: a folder; give a file name")
    if not path.parent.is_dir():
        raise BtkError(f"{what} {path}: cannot write there: no folder {path.parent}")
    probe = partial_file(path)
    try:
        probe.touch(exist_ok=False)
        probe.unlink()
    except OSError as exc:
        raise BtkError(f"{what} {path}: cannot write there ({exc.strerror or exc})") from None
    return path


def partial_file(path: Path) -> Path:
    """The hidden name under which file ``path`` is written before it is renamed to ``path`` (its
    suffix kept, for writers that go by it)."""
    return path.with_name(f".{path.stem}.{os.getpid()}.partial{path.suffix}")


def make_folder(path: Path) -> list[Path]:
    """Make folder ``path`` and the missing folders above it; the folders made, deepest first
    (for :func:`remove_made`)."""
    made, p = [], Path(path)
    while not p.exists() and p != p.parent:
        made.append(p)
        p = p.parent
    Path(path).mkdir(parents=True, exist_ok=True)
    if Path(path) in _CLAIMED:  # claimed by unique_dir, with the folders made above it
        made = [Path(path), *_CLAIMED.pop(Path(path))]
    return made


def remove_made(made: list[Path]) -> None:
    """Remove the folders :func:`make_folder` made, deepest first, as long as they are empty: a
    failed command leaves no empty folder behind."""
    for p in made:
        try:
            p.rmdir()
        except FileNotFoundError:
            continue
        except OSError:  # not empty: something else is kept there
            return


class RunWriter:
    """Context manager that writes into ``.<id>.partial`` and renames it to ``<id>`` on success."""

    def __init__(self, final: Path, kind: str = "run") -> None:
        self.final = final
        self.kind = kind
        self.tmp = final.parent / f".{final.name}.partial"

    def __enter__(self) -> RunWriter:
        self.made = make_folder(self.tmp)  # training may have checkpointed into it already
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
            remove_made(self.made)

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
        self.made = make_folder(self.tmp)
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.tmp.rename(self.final)
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)
            remove_made(self.made)

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


class RunFiles:
    """The methods of :class:`btk.runs.Run` that read its files: predictions, ``split.csv``,
    label issues, sweeps, examples."""

    path: Path
    classes: tuple[str, ...]
    metrics: Any
    _cache: dict[str, Any]

    @property
    def name(self) -> str:
        """The run directory's name."""
        return self.path.name

    def predictions(self) -> list[dict[str, str]]:
        """The rows of ``predictions.csv``."""
        with open(self.path / "predictions.csv", newline="") as fh:
            return list(csv.DictReader(fh))

    def model_sha256(self) -> str | None:
        """The SHA-256 of the run's ``model.keras`` (``None``: it has none): a copy of a run has its
        original's."""
        import hashlib

        path = self.path / "model.keras"
        if not path.is_file():
            return None
        with open(path, "rb") as fh:
            return hashlib.file_digest(fh, "sha256").hexdigest()

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
        """The sources of ``subset`` (train, val, test or another name in ``split.csv``), in
        ``split.csv`` order."""
        wanted = SUBSETS.get(subset, subset)
        return [r["source"] for r in self.split_rows() if r["subset"] == wanted]

    def split_table(self) -> list[list[str]]:
        """The rows of ``split.csv`` as lists, in its column order: for a run that keeps its
        origin's split (``btk calibrate`` on its own images, ``btk adapt``)."""
        return [[r["source"], r["label"], r.get("group", ""), r["subset"], r.get("copy_in_train") or ""]
                for r in self.split_rows()]

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

