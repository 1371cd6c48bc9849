"""Shared helpers for volume readers (DICOM series, NIfTI): slice choice, intensity to uint8,
labels from a manifest or class folders, and the reader-option parsing they share."""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

import numpy as np

from btk.errors import BtkError


def choose_slices(n: int, rule: str, content: list[float] | None = None) -> list[int]:
    """Slice indices out of ``n`` by ``rule``: ``middle``, ``all``, ``every:N`` or ``content:F``
    (slices whose share of non-background pixels is at least F; ``content`` gives each share).

    Raises:
        BtkError: an unknown rule or a bad number.
    """
    name, _, arg = rule.partition(":")
    try:
        if name == "middle":
            return [n // 2]
        if name == "all":
            return list(range(n))
        if name == "every":
            step = int(arg)
            if step < 1:
                raise ValueError
            return list(range(step // 2 if n > step else 0, n, step)) or [n // 2]
        if name == "content":
            share = float(arg)
            if content is None:
                raise BtkError("slices=content needs per-slice content")
            keep = [k for k in range(n) if content[k] >= share]
            return keep or [int(np.argmax(content))]
    except ValueError:
        raise BtkError(f"bad slice rule {rule!r}: the number after ':' is wrong") from None
    raise BtkError(f"unknown slice rule {rule!r} (rules: middle, all, every:N, content:F)")


def to_uint8(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """Map ``[low, high]`` linearly onto 0..255 (clipped)."""
    if high <= low:
        return np.zeros(values.shape, np.uint8)
    scaled = (values.astype(np.float32) - np.float32(low)) * np.float32(255 / (high - low))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def read_manifest(path: str | Path) -> dict[str, str]:
    """A CSV with a ``label`` column and a ``path`` or ``series`` column: key -> label.

    Raises:
        BtkError: the file is missing or lacks the columns.
    """
    path = Path(path)
    if not path.exists():
        raise BtkError(f"manifest not found: {path}")
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        fields = set(reader.fieldnames or [])
        key = "path" if "path" in fields else "series" if "series" in fields else None
        if key is None or "label" not in fields:
            raise BtkError(f"manifest {path} needs a 'label' column and a 'path' or 'series' column")
        return {row[key].strip(): row["label"].strip() for row in reader}


def folder_label(root: Path, file: Path) -> tuple[str | None, str]:
    """(class, split) from ``ROOT/[Training|Testing]/<class>/...`` or ``ROOT/<class>/...``; class
    ``None`` when the file sits directly in ROOT."""
    parts = file.relative_to(root).parts[:-1]
    splits = {"training": "train", "train": "train", "testing": "test", "test": "test"}
    split = ""
    if parts and parts[0].lower() in splits:
        split, parts = splits[parts[0].lower()], parts[1:]
    return (parts[0] if parts else None), split


def find_files(path: Path | str | None, reader: str, keep: Callable[[Path], bool],
               what: str) -> tuple[Path, list[Path]]:
    """``(base, files)``: ``path`` itself if it is a file, else every file under it that ``keep``
    accepts, sorted; ``base`` is what sources are relative to.

    Raises:
        BtkError: no path, a missing path, or no such files (``what`` names them).
    """
    if path is None:
        raise BtkError(f"the {reader} reader needs --data PATH")
    root = Path(path)
    if not root.exists():
        raise BtkError(f"data path not found: {root}")
    if root.is_file():
        return root.parent, [root]
    files = sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".") and keep(p))
    if not files:
        raise BtkError(f"no {what} in {root}")
    return root, files
