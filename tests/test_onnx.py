"""``btk export`` and ``--runtime onnx``: the ONNX graph gives the Keras scorer's probabilities
within 1e-5 (a multiclass run, a binary run through the classes, test-time augmentation, an
ensemble), and ``examples/onnx_predict.py``, which does not import btk, gives them too."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from btk.cli import cli

pytest.importorskip("onnxruntime")
pytest.importorskip("tf2onnx")

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "onnx_predict.py"
FLOAT32 = ["--model", "small-cnn", "--image-size", "32", "--epochs", "2", "--set", "recipe.precision=float32",
           "--reporter", "none"]


def _ok(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def runs(sartaj_small, tmp_path_factory) -> dict[str, Path]:
    """Float32 runs: two members with test-time augmentation and their ensemble; a binary run
    trained through the classes."""
    out = tmp_path_factory.mktemp("onnx-runs")
    _ok("ensemble", "--train", "2", "--data", str(sartaj_small), "--tta", "--out", str(out / "ens"), *FLOAT32)
    _ok("run", "--data", str(sartaj_small), "--task", "binary", "--out", str(out / "bin"), *FLOAT32)
    found = {p.name.split("-")[-1]: p for p in (out / "ens").iterdir()}
    [binary] = list((out / "bin").iterdir())
    return {"member": found["member1"], "ensemble": found["ensemble2"], "binary": binary}


def _probabilities(folder: Path, key: str = "path") -> dict[str, np.ndarray]:
    with open(folder / "predictions.csv") as fh:
        rows = list(csv.DictReader(fh))
    return {r[key]: np.array([float(v) for c, v in r.items() if c.startswith("p_")]) for r in rows}


def _predict(run: Path, data: Path, out: Path, *extra: str) -> Path:
    _ok("predict", str(run), "--data", str(data), "--out", str(out), *extra)
    [folder] = list(out.iterdir())
    return folder


@pytest.mark.parametrize("kind", ["member", "ensemble", "binary"])
def test_the_graph_and_the_example_give_the_keras_scorers_probabilities(runs, sartaj_small, tmp_path, kind):
    run = runs[kind]
    _ok("export", str(run))
    sidecar = json.loads((run / "model.onnx.json").read_text())
    assert sidecar["measured"]["images"] == 12 and sidecar["measured"]["against_keras_scorer"] <= 1e-5
    assert sidecar["tta"] is (kind != "binary")
    assert ("fold" in sidecar["after"]) is (kind == "binary")
    data = sartaj_small / "Testing"
    keras_rows = _probabilities(_predict(run, data, tmp_path / "keras", "--runtime", "keras"))
    onnx_folder = _predict(run, data, tmp_path / "onnx", "--runtime", "onnx")
    assert json.loads((onnx_folder / "predict.json").read_text())["runtime"] == "onnx"
    onnx_rows = _probabilities(onnx_folder)
    assert keras_rows.keys() == onnx_rows.keys() and len(keras_rows) == 12
    assert max(np.abs(keras_rows[k] - onnx_rows[k]).max() for k in keras_rows) <= 1e-5
    # the example, with btk made unimportable: onnxruntime, NumPy, OpenCV and the sidecar only
    files = sorted(keras_rows)
    done = subprocess.run([sys.executable, "-c", "import runpy, sys; sys.modules['btk'] = None; "
                           f"sys.argv = sys.argv[1:]; runpy.run_path({str(EXAMPLE)!r}, run_name='__main__')",
                           str(EXAMPLE), str(run), *files], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    example_rows = {r["path"]: np.array([float(v) for c, v in r.items() if c.startswith("p_")])
                    for r in csv.DictReader(done.stdout.splitlines())}
    assert example_rows.keys() == keras_rows.keys()
    assert max(np.abs(keras_rows[k] - example_rows[k]).max() for k in keras_rows) <= 1e-5


def test_the_examples_preparation_is_btks_to_the_bit(runs):
    """The example's decoding, head crop, resize and intensity normalisation, written from the
    sidecar alone, give exactly the network input btk gives."""
    import importlib.util

    from btk.runs import load_run
    from btk.training import network_input

    spec = importlib.util.spec_from_file_location("onnx_predict", EXAMPLE)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    run = load_run(runs["member"])
    _ok("export", str(run.path))
    before = json.loads((run.path / "model.onnx.json").read_text())["before"]
    assert before["crop"] == "head" and before["intensity"] == "stretch"
    images = run.images("train")
    root = run.data_path
    expected = network_input(images.images, run.config.recipe.scale, run.config.recipe.intensity)
    mine = np.stack([example.prepare(str(root / source), before) for source in images.sources])
    assert mine.shape == expected.shape and np.array_equal(mine, expected)


def test_auto_uses_the_graph_only_where_it_agrees_and_was_faster(runs, sartaj_small, tmp_path):
    run = runs["member"]
    _ok("export", str(run))
    sidecar_file = run / "model.onnx.json"
    sidecar = json.loads(sidecar_file.read_text())
    data = sartaj_small / "Testing"

    def auto_runtime(changes: dict, name: str) -> str:
        measured = {**sidecar["measured"], **changes}
        sidecar_file.write_text(json.dumps({**sidecar, "measured": measured}))
        folder = _predict(run, data, tmp_path / name)
        return json.loads((folder / "predict.json").read_text())["runtime"]

    try:
        assert auto_runtime({"seconds_per_batch": {"onnx": 0.01, "keras": 0.02}}, "faster") == "onnx"
        assert auto_runtime({"seconds_per_batch": {"onnx": 0.03, "keras": 0.02}}, "slower") == "keras"
        assert auto_runtime({"seconds_per_batch": {"onnx": 0.01, "keras": 0.02},
                             "against_keras_scorer": 2e-3}, "disagrees") == "keras"  # as a bfloat16 run's
    finally:
        sidecar_file.write_text(json.dumps(sidecar))


def test_refusals_are_one_line(runs, sartaj_small, tmp_path):
    from conftest import one_line_refusal

    run, data = str(runs["member"]), str(sartaj_small / "Testing")
    assert "gradients" in one_line_refusal(["predict", run, "--data", data, "--sr", str(tmp_path / "sr"), "--maps",
                                            "--runtime", "onnx"])
    assert "--devices" in one_line_refusal(["predict", run, "--data", data, "--runtime", "onnx", "--devices", "1"])
    assert "--out" in one_line_refusal(["export", run, "--to", "savedmodel"])
    assert not (tmp_path / "sr").exists()


def test_savedmodel_export_answers_as_the_graph(runs, tmp_path):
    import tensorflow as tf

    run = runs["binary"]
    _ok("export", str(run), "--to", "savedmodel", "--out", str(tmp_path))
    [folder] = list(tmp_path.iterdir())
    assert json.loads((folder / "saved_model.json").read_text())["after"]["fold"]["negative_class"] == "no_tumor"
    loaded = tf.saved_model.load(str(folder / "saved_model"))
    x = np.random.default_rng(0).random((4, 32, 32, 1), dtype=np.float32)
    from btk.runs import load_run

    keras_probs = np.asarray(load_run(run).load_model().predict_on_batch(x))
    saved = loaded.serve(tf.constant(x))
    assert np.abs(np.asarray(saved["probabilities"]) - keras_probs).max() <= 1e-5


def test_int8_has_its_own_calibration_and_is_refused_past_its_rule(runs, sartaj_small, tmp_path, monkeypatch):
    """The int8 graph's answers carry the temperature fitted on its own outputs, never the run's;
    past the 0.3-point rule nothing of it is written."""
    from conftest import one_line_refusal

    import btk.onnx_int8 as int8
    from btk.calibration import apply_temperature
    from btk.onnx_graph import OnnxNetwork
    from btk.runs import load_run
    from btk.training import network_input

    run_dir = runs["binary"]
    monkeypatch.setattr(int8, "MAX_MOVE", -1.0)  # every move is too large
    assert "no int8 graph written" in one_line_refusal(["export", str(run_dir), "--int8"])
    assert not (run_dir / int8.INT8_GRAPH).exists() and not (run_dir / int8.INT8_SIDECAR).exists()
    monkeypatch.setattr(int8, "MAX_MOVE", 100.0)
    _ok("export", str(run_dir), "--int8")
    sidecar = json.loads((run_dir / int8.INT8_SIDECAR).read_text())
    run = load_run(run_dir)
    assert "int8 graph" in (run_dir / "MODEL_CARD.md").read_text()
    # on 4 validation images both temperatures may sit at the fit's bound: give the int8 graph
    # one of its own that no other calibration has, and see that its answers carry it
    sidecar["temperature"] = 2.0 if run.temperature != 2.0 else 3.0
    (run_dir / int8.INT8_SIDECAR).write_text(json.dumps(sidecar))
    folder = _predict(run_dir, sartaj_small / "Testing", tmp_path / "int8", "--runtime", "int8", "--coverage", "0.9")
    assert json.loads((folder / "predict.json").read_text())["runtime"] == "int8"
    rows = _probabilities(folder)
    test = run.images("test")
    recipe = run.config.recipe
    outputs = OnnxNetwork(run_dir / int8.INT8_GRAPH).predict_on_batch(
        network_input(test.images, recipe.scale, recipe.intensity))
    p_negative = apply_temperature(np.asarray(outputs, np.float64), sidecar["temperature"])[
        :, list(run.trained_classes).index("no_tumor")]
    by_source = {str(s): p for s, p in zip(test.sources, p_negative)}
    for path, probabilities in rows.items():
        source = str(Path(path).relative_to(sartaj_small))
        assert abs(probabilities[0] - by_source[source]) <= 1e-6
