"""The training loop's recipe features: schedule, early stopping, checkpoints and resume,
image augmentation, the decode cache, and the efficient model."""

from __future__ import annotations

import json
import math
import os
from dataclasses import replace
from itertools import pairwise

import numpy as np
import pytest
from click.testing import CliRunner

from btk.cli import cli
from btk.config import get_recipe
from btk.run_files import MARKER


def test_cosine_schedule_warms_up_then_decays_to_zero():
    from btk.training import learning_rate_at

    recipe = get_recipe("btk", learning_rate=1e-3, schedule="cosine", warmup_epochs=2, epochs=10)
    rates = [learning_rate_at(e, recipe) for e in range(10)]
    assert rates[0] == pytest.approx(1e-3 / 3) and rates[1] == pytest.approx(2e-3 / 3)
    assert rates[2] == pytest.approx(1e-3)  # the peak, then a half cosine over the 8 epochs left
    assert rates[6] == pytest.approx(1e-3 * 0.5 * (1 + math.cos(math.pi * 4 / 8)))
    assert all(a > b for a, b in pairwise(rates[2:]))
    assert learning_rate_at(5, get_recipe("btk", learning_rate=3e-4)) == 3e-4  # constant


def test_unknown_schedule_is_a_one_line_error():
    result = CliRunner().invoke(cli, ["run", "--set", "schedule=cyclic"])
    assert result.exit_code == 1 and "cyclic" in result.output
    assert result.output.startswith("Error: ") and len(result.output.strip().splitlines()) == 1
    assert "Traceback" not in result.output
    from btk.errors import BtkError

    with pytest.raises(BtkError, match=r"recipe\.schedule: 'step' is not one of constant, cosine"):
        get_recipe("btk", schedule="step")


def _tiny_model(n_classes=2):
    import keras

    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Flatten()(inputs)
    outputs = keras.layers.Dense(n_classes, activation="softmax")(x)
    model = keras.Model(inputs, outputs)
    model.compile(loss="categorical_crossentropy", optimizer=keras.optimizers.Adam(0.0), metrics=["accuracy"])
    return model


def _frozen(recipe):
    """``recipe`` with learning rate 0 (which the schema refuses: here the model must not learn)."""
    return replace(recipe, learning_rate=0.0)


def _train_flat(recipe):
    """Train the tiny model for two classes on 32 random images (8 for validation): with learning
    rate 0 the validation accuracy never changes."""
    from btk.training import train

    assert recipe.learning_rate == 0.0

    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, (40, 8, 8, 1), dtype=np.uint8)
    y = rng.integers(0, 2, 40)
    return train(_tiny_model(), x[:32], y[:32], x[32:], y[32:], 2, recipe, seed=0)


@pytest.mark.slow
def test_early_stopping_stops_after_patience_epochs_without_progress():
    # learning rate 0: the validation accuracy never changes, so epoch 1 stays the best
    recipe = _frozen(get_recipe("btk", epochs=20, patience=3, batch_size=8))
    _, history = _train_flat(recipe)
    assert len(history["loss"]) == 4 and history["stopped_epoch"] == [4] and history["best_epoch"] == [1]
    _, history = _train_flat(_frozen(get_recipe("btk", epochs=5, batch_size=8)))
    assert len(history["loss"]) == 5 and "stopped_epoch" not in history  # patience 0: never stops


@pytest.mark.slow
def test_early_stopping_works_without_restoring_the_best_weights():
    """The report preset keeps its final weights (restore_best off); patience must still stop it."""
    recipe = _frozen(get_recipe("report", epochs=20, patience=3, batch_size=8))
    assert not recipe.restore_best
    _, history = _train_flat(recipe)
    assert len(history["loss"]) == 4 and history["stopped_epoch"] == [4]
    assert "best_epoch" not in history  # the final weights are kept, as the report does


@pytest.mark.slow
def test_monitor_after_ignores_the_first_share_of_epochs_for_best_weights_and_stopping():
    # a flat validation accuracy: the first epoch that counts is the best; stopping counts from there
    recipe = _frozen(get_recipe("btk", epochs=20, patience=3, monitor_after=0.5, batch_size=8))
    _, history = _train_flat(recipe)
    assert history["best_epoch"] == [11] and history["stopped_epoch"] == [14] and len(history["loss"]) == 14
    assert get_recipe("fast").monitor_after == 0.5
    from btk.errors import BtkError

    with pytest.raises(BtkError, match=r"recipe\.monitor_after: 1\.0 must be below 1"):
        get_recipe("fast", monitor_after=1.0)


