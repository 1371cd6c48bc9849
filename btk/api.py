"""The plugin API: every name a btk plugin needs, in one module.

A plugin imports from here and nowhere else in btk::

    from btk.api import Degrader, Param, RegisterDegrader, hookimpl

    @hookimpl
    def btk_register_degraders(register: RegisterDegrader) -> None:
        register(Degrader("invert", invert, (Param("amount", float, 1.0, 0.0, 1.0),)))

The names below are kept stable for plugins; the modules they come from (``btk.types``,
``btk.degraders`` and the rest) may change their layout. ``docs/plugins.md`` describes each
name; the hooks themselves are in :mod:`btk.hookspecs`.
"""

from __future__ import annotations

from btk.dataset import iter_entries
from btk.degraders import LEVELS, REFERENCE_SIZE, Degrader, Param
from btk.errors import BtkError, UnreadableInputError
from btk.hookspecs import RegisterDegrader, RegisterModel, RegisterReader, RegisterReporter, hookimpl
from btk.models import compile_like_report, softmax_head
from btk.plugins import get_host
from btk.runs import Run
from btk.types import Entry, ModelSpec, Reader, ReadOptions, Reporter, Sample
from btk.volumes import choose_slices, find_files, folder_label, read_manifest, to_uint8

__all__ = [
    "LEVELS",
    "REFERENCE_SIZE",
    "BtkError",
    "Degrader",
    "Entry",
    "ModelSpec",
    "Param",
    "ReadOptions",
    "Reader",
    "RegisterDegrader",
    "RegisterModel",
    "RegisterReader",
    "RegisterReporter",
    "Reporter",
    "Run",
    "Sample",
    "UnreadableInputError",
    "choose_slices",
    "compile_like_report",
    "find_files",
    "folder_label",
    "get_host",
    "hookimpl",
    "iter_entries",
    "read_manifest",
    "softmax_head",
    "to_uint8",
]
