"""Plugins: the default set, a plugin registered from a test, and broken plugins."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from btk import plugins
from btk.cli import cli
from btk.degraders import Degrader
from btk.errors import BtkError
from btk.hookspecs import hookimpl
from btk.types import Entry, ModelSpec, Reporter, Sample


def _command_plugin(class_name, command, text):
    """A plugin object (of class ``class_name``: its plugin name) adding ``btk COMMAND`` that echoes ``text``."""
    import click

    def btk_register_commands(self, cli):
        @cli.command(name=command)
        def echo():
            """Say something."""
            click.echo(text)

    return type(class_name, (), {"btk_register_commands": hookimpl(btk_register_commands)})()

ROOT = Path(__file__).resolve().parents[1]


class ToyReader:
    """Two classes: dark and bright squares, 16 x 16; no declared split."""

    name = "toy"
    description = "dark vs bright"

    def scan(self, path, options):
        return [Entry(f"toy/{c}/{i}", c, f"toy/{c}/{i}") for c in ("bright", "dark") for i in range(40)]

    def load(self, entry, options):
        rng = np.random.default_rng(zlib.crc32(entry.source.encode()))
        base = 200 if entry.label == "bright" else 40
        image = np.clip(rng.normal(base, 20, (16, 16, 1)), 0, 255).astype(np.uint8)
        return [Sample(image, entry.label, entry.group, entry.source)]


def invert(image, rng):
    return 255 - image


def build_toy_model(input_shape, n_classes, options):
    import keras

    model = keras.Sequential([keras.Input(input_shape), keras.layers.GlobalAveragePooling2D(),
                              keras.layers.Dense(n_classes, activation="softmax")])
    model.compile(loss="categorical_crossentropy", optimizer=keras.optimizers.Adam(0.1), metrics=["accuracy"])
    return model


class ToyPlugin:
    """A third-party-style plugin providing one of each kind."""

    reported: list = []

    @hookimpl
    def btk_register_readers(self, register):
        register(ToyReader())

    @hookimpl
    def btk_register_degraders(self, register):
        register(Degrader("invert", invert, (), "255 - image"))

    @hookimpl
    def btk_register_models(self, register):
        register(ModelSpec("toy-model", build_toy_model, "pooling + dense", 1))

    @hookimpl
    def btk_register_reporters(self, register):
        register(Reporter("toy-reporter", lambda run, console: ToyPlugin.reported.append(run), "records runs"))


def test_default_plugin_set_is_listed():
    result = CliRunner().invoke(cli, ["plugins"])
    assert result.exit_code == 0, result.output
    for name in ("btk.default_plugins.folder", "btk.default_plugins.synthetic", "btk.default_plugins.degraders",
                 "btk.default_plugins.seed_cnn", "btk.default_plugins.small_cnn", "btk.default_plugins.reporters",
                 "folder", "synthetic", "blur", "resolution", "seed-cnn", "small-cnn", "terminal", "html"):
        assert name in result.output
    host = plugins.get_host()
    assert sorted(host.reporters.names()) == ["html", "terminal"]  # no json reporter: every command has --json
    assert host.readers.owner("folder") == "btk.default_plugins.folder"
    assert host.degraders.by_plugin("btk.default_plugins.degraders") == ["blur", "resolution"]
    assert host.problems == []


@pytest.mark.slow
def test_registered_plugin_drives_btk_run(tmp_path):
    plugin = ToyPlugin()
    ToyPlugin.reported.clear()
    plugins.register_plugin(plugin)
    result = CliRunner().invoke(cli, [
        "run", "--reader", "toy", "--model", "toy-model", "--degrade", "invert", "--reporter", "toy-reporter",
        "--image-size", "16", "--set", "channels=1", "--epochs", "15", "--batch-size", "8", "--out", str(tmp_path),
        "--preset", "btk",
    ])
    assert result.exit_code == 0, result.output
    assert len(ToyPlugin.reported) == 1
    run = ToyPlugin.reported[0]
    assert run.config.reader == "toy" and run.config.model_name == "toy-model" == run.recipe.model
    assert run.recipe.channels == 1 and run.input_shape == (16, 16, 1)
    assert run.plugins["reader"] == "ToyPlugin" and run.plugins["model"] == "ToyPlugin"
    conditions = run.metrics["conditions"]
    assert set(conditions) == {"clean", "invert"}
    assert conditions["clean"]["accuracy"] >= 0.9  # bright vs dark is easy
    assert conditions["invert"]["accuracy"] <= 0.5  # inverting destroys the cue (swaps it, or puts all on one side)
    rows = run.predictions()
    assert {r["condition"] for r in rows} == {"clean", "invert"}
    assert len(rows) == 2 * conditions["clean"]["n"]


def test_duplicate_name_is_reported_with_both_plugins():
    class Duplicate:
        @hookimpl
        def btk_register_readers(self, register):
            register(ToyReader())
            register(type("Folder", (ToyReader,), {"name": "folder"})())

    host = plugins.load_plugins(extra=[Duplicate()], entrypoints=False)
    assert any("'Duplicate'" in p and "'btk.default_plugins.folder'" in p and "reader 'folder'" in p
               and "comes from registered at run time" in p for p in host.problems)
    assert host.readers.owner("folder") == "btk.default_plugins.folder"
    assert "toy" in host.readers  # what came before the duplicate is kept


def test_misspelled_hook_is_reported_and_plugin_left_out():
    class Typo:
        @hookimpl
        def btk_register_reader(self, register):  # missing "s"
            pass

    host = plugins.load_plugins(extra=[Typo()], entrypoints=False)
    assert len(host.problems) == 1
    assert "'Typo'" in host.problems[0] and "btk_register_reader" in host.problems[0]
    assert "\n" not in host.problems[0]
    assert host.info("Typo") is None


def test_plugin_raising_in_hook_is_contained():
    class Raises:
        @hookimpl
        def btk_register_models(self, register):
            raise RuntimeError("no GPU here")

    host = plugins.load_plugins(extra=[Raises()], entrypoints=False)
    assert host.problems == ["plugin 'Raises' (registered at run time) failed in btk_register_models: "
                             "RuntimeError: no GPU here"]
    assert "seed-cnn" in host.models


def test_unknown_names_list_the_known_ones():
    host = plugins.get_host()
    with pytest.raises(BtkError, match=r"unknown model 'resnet' \(known: res-cnn, seed-cnn, small-cnn\)"):
        host.models.get("resnet")


def _fake_distribution(site: Path, body: str) -> None:
    """An installed distribution 'btk-broken' whose entry point 'broken' imports ``body``."""
    (site / "btk_broken_plugin.py").write_text(textwrap.dedent(body))
    info = site / "btk_broken-1.2.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: btk-broken\nVersion: 1.2.3\n")
    (info / "entry_points.txt").write_text("[btk]\nbroken = btk_broken_plugin\n")


def _btk(args, site: Path, **env):
    import os

    environ = {k: v for k, v in os.environ.items() if k != "BTK_LOAD_PLUGINS"}
    environ["PYTHONPATH"] = os.pathsep.join([str(site), str(ROOT), str(ROOT / "plugins")])
    environ.update(env)
    return subprocess.run([sys.executable, "-m", "btk", *args], capture_output=True, text=True, env=environ,
                          timeout=60)


def test_plugin_that_raises_on_import_is_named_and_cli_keeps_working(tmp_path):
    _fake_distribution(tmp_path, "raise ImportError('needs libfoo')\n")
    result = _btk(["plugins"], tmp_path)
    assert result.returncode == 0, result.stderr
    problem = [line for line in result.stderr.splitlines() if "broken" in line]
    assert problem == ["btk: warning: plugin 'broken' (btk-broken 1.2.3) failed to load: ImportError: needs libfoo"]
    assert "btk.default_plugins.folder" in result.stdout
    blocked = _btk(["plugins"], tmp_path, BTK_BLOCK_PLUGINS="broken")
    assert "broken" not in blocked.stderr


def test_entry_point_plugin_is_loaded_and_listed(tmp_path):
    _fake_distribution(tmp_path, """
        import numpy as np
        from btk.degraders import Degrader
        from btk.hookspecs import hookimpl

        @hookimpl
        def btk_register_degraders(register):
            register(Degrader("invert", lambda image, rng: 255 - image, (), "255 - image"))
    """)
    result = _btk(["plugins"], tmp_path, COLUMNS="200")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    line = next(line for line in result.stdout.splitlines() if "broken" in line)
    assert "btk-broken 1.2.3" in line and "degraders: invert" in line
    none = _btk(["plugins"], tmp_path, BTK_LOAD_PLUGINS="", COLUMNS="200")
    assert "invert" not in none.stdout


def test_help_does_not_import_heavy_libraries():
    code = ("import sys; from btk.cli import cli, _add_plugin_commands; _add_plugin_commands(); "
            "heavy = [m for m in ('keras', 'tensorflow', 'cv2', 'sklearn', 'jax', 'torch') if m in sys.modules]; "
            "print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""
    help_ = subprocess.run([sys.executable, "-m", "btk", "--help"], capture_output=True, text=True, timeout=60)
    assert help_.returncode == 0 and "run" in help_.stdout and "plugins" in help_.stdout


def test_example_plugin_registers_and_works():
    sys.path.insert(0, str(ROOT / "examples"))
    try:
        import invert_plugin
    finally:
        sys.path.pop(0)
    plugins.register_plugin(invert_plugin)
    degrader = plugins.get_host().degraders.get("invert")
    image = np.arange(12, dtype=np.uint8).reshape(1, 2, 2, 3)
    assert np.array_equal(degrader.apply(image), 255 - image)
    assert np.array_equal(degrader.apply(image, {"amount": 0}), image)
    assert plugins.get_host().degraders.owner("invert") == "invert_plugin"


def test_every_hook_is_documented_with_its_signature():
    import inspect

    from btk import hookspecs

    docs = (ROOT / "docs" / "plugins.md").read_text()
    hooks = [name for name in dir(hookspecs) if name.startswith("btk_")]
    assert len(hooks) == 6
    for name in hooks:
        signature = f"{name}{inspect.signature(getattr(hookspecs, name))}".replace("'", "")
        assert signature in docs, signature


# One test per hook: each registers through the hook and the registration is used.

def test_hook_btk_register_readers():
    class P:
        @hookimpl
        def btk_register_readers(self, register):
            register(ToyReader())

    host = plugins.load_plugins(extra=[P()], entrypoints=False)
    assert host.readers.owner("toy") == "P" and host.readers.get("toy").scan(None, None)[0].label == "bright"


def test_hook_btk_register_degraders():
    class P:
        @hookimpl
        def btk_register_degraders(self, register):
            register(Degrader("invert", invert, (), "255 - image"))

    host = plugins.load_plugins(extra=[P()], entrypoints=False)
    assert host.degraders.get("invert").apply(np.zeros((1, 2, 2), np.uint8)).max() == 255


def test_hook_btk_register_models():
    class P:
        @hookimpl
        def btk_register_models(self, register):
            register(ModelSpec("toy-model", build_toy_model, "pooling + dense", 1))

    host = plugins.load_plugins(extra=[P()], entrypoints=False)
    assert host.models.get("toy-model").build((8, 8, 1), 3, {}).outputs[0].shape[-1] == 3


def test_hook_btk_register_reporters(btk_sample_run):
    seen = []

    class P:
        @hookimpl
        def btk_register_reporters(self, register):
            register(Reporter("toy-reporter", lambda run, console: seen.append(run.name), "records runs"))

    plugins.register_plugin(P())
    result = CliRunner().invoke(cli, ["report", str(btk_sample_run), "--reporter", "toy-reporter"])
    assert result.exit_code == 0, result.output
    assert seen == ["sample-run"]


def _hospital_plugin(path: Path) -> type:
    """A hospital's package, as its ``btk`` entry point would register its run."""
    from btk.api import PackagedRun, hookimpl

    class Hospital:
        @staticmethod
        @hookimpl
        def btk_register_runs(register):
            register(PackagedRun("st-elsewhere-v1", path, "our own model"))

    return Hospital


