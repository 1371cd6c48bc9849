"""One interface across commands: the same options mean the same thing everywhere, `btk run` is
one run with at most 30 options, every mode has its verb, --json is pure JSON, the library
functions behind the commands are importable, and the import contracts hold and can fail."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from btk.cli import _add_plugin_commands, cli

ROOT = Path(__file__).resolve().parents[1]


def _commands() -> dict[str, click.Command]:
    _add_plugin_commands()
    return dict(cli.commands)


def _option(command: click.Command, flag: str) -> click.Option | None:
    return next((p for p in command.params if isinstance(p, click.Option) and flag in p.opts), None)


def test_btk_run_is_one_run_with_at_most_30_options():
    run = _commands()["run"]
    options = [p for p in run.params if isinstance(p, click.Option)]
    assert len(options) + 1 <= 30  # and --help
    for gone in ("--resume", "--suite", "--seeds", "--jobs", "--write-plan", "--ensemble", "--coordinator"):
        assert _option(run, gone) is None, gone
    # each former mode has its verb
    commands = _commands()
    assert _option(commands["plan"], "--suite") and _option(commands["plan"], "--seeds")
    assert _option(commands["plan"], "--jobs") and _option(commands["plan"], "--write")
    assert _option(commands["ensemble"], "--train") and "resume" in commands


def test_the_shared_options_mean_the_same_everywhere():
    for name, command in _commands().items():
        out = _option(command, "--out")
        if out is not None:
            assert out.metavar == "DIR" and (out.help or "").startswith("Folder in which"), name
        data = _option(command, "--data")
        reader = _option(command, "--reader")
        if reader is not None:  # every command that reads takes reader options the same way
            assert _option(command, "-R") is not None, name
            assert data is not None, name
        assert _option(command, "--json") is not None, f"btk {name} has no --json"
        assert not [p for p in command.params if isinstance(p, click.Argument) and p.name == "paths"
                    and name in ("predict", "explain")], name  # data comes with --data


@pytest.mark.parametrize("args", [["plugins", "--json"], ["cache", "--json"]])
def test_json_is_alone_on_standard_output(args):
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    json.loads(result.stdout)


def test_the_library_behind_the_commands_is_importable():
    import btk

    for name in btk.__all__:
        assert getattr(btk, name) is not None, name
    doc = btk.__doc__ or ""
    import importlib
    import re

    for module, function in re.findall(r":func:`(btk\.[\w.]+)\.(\w+)`", doc):
        assert callable(getattr(importlib.import_module(module), function)), f"{module}.{function}"


def test_the_import_contracts_hold_and_fail_on_a_cycle(tmp_path):
    """`make lint` runs lint-imports; a deliberately added import that closes a cycle breaks it."""
    lint = shutil.which("lint-imports") or str(Path(__import__("sys").executable).parent / "lint-imports")
    if not Path(lint).exists():
        pytest.skip("import-linter is not installed (make lint installs it)")
    copy = tmp_path / "project"
    shutil.copytree(ROOT / "btk", copy / "btk", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", copy / "pyproject.toml")

    def lint_imports() -> subprocess.CompletedProcess:
        return subprocess.run([lint, "--no-cache"], cwd=copy, capture_output=True, text=True,
                              env={"PYTHONPATH": str(copy), "PATH": "/usr/bin:/bin"})

    kept = lint_imports()
    assert kept.returncode == 0, kept.stdout + kept.stderr
    with open(copy / "btk" / "runs.py", "a") as fh:  # the record reaching up into the pipeline: a cycle
        fh.write("\n\ndef _cycle():\n    from btk.pipeline import versions\n\n    return versions\n")
    broken = lint_imports()
    assert broken.returncode != 0
    assert "No import cycles between btk's modules and packages BROKEN" in broken.stdout
