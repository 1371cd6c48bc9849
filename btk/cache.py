"""A decode-once cache of loaded datasets: the resized uint8 images in one raw file, read as a
memory map, with labels, groups, sources and splits beside it.

Images are streamed into the file as they are decoded, so a first load never holds the whole
dataset in memory; :func:`gather` and :func:`iter_rows` read rows with positional reads, so the
data stay in the kernel's page cache (shared, reclaimable) instead of in the process.

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
from collections.abc import Iterable
from pathlib import Path
from typing import Any, BinaryIO, cast

import numpy as np

from btk.types import Entry, ReadOptions

IMAGES = "images.u8"
META = "meta.json"


def cache_root() -> Path | None:
    """The cache folder, or ``None`` when caching is off."""
    value = os.environ.get("BTK_CACHE_DIR", "")
    if value.lower() in ("off", "0", "none"):
        return None
    return Path(value).expanduser() if value else Path.home() / ".cache" / "btk"


def _paths_of(entry: Entry, root: str | None, root_is_dir: bool) -> set[str]:
    """The files an entry reads, each once: its source under the data path, and every path in
    its payload, all as real paths (a payload path given through a symbolic link or relative to
    the working folder names the same file as the source under the resolved data path)."""
    paths = set()
    if root is not None:
        paths.add(os.path.realpath(os.path.join(root, entry.source)) if root_is_dir else root)
    stack = [entry.payload]
    while stack:
        item = stack.pop()
        if isinstance(item, os.PathLike):
            paths.add(os.path.realpath(item))
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
    return paths


def file_listing_digest(path: Path | None, entries: list[Entry]) -> dict[str, Any]:
    """A fingerprint of what a reader found: how many entries and files, their total size, and a
    SHA-256 over the sorted file list with each file's size (independent of modification times,
    so a copy of the same files elsewhere has the same digest)."""
    h = hashlib.sha256()
    root = str(Path(path).resolve()) if path else None
    root_is_dir = root is not None and os.path.isdir(root)
    rows = []
    for entry in entries:
        for p in _paths_of(entry, root, root_is_dir):
            try:
                size = os.stat(p).st_size
            except OSError:
                continue
            rows.append((os.path.relpath(p, root) if root_is_dir else os.path.basename(p), size))
    rows = sorted(set(rows))
    for name, size in rows:
        h.update(f"{name}|{size}\n".encode())
    if not rows:  # generated data: the entries themselves
        for entry in entries:
            h.update(f"{entry.source}|{entry.label}|{entry.split}\n".encode())
    return {"entries": len(entries), "files": len(rows), "bytes": sum(size for _, size in rows),
            "sha256": h.hexdigest()}


def dataset_key(reader: str, path: Path | None, options: ReadOptions, entries: list[Entry]) -> str:
    """A hex digest of everything the loaded images depend on (see the module docstring)."""
    h = hashlib.sha256()
    root = str(Path(path).resolve()) if path else None
    head = {"reader": reader, "path": root, "size": options.image_size,
            "channels": options.channels, "extra": sorted((options.extra or {}).items()),
            "format": 3}  # 3: inputs read in part are noted; truncated JPEGs are unreadable
    if options.crop != "none":
        head["crop"] = options.crop
    h.update(json.dumps(head, sort_keys=True, default=str).encode())
    root_is_dir = root is not None and os.path.isdir(root)
    for entry in entries:
        h.update(f"\n{entry.source}|{entry.label}|{entry.group}|{entry.split}".encode())
        for p in sorted(_paths_of(entry, root, root_is_dir)):
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
        images = np.memmap(folder / IMAGES, dtype=np.uint8, mode="r", shape=tuple(meta["shape"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if len(images) != len(meta["sources"]):
        return None
    os.utime(folder / META)  # most recently used
    return {"images": images, **meta}


class Writer:
    """Streams decoded images into a new cache entry; :meth:`finish` makes it visible at once
    (a half-written entry is never read). Raises ``OSError`` where the cache cannot be written.

    The unfinished entry (``.KEY.PID.tmp``) is made by the first :meth:`add`, not here: a caller
    holds the writer before anything is on disk, so an interruption at any moment after the entry
    exists (Ctrl-C, or SIGTERM raising :class:`btk.interrupt.Terminated`) reaches a ``finally``
    that can :meth:`abort` it."""

    def __init__(self, key: str) -> None:
        root = cache_root()
        if root is None:
            raise OSError("the cache is off")
        root.mkdir(parents=True, exist_ok=True)
        if not os.access(root, os.W_OK):
            raise OSError(f"{root}: not writable")
        self.key, self.root = key, root
        self.tmp = root / f".{key}.{os.getpid()}.tmp"
        self.fh: BinaryIO | None = None  # opened by the first add
        self.count = 0

    def _open(self) -> BinaryIO:
        self.tmp.mkdir(exist_ok=True)
        self.fh = open(self.tmp / IMAGES, "wb")  # noqa: SIM115 (open while the writer streams; closed in finish/abort)
        return self.fh

    def add(self, image: np.ndarray) -> None:
        """Append one uint8 image (the first one makes the unfinished entry)."""
        (self.fh or self._open()).write(np.ascontiguousarray(image, dtype=np.uint8).tobytes())
        self.count += 1

    def read_back(self, shape: tuple[int, ...]) -> np.ndarray:
        """The images written so far, as an in-memory array (to carry on without the cache)."""
        if self.fh is None:
            return np.zeros((0, *shape), np.uint8)
        self.fh.flush()
        return np.fromfile(self.tmp / IMAGES, dtype=np.uint8, count=self.count * int(np.prod(shape))).reshape(
            (self.count, *shape))

    def finish(self, shape: tuple[int, ...], labels: list, groups: list, sources: list, splits: list,
               skipped: list[tuple[str, str]], notes: list[tuple[str, str]] | None = None) -> np.memmap:
        """Write the metadata, publish the entry and return its images as a memory map."""
        (self.fh or self._open()).close()
        meta = {"shape": [self.count, *shape], "labels": [None if v is None else str(v) for v in labels],
                "groups": [str(g) for g in groups], "sources": [str(s) for s in sources],
                "splits": [str(s) for s in splits], "skipped": [list(s) for s in skipped],
                "notes": [list(s) for s in notes or []], "created": time.time()}
        (self.tmp / META).write_text(json.dumps(meta))
        final = self.root / self.key
        if final.exists():  # another process cached the same files meanwhile
            shutil.rmtree(self.tmp, ignore_errors=True)
        else:
            self.tmp.rename(final)
        return np.memmap(final / IMAGES, dtype=np.uint8, mode="r", shape=(self.count, *shape))

    def abort(self) -> None:
        """Drop the unfinished entry (nothing to do before the first image)."""
        try:
            if self.fh is not None:
                self.fh.close()
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)


def gather(images: np.ndarray, index: Any) -> np.ndarray:
    """``images[index]`` as an in-memory array; rows of a memory-mapped cache are read with
    positional reads, which leave the mapping untouched (its pages do not join the process)."""
    index = np.asarray(index)
    if not isinstance(images, np.memmap) or not getattr(images, "filename", None) or index.dtype == bool:
        return np.asarray(images[index])
    row = int(np.prod(images.shape[1:])) * images.itemsize
    out = np.empty((len(index), *images.shape[1:]), images.dtype)
    flat = out.reshape(len(index), -1).view(np.uint8)
    fd = os.open(cast(str, images.filename), os.O_RDONLY)  # a file name: checked above
    try:
        for k, i in enumerate(index.tolist()):
            flat[k] = np.frombuffer(os.pread(fd, row, images.offset + i * row), np.uint8)
    finally:
        os.close(fd)
    return out


def iter_rows(images: np.ndarray, chunk: int = 64) -> Iterable[np.ndarray]:
    """Every image in order, read in chunks through :func:`gather`."""
    for start in range(0, len(images), chunk):
        yield from gather(images, np.arange(start, min(start + chunk, len(images))))


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


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def stale_partials() -> list[Path]:
    """Unfinished entries (``.KEY.PID.tmp``) whose writing process is gone: what a process
    killed without warning (SIGKILL, a power cut) leaves behind."""
    root = cache_root()
    if root is None or not root.is_dir():
        return []
    out = []
    for folder in root.iterdir():
        parts = folder.name.split(".")
        if folder.is_dir() and folder.name.startswith(".") and folder.name.endswith(".tmp") and len(parts) >= 4:
            try:
                pid = int(parts[-2])
            except ValueError:
                continue
            if not _pid_alive(pid):
                out.append(folder)
    return out


def clear() -> int:
    """Remove every cache entry, and every unfinished one whose process is gone
    (:func:`stale_partials`); returns how many were removed."""
    root = cache_root()
    removed = 0
    for key, _, _ in entries():
        assert root is not None  # entries() is empty when the cache is off
        shutil.rmtree(root / key, ignore_errors=True)
        removed += 1
    for folder in stale_partials():
        shutil.rmtree(folder, ignore_errors=True)
        removed += 1
    return removed
