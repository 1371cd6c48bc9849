"""Run configurations from files: ``btk run --config FILE`` (TOML or JSON).

A file holds :class:`btk.config.RunConfig` fields (``data``, ``reader``, ``task``, ``seed``, ...),
a ``preset`` to start the recipe from and a ``recipe`` table of recipe fields to change. A run
directory's ``config.json`` works as it is: its ``config`` object is the whole configuration.
Options given on the command line override the file.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

from btk.config import RECIPE_FIELDS, Recipe, RunConfig, get_recipe, migrate_augment
from btk.errors import BtkError

RUN_FIELDS = tuple(f.name for f in fields(RunConfig) if f.name != "recipe")
TUPLE_FIELDS = ("train_degrade", "test_degrade")

# btk run's options -> the RunConfig field each sets (recipe fields are set by name)
OPTION_FIELDS = {"data": "data", "reader": "reader", "reader_option": "reader_options", "task": "task",
                 "negative_class": "negative_class", "model": "model", "model_option": "model_options",
                 "test_degrade": "test_degrade", "train_degrade": "train_degrade", "seed": "seed",
                 "limit_train": "limit_train", "limit_test": "limit_test", "name": "name",
                 "strict": "strict", "duplicate_threshold": "duplicate_threshold",
                 "devices": "devices"}


def _load(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise BtkError(f"config file not found: {path}")
    text = path.read_text()
    try:
        if path.suffix.lower() == ".toml":
            import tomllib

            data = tomllib.loads(text)
        else:
            data = json.loads(text)
    except ValueError as exc:  # tomllib.TOMLDecodeError and json.JSONDecodeError are ValueErrors
        kind = "TOML" if path.suffix.lower() == ".toml" else "JSON"
        raise BtkError(f"{path}: not valid {kind}: {exc}") from None
    if not isinstance(data, dict):
        raise BtkError(f"{path}: expected a table of settings, found {type(data).__name__}")
    if isinstance(data.get("config"), dict):  # a run directory's config.json
        data = data["config"]
    return dict(data)


def read_config_file(path: Path | str) -> RunConfig:
    """The run configuration in ``path`` (``.toml``, or JSON for any other suffix).

    Raises:
        BtkError: a missing or unparsable file, an unknown field or preset, a bad value.
    """
    path = Path(path)
    data = _load(path)
    if "augment" in data or "augment_probability" in data:  # written before these were recipe fields
        data.setdefault("recipe", {})
        data = migrate_augment(data)
    preset = data.pop("preset", None)
    recipe_values = data.pop("recipe", {}) or {}
    if not isinstance(recipe_values, dict):
        raise BtkError(f"{path}: 'recipe' must be a table of recipe fields")
    unknown = sorted(set(data) - set(RUN_FIELDS))
    if unknown:
        raise BtkError(f"{path}: unknown field(s) {', '.join(unknown)} (run fields: {', '.join(RUN_FIELDS)}; "
                       "recipe fields go in a 'recipe' table)")
    known_recipe = {f.name for f in fields(Recipe)}
    unknown = sorted(set(recipe_values) - known_recipe)
    if unknown:
        raise BtkError(f"{path}: unknown recipe field(s) {', '.join(unknown)}")
    base = get_recipe(preset or recipe_values.get("name") or "fast")
    recipe = replace(base, **recipe_values)
    for key in TUPLE_FIELDS:
        if key in data:
            data[key] = tuple(data[key] or ())
    for key in ("reader_options", "model_options"):
        if key in data:
            data[key] = {str(k): str(v) for k, v in (data[key] or {}).items()}
    try:
        return RunConfig(recipe=recipe, **data)
    except (TypeError, ValueError) as exc:
        raise BtkError(f"{path}: {exc}") from None


def with_command_line(base: RunConfig, flags: RunConfig, given: Iterable[str], settings: Iterable[str]) -> RunConfig:
    """``base`` (from a file) with what the command line gave: ``flags`` is the configuration
    the command line describes, ``given`` the names of the options typed, ``settings`` the
    recipe fields set with ``--set``. A ``--preset`` replaces the file's recipe."""
    given = set(given)
    recipe = flags.recipe if "preset" in given else base.recipe
    recipe_changes = {f: getattr(flags.recipe, f) for f in RECIPE_FIELDS if f in given and f != "model"}
    recipe_changes.update({f: getattr(flags.recipe, f) for f in settings})
    changes = {fld: getattr(flags, fld) for option, fld in OPTION_FIELDS.items() if option in given}
    if "data" in given and "reader" not in given and base.reader == "synthetic":
        changes["reader"] = flags.reader
    return replace(base, recipe=replace(recipe, **recipe_changes), **changes)