def test_hook_btk_register_runs(sartaj_small_run, sartaj_small, tmp_path, monkeypatch):
    plugin = _hospital_plugin(sartaj_small_run)
    monkeypatch.setattr(plugins, "_HOST", plugins.load_plugins(extra=[plugin], entrypoints=False))
    result = CliRunner().invoke(cli, ["predict", "st-elsewhere-v1", "--data", str(sartaj_small / "Testing"),
                                      "--out", str(tmp_path), "--runtime", "keras"])
    assert result.exit_code == 0, result.output
    [folder] = list(tmp_path.iterdir())
    assert json.loads((folder / "predict.json").read_text())["run"] == str(sartaj_small_run)
    monkeypatch.setenv("BTK_RUN", "st-elsewhere-v1")
    result = CliRunner().invoke(cli, ["predict", "--data", str(sartaj_small / "Testing"), "--json"])
    assert result.exit_code == 0 and "using the packaged run 'st-elsewhere-v1': our own model" in result.stderr
    monkeypatch.setenv("BTK_RUN", "nobody-shipped-this")
    from conftest import one_line_refusal

    assert "nobody-shipped-this" in one_line_refusal(["predict", "--data", str(sartaj_small / "Testing")])


def test_hook_btk_register_commands():
    plugins.register_plugin(_command_plugin("P", "hello-plugin", "hello from a plugin"))
    from btk.cli import BtkGroup, _add_plugin_commands

    _add_plugin_commands()
    assert BtkGroup._plugin_commands_host is plugins.get_host()
    assert plugins.get_host().commands["P"] == ["hello-plugin"]
    result = CliRunner().invoke(cli, ["hello-plugin"])
    assert result.output.strip() == "hello from a plugin"


