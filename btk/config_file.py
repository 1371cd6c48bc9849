"""Run configurations from files: ``--config FILE`` (TOML, or JSON for any other suffix).

A file holds run fields (``data``, ``reader``, ``task``, ``seed``, ...), a ``preset`` to start
the recipe from and a ``recipe`` table of recipe fields. A run directory's ``config.json`` works
as it is: its recipe counts as its preset plus the fields it changed, so ``--preset`` on the
command line keeps those changes on the new preset. The file is one source among the four
(:data:`btk.config.SOURCE_ORDER`): the command line's flags and ``--set`` override it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from btk.config import RECIPES, Setting, migrate
from btk.errors import BtkError


def _load(path: Path) -> tuple[dict[str, Any], bool]:
    """The file's table of settings, and whether it is a run directory's ``config.json``."""
    if not path.is_file():
        raise BtkError(f"config file not found: {path}")
    text = path.read_text()
    kind = "TOML" if path.suffix.lower() == ".toml" else "JSON"
    try:
        if kind == "TOML":
            import tomllib

            data = tomllib.loads(text)
        else:
            data = json.loads(text)
    except ValueError as exc:  # tomllib.TOMLDecodeError and json.JSONDecodeError are ValueErrors
        raise BtkError(f"{path}: not valid {kind}: {exc}") from None
    if not isinstance(data, dict):
        raise BtkError(f"{path}: expected a table of settings, found {type(data).__name__}")
    if isinstance(data.get("config"), dict):  # a run directory's config.json
        return dict(data["config"]), True
    return dict(data), False


def read_config_file(path: Path | str) -> list[Setting]:
    """The settings in ``path``, each labelled with the file's name, in the file's order.

    Raises:
        BtkError: a missing or unparsable file, or a ``recipe`` that is not a table. Values are
            checked when the settings are resolved (:func:`btk.config.resolve_config`).
    """
    path = Path(path)
    data, from_run = _load(path)
    data = migrate(data)
    source = str(path)
    recipe = data.pop("recipe", None) or {}
    if not isinstance(recipe, dict):
        raise BtkError(f"{source}: recipe: expected a table of recipe fields")
    recipe = dict(recipe)
    preset = data.pop("preset", None)
    named = recipe.pop("name", None)
    if from_run and named in RECIPES:  # a run's full recipe: its preset and what it changed
        base = RECIPES[named]
        recipe = {k: v for k, v in recipe.items() if getattr(base, k, object()) != v}
    settings = []
    if preset is not None or (from_run and named in RECIPES):
        settings.append(Setting("preset", preset if preset is not None else named, source))
    settings += [Setting(f"recipe.{k}", v, source) for k, v in recipe.items()]
    settings += [Setting(k, v, source) for k, v in data.items()]
    return settings
