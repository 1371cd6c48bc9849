"""Progress bars and messages of long library calls, drawn with rich."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.panel import Panel
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.rule import Rule

from btk.feedback import Feedback, Task
from btk.render import frame_width


def progress_bar(console: Console) -> Progress:
    """A transient progress display: description, bar, count, elapsed and remaining time, info."""
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TimeRemainingColumn(), TextColumn("{task.fields[info]}"), console=console, transient=True)


class _RichTask(Task):
    def __init__(self, progress: Progress, task_id: Any) -> None:
        self.progress, self.task_id = progress, task_id

    def update(self, completed: float | None = None, total: float | None = None, info: str | None = None,
               description: str | None = None) -> None:
        fields: dict[str, Any] = {}
        if completed is not None:
            fields["completed"] = completed
        if total is not None:
            fields["total"] = total
        if info is not None:
            fields["info"] = info
        if description is not None:
            fields["description"] = description
        self.progress.update(self.task_id, **fields)


class RichFeedback(Feedback):
    """Shows a library call's progress on a rich console: every open task is a bar of one live
    display (bars vanish when their task ends), messages print above it."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console()
        self._progress: Progress | None = None

    def info(self, text: str) -> None:
        self.console.print(text, highlight=False, markup=False)

    def warn(self, text: str) -> None:
        self.console.print(text, style="yellow", highlight=False, markup=False)

    def alert(self, title: str, text: str) -> None:
        self.console.print(Panel(text, style="bold red", title=title, width=frame_width(self.console)))

    def section(self, title: str) -> None:
        self.console.print(Rule(title), width=frame_width(self.console))

    @contextmanager
    def task(self, description: str, total: float | None = None) -> Iterator[Task]:
        if self._progress is None:
            self._progress = progress_bar(self.console)
            self._progress.start()
        progress = self._progress
        task_id = progress.add_task(description, total=total, info="")
        try:
            yield _RichTask(progress, task_id)
        finally:
            progress.remove_task(task_id)
            if not progress.tasks:
                progress.stop()
                self._progress = None


def stderr_feedback() -> Feedback:
    """Progress bars on standard error when it is a terminal; silence otherwise (a pipe, a log
    file), where a bar would only add lines."""
    from btk.render import err_console

    console = err_console()
    return RichFeedback(console) if console.is_terminal else Feedback()
