"""The options every command shares, each written once, so ``--out``, ``--json``, ``--data``,
``-R``, ``--name`` and ``--reporter`` mean the same thing on every command:

- ``--out DIR``: the folder in which the command makes its new, uniquely named result directory
  (a run, an evaluation, a plan, heat maps, predictions, degraded copies). Nothing else in
  ``DIR`` is touched, and the result appears only when complete.
- ``--json``: the result as JSON on standard output and nothing else there; progress and
  messages go to standard error.
- ``--data PATH``: the data to read (repeatable where a command reads several paths);
  ``--reader NAME`` and ``-R KEY=VALUE`` say how to read it.
- ``--name NAME``: a plain name for the result directory (checked the same way everywhere).
- ``--reporter NAME``: how a finished run is shown (default ``terminal``; ``none``: not at all).

The configuration options of the commands that train (``run``, ``plan``, ``ensemble --train``)
come from :mod:`btk.config`'s schema (:func:`config_options`, :func:`configuration`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from btk.errors import BtkError
from btk.urls import refuse_credentials

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


def _chain(*decorators: Decorator) -> Decorator:
    def apply(command: Callable[..., Any]) -> Callable[..., Any]:
        for decorator in reversed(decorators):
            command = decorator(command)
        return command
    return apply


def check_store(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """A click callback for ``--store``: a DICOMweb URL without credentials in it, or a DICOM node
    written ``dicom://HOST:PORT/AE_TITLE``, checked before any work."""
    refuse_credentials(ctx, param, value)
    if value:
        from btk.default_plugins.dimse import is_dicom_url, parse_dicom_url

        if is_dicom_url(value):
            parse_dicom_url(value)
    return value


STORE_HELP = ("A DICOMweb server (STOW-RS; credentials: BTK_DICOMWEB_USER/BTK_DICOMWEB_PASSWORD or "
              "BTK_DICOMWEB_TOKEN), or a DICOM node by C-STORE, written dicom://HOST:PORT/AE_TITLE "
              "(?calling=TITLE: btk's AE title, BTK by default). What it holds already (asked by QIDO-RS or C-FIND; "
              "the same sources, model and calibration give the same UIDs) is not sent again.")
"""What every ``--store`` accepts (its help's second half)."""


def pairs(values: tuple[str, ...] | list[str], what: str) -> dict[str, str]:
    """``{KEY: VALUE}`` from ``KEY=VALUE`` items.

    Raises:
        BtkError: an item without ``=`` or a key.
    """
    from btk.config import parse_pairs

    try:
        return parse_pairs(list(values))
    except ValueError as exc:
        raise BtkError(f"bad {what} {exc}") from None


def _check_name(ctx: click.Context, param: click.Parameter, value: str | None) -> str:
    from btk.config import require_run_name

    return require_run_name(value or "", "--name")


def name_option(help: str = "Name in the result directory's name (a plain name: no '/').") -> Decorator:
    """``--name``, checked at once (:func:`btk.config.check_run_name`) on every command."""
    return click.option("--name", default="", callback=_check_name, help=help)


def out_option(what: str, default: str | None = None, shown: str | None = None) -> Decorator:
    """``--out DIR``: the folder in which the command makes ``what`` (a new directory)."""
    hint = f" [{shown or default}]" if (shown or default) else ""
    return click.option("--out", type=click.Path(path_type=Path), default=Path(default) if default else None,
                        metavar="DIR", help=f"Folder in which {what} is made: a new directory, nothing else there is "
                                            f"touched{hint}.")


json_option = click.option("--json", "as_json", is_flag=True,
                           help="Print the result as JSON on standard output (progress and messages on standard "
                                "error).")

reporter_option = click.option("--reporter", multiple=True, default=("terminal",), show_default=True,
                               help="Reporter plugin(s) that show the result; repeatable; none: no report.")

def data_paths(what: str) -> Decorator:
    """``--data PATH``, repeatable: the inputs of a command that reads several paths (``what``)."""
    return click.option("--data", "paths", multiple=True, required=True, type=click.Path(), callback=refuse_credentials,
                        help=f"{what}; repeatable.")


reader_options = _chain(
    click.option("--reader", help="Reader plugin [the run's, or recognised from each path]."),
    click.option("--reader-option", "-R", "reader_option", multiple=True, metavar="KEY=VALUE",
                 help="Reader-specific option; repeatable."),
)


def scoring_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """``--tta/--no-tta`` and ``--devices`` of the commands that score images with a finished run."""
    tta = click.option("--tta/--no-tta", default=None,
                       help="Test-time augmentation: average the probabilities of each image and its mirror image "
                            "[the run's own choice].")
    devices = click.option("--devices", default="", metavar="auto|N|LIST",
                           help="Split every batch of images over these devices (Keras' DataParallel): auto (every "
                                "device), N (the first N) or indices (0,1). JAX backend only (KERAS_BACKEND=jax); on "
                                "TensorFlow and PyTorch auto and 1 use one device, more are refused. Not given: one.")
    return tta(devices(command))


def runtime_option(command: Callable[..., Any]) -> Callable[..., Any]:
    """``--runtime`` of the commands that score images with a finished run (:mod:`btk.onnx_runtime`)."""
    return click.option("--runtime", type=click.Choice(["auto", "keras", "onnx", "int8"]), default="auto",
                        show_default=True,
                        help="What computes the network: keras (the run's network as trained), onnx (ONNX Runtime, "
                             "the float32 graph btk export left in the run, else converted once into btk's cache), "
                             "int8 (the int8 graph btk export --int8 left, with its own temperature and prediction "
                             "sets) or auto: the run's exported float32 graph where btk export measured it within "
                             "1e-5 of the Keras answers and faster, else keras.")(command)


