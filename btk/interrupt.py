"""SIGTERM handled as an interruption: a scheduler's or a parent's ``kill`` (SIGTERM) raises
:class:`Terminated` in the main thread, as Ctrl-C raises ``KeyboardInterrupt``, so every
``finally`` runs: a half-written cache entry or run directory is removed, a plan's member
processes are stopped and waited for, and nothing half-done is left behind."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

KEPT: list[Path] = []
"""What a stopped command kept on purpose, for ``btk resume`` (a run's checkpoint): the one
exception to "nothing half-written is kept", named in the line an interruption ends with."""


class Terminated(KeyboardInterrupt):
    """The process was asked to stop (SIGTERM)."""


def _raise(signum: int, frame: Any) -> None:
    raise Terminated(f"signal {signum}")


def terminate_raises() -> None:
    """From now on, SIGTERM raises :class:`Terminated` in the main thread (call it there)."""
    signal.signal(signal.SIGTERM, _raise)


def interrupted_line() -> str:
    """The last line of an interrupted command: what it kept (:data:`KEPT`), or that it kept nothing."""
    if KEPT:
        return (f"btk: interrupted; kept for btk resume: {', '.join(map(str, KEPT))}; nothing else half-written "
                "was kept")
    return "btk: interrupted; nothing half-written was kept"
