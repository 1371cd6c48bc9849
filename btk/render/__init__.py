"""Everything btk draws: rich tables, panels and progress bars, preview images and plots.

The library returns data and reports progress through :class:`btk.feedback.Feedback`; the
command line (and the reporters) turn both into output with the functions here. Nothing below
the command line imports rich except this package and the reporter plugins.
"""

from __future__ import annotations

from typing import Any


def out_console(**kwargs: Any) -> Any:
    """The console for a command's results (standard output)."""
    from rich.console import Console

    return Console(**kwargs)


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
