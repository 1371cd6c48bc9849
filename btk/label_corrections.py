"""Label corrections a user keeps beside the data (``--labels FILE``), not edits of the dataset.

The file is a CSV with a header: ``path`` (the image as a run's ``split.csv`` and
``label_issues.csv`` name it) and ``label`` (a class name, or ``drop`` to leave the image out).
It is applied to whatever a reader read, so every reader takes it; the run records the file's
path, its SHA-256 and what it changed.
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from btk.dataset import Dataset
from btk.errors import BtkError

DROP = "drop"
"""The label that leaves an image out."""


def label_rows(path: Path) -> list[dict[str, str]]:
    """The rows of a ``path,label`` CSV (corrections, or a filled-in ``btk select`` list).

    Raises:
        BtkError: a missing or unreadable file, no ``path`` and ``label`` columns.
    """
    try:
        with open(path, newline="") as fh:
            reader = csv.DictReader(fh)
            rows = list(reader)
            columns = list(reader.fieldnames or [])
    except (OSError, UnicodeDecodeError) as exc:
        raise BtkError(f"--labels {path}: {getattr(exc, 'strerror', None) or exc}") from None
    if not {"path", "label"} <= set(columns):
        found = f"found {', '.join(columns)}" if columns else "the file is empty"
        raise BtkError(f"--labels {path}: the columns must be path and label ({found})")
    return rows


def read_corrections(path: Path | str) -> dict[str, str]:
    """``path -> label or drop`` from a corrections file.

    Raises:
        BtkError: a missing or unreadable file, no ``path`` and ``label`` columns (an empty file), no
            rows, a path twice.
    """
    path = Path(path)
    rows = label_rows(path)
    if not rows:
        raise BtkError(f"--labels {path}: no corrections in it (a header and no rows): leave out --labels")
    out: dict[str, str] = {}
    for r in rows:
        key = (r["path"] or "").strip()
        if key in out:
            raise BtkError(f"--labels {path}: {key} is listed twice")
        out[key] = (r["label"] or "").strip()
    return out


def apply_corrections(data: Dataset, path: Path | str) -> tuple[Dataset, dict[str, Any]]:
    """``data`` with the corrections of ``path`` applied (labels changed, ``drop``ped images left
    out) and the record a run keeps: file, SHA-256, counts (also in the data's fingerprint, which
    the run's provenance records).

    Raises:
        BtkError: paths that are not in the data (how many, and the first five), label names the
            data does not have (a correction cannot invent a class).
    """
    corrections = read_corrections(path)
    sources = [str(s) for s in data.sources]
    index = {s: i for i, s in enumerate(sources)}
    missing = [p for p in corrections if p not in index]
    if missing:
        raise BtkError(f"--labels {path}: {len(missing)} path(s) not in the data, e.g. {', '.join(missing[:5])}")
    known = sorted({str(x) for x in data.labels})
    unknown = sorted({v for v in corrections.values() if v != DROP and v not in known})
    if unknown:
        raise BtkError(f"--labels {path}: unknown label(s) {', '.join(unknown)} (the data's classes: "
                       f"{', '.join(known)}; or {DROP})")
    labels = np.array(data.labels, dtype=object)
    changed = 0
    for p, label in corrections.items():
        if label != DROP and labels[index[p]] != label:
            labels[index[p]] = label
            changed += 1
    keep = np.array([corrections.get(s) != DROP for s in sources])
    record = {"file": str(path), "sha256": hashlib.sha256(Path(path).read_bytes()).hexdigest(),
              "entries": len(corrections), "changed": changed, "dropped": int((~keep).sum())}
    corrected = replace(data, images=data.images[keep] if not keep.all() else data.images,
                        labels=np.array(labels[keep].tolist()), groups=data.groups[keep], sources=data.sources[keep],
                        splits=data.splits[keep], cache={}, fingerprint={**data.fingerprint, "labels": record})
    return corrected, record


def write_corrections(run: Any, path: Path | str, top: int = 0) -> int:
    """Write a corrections file (``--labels``) from ``run``'s label issues
    (:meth:`btk.runs.Run.label_issues`): each flagged image with its likely label, least
    self-confident first (``top`` > 0: only the first ``top``), for a person to review (change a
    label, write ``drop``, or delete the line) before training with it. Returns the lines written.

    Raises:
        BtkError: a run without label issues, a file that cannot be written.
    """
    issues = run.label_issues()
    if top > 0:
        issues = issues[:top]
    try:
        with open(path, "w", newline="") as fh:
            out = csv.writer(fh)
            out.writerow(["path", "label"])
            for row in issues:
                out.writerow([row["path"], row["likely"]])
    except OSError as exc:
        raise BtkError(f"cannot write {path}: {exc.strerror or exc}") from None
    return len(issues)

