"""A decode-once cache of loaded datasets: the resized uint8 images in a memory-mapped ``.npy``
file, with labels, groups, sources and splits beside it.

A cache entry is keyed by the reader, the data path, the image options and every scanned
file's modification time and size, so editing, adding or removing a file makes a new entry;
nothing is ever served stale. Entries live in ``$BTK_CACHE_DIR`` (default
``~/.cache/btk``); ``BTK_CACHE_DIR=off`` turns caching off. ``btk cache`` lists and clears them.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from btk.types import Entry, ReadOptions

IMAGES = "images.npy"
META = "meta.json"


def cache_root() -> Path | None:
    """The cache folder, or ``None`` when caching is off."""
    value = os.environ.get("BTK_CACHE_DIR", "")
    if value.lower() in ("off", "0", "none"):
        return None
    return Path(value).expanduser() if value else Path.home() / ".cache" / "btk"


def _paths_of(entry: Entry, root: Path | None) -> Iterable[str]:
    """The files an entry reads: its source under the data path, and every path in its payload."""
    if root is not None:
        yield str(root / entry.source) if root.is_dir() else str(root)
    stack = [entry.payload]
    while stack:
        item = stack.pop()
        if isinstance(item, os.PathLike):
            yield os.fspath(item)
        elif isinstance(item, (list, tuple)):
            stack.extend(item)


def dataset_key(reader: str, path: Path | None, options: ReadOptions, entries: list[Entry]) -> str:
    """A hex digest of everything the loaded images depend on (see the module docstring)."""
    h = hashlib.sha256()
    head = {"reader": reader, "path": str(Path(path).resolve()) if path else None, "size": options.image_size,
            "channels": options.channels, "extra": sorted((options.extra or {}).items()), "format": 1}
    h.update(json.dumps(head, sort_keys=True, default=str).encode())
    for entry in entries:
        h.update(f"\n{entry.source}|{entry.label}|{entry.group}|{entry.split}".encode())
        for p in _paths_of(entry, Path(path) if path else None):
            try:
                st = os.stat(p)
            except OSError:
                continue
            h.update(f"|{st.st_mtime_ns}:{st.st_size}".encode())
    return h.hexdigest()[:32]


def load_cached(key: str) -> dict[str, Any] | None:
    """The cached arrays for ``key`` (images memory-mapped, read-only), or ``None``."""
    root = cache_root()
    if root is None:
        return None
    folder = root / key
    try:
        meta = json.loads((folder / META).read_text())
        images = np.load(folder / IMAGES, mmap_mode="r")
    except (OSError, ValueError):
        return None
    if len(images) != len(meta["sources"]):
        return None
    os.utime(folder / META)  # most recently used
    return {"images": images, **meta}


def store(key: str, images: np.ndarray, labels: list, groups: list, sources: list, splits: list,
          skipped: list[tuple[str, str]]) -> None:
    """Write a cache entry (atomically: a half-written entry is never read). Failures to
    write (a full or read-only disk) are ignored: the cache is an optimisation."""
    root = cache_root()
    if root is None:
        return
    tmp = root / f".{key}.{os.getpid()}.tmp"
    try:
        tmp.mkdir(parents=True, exist_ok=True)
        np.save(tmp / IMAGES, np.ascontiguousarray(images))
        meta = {"labels": [None if v is None else str(v) for v in labels], "groups": [str(g) for g in groups],
                "sources": [str(s) for s in sources], "splits": [str(s) for s in splits],
                "skipped": [list(s) for s in skipped], "created": time.time()}
        (tmp / META).write_text(json.dumps(meta))
        final = root / key
        if final.exists():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.rename(final)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)


def entries() -> list[tuple[str, int, float]]:
    """Cache entries as (key, bytes, last used time), most recent first."""
    root = cache_root()
    if root is None or not root.is_dir():
        return []
    out = []
    for folder in root.iterdir():
        if folder.is_dir() and not folder.name.startswith(".") and (folder / META).is_file():
            size = sum(f.stat().st_size for f in folder.iterdir() if f.is_file())
            out.append((folder.name, size, (folder / META).stat().st_mtime))
    return sorted(out, key=lambda e: -e[2])


def clear() -> int:
    """Remove every cache entry; returns how many were removed."""
    root = cache_root()
    removed = 0
    for key, _, _ in entries():
        shutil.rmtree(root / key, ignore_errors=True)
        removed += 1
    return removed
