"""The plugin API (btk.api): complete, documented, and enough on its own to write a plugin."""

from __future__ import annotations

import ast
import importlib.util
import typing
from pathlib import Path

import numpy as np
import pytest

import btk.api
from btk import hookspecs, plugins
from btk.testing import check_degrader, check_model, check_reader, check_reporter

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = [ROOT / "examples" / "invert_plugin.py", ROOT / "plugins" / "btk-mri-artefacts" / "btk_mri_artefacts.py",
            ROOT / "plugins" / "btk-mlflow" / "btk_mlflow.py"]
# Core helpers the built-in plugins may still import: the phantom generator, the HTML report's
# statistics, calibration, the heat-map overlay of its examples and the configuration's values as
# its configuration tables show them, safe file names, URLs without credentials and the sets of
# images runs were tested on.
BUILTIN_CORE_HELPERS = {"btk.phantoms", "btk.stats", "btk.render.plots", "btk.robustness", "btk.compare",
                        "btk.calibration", "btk.explain", "btk.config", "btk.conformal", "btk.framing", "btk.shift",
                        "btk.file_names", "btk.urls", "btk.image_sets"}

# A plugin of every kind, written against btk.api alone: a degrader with three levels, a reader,
# a model and a reporter.
PLUGIN = '''
from __future__ import annotations

import numpy as np

from btk.api import (BtkError, Degrader, Entry, ModelSpec, Param, ReadOptions, RegisterDegrader, RegisterModel,
                     RegisterReader, RegisterReporter, Reporter, Run, Sample, compile_like_report, hookimpl,
                     softmax_head)


def darken(image, rng, amount, radius):
    """Darken the image by ``amount`` and blank a ``radius``-pixel corner."""
    out = np.rint(image.astype(np.float32) * (1 - amount)).astype(np.uint8)
    out[:radius, :radius] = 0
    return out


DARKEN = Degrader(
    name="api-darken",
    function=darken,
    params=(Param("amount", float, 0.5, 0.0, 1.0, "share of the brightness taken away"),
            Param("radius", int, 8, 0, 64, "side of the blanked corner in pixels")),
    description="darker, with a blank corner",
    levels=({"amount": 0.2, "radius": 16}, {"amount": 0.4, "radius": 32}, {"amount": 0.6, "radius": 64}),
    scaled=("radius",),
    none={"amount": 0.0, "radius": 0},
)


class StripesReader:
    name = "api-stripes"
    description = "two classes of stripes, made up"

    def scan(self, path, options: ReadOptions) -> list[Entry]:
        n = int(options.extra.get("n", 3))
        if n < 1:
            raise BtkError("api-stripes: n must be positive")
        return [Entry(f"stripes/{label}/{i}", label, f"{label}-{i}", "train", payload=i)
                for label in ("horizontal", "vertical") for i in range(n)]

    def load(self, entry: Entry, options: ReadOptions) -> list[Sample]:
        size = options.image_size or 32
        image = np.zeros((size, size), np.uint8)
        image[:: 2 + entry.payload] = 200
        if entry.label == "vertical":
            image = np.ascontiguousarray(image.T)
        if options.channels == 3:
            image = np.repeat(image[..., None], 3, axis=-1)
        return [Sample(image, entry.label, entry.group, entry.source, entry.split)]


def build(input_shape, n_classes, options):
    import keras

    inputs = keras.Input(input_shape)
    x = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    return compile_like_report(keras.Model(inputs, softmax_head(x, n_classes, options)), options)


TINY = ModelSpec("api-tiny", build, "one convolution", min_image_size=8)


def report(run: Run, console) -> None:
    text = f"{run.name}: {len(run.predictions())} predictions of {', '.join(run.classes)}"
    (run.path / "api-report.txt").write_text(text + "\\n")
    console.print(text)


REPORTER = Reporter("api-report", report, "one line into api-report.txt")


@hookimpl
def btk_register_degraders(register: RegisterDegrader) -> None:
    register(DARKEN)


@hookimpl
def btk_register_readers(register: RegisterReader) -> None:
    register(StripesReader())


@hookimpl
def btk_register_models(register: RegisterModel) -> None:
    register(TINY)


@hookimpl
def btk_register_reporters(register: RegisterReporter) -> None:
    register(REPORTER)
'''


