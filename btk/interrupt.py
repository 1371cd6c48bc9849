"""SIGTERM handled as an interruption: a scheduler's or a parent's ``kill`` (SIGTERM) raises
:class:`Terminated` in the main thread, as Ctrl-C raises ``KeyboardInterrupt``, so every
``finally`` runs: a half-written cache entry or run directory is removed, a plan's member
processes are stopped and waited for, and nothing half-done is left behind."""

from __future__ import annotations

import signal
from typing import Any


class Terminated(KeyboardInterrupt):
    """The process was asked to stop (SIGTERM)."""


def _raise(signum: int, frame: Any) -> None:
    raise Terminated(f"signal {signum}")


def terminate_raises() -> None:
    """From now on, SIGTERM raises :class:`Terminated` in the main thread (call it there)."""
    signal.signal(signal.SIGTERM, _raise)