def test_btk_plugins_lists_the_commands_a_plugin_added():
    result = CliRunner().invoke(cli, ["plugins"])
    assert result.exit_code == 0, result.output
    row = next(line for line in result.output.splitlines() if "btk.default_plugins.convert" in line)
    assert "commands: convert" in row
    assert plugins.get_host().commands == {"btk.default_plugins.convert": ["convert"]}


def test_a_plugin_registered_after_the_first_cli_call_gets_its_commands():
    runner = CliRunner()
    assert runner.invoke(cli, ["plugins"]).exit_code == 0  # plugin commands added for the first host
    plugin = _command_plugin("Hello", "hello", "hello again")
    plugins.register_plugin(plugin)
    try:
        result = runner.invoke(cli, ["hello"])
        assert result.exit_code == 0, result.output
        assert result.output.strip() == "hello again"
        assert plugins.get_host().commands["Hello"] == ["hello"]
    finally:
        plugins.unregister_plugin(plugin)
    result = runner.invoke(cli, ["hello"])  # the new host has no such plugin: its command is gone
    assert result.exit_code != 0 and "No such command 'hello'" in result.output
    assert runner.invoke(cli, ["convert", "--help"]).exit_code == 0


def test_a_core_command_a_plugin_replaced_comes_back_without_the_plugin():
    runner = CliRunner()
    plugin = _command_plugin("Override", "cache", "overridden")
    plugins.register_plugin(plugin)
    try:
        assert runner.invoke(cli, ["cache"]).output.strip() == "overridden"
    finally:
        plugins.unregister_plugin(plugin)
    assert "decode cache" in runner.invoke(cli, ["cache", "--help"]).output
    # and in its place: btk --help lists the built-in commands in one order, whatever came before
    import click

    from btk.commands import COMMANDS

    listed = cli.list_commands(click.Context(cli))
    assert listed[:len(COMMANDS)] == [command.name for command in COMMANDS]


def test_every_hook_has_a_test_of_its_own():
    from btk import hookspecs

    hooks = {name for name in dir(hookspecs) if name.startswith("btk_")}
    tested = {name[len("test_hook_"):] for name in globals() if name.startswith("test_hook_")}
    assert hooks == tested