def _btk_imports(path: Path) -> set[str]:
    """Every btk module ``path`` imports, at any depth."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        found.update(n for n in names if n == "btk" or n.startswith("btk."))
    return found


def test_every_public_name_exists_and_is_documented():
    docs = (ROOT / "docs" / "plugins.md").read_text()
    assert btk.api.__all__, "btk.api has no __all__"
    for name in btk.api.__all__:
        assert hasattr(btk.api, name), f"btk.api.__all__ names '{name}', which btk.api does not have"
        assert f"`{name}`" in docs, f"docs/plugins.md does not describe `{name}`"


def test_all_is_sorted_and_unique():
    # constants first, then classes, then functions, each group alphabetical (ruff's RUF022 order)
    def kind(name):
        return 0 if name.isupper() else 1 if name[0].isupper() else 2

    names = list(btk.api.__all__)
    assert len(names) == len(set(names)) and names == sorted(names, key=lambda n: (kind(n), n))


def test_the_severity_fields_of_degrader_are_documented():
    docs = (ROOT / "docs" / "plugins.md").read_text()
    for field in ("levels", "scaled", "none"):
        assert f"  - `{field}`:" in docs, field


def test_hookspecs_annotate_the_register_callbacks():
    for hook, alias in [("btk_register_readers", "RegisterReader"), ("btk_register_degraders", "RegisterDegrader"),
                        ("btk_register_models", "RegisterModel"), ("btk_register_reporters", "RegisterReporter")]:
        hints = typing.get_type_hints(getattr(hookspecs, hook))
        assert hints["register"] == getattr(btk.api, alias) == getattr(hookspecs, alias), hook
    assert typing.get_args(btk.api.RegisterDegrader) == ([btk.api.Degrader], None)
    assert (ROOT / "btk" / "py.typed").exists()


@pytest.fixture
def api_plugin(tmp_path):
    path = tmp_path / "api_only_plugin.py"
    path.write_text(PLUGIN)
    spec = importlib.util.spec_from_file_location("api_only_plugin", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return path, module


def test_a_plugin_written_against_btk_api_alone_passes_the_contract_kit(api_plugin, btk_sample_run, tmp_path):
    path, module = api_plugin
    assert _btk_imports(path) == {"btk.api"}
    plugins.register_plugin(module)
    host = plugins.get_host()
    assert host.problems == []
    assert host.readers.owner("api-stripes") == "api_only_plugin"

    degrader = host.degraders.get("api-darken")
    check_degrader(degrader, identity=degrader.none)
    assert degrader.level_params(3) == {"amount": 0.6, "radius": 64}
    assert degrader.level_params(1, width=64) == {"amount": 0.2, "radius": 4}  # pixels scale with the width
    with pytest.raises(btk.api.BtkError, match=r"level must be 1\.\.3"):
        degrader.level_params(4)
    images = np.full((2, 64, 64, 1), 100, np.uint8)
    levels = [degrader.apply(images, degrader.level_params(k, 64)).mean() for k in (1, 2, 3)]
    assert levels == sorted(levels, reverse=True)

    assert check_reader(host.readers.get("api-stripes"), None, btk.api.ReadOptions(16, 3, {"n": "2"})) == 4
    check_model(host.models.get("api-tiny"), n_classes=2, tmp=tmp_path)
    out = check_reporter(host.reporters.get("api-report"), btk_sample_run, expect_files=["api-report.txt"])
    assert "sample-run: 120 predictions of a, b, c" in out


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_plugins_import_only_btk_api(path):
    assert _btk_imports(path) == {"btk.api"}


def test_builtin_plugins_import_btk_api_and_only_named_core_helpers():
    for path in sorted((ROOT / "btk" / "default_plugins").glob("*.py")):
        if path.name == "__init__.py":
            continue
        imports = _btk_imports(path)
        assert "btk.api" in imports, path.name
        siblings = {m for m in imports if m.startswith("btk.default_plugins.")}  # shared plugin code (dicom)
        assert imports - {"btk.api"} - siblings <= BUILTIN_CORE_HELPERS, (path.name, imports)


def test_the_core_imports_no_default_plugin():
    for path in sorted((ROOT / "btk").glob("*.py")):
        assert not any(m.startswith("btk.default_plugins") for m in _btk_imports(path)), path.name
