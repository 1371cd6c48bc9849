"""A run's ``model.keras`` holds the network only (no optimizer state); the checkpoint keeps
the optimizer state for resuming; model files saved with an optimizer still load."""

from __future__ import annotations

import json
import os
import zipfile

import numpy as np
import pytest

from btk.checkpoint import Checkpoint, save_model_file
from btk.config import make_run_config
from btk.device import build_with_precision
from btk.plugins import get_host
from btk.runs import parse_record


@pytest.fixture(scope="module")
def trained():
    """The default recipe's network (res-cnn, 128 x 128 x 1, its precision), two training steps."""
    import keras

    keras.utils.set_random_seed(0)
    model = build_with_precision(lambda: get_host().models.get("res-cnn").build((128, 128, 1), 4,
                                                                               {"learning_rate": None}), "auto")
    x = np.random.default_rng(0).random((8, 128, 128, 1), dtype=np.float32)
    y = np.eye(4, dtype=np.float32)[[0, 1, 2, 3] * 2]
    model.fit(x, y, epochs=1, batch_size=4, verbose=0)
    return model, x


def _run(path):
    """A run record at ``path`` whose model file is ``path / "model.keras"``."""
    return parse_record(path, {"config": make_run_config().to_json(), "classes": ["a", "b", "c", "d"]}, {}, {})


def test_model_file_holds_the_network_only_and_predicts_the_same(trained, tmp_path):
    model, x = trained
    model.save(tmp_path / "with-optimizer.keras")
    save_model_file(model, tmp_path / "model.keras")
    assert os.path.getsize(tmp_path / "model.keras") <= 0.4 * os.path.getsize(tmp_path / "with-optimizer.keras")
    with zipfile.ZipFile(tmp_path / "model.keras") as zf:
        assert not json.loads(zf.read("config.json")).get("compile_config")
    loaded = _run(tmp_path).load_model()
    def policies(m):  # the input layer's own policy does not reach its output (float32 either way)
        return [layer.dtype_policy.name for layer in m.layers if type(layer).__name__ != "InputLayer"]

    assert policies(loaded) == policies(model)
    assert np.array_equal(np.asarray(loaded.predict(x, verbose=0)), np.asarray(model.predict(x, verbose=0)))
    assert model.optimizer.iterations.numpy() == 2  # the trained model itself keeps its optimizer


def test_model_saved_with_its_optimizer_still_loads(trained, tmp_path):
    model, x = trained
    model.save(tmp_path / "model.keras")  # as runs saved it before
    loaded = _run(tmp_path).load_model()
    assert np.array_equal(np.asarray(loaded.predict(x, verbose=0)), np.asarray(model.predict(x, verbose=0)))


def test_checkpoint_keeps_the_optimizer_state(trained, tmp_path):
    model, _ = trained
    checkpoint = Checkpoint(tmp_path / "checkpoint")
    checkpoint.save(model, {"epoch": 1}, None)
    again, state, _ = checkpoint.load()
    assert state["epoch"] == 1 and int(again.optimizer.iterations.numpy()) == 2
    saved = [np.asarray(v) for v in model.optimizer.variables]
    assert all(np.array_equal(a, np.asarray(b)) for a, b in zip(saved, again.optimizer.variables))
