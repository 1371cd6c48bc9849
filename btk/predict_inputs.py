"""The inputs of ``btk predict``, gathered before any model is loaded: every path checked, given
its reader and scanned, so that a missing path, an unknown file or a folder without images is
reported at once.

A folder read by the ``folder`` reader (the default for folders that hold no DICOM or NIfTI
files) is scanned recursively for image files, with or without class sub-folders. Each entry
keeps the name the user would write for it: the path as given, joined with the entry's path
inside a given folder.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from btk.errors import BtkError
from btk.plugins import PluginHost
from btk.types import Entry, ReadOptions
from btk.urls import split_url

READER_ORDER = ("dicom", "nifti", "folder")


@dataclass
class PredictInput:
    """One path given to ``btk predict``: its reader, the options to read it with and its entries
    (files, series, volumes)."""

    given: str  # the path as the user wrote it
    reader: Any
    options: ReadOptions
    entries: list[Entry] = field(default_factory=list)
    folder: bool = False  # a folder (else a file)

    def name(self, entry: Entry) -> str:
        """``entry``'s path as the user would write it: the given path itself for a file, the given
        folder joined with the entry's path inside it for a folder; for a server's entry its root (of
        a given study or series URL too) joined with the entry's path inside it."""
        if is_url(self.given):
            return f"{split_url(self.given)[0]}/{entry.source}"
        return os.path.join(self.given, entry.source) if self.folder else self.given


def is_url(path: str | Path) -> bool:
    """Whether ``path`` as given is an http(s) URL (a DICOMweb server) rather than a file."""
    return os.fspath(path).startswith(("http://", "https://"))


def pick_reader(host: PluginHost, path: Path, name: str | None) -> Any:
    """The reader for ``path``: ``name`` if given, else the first that says it can read it
    (DICOM and NIfTI before plain images, then any other reader with ``can_read``)."""
    if name:
        return host.readers.get(name)
    ordered = [] if is_url(path) else [host.readers.get(n) for n in READER_ORDER if n in host.readers]
    ordered += [r for r in host.readers if r.name not in READER_ORDER]  # a URL: readers of servers
    for reader in ordered:
        can_read = getattr(reader, "can_read", None)
        if can_read is not None and can_read(path):
            return reader
    raise BtkError(f"no reader recognises {path} (use --reader; readers: {', '.join(host.readers.names())})")


def file_entries(root: Path, can_read: Callable[[Path], bool]) -> list[Entry]:
    """Every file under folder ``root`` at any depth that ``can_read`` accepts (hidden files and
    folders left out), as unlabelled entries named by their path inside ``root``, sorted."""
    entries = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        inside = Path(folder).relative_to(root)
        for name in files:
            path = Path(folder) / name
            if not name.startswith(".") and can_read(path):
                rel = (inside / name).as_posix()
                entries.append(Entry(rel, None, rel, "", payload=path))
    entries.sort(key=lambda e: e.source)
    return entries


def gather_inputs(paths: Sequence[str | Path], host: PluginHost, base: ReadOptions,
                  reader_name: str | None = None, reader_options: dict[str, str] | None = None,
                  slices: str = "all") -> list[PredictInput]:
    """Check, recognise and scan every path, in order, before anything is decoded.

    Args:
        paths: files and folders as the user gave them.
        base: the image options to read with (the run's size, channels and crop,
            :meth:`btk.runs.Run.read_options`).
        reader_name: one reader for every path, else each path's own (:func:`pick_reader`).
        reader_options: ``-R`` options, passed to every reader.
        slices: the slice rule for readers that take one (series, volumes).

    Raises:
        BtkError: a path does not exist, no reader recognises it, or nothing readable is in it.

    A path that is an http(s) URL is not looked for on disk: a reader that takes URLs (the
    ``dicomweb`` reader) scans it, and its entries are named inside it, as a folder's are.
    """
    for path in paths:
        if not is_url(path) and not os.path.exists(path):
            raise BtkError(f"not found: {path}")
    inputs = []
    for path in paths:
        given = os.fspath(path)
        url = is_url(given)
        reader = pick_reader(host, given if url else Path(given), reader_name)  # type: ignore[arg-type]
        extra = dict(reader_options or {})
        if "slices" in getattr(reader, "options", ()) and "slices" not in extra:
            extra["slices"] = slices
        options = replace(base, extra=extra)
        folder = url or Path(given).is_dir()  # a server's entries are named inside it, as a folder's
        if folder and reader.name == "folder":  # its scan wants class folders: any image file here
            entries = file_entries(Path(given), reader.can_read)
        else:
            entries = reader.scan(given if url else Path(given), options)
        if not entries:
            raise BtkError(f"nothing to read in {given}: no image files, DICOM series or NIfTI volumes")
        inputs.append(PredictInput(given, reader, options, entries, folder))
    return inputs


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``K/N`` (the K-th of N shares, 1 <= K <= N) as ``(K, N)``; ``None`` for ``None``.

    Raises:
        BtkError: not K/N with 1 <= K <= N.
    """
    if text is None:
        return None
    k, _, n = str(text).partition("/")
    if not (k.strip().isdigit() and n.strip().isdigit()) or not 1 <= int(k) <= int(n):
        raise BtkError(f"--shard {text}: give K/N, the K-th of N shares (1 <= K <= N), e.g. --shard 2/8")
    return int(k), int(n)


def take_shard(inputs: list[PredictInput], shard: tuple[int, int]) -> dict[str, int]:
    """Keep, in ``inputs`` (changed in place), the ``shard`` ``(K, N)``-th contiguous share of all
    their entries in order: entries ``floor((K-1)M/N)`` to ``floor(KM/N)`` of the M. The shares
    of K = 1..N cover every entry once, in order, so their outputs put one after the other are
    the unsharded output. What was kept: ``{"k", "n", "first", "end", "of"}`` (entry indices).

    Raises:
        BtkError: the share holds no entry (fewer entries than shares).
    """
    k, n = shard
    total = sum(len(i.entries) for i in inputs)
    first, end = (k - 1) * total // n, k * total // n
    if first == end:
        raise BtkError(f"--shard {k}/{n}: no input in this share ({total} input(s) for {n} shares)")
    seen = 0
    for item in inputs:
        count = len(item.entries)
        item.entries = item.entries[max(first - seen, 0):max(end - seen, 0)]
        seen += count
    return {"k": k, "n": n, "first": first, "end": end, "of": total}
