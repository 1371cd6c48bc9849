"""The plugin API: every name a third-party btk plugin needs, in one module.

A third-party plugin imports from here and nowhere else in btk::

    from btk.api import Degrader, Param, RegisterDegrader, hookimpl

    @hookimpl
    def btk_register_degraders(register: RegisterDegrader) -> None:
        register(Degrader("invert", invert, (Param("amount", float, 1.0, 0.0, 1.0),)))

The names below are kept stable for plugins; the modules they come from (``btk.types``,
``btk.degraders`` and the rest) may change their layout. ``docs/plugins.md`` describes each
name; the hooks themselves are in :mod:`btk.hookspecs`. btk's own plugins
(:mod:`btk.default_plugins`) register through the same hooks; being part of btk, its reporters
also draw with :mod:`btk.render` and read statistics from btk's modules directly.
"""

from __future__ import annotations

from btk import __version__
from btk.compare import Report, build_report
from btk.config import parse_pairs
from btk.dataset import iter_entries
from btk.degraders import LEVELS, REFERENCE_SIZE, Degrader, Param
from btk.errors import BtkError, UnreadableInputError
from btk.hookspecs import RegisterDegrader, RegisterModel, RegisterReader, RegisterReporter, RegisterRun, hookimpl
from btk.models import compile_like_report, softmax_head
from btk.plugins import get_host
from btk.run_files import ResultDir, check_writable
from btk.runs import Run
from btk.stats import metric_cis, reliability
from btk.types import Entry, ModelSpec, PackagedRun, Reader, ReadOptions, Reporter, Sample
from btk.volumes import choose_slices, find_files, folder_label, read_manifest, to_uint8

__all__ = [
    "LEVELS",
    "REFERENCE_SIZE",
    "BtkError",
    "Degrader",
    "Entry",
    "ModelSpec",
    "PackagedRun",
    "Param",
    "ReadOptions",
    "Reader",
    "RegisterDegrader",
    "RegisterModel",
    "RegisterReader",
    "RegisterReporter",
    "RegisterRun",
    "Report",
    "Reporter",
    "ResultDir",
    "Run",
    "Sample",
    "UnreadableInputError",
    "__version__",
    "build_report",
    "check_writable",
    "choose_slices",
    "compile_like_report",
    "find_files",
    "folder_label",
    "get_host",
    "hookimpl",
    "iter_entries",
    "metric_cis",
    "parse_pairs",
    "read_manifest",
    "reliability",
    "softmax_head",
    "to_uint8",
]
