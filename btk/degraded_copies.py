"""``btk degrade``'s work: degraded copies of a dataset on disk, and the first image of one."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from btk.dataset import iter_entries
from btk.degraders import Degradation
from btk.errors import BtkError
from btk.types import ReadOptions


@dataclass
class CopyReport:
    """What :func:`write_degraded_copies` did: images written, inputs skipped with their reasons."""

    written: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)


def first_image(reader: Any, path: Path | None, reader_options: dict[str, str], size: int = 256) -> np.ndarray:
    """The first image ``reader`` finds at ``path``, ``size`` px, three channels (uint8).

    Raises:
        BtkError: it cannot be read.
    """
    entry, samples = next(iter_entries(reader, path, ReadOptions(size, 3, reader_options)))
    if isinstance(samples, str):
        raise BtkError(f"cannot read {entry.source}: {samples}")
    return samples[0].image


def copy_path(out: Path, source: str, series: str | None, suffix: str, used: set[Path]) -> Path:
    """Where the degraded copy of ``source`` (a sample's source, with or without its ``[k]``
    slice index) goes in ``out``: the same relative path, a file's extension (letters and digits
    after its last dot, e.g. ``.jpg``) replaced by ``suffix`` and ``.png``. A series read from a
    folder (``dir#<series>``, ``series`` its SeriesInstanceUID) keeps its whole UID
    (:func:`btk.file_names.uid_name`). Every component is made safe and the path stays in
    ``out``; a name already in ``used`` (two inputs, one name) gets ``-2``, ``-3``... The path
    is added to ``used``."""
    from btk.file_names import inside, safe_relative, uid_name

    where = re.sub(r"\[\d+\]$", "", source)
    if series and where.endswith(f"#{series}"):
        parts = safe_relative(where[:-len(series) - 1])
        stem = f"{parts.pop() if parts else 'series'}#{uid_name(series)}"
    else:
        parts = safe_relative(where) or ["image"]
        last = PurePosixPath(parts.pop())
        stem = last.stem if re.fullmatch(r"\.[A-Za-z][A-Za-z0-9]*", last.suffix) and last.stem else last.name
    target, n = inside(out, *parts, f"{stem}{suffix}.png"), 1
    while target in used:
        n += 1
        target = inside(out, *parts, f"{stem}{suffix}-{n}.png")
    used.add(target)
    return target


def write_degraded_copies(reader: Any, path: Path | None, reader_options: dict[str, str], degradation: Degradation,
                          out: Path, seed: int = 0) -> CopyReport:
    """Write every image ``reader`` finds at ``path``, degraded, as PNG under ``out`` in the same
    layout (a volume's or series' slices get ``_k`` suffixes; :func:`copy_path` names them).
    Unreadable inputs are skipped and listed.

    Raises:
        BtkError: ``out`` exists and is not empty.
    """
    import cv2

    if out.exists() and any(out.iterdir()):
        raise BtkError(f"output folder is not empty: {out}")
    out.mkdir(parents=True, exist_ok=True)
    report = CopyReport()
    used: set[Path] = set()
    for entry, samples in iter_entries(reader, path, ReadOptions(None, 3, reader_options)):
        if isinstance(samples, str):
            report.skipped.append((entry.source, samples))
            continue
        for k, sample in enumerate(samples):
            target = copy_path(out, sample.source, (sample.meta or {}).get("series"),
                               f"_{k}" if len(samples) > 1 else "", used)
            target.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(target), degradation.apply(sample.image[None], seed)[0])
            report.written += 1
    return report


def degrade_dataset(reader: Any, path: Path | None, reader_options: dict[str, str], degradation: Degradation,
                    out: Path, seed: int = 0) -> tuple[CopyReport, Path]:
    """``btk degrade``'s whole job: :func:`write_degraded_copies` into a new result directory
    under ``out`` (``<time>-degrade-<label>``, complete or absent).

    Raises:
        BtkError: ``out`` cannot be written.
    """
    from btk.run_files import ResultDir, check_writable

    label = degradation.label.replace(":", "-").replace(",", "-").replace("=", "")
    with ResultDir(check_writable(out), f"degrade-{label}") as folder:
        report = write_degraded_copies(reader, path, reader_options, degradation, folder.tmp, seed)
    return report, folder.final
