"""Images btk draws: the preview grid of every degrader at every severity level."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

TILE = 160
LABEL_WIDTH = 110
HEADER_HEIGHT = 30


def _text(canvas: np.ndarray, text: str, x: int, y: int) -> None:
    import cv2

    cv2.putText(canvas, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (255, 255, 255), 1, cv2.LINE_AA)


def degrader_preview(image: np.ndarray, degraders: Sequence[Any], seed: int = 0) -> np.ndarray:
    """A grid of ``image`` (uint8, H x W x 3) under each degrader (a row each: the clean image,
    then every severity level). Degraders may have any number of levels: the grid has a column
    per level up to the most any of them has, and shorter rows end in black tiles.

    Returns:
        The grid as a uint8 BGR image.
    """
    import cv2

    from btk.degraders import Degradation

    batch = image[None]
    levels = max((len(d.levels) for d in degraders), default=0)
    rows = []
    for d in degraders:
        tiles = [image] + [Degradation(d, {}, lv).apply(batch, seed)[0] for lv in range(1, len(d.levels) + 1)]
        tiles = [cv2.resize(t, (TILE, TILE)) for t in tiles]
        tiles += [np.zeros_like(tiles[0])] * (levels + 1 - len(tiles))
        label = np.zeros((TILE, LABEL_WIDTH, 3), np.uint8)
        _text(label, d.name, 4, 85)
        rows.append(np.hstack([label, *tiles]))
    width = LABEL_WIDTH + TILE * (levels + 1)
    header = np.zeros((HEADER_HEIGHT, width, 3), np.uint8)
    for k, text in enumerate(["clean"] + [f"level {lv}" for lv in range(1, levels + 1)]):
        _text(header, text, LABEL_WIDTH + TILE * k + 40, 21)
    return np.vstack([header, *rows])
