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


def test_installing_btk_adds_no_pytest_plugin():
    """btk.testing is opt-in (``-p btk.testing`` or ``pytest_plugins``): installing btk must not load
    it into every pytest session of the machine."""
    from importlib.metadata import entry_points

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "pytest11" not in project.get("entry-points", {})
    assert not [e for e in entry_points(group="pytest11") if e.value.startswith("btk")]


def test_a_plugins_tests_opt_into_the_contract_kits_fixtures(tmp_path):
    """What docs/plugins.md tells a plugin author: without ``-p btk.testing`` its fixtures are
    unknown, with it they are there."""
    import subprocess
    import sys

    (tmp_path / "test_kit.py").write_text("def test_images(btk_sample_images):\n"
                                          "    assert btk_sample_images.shape == (4, 64, 64, 3)\n")
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_kit.py"]
    without = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True)
    assert without.returncode == 1 and "fixture 'btk_sample_images' not found" in without.stdout, without.stdout
    opted = subprocess.run([*command, "-p", "btk.testing"], cwd=tmp_path, capture_output=True, text=True)
    assert opted.returncode == 0 and "1 passed" in opted.stdout, opted.stdout
