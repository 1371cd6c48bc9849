"""The ``synthetic`` reader: procedurally generated brain-like MRI phantoms, nothing downloaded.

The phantoms themselves (an axial slice with one of four findings, or none) are made by
:func:`btk.phantoms.make_phantom`. Every phantom is its own group. The reader makes a Training
and a Testing split (the folder reader's split names), each ``per_class`` images per class,
generated from the run's seed.

Reader options (``--reader-option``): ``per_class`` (default 150), ``test_per_class``
(default 50), ``seed`` (default 0).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from btk.api import BtkError, Entry, ReadOptions, RegisterReader, Sample, hookimpl
from btk.phantoms import CLASSES, make_phantom


class SyntheticReader:
    """Generates a labelled phantom dataset; needs no path."""

    name = "synthetic"
    description = "procedural brain-like MRI phantoms with four lesion types (built in, nothing downloaded)"

    def _int_option(self, options: ReadOptions, key: str, default: int) -> int:
        value = options.extra.get(key, default)
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise BtkError(f"synthetic reader: option '{key}' must be an integer, got {value!r}") from None
        if number < 0 or (key != "seed" and number < 1):
            raise BtkError(f"synthetic reader: option '{key}' must be positive, got {number}")
        return number

    def scan(self, path: Path | None, options: ReadOptions) -> list[Entry]:
        """One entry per phantom: ``per_class`` training and ``test_per_class`` testing images per class."""
        unknown = set(options.extra) - {"per_class", "test_per_class", "seed"}
        if unknown:
            raise BtkError(
                f"synthetic reader: unknown option(s) {', '.join(sorted(unknown))} "
                "(options: per_class, test_per_class, seed)"
            )
        counts = {
            "train": self._int_option(options, "per_class", 150),
            "test": self._int_option(options, "test_per_class", 50),
        }
        seed = self._int_option(options, "seed", 0)
        entries = []
        for split, n in counts.items():
            for label in CLASSES:
                for i in range(n):
                    source = f"synthetic/{split}/{label}/{i:05d}"
                    entries.append(Entry(source, label, source, split, payload=(seed, split, label, i)))
        return entries

    def load(self, entry: Entry, options: ReadOptions) -> list[Sample]:
        """Generate the phantom deterministically from (seed, split, class, index)."""
        import cv2

        seed, split, label, i = entry.payload
        key = [seed, 0 if split == "train" else 1, CLASSES.index(label), i]
        image = make_phantom(label, np.random.default_rng(key))
        if options.image_size and options.image_size != image.shape[0]:
            image = cv2.resize(image, (options.image_size, options.image_size), interpolation=cv2.INTER_AREA)
        if options.channels == 3:
            image = np.repeat(image[..., None], 3, axis=-1)
        return [Sample(image, label, entry.group, entry.source, split, {"phantom": True})]


@hookimpl
def btk_register_readers(register: RegisterReader) -> None:
    register(SyntheticReader())