@pytest.mark.slow
def test_interrupted_run_resumes_from_its_last_checkpoint(tmp_path, monkeypatch):
    from btk import training

    args = ["run", "-R", "per_class=10", "-R", "test_per_class=4", "--image-size", "32", "--epochs", "4",
            "-M", "dropout=0", "--out", str(tmp_path / "a")]
    assert CliRunner().invoke(cli, args).exit_code == 0
    (whole,) = (tmp_path / "a").iterdir()
    whole_history = json.loads((whole / "history.json").read_text())

    save = training.Checkpoint.save

    def save_then_stop(self, model, state, best):
        save(self, model, state, best)
        if state["epoch"] == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(training.Checkpoint, "save", save_then_stop)
    args[-1] = str(tmp_path / "b")
    result = CliRunner().invoke(cli, args)
    assert result.exit_code != 0 and "resume with btk resume" in " ".join(result.output.split())
    (partial,) = (tmp_path / "b").iterdir()
    assert partial.name.startswith(".") and partial.name.endswith(".partial")
    assert json.loads((partial / "checkpoint" / "state.json").read_text())["epoch"] == 2
    monkeypatch.setattr(training.Checkpoint, "save", save)

    result = CliRunner().invoke(cli, ["resume", str(partial)])
    assert result.exit_code == 0, result.output
    assert "resumed from its checkpoint" in result.output
    assert "epoch   3/4" in result.output and "epoch   1/4" not in result.output
    (done,) = (tmp_path / "b").iterdir()
    assert not done.name.startswith(".") and (done / MARKER).is_file()
    assert not (done / "checkpoint").exists() and not (done / "resume.json").exists()
    history = json.loads((done / "history.json").read_text())
    assert len(history["loss"]) == 4
    # the same order of batches and the same weights and optimizer state at the restart: the
    # resumed run retraces the uninterrupted one (no dropout, no augmentation)
    np.testing.assert_allclose(history["loss"], whole_history["loss"], rtol=1e-3)
    np.testing.assert_allclose(history["val_loss"], whole_history["val_loss"], rtol=1e-3)


def test_resume_of_something_else_is_a_one_line_error(tmp_path):
    result = CliRunner().invoke(cli, ["resume", str(tmp_path)])
    assert result.exit_code == 1 and "not an interrupted run" in result.output
    assert "Traceback" not in result.output


def test_image_augmentation_is_reproducible_and_keeps_shape():
    from btk.image_augment import make_image_augmenter

    rng = np.random.default_rng(1)
    batch = np.zeros((6, 40, 40, 1), np.uint8)
    batch[:, 10:30, 5:20] = rng.integers(60, 250, (6, 20, 15, 1))
    augment = make_image_augmenter()
    a = augment(batch, np.random.default_rng(7))
    b = augment(batch, np.random.default_rng(7))
    c = augment(batch, np.random.default_rng(8))
    assert a.shape == batch.shape and a.dtype == np.uint8
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert all(not np.array_equal(a[j], batch[j]) for j in range(6))
    # with every change switched off it is the identity
    still = make_image_augmenter(rotate=0, scale=0, shift=0, contrast=0, gamma=0, brightness=0, flip=False)
    assert np.array_equal(still(batch, np.random.default_rng(0)), batch)
    # a flip alone mirrors the image
    flip = make_image_augmenter(rotate=0, scale=0, shift=0, contrast=0, gamma=0, brightness=0)
    out = flip(batch, np.random.default_rng(3))
    for j in range(6):
        assert np.array_equal(out[j], batch[j]) or np.array_equal(out[j], batch[j, :, ::-1])
    three = np.repeat(batch, 3, axis=-1)
    assert augment(three, np.random.default_rng(7)).shape == three.shape


def test_second_load_comes_from_the_cache_and_edits_invalidate_it(image_folder, tmp_path, monkeypatch):
    import cv2

    from btk.cache import gather, iter_rows
    from btk.dataset import load_dataset
    from btk.plugins import get_host
    from btk.types import ReadOptions

    monkeypatch.setenv("BTK_CACHE_DIR", str(tmp_path / "cache"))
    reader = get_host().readers.get("folder")
    decoded = []
    load = type(reader).load
    monkeypatch.setattr(type(reader), "load",
                        lambda self, entry, options: decoded.append(entry) or load(self, entry, options))
    options = ReadOptions(32, 1)
    first = load_dataset(reader, image_folder, options)
    assert len(decoded) == 12
    assert isinstance(first.images, np.memmap)  # streamed into the cache while decoding
    second = load_dataset(reader, image_folder, options)
    assert len(decoded) == 12  # nothing decoded again
    assert isinstance(second.images, np.memmap) and not second.images.flags.writeable
    assert np.array_equal(first.images, second.images)
    assert list(first.sources) == list(second.sources) and list(first.labels) == list(second.labels)
    assert list(first.groups) == list(second.groups)
    uncached = load_dataset(reader, image_folder, options, cache=False)
    assert not isinstance(uncached.images, np.memmap) and np.array_equal(uncached.images, second.images)
    # rows read with positional reads equal the mapped ones
    pick = np.array([7, 0, 11, 3])
    assert np.array_equal(gather(second.images, pick), uncached.images[pick])
    assert np.array_equal(np.stack(list(iter_rows(second.images, chunk=5))), uncached.images)
    # other options: another entry
    load_dataset(reader, image_folder, ReadOptions(24, 1))
    assert len(decoded) == 12 + 12 + 12
    # an edited file: decoded again, and the new pixels are seen
    target = sorted(image_folder.rglob("*.png"))[0]
    cv2.imwrite(str(target), np.full((40, 40), 255, np.uint8))
    os.utime(target, ns=(1, 10**18))
    third = load_dataset(reader, image_folder, options)
    assert len(decoded) == 48
    k = list(third.sources).index(target.relative_to(image_folder).as_posix())
    assert third.images[k].min() == 255 and first.images[k].min() < 255
    monkeypatch.setenv("BTK_CACHE_DIR", "off")
    assert not isinstance(load_dataset(reader, image_folder, options).images, np.memmap)
    monkeypatch.setenv("BTK_CACHE_DIR", str(tmp_path / "cache"))
    result = CliRunner().invoke(cli, ["cache"])
    assert result.exit_code == 0 and "3 dataset(s)" in result.output
    result = CliRunner().invoke(cli, ["cache", "--clear"])
    assert "removed 3" in result.output and not any((tmp_path / "cache").iterdir())


