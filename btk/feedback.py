"""What long library calls tell their caller while they work, with no opinion on how it is shown.

The library (loading, training, suites, sweeps) reports through a :class:`Feedback`: plain-text
messages, warnings, alerts, section titles and progress tasks. It never draws anything itself.
The command line passes :class:`btk.render.progress.RichFeedback`, which draws rich progress bars
and coloured lines; a notebook or a test passes :class:`Feedback` itself (silent) or a
:class:`RecordingFeedback`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field


class Task:
    """A progress task: :meth:`update` moves it on. The base class ignores every update."""

    def update(self, completed: float | None = None, total: float | None = None, info: str | None = None,
               description: str | None = None) -> None:
        """Set how much is done (of ``total``), a short ``info`` text or a new ``description``."""


class Feedback:
    """A silent receiver of progress and messages; subclasses show them."""

    def info(self, text: str) -> None:
        """A line of information (what a run is about to do, one epoch's figures)."""

    def warn(self, text: str) -> None:
        """Something the user should know but that does not stop the work (skipped inputs)."""

    def alert(self, title: str, text: str) -> None:
        """A result the user must not miss (a collapsed model)."""

    def section(self, title: str) -> None:
        """The start of a named part of a longer job (one experiment of a suite)."""

    @contextmanager
    def task(self, description: str, total: float | None = None) -> Iterator[Task]:
        """A progress task for the duration of the ``with`` block."""
        yield Task()


@dataclass
class RecordingFeedback(Feedback):
    """Keeps every message as ``(kind, text)``; for tests and notebooks."""

    messages: list[tuple[str, str]] = field(default_factory=list)

    def info(self, text: str) -> None:
        self.messages.append(("info", text))

    def warn(self, text: str) -> None:
        self.messages.append(("warn", text))

    def alert(self, title: str, text: str) -> None:
        self.messages.append(("alert", f"{title}: {text}"))

    def section(self, title: str) -> None:
        self.messages.append(("section", title))

    def texts(self, kind: str | None = None) -> list[str]:
        """The messages of one kind (all when ``kind`` is None)."""
        return [t for k, t in self.messages if kind is None or k == kind]
