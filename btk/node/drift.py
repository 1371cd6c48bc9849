"""The node's shift check over a rolling window of recent studies.

One study of a dozen slices is one observation (its series counted once) and far too few for a
verdict, but a node sees hundreds: after each answer the node runs btk's shift check
(:func:`btk.shift.shift_check`, the run's calibration images as the reference, the network's
penultimate features, series counted once) on the images of the last ``size`` series it
answered, so a new scanner or protocol shows as a verdict in the log and the status before
anyone counts errors. The window's verdict is kept in ``drift.json`` in the node's folder.
"""

from __future__ import annotations

import json
import time
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np

DRIFT = "drift.json"
"""The file in a node's folder that holds the last verdict on its window."""


class DriftWindow:
    """The images of the last ``size`` series answered (features, top probabilities, series),
    checked against ``run``'s calibration images."""

    def __init__(self, run: Any, size: int) -> None:
        from btk.shift import read_reference

        self.size = size
        self.reference = read_reference(run.path)
        self.conformal = run.conformal()
        self.series: deque[tuple[str, np.ndarray | None, np.ndarray]] = deque()  # (series, features, probabilities)

    @classmethod
    def for_run(cls, run: Any, size: int) -> DriftWindow | None:
        """A window, or ``None`` when ``run`` keeps no calibration to compare with (no
        prediction sets) or ``size`` is 0."""
        return cls(run, size) if size > 0 and run.conformal() is not None else None

    def add(self, tally: Any) -> None:
        """Add the images a prediction tally kept (``keep_probabilities``/``keep_features``),
        series by series; the oldest series leave once there are more than ``size``."""
        if not tally.probabilities:
            return
        probabilities = np.concatenate(tally.probabilities)
        features = np.concatenate(tally.features) if tally.features else None
        groups = np.asarray(tally.groups)
        for group in dict.fromkeys(tally.groups):
            rows = groups == group
            self.series.append((group, None if features is None else features[rows], probabilities[rows]))
        while len(self.series) > self.size:
            self.series.popleft()

    def check(self) -> Any:
        """The shift check (:class:`btk.shift.ShiftCheck`) of the window's images."""
        from btk.shift import shift_check

        groups = [g for g, _, p in self.series for _ in range(len(p))]
        probabilities = np.concatenate([p for _, _, p in self.series])
        has_features = self.reference is not None and all(f is not None for _, f, _ in self.series)
        features = np.concatenate([f for _, f, _ in self.series]) if has_features else None
        return shift_check(self.reference if has_features else None, features, groups,
                           self.conformal.reference(), probabilities)

    def record(self, folder: Path, check: Any) -> dict[str, Any]:
        """Keep ``check`` as the node's last verdict (``drift.json``, written whole); its record."""
        record = {"time": time.time(), "window_series": len(self.series), "window_size": self.size, **check.to_json()}
        part = folder / f".{DRIFT}.part"
        part.write_text(json.dumps(record, indent=1) + "\n")
        part.replace(folder / DRIFT)
        return record
