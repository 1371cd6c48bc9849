"""Keep what the command line cannot act on out of its output: the ML backend's start-up lines
and other libraries' Python warnings. :func:`install` is called once, by the ``btk`` script.

TensorFlow writes its start-up lines from C++ (absl logging) straight to file descriptor 2
while ``import tensorflow`` runs, on the importing thread: "WARNING: All log messages before
absl::InitializeLog() is called are written to STDERR" and "I0000 ... port.cc:...] oneDNN custom
operations are on ...", each twice (two of its shared libraries log them when loaded). No
setting silences them (neither TF_CPP_MIN_LOG_LEVEL, read too late for them, nor absl's or
glog's variables), so the import itself runs with file descriptor 2 pointed at /dev/null. Every
later line of TensorFlow's own logging obeys TF_CPP_MIN_LOG_LEVEL, which the script sets.

With ``--debug`` (``BTK_DEBUG=1``) nothing is hidden.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any, TextIO

# top-level modules whose import writes start-up lines to standard error
NOISY_IMPORTS = ("tensorflow",)

_BTK_DIR = str(Path(__file__).resolve().parent)


def debugging() -> bool:
    """Whether ``--debug`` or ``BTK_DEBUG=1`` asks for everything to be shown."""
    return os.environ.get("BTK_DEBUG", "") not in ("", "0")


@contextmanager
def stderr_silenced() -> Iterator[None]:
    """Point file descriptor 2 at /dev/null while the block runs (what C and C++ code writes
    there is lost; Python's ``sys.stderr`` is flushed first and writes there too), then back."""
    _flush(sys.stderr)
    try:
        saved = os.dup(2)
    except OSError:  # no file descriptor 2 at all: nothing to silence
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        try:
            _flush(sys.stderr)
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            os.close(devnull)


def _flush(stream: TextIO | None) -> None:
    if stream is not None:  # None without a console (pythonw)
        stream.flush()


class _QuietLoader(importlib.abc.Loader):
    """Runs another loader's module code with standard error silenced."""

    def __init__(self, loader: Any) -> None:
        self._loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        if module.__spec__ is not None:  # the module keeps its own loader (importlib.resources, reloads)
            module.__spec__.loader = self._loader
        module.__loader__ = self._loader
        with stderr_silenced():
            self._loader.exec_module(module)


class _QuietImports(importlib.abc.MetaPathFinder):
    """Finds the modules of :data:`NOISY_IMPORTS` as the other finders do and has their first
    import run silenced (unless debugging); submodules are imported within it."""

    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if fullname not in NOISY_IMPORTS or debugging():
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _QuietLoader(spec.loader)
                return spec
        return None


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                  file: TextIO | None = None, line: str | None = None) -> None:
    """btk's own warnings as one line; other libraries' (deprecations inside keras, TensorFlow,
    NumPy: nothing a user can act on) only when debugging, in Python's usual form."""
    if debugging():
        (file or sys.stderr).write(warnings.formatwarning(message, category, filename, lineno, line))
    elif str(Path(filename).resolve()).startswith(_BTK_DIR + os.sep):
        first = (str(message).strip().splitlines() or [""])[0]
        print(f"btk: warning: {first}", file=file or sys.stderr)


def install() -> None:
    """Silence the backend's start-up lines and other libraries' warnings for this process
    (once; the ``btk`` script calls it before any command runs)."""
    if not any(isinstance(finder, _QuietImports) for finder in sys.meta_path):
        sys.meta_path.insert(0, _QuietImports())
    warnings.showwarning = _show_warning
