"""The ``btk`` command group: the commands of :mod:`btk.commands` and of plugins, one-line
errors, and the entry point.

Heavy libraries (keras, the ML backend, OpenCV, rich) are imported only inside commands, so
``btk --help`` answers at once.
"""

from __future__ import annotations

import os
import sys
import traceback
from typing import Any, ClassVar

import click

from btk import __version__
from btk.errors import BtkError


def _debug() -> bool:
    return os.environ.get("BTK_DEBUG", "") not in ("", "0")


class BtkGroup(click.Group):
    """Turns :class:`BtkError` into one line and a non-zero exit; other errors too, unless debugging.
    Lists its commands in the order they were added. Adds the plugins' commands when commands are
    looked up, again whenever the plugin host is rebuilt (:func:`btk.plugins.reset`,
    :func:`btk.plugins.register_plugin`)."""

    _plugin_commands_host: Any = None  # the plugin host whose plugins' commands the group holds
    _displaced: ClassVar[dict[str, click.Command]] = {}  # core commands a plugin command replaced, by name

    def _ensure_plugin_commands(self) -> None:
        try:
            _add_plugin_commands()
        except Exception as exc:  # never let plugin loading stop the CLI
            print(f"btk: warning: plugin commands could not be loaded: {exc}", file=sys.stderr)

    def get_command(self, ctx: click.Context, cmd_name: str):
        self._ensure_plugin_commands()
        return super().get_command(ctx, cmd_name)

    def list_commands(self, ctx: click.Context):
        """The built-in commands in :data:`btk.commands.COMMANDS` order (also after a plugin's
        command replaced one and gave it back), then the plugins' own in the order they came."""
        from btk.commands import COMMANDS

        self._ensure_plugin_commands()
        builtin = [command.name for command in COMMANDS if command.name in self.commands]
        return builtin + [name for name in self.commands if name not in builtin]

    def main(self, args: Any = None, *rest: Any, **options: Any) -> Any:
        """Run the group on ``args`` (default: the process's arguments), which a run's provenance
        records as the command typed (:func:`btk.provenance.command_line`)."""
        from btk import provenance

        provenance.TYPED = [str(a) for a in (sys.argv[1:] if args is None else args)]
        try:
            return super().main(args, *rest, **options)
        finally:
            provenance.TYPED = None

    def invoke(self, ctx: click.Context) -> Any:
        from btk.interrupt import KEPT, Terminated

        KEPT.clear()
        try:
            return super().invoke(ctx)
        except BtkError as exc:
            if _debug():
                traceback.print_exc()
            raise click.ClickException(str(exc)) from None
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except KeyboardInterrupt as exc:
            from btk.interrupt import interrupted_line

            click.echo(interrupted_line(), err=True)
            ctx.exit(143 if isinstance(exc, Terminated) else 130)
        except Exception as exc:
            if _debug():
                raise
            first = (str(exc).strip().splitlines() or [""])[0]
            raise click.ClickException(
                f"internal error: {type(exc).__name__}: {first} (set BTK_DEBUG=1 for the traceback)"
            ) from None


@click.group(cls=BtkGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="btk")
@click.option("--debug", is_flag=True,
              help="Show tracebacks, the ML backend's start-up lines and other libraries' warnings "
                   "(same as BTK_DEBUG=1).")
def cli(debug: bool) -> None:
    """btk: classify medical images (brain MRI first) with plugins for readers, degraders,
    models and reporters.

    Start with `btk run` (a built-in synthetic dataset) or `btk run --data FOLDER`. Every command
    that writes makes a new directory in its --out folder; --json prints its result as JSON.
    """
    if debug:
        os.environ["BTK_DEBUG"] = "1"
    from btk.plugins import get_host
    from btk.render import warn_lines

    warn_lines(get_host().problems)


def _add_builtin_commands() -> None:
    from btk.commands import COMMANDS

    for command in COMMANDS:
        cli.add_command(command)


_add_builtin_commands()


def _add_plugin_commands(host: Any = None) -> None:
    """Give ``cli`` the commands of ``host``'s plugins (default: the process's plugin host) and
    record in ``host.commands`` which plugin added which. Nothing happens if ``cli`` has them
    already; the commands of an earlier host's plugins are taken away first (a command one of them
    replaced comes back)."""
    from btk.plugins import get_host

    host = host if host is not None else get_host()
    previous = BtkGroup._plugin_commands_host
    if previous is host:
        return
    if previous is not None:
        for name in {n for names in previous.commands.values() for n in names}:
            cli.commands.pop(name, None)
            if name in BtkGroup._displaced:
                cli.commands[name] = BtkGroup._displaced.pop(name)
    BtkGroup._plugin_commands_host = host
    host.commands.clear()
    for impl in host.pm.hook.btk_register_commands.get_hookimpls():
        before = dict(cli.commands)
        try:
            impl.function(cli=cli)
        except Exception as exc:
            host.problems.append(f"plugin '{impl.plugin_name}' failed in btk_register_commands: "
                                 f"{type(exc).__name__}: {exc}")
        added = sorted(n for n, command in cli.commands.items() if before.get(n) is not command)
        from_plugins = {n for names in host.commands.values() for n in names}
        for name in added:
            if name in before and name not in from_plugins:
                BtkGroup._displaced.setdefault(name, before[name])
        if added:
            host.commands.setdefault(impl.plugin_name, []).extend(added)


def main() -> None:
    """Entry point of the ``btk`` script."""
    import gc

    from btk import quiet
    from btk.interrupt import terminate_raises

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ log lines after its import
    quiet.install()  # its start-up lines at the import, other libraries' warnings (shown with --debug)
    terminate_raises()  # SIGTERM unwinds like Ctrl-C: nothing half-written is left
    try:
        cli(prog_name="btk")
    finally:
        # The process ends here: the interpreter's last garbage collection would walk TensorFlow's
        # object graph for about a second (measured: exit after `import keras` 1.0 s, 0.09 s frozen).
        # Files are closed by then (every writer closes its own).
        gc.freeze()
