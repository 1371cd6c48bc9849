"""The hooks a btk plugin implements.

Every hook receives a ``register`` callback (or the CLI group) and calls it once per thing it
provides. The built-in plugin set uses exactly these hooks, through the same plugin manager
as third-party packages (entry-point group ``btk``).

The callbacks have the types below (:data:`RegisterReader` and the others), so a plugin can
annotate its hook implementations, e.g.::

    from btk.api import RegisterDegrader, hookimpl

    @hookimpl
    def btk_register_degraders(register: RegisterDegrader) -> None:
        register(MY_DEGRADER)
"""

from __future__ import annotations

from collections.abc import Callable

import click
import pluggy

from btk.degraders import Degrader
from btk.types import ModelSpec, PackagedRun, Reader, Reporter

hookspec = pluggy.HookspecMarker("btk")
hookimpl = pluggy.HookimplMarker("btk")

RegisterReader = Callable[[Reader], None]
"""The ``register`` callback of :func:`btk_register_readers`: ``register(reader)``."""

RegisterDegrader = Callable[[Degrader], None]
"""The ``register`` callback of :func:`btk_register_degraders`: ``register(degrader)``."""

RegisterModel = Callable[[ModelSpec], None]
"""The ``register`` callback of :func:`btk_register_models`: ``register(model_spec)``."""

RegisterReporter = Callable[[Reporter], None]
"""The ``register`` callback of :func:`btk_register_reporters`: ``register(reporter)``."""

RegisterRun = Callable[[PackagedRun], None]
"""The ``register`` callback of :func:`btk_register_runs`: ``register(packaged_run)``."""


@hookspec
def btk_register_readers(register: RegisterReader) -> None:
    """Register readers: ``register(reader)`` with a :class:`btk.types.Reader`.

    A name another plugin already registered is reported as a problem of this plugin.
    """


@hookspec
def btk_register_degraders(register: RegisterDegrader) -> None:
    """Register degraders: ``register(degrader)`` with a :class:`btk.degraders.Degrader`."""


@hookspec
def btk_register_models(register: RegisterModel) -> None:
    """Register models: ``register(model)`` with a :class:`btk.types.ModelSpec`."""


@hookspec
def btk_register_reporters(register: RegisterReporter) -> None:
    """Register reporters: ``register(reporter)`` with a :class:`btk.types.Reporter`."""


@hookspec
def btk_register_runs(register: RegisterRun) -> None:
    """Register trained runs shipped in a package: ``register(run)`` with a
    :class:`btk.types.PackagedRun` (a hospital packages its own model this way)."""


@hookspec
def btk_register_commands(cli: click.Group) -> None:
    """Add commands to the ``btk`` command group (``cli.add_command`` or ``@cli.command``)."""
