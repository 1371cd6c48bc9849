"""The generated docs match the code, the recipe table is the one source of preset values, and the
library leaves drawing to btk.render."""

from __future__ import annotations

import ast
from pathlib import Path

from click.testing import CliRunner

from btk.cli import cli

ROOT = Path(__file__).resolve().parent.parent


def test_cli_reference_is_generated_from_the_commands():
    from btk.clidoc import cli_reference

    assert (ROOT / "docs" / "cli.md").read_text() == cli_reference(), "run `python -m btk.clidoc` to regenerate"


def test_recipe_table_in_the_docs_is_generated_from_the_presets():
    from btk.clidoc import with_recipe_table

    text = (ROOT / "docs" / "recipes.md").read_text()
    assert text == with_recipe_table(text), "run `python -m btk.clidoc` to regenerate"


def test_run_help_shows_each_presets_value_from_the_recipe_table(monkeypatch):
    from btk.config import RECIPE_FIELDS, RECIPES, field_flag

    run = cli.get_command(None, "run")
    flags = {opt for p in run.params for opt in (*p.opts, *p.secondary_opts)}
    for name in RECIPE_FIELDS:
        flag = field_flag(name)
        assert not flag or all(f in flags for f in flag.split("/")), f"{name}: {flag} is not an option of btk run"
    text = CliRunner().invoke(cli, ["run", "--help"], terminal_width=200).output
    assert "[fast: 30; btk, report: 60; demo: 10]" in " ".join(text.split())
    monkeypatch.setitem(RECIPES, "fast", RECIPES["fast"].__class__(**{**RECIPES["fast"].__dict__, "epochs": 17}))
    from btk.config import preset_hint

    assert preset_hint("epochs").startswith("fast: 17;")  # --help and docs read the table, not a copy


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_only_the_rendering_package_and_the_reporters_import_rich():
    allowed = {"render", "default_plugins/reporters.py", "default_plugins/html_report.py"}
    offenders = []
    for path in sorted((ROOT / "btk").rglob("*.py")):
        rel = path.relative_to(ROOT / "btk").as_posix()
        if rel.split("/")[0] == "render" or rel in allowed:
            continue
        if any(name == "rich" or name.startswith("rich.") for name in _imports(path)):
            offenders.append(rel)
    assert offenders == []


def test_readme_quotes_the_measured_demo():
    """The README's figures for `make demo` are the ones benchmarks/demo_seeds.py measured."""
    import json
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    results = json.loads((root / "docs" / "results" / "cpu-demo" / "demo-seeds.json").read_text())["results"]
    text = " ".join((root / "README.md").read_text().split())

    def span(values: list[float]) -> str:
        return f"{100 * min(values):.1f}-{100 * max(values):.1f}%"

    auto = [r for r in results if r["precision"] == "auto"]
    fp32 = [r for r in results if r["precision"] == "float32"]
    default = next(r for r in auto if r["seed"] == 101)
    seconds = [r["seconds"] for r in auto]
    assert f"scores {100 * default['accuracy']:.1f}% on its {default['n']} held-out phantoms" in text
    assert f"Over seeds 101-103 it scores {span([r['accuracy'] for r in auto])}" in text
    assert f"and {span([r['accuracy'] for r in fp32])} in float32" in text
    assert f"({min(seconds):.0f}-{max(seconds):.0f} s)" in text


def _options(command: object) -> set[str]:
    import click

    names = {"--help"}
    for param in getattr(command, "params", []):
        names |= {o for o in (*param.opts, *param.secondary_opts) if o.startswith("--")}
    for sub in getattr(command, "commands", {}).values() if isinstance(command, click.Group) else ():
        names |= _options(sub)
    return names


def test_every_btk_command_line_in_the_readme_uses_real_commands_and_options():
    """A README line ``btk CMD ... --option`` names a command of btk and options of that command;
    any other ``--option`` it names is an option of some btk command."""
    import re

    import click

    ctx = click.Context(cli)
    readme = (ROOT / "README.md").read_text()
    # the code: fenced blocks and `inline` spans, without comments
    code = "\n".join([*re.findall(r"```[^\n]*\n(.*?)```", readme, re.S),
                      *re.findall(r"`([^`\n]+)`", re.sub(r"```.*?```", "", readme, flags=re.S))])
    text = re.sub(r"(^|\s)#.*", "", code, flags=re.M)
    commands = {name: cli.get_command(ctx, name) for name in cli.list_commands(ctx)}
    problems = []
    for name, rest in re.findall(r"\bbtk ([a-z][a-z-]*)([^\n]*)", text):
        if name not in commands:
            problems.append(f"btk {name}: no such command")
            continue
        problems += [f"btk {name} {o}" for o in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", rest)
                     if o not in _options(commands[name])]
    every = _options(cli) | {o for c in commands.values() for o in _options(c)}
    problems += [o for o in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", text) if o not in every]
    assert problems == []
