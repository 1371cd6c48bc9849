"""Load a reader's samples into arrays: images (N x H x W x C, uint8) with labels, groups, splits.

Decoding runs on a thread pool (OpenCV and friends release the GIL). An entry the reader
cannot decode is counted and listed as skipped, or stops the load under ``strict``. A loaded
dataset is cached (:mod:`btk.cache`): the next load of the same files with the same options
maps the cached images instead of decoding again.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np

from btk.errors import BtkError, UnreadableInputError
from btk.framing import CROPS, frame_with_box
from btk.types import Entry, Reader, ReadOptions, Sample


@dataclass
class Dataset:
    """Samples as parallel arrays; ``images`` is uint8 N x H x W x C."""

    images: np.ndarray
    labels: np.ndarray
    groups: np.ndarray
    sources: np.ndarray
    splits: np.ndarray
    skipped: list[tuple[str, str]] = field(default_factory=list)
    notes: list[tuple[str, str]] = field(default_factory=list)  # inputs read in part: (source, what was left out)
    cache: dict[str, Any] = field(default_factory=dict, repr=False)  # derived data (fingerprints, clusters)
    fingerprint: dict[str, Any] = field(default_factory=dict)  # what was read (see load_dataset)

    def __len__(self) -> int:
        return len(self.images)


def input_notes(source: str, samples: list[Sample]) -> list[tuple[str, str]]:
    """``[(source, note)]`` when the samples of input ``source`` say what their reader left out of
    it (``Sample.meta["note"]``), else ``[]``."""
    notes = dict.fromkeys(str(s.meta["note"]) for s in samples if s.meta.get("note"))
    return [(source, note) for note in notes]


def warn_unread(data: Dataset, warn: Any) -> None:
    """Say through ``warn(line)`` what of ``data``'s inputs was not read: how many inputs could not
    be read (with the first), and each input read in part (what was left out)."""
    if data.skipped:
        warn(f"skipped {len(data.skipped)} unreadable input(s), e.g. {data.skipped[0][0]}: {data.skipped[0][1]}")
    if data.notes:
        warn(f"{len(data.notes)} input(s) read in part:")
        for source, note in data.notes:
            warn(f"  {source}: {note}")


def unread_records(skipped: list[tuple[str, str]], notes: list[tuple[str, str]]) -> dict[str, Any]:
    """What a result's ``metrics.json`` records of the inputs not read: ``skipped`` (source and
    reason) and, when there are any, ``read_in_part`` (source and what was left out)."""
    out: dict[str, Any] = {"skipped": [{"source": s, "reason": r} for s, r in skipped]}
    if notes:
        out["read_in_part"] = [{"source": s, "left_out": n} for s, n in notes]
    return out


def release_freed_memory() -> None:
    """Hand the heap memory freed after decoding back to the system (glibc keeps it in per-thread
    arenas otherwise: about 200 MiB after decoding SARTAJ at 256 px on two threads, which would
    stay in the process through training). A no-op where there is no glibc."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim(0)
    except (OSError, AttributeError):
        pass


def as_hwc(image: np.ndarray, channels: int, source: str) -> np.ndarray:
    """A reader's uint8 ``image`` (H x W or H x W x C) as H x W x ``channels``.

    Raises:
        BtkError: not uint8, or not a 2D image.
    """
    if image.dtype != np.uint8:
        raise BtkError(f"reader returned {image.dtype} pixels for {source}; expected uint8")
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3:
        raise BtkError(f"reader returned an image of shape {image.shape} for {source}; expected 2D")
    if image.shape[-1] == 1 and channels == 3:
        image = np.repeat(image, 3, axis=-1)
    elif image.shape[-1] == 3 and channels == 1:
        image = image.mean(axis=-1, keepdims=True).round().astype(np.uint8)
    return image


@contextmanager
def opencv_threads(n: int) -> Iterator[None]:
    """OpenCV's own thread count set to ``n`` inside the block (then set back). With a pool of
    decoding threads, one OpenCV thread each does the same work for less CPU time: measured on
    SARTAJ's JPEGs, 2.2 ms instead of 2.9 ms of CPU per image read and cropped to the head, the
    pixels identical."""
    import cv2

    before = cv2.getNumThreads()
    cv2.setNumThreads(n)
    try:
        yield
    finally:
        cv2.setNumThreads(before)


