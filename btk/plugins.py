"""The plugin manager: built-in plugins, entry-point plugins, and what each registered.

Built-ins are the modules in :data:`DEFAULT_PLUGINS`; third-party packages arrive through the
entry-point group ``btk``. A plugin that fails to import, raises in a hook, registers a
duplicate name or implements a hook that does not exist is reported in one line naming it
(:attr:`PluginHost.problems`) and left out; everything else keeps working.

Environment variables:
    BTK_LOAD_PLUGINS: comma-separated entry-point names to load; set but empty loads none.
    BTK_BLOCK_PLUGINS: comma-separated entry-point names never to load.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, cast

import pluggy

from btk import hookspecs
from btk.errors import DuplicateNameError
from btk.registry import Registry

DEFAULT_PLUGINS: tuple[str, ...] = (
    "btk.default_plugins.folder",
    "btk.default_plugins.synthetic",
    "btk.default_plugins.dicom",
    "btk.default_plugins.dicomweb",
    "btk.default_plugins.nifti",
    "btk.default_plugins.convert",
    "btk.default_plugins.degraders",
    "btk.default_plugins.mri_artefacts",
    "btk.default_plugins.seed_cnn",
    "btk.default_plugins.small_cnn",
    "btk.default_plugins.res_cnn",
    "btk.default_plugins.reporters",
    "btk.default_plugins.html_report",
    "btk.default_plugins.packaged",
)

KINDS = ("readers", "degraders", "models", "reporters", "runs")


@dataclass
class PluginInfo:
    """A loaded plugin: its name, where it came from and its version."""

    name: str
    origin: str  # "built-in" or the distribution's name
    version: str
    module: Any = None


@dataclass
class PluginHost:
    """The plugin manager with its registries filled in."""

    pm: pluggy.PluginManager
    readers: Registry = field(default_factory=lambda: Registry("reader"))
    degraders: Registry = field(default_factory=lambda: Registry("degrader"))
    models: Registry = field(default_factory=lambda: Registry("model"))
    reporters: Registry = field(default_factory=lambda: Registry("reporter"))
    runs: Registry = field(default_factory=lambda: Registry("packaged run"))
    plugins: list[PluginInfo] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    # plugin name -> the commands it added to the ``btk`` group (filled in by the command line)
    commands: dict[str, list[str]] = field(default_factory=dict)

    def registry(self, kind: str) -> Registry:
        """The registry for ``kind`` (one of :data:`KINDS`)."""
        return getattr(self, kind)

    def info(self, name: str) -> PluginInfo | None:
        """The :class:`PluginInfo` of a plugin by name."""
        return next((p for p in self.plugins if p.name == name), None)


def _env_list(name: str) -> list[str] | None:
    value = os.environ.get(name)
    if value is None:
        return None
    return [v.strip() for v in value.split(",") if v.strip()]


def _register(host: PluginHost, module: Any, name: str, origin: str, version: str) -> None:
    try:
        host.pm.register(module, name=name)
    except ValueError as exc:  # the same module or name twice
        host.problems.append(f"plugin '{name}' ({origin}) not loaded: {exc}")
        return
    try:
        host.pm.check_pending()
    except pluggy.PluginValidationError as exc:
        host.pm.unregister(module)
        host.problems.append(f"plugin '{name}' ({origin}) not loaded: {exc}")
        return
    host.plugins.append(PluginInfo(name, origin, version, module))


def _load_entrypoints(host: PluginHost) -> None:
    only = _env_list("BTK_LOAD_PLUGINS")
    blocked = set(_env_list("BTK_BLOCK_PLUGINS") or [])
    for ep in metadata.entry_points(group="btk"):
        if ep.name in blocked or (only is not None and ep.name not in only):
            continue
        dist = getattr(ep, "dist", None)
        origin = f"{dist.name} {dist.version}" if dist else "unknown distribution"
        try:
            module = ep.load()
        except Exception as exc:  # a broken plugin must not break btk
            host.problems.append(
                f"plugin '{ep.name}' ({origin}) failed to load: {type(exc).__name__}: {exc}"
            )
            continue
        _register(host, module, ep.name, origin, dist.version if dist else "?")


def _describe(host: PluginHost, plugin: str) -> str:
    info = host.info(plugin)
    return f"'{plugin}' comes from {info.origin}" if info else f"'{plugin}'"


def _collect(host: PluginHost) -> None:
    """Call each plugin's register hooks one plugin at a time, so errors stay attributable."""
    for kind in KINDS:
        caller = getattr(host.pm.hook, f"btk_register_{kind}")
        registry = host.registry(kind)
        for impl in caller.get_hookimpls():  # registration order: built-ins first
            plugin = impl.plugin_name

            def register(item: Any, _plugin: str = plugin) -> None:
                registry.add(item, _plugin)

            try:
                impl.function(register=register)
            except DuplicateNameError as exc:
                host.problems.append(f"{exc} ({_describe(host, plugin)})")
            except Exception as exc:
                origin = cast(PluginInfo, host.info(plugin)).origin if host.info(plugin) else "unknown origin"
                host.problems.append(
                    f"plugin '{plugin}' ({origin}) failed in btk_register_{kind}: {type(exc).__name__}: {exc}"
                )


def load_plugins(extra: list[Any] | None = None, entrypoints: bool = True) -> PluginHost:
    """Build a :class:`PluginHost`: built-ins, then entry points, then ``extra`` plugin objects.

    Args:
        extra: plugin objects (modules or classes with hookimpls) to register after the rest;
            tests and notebooks use it.
        entrypoints: load third-party plugins from the ``btk`` entry-point group.
    """
    pm = pluggy.PluginManager("btk")
    pm.add_hookspecs(hookspecs)
    host = PluginHost(pm)
    from btk import __version__

    for modname in DEFAULT_PLUGINS:
        try:
            module = importlib.import_module(modname)
        except Exception as exc:
            host.problems.append(f"built-in plugin '{modname}' failed to load: {type(exc).__name__}: {exc}")
            continue
        _register(host, module, modname, "built-in", __version__)
    if entrypoints:
        _load_entrypoints(host)
    for obj in extra or []:
        name = getattr(obj, "__name__", None) or type(obj).__name__
        _register(host, obj, name, "registered at run time", "-")
    _collect(host)
    return host


def describe_plugins(host: PluginHost) -> list[dict[str, Any]]:
    """Each loaded plugin: its name, where it came from, its version and what it registered
    (names per kind, and the commands it added to the CLI)."""
    out = []
    for info in host.plugins:
        registered = {kind: host.registry(kind).by_plugin(info.name) for kind in KINDS}
        registered["commands"] = list(host.commands.get(info.name, []))
        out.append({"name": info.name, "origin": info.origin, "version": info.version, "registered": registered})
    return out


_HOST: PluginHost | None = None
_EXTRA: list[Any] = []


def get_host() -> PluginHost:
    """The process-wide plugin host, built on first use."""
    global _HOST
    if _HOST is None:
        _HOST = load_plugins(extra=list(_EXTRA))
    return _HOST


def register_plugin(plugin: Any) -> None:
    """Add a plugin object for this process (e.g. from a test or a notebook) and rebuild the host."""
    _EXTRA.append(plugin)
    reset()


def unregister_plugin(plugin: Any) -> None:
    """Undo :func:`register_plugin`."""
    if plugin in _EXTRA:
        _EXTRA.remove(plugin)
    reset()


def reset() -> None:
    """Forget the process-wide host; the next :func:`get_host` rebuilds it."""
    global _HOST
    _HOST = None
