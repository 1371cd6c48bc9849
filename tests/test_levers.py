"""The accuracy levers a recipe can switch on: label smoothing, mixup, weight averaging (EMA),
synthetic bright spots on negative images; and folds that stay put under label corrections."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from btk.config import RunConfig, get_recipe


def _real_slices(sartaj, cls="no_tumor", n=4, size=64):
    import cv2

    files = sorted((sartaj / "Training" / cls).glob("*.jpg"))[:n]
    return np.stack([cv2.resize(cv2.imread(str(f), cv2.IMREAD_GRAYSCALE), (size, size))[..., None] for f in files])


def test_bright_spots_only_brighten_the_brain_interior_and_are_reproducible(sartaj):
    from btk.lesions import add_bright_spots, brain_interior

    images = _real_slices(sartaj)
    for k, image in enumerate(images):
        spotted = add_bright_spots(image, np.random.default_rng(k))
        again = add_bright_spots(image, np.random.default_rng(k))
        assert np.array_equal(spotted, again) and spotted.shape == image.shape and spotted.dtype == np.uint8
        changed = spotted[..., 0] != image[..., 0]
        assert changed.any()  # something was painted
        assert (spotted[..., 0].astype(int) >= image[..., 0]).all()  # only brighter
        inside = brain_interior(image)
        # the soft edge may reach a few pixels past the interior, never the scalp's rim
        import cv2

        near = cv2.dilate(inside.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)
        assert not (changed & ~near).any()
    black = np.zeros((32, 32, 1), np.uint8)
    assert np.array_equal(add_bright_spots(black, np.random.default_rng(0)), black)  # no head, no spots


def test_negative_spots_touch_only_the_negative_class(sartaj):
    from btk.lesions import negative_spot_augmenter

    batch = _real_slices(sartaj, n=6)
    labels = np.array([0, 2, 2, 1, 2, 0])
    out = negative_spot_augmenter(1.0, negative=2)(batch, labels, np.random.default_rng(0))
    assert out is not batch
    for j, label in enumerate(labels):
        assert np.array_equal(out[j], batch[j]) == (label != 2)
    none = negative_spot_augmenter(1.0, negative=3)(batch, labels, np.random.default_rng(0))
    assert none is batch  # no negative image: the batch is passed on untouched


def test_mixup_blends_images_and_targets_and_keeps_fill_copies_weightless():
    from btk.training import make_batches

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (10, 4, 4, 1), dtype=np.uint8)
    targets = np.eye(2, dtype=np.float32)[rng.integers(0, 2, 10)]
    plain = make_batches(images, targets, 1 / 255, 4, shuffle_seed=3, group=8)
    mixed = make_batches(images, targets, 1 / 255, 4, shuffle_seed=3, group=8, mixup=0.4)
    again = make_batches(images, targets, 1 / 255, 4, shuffle_seed=3, group=8, mixup=0.4)
    soft = 0
    for i in range(len(plain)):
        x0, t0, w0 = plain[i]
        x1, t1, w1 = mixed[i]
        assert all(np.array_equal(a, b) for a, b in zip(mixed[i], again[i]))  # reproducible
        draw = np.random.default_rng([3, 0, i])  # the batch's own generator: its share, then its partners
        lam = np.float32(draw.beta(0.4, 0.4))
        perm = draw.permutation(len(x0))
        assert np.allclose(x1, lam * x0 + (1 - lam) * x0[perm], atol=1e-6)
        assert np.allclose(t1, lam * t0 + (1 - lam) * t0[perm], atol=1e-6) and np.allclose(t1.sum(axis=1), 1)
        assert np.array_equal(w1, w0)  # each image keeps its own weight: fill copies stay at 0
        soft += int((t1.max(axis=1) < 1 - 1e-6).sum())
    assert soft > 0 and (w0 == 0).any()  # blended targets, and the last batch was filled


def test_label_smoothing_and_ema_reach_the_compiled_model():
    import keras

    from btk.models import compile_like_report

    def tiny():
        inputs = keras.Input((4,))
        return keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(inputs))

    model = compile_like_report(tiny(), {"learning_rate": 1e-3, "label_smoothing": 0.2, "ema": 0.9})
    assert model.optimizer.use_ema and model.optimizer.ema_momentum == pytest.approx(0.9)
    y, p = np.array([[0.0, 1.0, 0.0]]), np.array([[0.2, 0.5, 0.3]])
    smooth = y * 0.8 + 0.2 / 3
    assert float(model.loss(y, p)) == pytest.approx(float(-(smooth * np.log(p)).sum()), rel=1e-5)
    plain = compile_like_report(tiny(), {"learning_rate": 1e-3})
    assert not plain.optimizer.use_ema and plain.loss == "categorical_crossentropy"


def test_an_ema_run_returns_and_validates_the_averaged_weights():
    """What training returns is what it validated: the last epoch's averaged weights (also when
    early stopping ends it), not the raw ones."""
    import keras

    from btk.models import compile_like_report
    from btk.training import train

    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, (48, 6, 6, 1), dtype=np.uint8)
    y = (x.reshape(48, -1).mean(axis=1) > 127).astype(int)
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6, 6, 1))
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(keras.layers.Flatten()(inputs)))
    model = compile_like_report(model, {"learning_rate": 0.05, "ema": 0.8})
    recipe = get_recipe("btk", epochs=6, batch_size=8, restore_best=False, patience=2, monitor_after=0.0)
    model, history = train(model, x[:40], y[:40], x[40:], y[40:], 2, recipe, seed=0)
    val_loss = model.evaluate(x[40:] / np.float32(255), np.eye(2)[y[40:]], verbose=0)[0]
    assert val_loss == pytest.approx(history["val_loss"][-1], rel=1e-4)  # returned = validated
    keras.utils.set_random_seed(0)  # the same training without the average: the raw weights
    raw = keras.Model(inputs := keras.Input((6, 6, 1)),
                      keras.layers.Dense(2, activation="softmax")(keras.layers.Flatten()(inputs)))
    raw, raw_history = train(compile_like_report(raw, {"learning_rate": 0.05}), x[:40], y[:40], x[40:], y[40:], 2,
                             recipe, seed=0)
    assert history["loss"][0] == pytest.approx(raw_history["loss"][0], rel=1e-5)  # the same first steps
    assert not np.allclose(raw.get_weights()[0], model.get_weights()[0])  # but an average was returned


def test_folds_hold_out_the_same_images_with_and_without_label_corrections(sartaj_small, tmp_path):
    from btk.pipeline import folds_for, label_data, load_for_config
    from btk.plugins import get_host

    host = get_host()
    config = RunConfig(recipe=get_recipe("fast", image_size=32), data=str(sartaj_small), seed=5)
    data = load_for_config(config, host)
    _, _, y, classes = label_data(config, data)
    plain = folds_for(config, data, y, classes, 2, host)
    sources = [str(s) for s in data.sources]
    train = [sources[i] for i in plain[0]["train"]]
    fixes = tmp_path / "fixes.csv"
    with fixes.open("w", newline="") as fh:
        csv.writer(fh).writerows([["path", "label"], [train[0], "drop"], [train[1], "no_tumor"
                                  if "no_tumor" not in train[1] else "glioma_tumor"]])
    corrected_config = config.with_changes(labels=str(fixes))
    corrected = load_for_config(corrected_config, host)
    _, _, y2, classes2 = label_data(corrected_config, corrected)
    moved = folds_for(corrected_config, corrected, y2, classes2, 2, host)
    names = [str(s) for s in corrected.sources]
    for before, after in zip(plain, moved):
        for part in ("train", "val", "oof", "calibration", "test"):
            kept = {sources[i] for i in before[part]} - {train[0]}
            assert {names[i] for i in after[part]} == kept
