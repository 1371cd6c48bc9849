"""The hooks a btk plugin implements.

Every hook receives a ``register`` callback (or the CLI group) and calls it once per thing it
provides. The built-in plugin set uses exactly these hooks, through the same plugin manager
as third-party packages (entry-point group ``btk``).
"""

from __future__ import annotations

from typing import Callable

import click
import pluggy

hookspec = pluggy.HookspecMarker("btk")
hookimpl = pluggy.HookimplMarker("btk")


@hookspec
def btk_register_readers(register: Callable) -> None:
    """Register readers: ``register(reader)`` with a :class:`btk.types.Reader`."""


@hookspec
def btk_register_degraders(register: Callable) -> None:
    """Register degraders: ``register(degrader)`` with a :class:`btk.degraders.Degrader`."""


@hookspec
def btk_register_models(register: Callable) -> None:
    """Register models: ``register(model)`` with a :class:`btk.types.ModelSpec`."""


@hookspec
def btk_register_reporters(register: Callable) -> None:
    """Register reporters: ``register(reporter)`` with a :class:`btk.types.Reporter`."""


@hookspec
def btk_register_commands(cli: click.Group) -> None:
    """Add commands to the ``btk`` command group (``cli.add_command`` or ``@cli.command``)."""
