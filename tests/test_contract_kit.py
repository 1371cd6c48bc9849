"""The plugin contract kit passes every built-in plugin and fails broken ones of each kind."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from btk.cli import cli
from btk.compare import build_report
from btk.degraders import Degrader, Param
from btk.runs import load_run
from btk.testing import check_degrader, check_model, check_reader, check_reporter
from btk.types import Entry, ModelSpec, ReadOptions, Reporter, Sample


def test_builtin_readers_pass(image_folder):
    import nibabel as nib
    from pydicom.data import get_testdata_file

    host = __import__("btk.plugins", fromlist=["get_host"]).get_host()
    assert check_reader(host.readers.get("folder"), image_folder) == 12
    assert check_reader(host.readers.get("synthetic"), None, ReadOptions(64, 3, {"per_class": "2"})) == 20
    assert check_reader(host.readers.get("dicom"), Path(get_testdata_file("MR_small.dcm")), labelled=False) == 1
    nifti = Path(nib.__file__).parent / "tests" / "data" / "example4d.nii.gz"
    assert check_reader(host.readers.get("nifti"), nifti, ReadOptions(64, 1, {"slices": "all"}), labelled=False) > 1


@pytest.mark.slow
def test_builtin_degraders_models_and_reporters_pass(btk_host, btk_sample_run, tmp_path):
    check_degrader(btk_host.degraders.get("blur"), identity={"ksize": 1})
    check_degrader(btk_host.degraders.get("resolution"), identity={"factor": 1})
    check_model(btk_host.models.get("small-cnn"), tmp=tmp_path)
    check_model(btk_host.models.get("res-cnn"), tmp=tmp_path)
    check_model(btk_host.models.get("seed-cnn"), tmp=tmp_path)
    assert "per class" in check_reporter(btk_host.reporters.get("terminal"), btk_sample_run)
    html = btk_host.reporters.get("html")
    check_reporter(html, btk_sample_run, expect_files=["report.html"])
    # the html reporter's write hook: a btk.compare.Report of several runs into one file
    html.write(build_report([load_run(btk_sample_run)]), tmp_path / "one.html")
    page = (tmp_path / "one.html").read_text()
    assert "sample-run" in page and "configuration" in page
    # no json reporter any more: `btk report --json` prints the same run as JSON on stdout
    assert "json" not in btk_host.reporters
    result = CliRunner().invoke(cli, ["report", str(btk_sample_run), "--json"])
    assert result.exit_code == 0, result.output
    (run,) = json.loads(result.stdout)["runs"]
    assert run["name"] == "sample-run" and set(run["metrics"]) == {"clean", "blur"}


class UnlabelledReader:
    name, description = "broken", "forgets labels and returns floats"

    def scan(self, path, options):
        return [Entry("x", "a", "x")]

    def load(self, entry, options):
        return [Sample(np.zeros((64, 64), np.float32), None, "x", "x")]


def test_broken_reader_fails():
    with pytest.raises(AssertionError, match="dtype float32, expected uint8"):
        check_reader(UnlabelledReader(), None)


def test_broken_degraders_fail():
    noisy = Degrader("noisy", lambda im, rng: np.clip(im + np.random.default_rng().integers(0, 9, im.shape), 0, 255)
                     .astype(np.uint8))
    with pytest.raises(AssertionError, match="not deterministic"):
        check_degrader(noisy)
    shrinking = Degrader("shrinking", lambda im, rng, s: im[::2, ::2].repeat(2, 0).repeat(2, 1)[: im.shape[0]] + 1,
                         (Param("s", float, 1.0, 0.0, 1.0),))
    with pytest.raises(AssertionError, match="not the identity"):
        check_degrader(shrinking, identity={"s": 0})
    to_float = Degrader("float", lambda im, rng: im * 0.5)
    with pytest.raises(AssertionError, match=r"became .* float64"):
        check_degrader(to_float)


def test_broken_model_fails():
    def build(input_shape, n_classes, options):
        import keras

        return keras.Sequential([keras.Input(input_shape), keras.layers.Flatten(), keras.layers.Dense(n_classes)])

    with pytest.raises(AssertionError, match="not compiled"):
        check_model(ModelSpec("uncompiled", build, "", 1))

    def build_linear(input_shape, n_classes, options):
        model = build(input_shape, n_classes, options)
        model.compile(loss="mse", optimizer="sgd")
        return model

    with pytest.raises(AssertionError, match="not probabilities"):
        check_model(ModelSpec("no-softmax", build_linear, "", 1))


def test_check_model_leaves_no_temporary_folder(tmp_path, monkeypatch):
    import tempfile

    def build(input_shape, n_classes, options):
        import keras

        model = keras.Sequential([keras.Input(input_shape), keras.layers.Flatten(),
                                  keras.layers.Dense(n_classes, activation="softmax")])
        model.compile(loss="categorical_crossentropy", optimizer="adam")
        return model

    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    check_model(ModelSpec("tiny", build, "", 1))  # no tmp: the kit finds a folder of its own
    assert list(scratch.iterdir()) == []


def test_broken_reporter_fails(btk_sample_run):
    silent = Reporter("silent", lambda run, console: None, "claims a file it never writes")
    with pytest.raises(AssertionError, match=r"did not write summary\.txt"):
        check_reporter(silent, btk_sample_run, expect_files=["summary.txt"])
