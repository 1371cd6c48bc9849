"""What the package ships: its licence, the default plugins inside the package, the typing marker."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_mit_licence_is_there_and_declared():
    licence = ROOT / "LICENSE"
    assert licence.exists()
    assert licence.read_text().startswith("MIT License")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "MIT"
    assert project["license-files"] == ["LICENSE"]


def test_the_default_plugins_and_py_typed_are_packaged():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["build-system"]["build-backend"] == "hatchling.build"
    hatch = project["tool"]["hatch"]["build"]
    assert hatch["targets"]["wheel"]["packages"] == ["btk"]  # the whole package folder, py.typed with it
    assert hatch["dev-mode-exact"] is True
    assert (ROOT / "btk" / "default_plugins" / "__init__.py").exists()
    assert (ROOT / "btk" / "py.typed").exists()
    assert not (ROOT / "plugins" / "btk_default").exists()
