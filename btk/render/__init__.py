"""Everything btk draws: rich tables, panels and progress bars, preview images and plots.

The library returns data and reports progress through :class:`btk.feedback.Feedback`; the
command line (and the reporters) turn both into output with the functions here. Nothing below
the command line imports rich except this package and the reporter plugins.
"""

from __future__ import annotations

import os
from typing import Any

# Columns of the results when standard output is not a terminal (a file, a pipe, a CI log): rich
# would draw at 80 and cut values ("317/3…"); tables take only their natural width, so a wide
# page costs nothing, and every value is printed in full. COLUMNS, if larger, wins.
PIPE_WIDTH = 250
# Columns of panels and rules when not on a terminal (they fill the width they are given).
PIPE_FRAME_WIDTH = 80
# Columns of a table that grows with its rows (btk predict's, printed as they come) when not on a
# terminal: its long cells (paths) wrap within it. COLUMNS, if set, wins.
PIPE_TABLE_WIDTH = 120


def out_console(**kwargs: Any) -> Any:
    """The console for a command's results (standard output): the terminal's width on a
    terminal, :data:`PIPE_WIDTH` columns (or COLUMNS if larger) elsewhere."""
    from rich.console import Console

    console = Console(**kwargs)
    if "width" not in kwargs and not console.is_terminal:
        console.width = max(PIPE_WIDTH, _columns())
    return console


def _columns() -> int:
    try:
        return int(os.environ.get("COLUMNS", ""))
    except ValueError:
        return 0


def table_width(console: Any) -> int:
    """The width for a table whose long cells wrap (btk predict's): all of a terminal; elsewhere
    COLUMNS, or :data:`PIPE_TABLE_WIDTH`, and never more than ``console`` has."""
    return console.width if console.is_terminal else min(console.width, _columns() or PIPE_TABLE_WIDTH)


def frame_width(console: Any) -> int | None:
    """The width for a panel or rule on ``console``: all of a terminal, 80 columns elsewhere."""
    return None if console.is_terminal else min(console.width, PIPE_FRAME_WIDTH)


def err_console(**kwargs: Any) -> Any:
    """The console for warnings and skipped inputs (standard error): one line each, never
    wrapped at the terminal width, so a long path stays on the line that names the problem."""
    from rich.console import Console

    return Console(stderr=True, soft_wrap=True, **kwargs)


def warn_lines(lines: list[str], prefix: str = "btk: warning: ") -> None:
    """Print each of ``lines`` as one yellow warning line on standard error."""
    console = err_console()
    for line in lines:
        console.print(f"{prefix}{line}", style="yellow", highlight=False, markup=False)


def written(console: Any, what: str, path: Any) -> None:
    """``what`` followed by the path it was written to, in bold."""
    from rich.text import Text

    console.print(Text.assemble(f"{what} ", (str(path), "bold")))


def collapsed_warning(console: Any) -> None:
    """The red line under a collapsed run's report."""
    console.print("[bold red]WARNING: this run collapsed (one class predicted for every test image).[/]")


def line(console: Any, text: str) -> None:
    """One plain line of text (no markup, no highlighting)."""
    console.print(text, markup=False, highlight=False)