@pytest.mark.slow
def test_micro_batches_make_the_same_updates_as_the_whole_batch():
    import keras

    from btk.training import train

    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, (88, 8, 8, 1), dtype=np.uint8)
    y = rng.integers(0, 3, 88)
    weights = []
    for micro in (0, 8):
        keras.utils.set_random_seed(1)
        inputs = keras.Input((8, 8, 1))
        outputs = keras.layers.Dense(3, activation="softmax")(keras.layers.Flatten()(inputs))
        model = keras.Model(inputs, outputs)
        model.compile(loss="categorical_crossentropy", optimizer=keras.optimizers.SGD(0.05), metrics=["accuracy"])
        recipe = get_recipe("btk", epochs=2, batch_size=32, micro_batch=micro, class_weight=False,
                            restore_best=False, learning_rate=0.05)
        model, _ = train(model, x[:72], y[:72], x[72:], y[72:], 3, recipe, seed=0)
        weights.append(model.get_weights())
    # the two runs start from the same weights (same seed) and see the same batches: 72 images, batch 32, so each
    # update averages 4 micro-batches of the same 32 images, and each epoch's last batch of 8 is one update too
    assert not np.allclose(weights[0][0], 0)
    for a, b in zip(*weights):
        np.testing.assert_allclose(a, b, atol=1e-6)
    from btk.errors import BtkError

    with pytest.raises(BtkError, match="must divide the batch size"):
        get_recipe("btk", batch_size=32, micro_batch=12)


def test_automatic_micro_batches_bound_the_activations_of_networks_without_batch_norm():
    from btk.device import ACTIVATION_BUDGET, activation_bytes_per_image, build_with_precision, step_batch_size
    from btk.plugins import get_host

    host = get_host()
    seed_cnn = {p: build_with_precision(lambda: host.models.get("seed-cnn").build((256, 256, 3), 4, {}), p)
                for p in ("mixed_bfloat16", "float32")}
    # Listing 1 at 256 x 256 x 3: 13,271,556 activations per image, two bytes each in bfloat16, kept twice
    assert activation_bytes_per_image(seed_cnn["float32"]) == 2 * 4 * 13_271_556
    assert step_batch_size(get_recipe("btk"), seed_cnn["mixed_bfloat16"]) == 8
    assert step_batch_size(get_recipe("btk"), seed_cnn["float32"]) == 4
    assert 4 * activation_bytes_per_image(seed_cnn["float32"]) <= ACTIVATION_BUDGET
    assert 8 * activation_bytes_per_image(seed_cnn["float32"]) > ACTIVATION_BUDGET
    assert step_batch_size(get_recipe("btk", micro_batch=16), seed_cnn["float32"]) == 16  # asked for
    assert step_batch_size(get_recipe("btk", micro_batch=32), seed_cnn["float32"]) == 32  # whole batches
    res_cnn = host.models.get("res-cnn").build((128, 128, 1), 4, {})
    assert step_batch_size(get_recipe("fast"), res_cnn) == 32  # batch norm: never split automatically


def test_res_cnn_needs_a_tenth_of_the_seed_cnns_arithmetic_or_less():
    from btk.flops import count_macs
    from btk.plugins import get_host

    models = get_host().models
    seed = models.get("seed-cnn").build((256, 256, 3), 4, {})
    # Listing 1 by hand: nine valid 3x3 convolutions, then three dense layers
    convs = [(254, 3, 32), (252, 32, 64), (124, 64, 64), (122, 64, 64), (59, 64, 128), (57, 128, 128),
             (55, 128, 128), (25, 128, 128), (23, 128, 256)]
    by_hand = sum(side * side * c_out * 9 * c_in for side, c_in, c_out in convs) + 30976 * 512 + 512 * 512 + 512 * 4
    assert count_macs(seed) == by_hand
    res = models.get("res-cnn").build((128, 128, 1), 4, {})
    assert res.count_params() == 1_941_180
    assert count_macs(res) * 10 <= count_macs(seed)
    assert count_macs(models.get("res-cnn").build((256, 256, 3), 4, {})) * 7 <= count_macs(seed)