def iter_entries(
    reader: Reader,
    path: Path | None,
    options: ReadOptions,
    strict: bool = False,
    progress: Callable[[int, int], None] | None = None,
    workers: int | None = None,
    transform: Callable[[list[Sample]], Any] | None = None,
    entries: list[Entry] | None = None,
) -> Iterator[tuple[Entry, Any]]:
    """Scan, then load entries on a thread pool, yielding ``(entry, samples)`` in scan order.

    An entry that cannot be read yields ``(entry, reason)`` with the reason as a string, or
    raises under ``strict``. ``transform`` runs on each entry's samples inside the worker
    (e.g. to fingerprint them without keeping the pixels). ``entries``: the scan's result when
    the caller has it already.

    Raises:
        BtkError: the reader found nothing, or (``strict``) an entry could not be read.
    """
    if entries is None:
        entries = reader.scan(path, options)
    if not entries:
        raise BtkError(f"reader '{reader.name}' found no images at {path}")

    if options.crop not in CROPS:  # checked once here, not reported as every image being unreadable
        raise BtkError(f"unknown crop '{options.crop}' (known: {', '.join(CROPS)})")
    cropping = options.crop != "none"
    reader_options = replace(options, image_size=None, crop="none") if cropping else options

    def load_one(entry: Entry) -> Any:
        try:
            samples = reader.load(entry, reader_options)
            if cropping:  # the square cut from each image is kept: a map of it can be put back (unframe)
                framed = [(s, *frame_with_box(s.image, options.image_size, options.crop)) for s in samples]
                samples = [replace(s, image=image, meta={**s.meta, "framing": {"box": box, "shape": s.image.shape[:2]}})
                           for s, image, box in framed]
        except UnreadableInputError as exc:
            return str(exc)
        except (OSError, ValueError) as exc:
            return f"{type(exc).__name__}: {exc}"
        return transform(samples) if transform else samples

    n_workers = workers or os.cpu_count() or 1
    pool = ThreadPoolExecutor(max_workers=n_workers)
    try:
        # a bounded window of entries in flight: decoded images never pile up ahead of the consumer
        pending = iter(entries)
        window = deque((e, pool.submit(load_one, e)) for e in islice(pending, 4 * n_workers))
        done = 0
        while window:
            entry, future = window.popleft()
            result = future.result()
            following = next(pending, None)
            if following is not None:
                window.append((following, pool.submit(load_one, following)))
            done += 1
            if isinstance(result, str) and strict:
                raise BtkError(f"unreadable input {entry.source}: {result} (--strict)")
            yield entry, result
            if progress:
                progress(done, len(entries))
    finally:  # stopped early (an error, Ctrl-C, SIGTERM): the entries not yet started are dropped
        pool.shutdown(wait=True, cancel_futures=True)


def load_dataset(
    reader: Reader,
    path: Path | None,
    options: ReadOptions,
    strict: bool = False,
    progress: Callable[[int, int], None] | None = None,
    workers: int | None = None,
    cache: bool = True,
) -> Dataset:
    """Scan and load everything ``reader`` finds at ``path``.

    Args:
        reader: a registered reader.
        path: the data path (``None`` for readers that generate data).
        options: image size, channels and reader options.
        strict: raise on the first unreadable entry instead of skipping it.
        progress: called as ``progress(done, total)`` after each entry.
        workers: decoding threads (default: the number of CPUs).
        cache: use and fill the decode cache (:mod:`btk.cache`) when ``path`` is given; the
            images of a cached dataset are a read-only memory map.

    Raises:
        BtkError: nothing readable was found, or (``strict``) an entry could not be read.
    """
    from btk import cache as decode_cache

    entries = reader.scan(path, options)
    if not entries:
        raise BtkError(f"reader '{reader.name}' found no images at {path}")
    key = decode_cache.dataset_key(reader.name, path, options, entries) if cache and path is not None else None
    fingerprint = {"reader": reader.name, "path": str(path) if path is not None else None,
                   **decode_cache.file_listing_digest(path, entries), "cache_key": key}
    hit = decode_cache.load_cached(key) if key else None
    if hit is not None:
        if strict and hit["skipped"]:
            source, reason = hit["skipped"][0]
            raise BtkError(f"unreadable input {source}: {reason} (--strict)")
        if progress:
            progress(len(entries), len(entries))
        return Dataset(images=hit["images"], labels=np.array(hit["labels"], dtype=object),
                       groups=np.array(hit["groups"], dtype=object), sources=np.array(hit["sources"], dtype=object),
                       splits=np.array(hit["splits"], dtype=object), skipped=[tuple(s) for s in hit["skipped"]],
                       notes=[tuple(s) for s in hit.get("notes", [])], fingerprint=fingerprint)
    writer = None
    if key:
        try:
            writer = decode_cache.Writer(key)
        except OSError:
            writer = None  # an unwritable cache: load into memory
    images: list[np.ndarray] = []
    labels, groups, sources, splits = [], [], [], []
    skipped: list[tuple[str, str]] = []
    notes: list[tuple[str, str]] = []
    shapes: set[tuple[int, ...]] = set()
    try:
        for entry, result in iter_entries(reader, path, options, strict, progress, workers, entries=entries):
            if isinstance(result, str):
                skipped.append((entry.source, result))
                continue
            notes += input_notes(entry.source, result)
            for sample in result:
                image = as_hwc(sample.image, options.channels, sample.source)
                shapes.add(image.shape)
                if writer is not None:
                    try:
                        writer.add(image)
                    except OSError:  # e.g. a full disk: carry on in memory
                        images = list(writer.read_back(image.shape)) if len(shapes) == 1 else []
                        writer.abort()
                        writer = None
                if writer is None:
                    images.append(image)
                labels.append(sample.label)
                groups.append(sample.group)
                sources.append(sample.source)
                splits.append(sample.split)
        if not sources:
            raise BtkError(f"no readable images at {path} ({len(skipped)} unreadable)")
        if len(shapes) > 1:
            raise BtkError(f"images have different shapes {sorted(shapes)[:3]}; set an image size")
        (shape,) = shapes
        if writer is not None:
            try:
                array: np.ndarray = writer.finish(shape, labels, groups, sources, splits, skipped, notes)
            except OSError:
                array = writer.read_back(shape)
                writer.abort()
            writer = None
        else:
            array = np.stack(images)
    finally:
        if writer is not None:
            writer.abort()
        release_freed_memory()
    return Dataset(
        images=array,
        labels=np.array(labels, dtype=object),
        groups=np.array(groups, dtype=object),
        sources=np.array(sources, dtype=object),
        splits=np.array(splits, dtype=object),
        skipped=skipped,
        notes=notes,
        fingerprint=fingerprint,
    )
