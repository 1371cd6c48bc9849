"""Degradation-augmented training: random degraders at random severity levels, on the fly."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from btk.degraders import Degrader
from btk.errors import BtkError


def make_augmenter(degraders: list[Degrader], probability: float = 0.5,
                   max_level: int = 5) -> Callable[[np.ndarray, np.random.Generator], np.ndarray]:
    """``augment(batch, rng)``: each image, with ``probability``, goes through one of
    ``degraders`` picked at random, at a random level 1..``max_level`` (pixel parameters scaled
    to the image width). The same generator state gives the same batch."""
    for d in degraders:
        if not d.levels:
            raise BtkError(f"degrader '{d.name}' has no severity levels; it cannot augment")
    if not 0 < probability <= 1:
        raise BtkError(f"augmentation probability must be in (0, 1], got {probability}")
    if max_level < 1:
        raise BtkError(f"augmentation's highest level must be at least 1, got {max_level}")

    def augment(batch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        out = batch.copy()
        width = batch.shape[2]
        for j in range(len(out)):
            if rng.random() < probability:
                d = degraders[int(rng.integers(len(degraders)))]
                level = int(rng.integers(1, min(max_level, len(d.levels)) + 1))
                out[j] = d.function(out[j], rng, **d.level_params(level, width))
        return out

    return augment


def augment_names(host: Any, text: str | None) -> tuple[str, ...]:
    """The degraders ``--augment-degraders`` names: comma-separated names, or ``all`` (every
    degrader with severity levels); checked against the registered degraders.

    Raises:
        BtkError: an unknown degrader or one without levels.
    """
    if not text or text.strip().lower() == "none":
        return ()
    names = tuple(d.name for d in host.degraders if d.levels) if text == "all" else tuple(
        n.strip() for n in text.split(",") if n.strip())
    make_augmenter([host.degraders.get(n) for n in names])  # validates names and levels
    return names