class Output:
    """Where a command's output goes: rendered results and progress on standard output, or, with
    ``--json``, the JSON result alone there and everything else on standard error."""

    def __init__(self, as_json: bool = False) -> None:
        from btk.render import err_console, out_console
        from btk.render.progress import RichFeedback

        self.as_json = as_json
        self.console = err_console() if as_json else out_console()
        self.feedback = RichFeedback(self.console)

    def json(self, obj: Any) -> None:
        """Print ``obj`` as JSON on standard output."""
        from btk.run_files import json_default

        click.echo(json.dumps(obj, indent=1, default=json_default))

    def written(self, what: str, path: Any) -> None:
        """``what`` and the path it went to (standard error with ``--json``)."""
        from btk.render import written

        written(self.console, what, path)

    def report(self, run: Any, reporters: tuple[str, ...]) -> None:
        """Show a finished run: its JSON summary with ``--json``, else each reporter's view."""
        if self.as_json:
            self.json(run.summary())
            return
        from btk.plugins import get_host

        for name in reporters:
            if name != "none":
                get_host().reporters.get(name).report(run, self.console)


def check_reporters(reporters: tuple[str, ...]) -> None:
    """Refuse an unknown reporter before any work (one line)."""
    from btk.plugins import get_host

    host = get_host()
    for name in reporters:
        if name != "none":
            host.reporters.get(name)


def typed(ctx: click.Context, name: str) -> bool:
    """Whether option ``name`` was given on the command line (or from the environment)."""
    return ctx.get_parameter_source(name) in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)


# --- the configuration of commands that train -------------------------------------------------

def _config_flags() -> list[tuple[str, tuple[str, ...], dict[str, Any]]]:
    """``(field, option declarations, click keywords)`` of each configuration flag, from the
    schema (:func:`btk.config.flagged_fields`): a table or list field takes the flag several
    times, an on/off field is a flag without a value."""
    from btk.config import flagged_fields

    out = []
    for key, decls, metavar, kind in flagged_fields():
        if kind in ("dict", "tuple"):
            extra: dict[str, Any] = {"multiple": True, "metavar": metavar}
        elif kind == "bool":
            extra = {"is_flag": True, "default": None}
        else:
            extra = {"metavar": metavar}
        out.append((key, decls, extra))
    return out


def _param_name(decls: tuple[str, ...]) -> str:
    return decls[0].lstrip("-").replace("-", "_")


def _config_help(key: str) -> str:
    from btk.config import RECIPE_FIELDS, field_choices, field_help, preset_hint

    text = field_help(key)
    bare = key.split(".", 1)[-1]
    choices = field_choices(key)
    if choices:
        text += f" ({', '.join(choices)})"
    if key.startswith("recipe.") and bare in RECIPE_FIELDS:
        text += f" [{preset_hint(bare)}]"
    return text


def config_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The configuration options (:func:`_config_flags`, ``--preset``, ``--set``, ``--config``):
    each passes its text on unchecked; :func:`configuration` checks them all with the schema."""
    decorators = [click.option("--config", "config_file", type=click.Path(path_type=Path), metavar="FILE",
                               help="Start from this TOML or JSON file (a run directory's config.json works as it is); "
                                    "flags and --set override it."),
                  click.option("--preset", metavar="NAME",
                               help="Training recipe: fast (res-cnn at 128 px: minutes on a laptop), btk (the report's "
                                    "CNN made safe), report (the report exactly: raw pixels) or demo (small-cnn on the "
                                    "synthetic phantoms) [fast with data, demo without; btk for a suite]."),
                  click.option("--set", "settings", multiple=True, metavar="FIELD=VALUE",
                               help="Set any field (docs/cli.md lists them), e.g. --set warmup_epochs=2 or --set "
                                    "recipe.schedule=constant; applied last; repeatable.")]
    for key, decls, extra in _config_flags():
        decorators.append(click.option(*decls, _param_name(decls), help=_config_help(key), **extra))
    return _chain(*decorators)(command)


def configuration(ctx: click.Context, opts: dict[str, Any], default_preset: str | None = None,
                  name: str = "") -> Any:
    """The :class:`btk.config.RunConfig` the command line describes: ``--config``'s file, then
    the flags typed, then ``--set``, in :data:`btk.config.SOURCE_ORDER`, all through the
    schema's checks (:func:`btk.config.resolve_config`).

    Args:
        default_preset: the preset when none is named (a suite's).
        name: ``--name``, typed on the command line (a flag like the others).

    Raises:
        BtkError: one line naming the source, the field and the problem.
    """
    from btk.config import Setting, resolve_config

    settings: list[Setting] = []
    if default_preset is not None:
        settings.append(Setting("preset", default_preset, "default", origin="default"))
    if opts.get("config_file") is not None:
        from btk.config_file import read_config_file

        settings += read_config_file(opts["config_file"])
    if typed(ctx, "preset") and opts.get("preset"):
        settings.append(Setting("preset", opts["preset"], "--preset", origin="flag"))
    for key, decls, extra in _config_flags():
        param = _param_name(decls)
        if not typed(ctx, param):
            continue
        value = opts[param]
        if extra.get("multiple") and key in ("reader_options", "model_options"):
            value = pairs(value, decls[0] + " value")
        settings.append(Setting(key, value, decls[0], origin="flag"))
    if name:
        settings.append(Setting("name", name, "--name", origin="flag"))
    for item in opts.get("settings") or ():
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise BtkError(f"--set {item}: write FIELD=VALUE")
        settings.append(Setting(key.strip(), value.strip(), f"--set {item}", origin="set"))
    config = resolve_config(settings)
    refuse_credentials(ctx, None, config.data)  # from a flag, --set or the file: never kept in a run
    return config
