"""btk adapt (AdaBN): batch-norm statistics re-estimated exactly, layer by layer, on a new
site's unlabelled images; a new run that records them; bad input refused in one line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from btk.cli import cli
from btk.errors import BtkError


def _bn_model():
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3, padding="same")(inputs)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = keras.layers.Activation("relu")(x)
    x = keras.layers.Conv2D(3, 3, padding="same")(x)
    x = keras.layers.BatchNormalization(name="bn2")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x))


def test_statistics_are_those_of_each_layers_inputs_in_order():
    import keras

    from btk.adapt import adapt_model

    model = _bn_model()
    images = np.random.default_rng(1).normal(3.0, 2.0, (70, 8, 8, 1)).astype("float32")  # a shifted site
    batches = lambda: (images[i:i + 32] for i in range(0, len(images), 32))  # noqa: E731
    assert adapt_model(model, batches) == 2
    for name in ("bn1", "bn2"):  # inputs of each layer in inference mode, after the layers before it adapted
        layer = model.get_layer(name)
        inputs = np.asarray(keras.Model(model.input, layer.input)(images, training=False), np.float64)
        assert np.allclose(layer.moving_mean.numpy(), inputs.mean(axis=(0, 1, 2)), atol=1e-4)
        assert np.allclose(layer.moving_variance.numpy(), inputs.var(axis=(0, 1, 2)), rtol=1e-3, atol=1e-5)
    # after adaptation the second layer's output is standardised on this site's images
    out = np.asarray(keras.Model(model.input, model.get_layer("bn2").output)(images, training=False))
    gamma, beta = model.get_layer("bn2").gamma.numpy(), model.get_layer("bn2").beta.numpy()
    assert np.allclose((out.mean(axis=(0, 1, 2)) - beta) / gamma, 0, atol=1e-3)


def test_a_guard_keeps_the_deepest_adaptation_that_scores_well_enough():
    from btk.adapt import adapt_model

    model = _bn_model()
    original = {n: model.get_layer(n).moving_mean.numpy().copy() for n in ("bn1", "bn2")}
    images = np.random.default_rng(1).normal(3.0, 2.0, (40, 8, 8, 1)).astype("float32")
    scores = iter([0.9, 0.5])  # after bn1: fine; after bn2: below the floor
    kept = adapt_model(model, lambda: iter([images]), guard=lambda: next(scores), floor=0.8)
    assert kept == 1
    assert not np.allclose(model.get_layer("bn1").moving_mean.numpy(), original["bn1"])
    assert np.array_equal(model.get_layer("bn2").moving_mean.numpy(), original["bn2"])  # restored
    scores = iter([0.5, 0.9])  # not monotonic: the deeper one is kept
    model = _bn_model()
    assert adapt_model(model, lambda: iter([images]), guard=lambda: next(scores), floor=0.8) == 2


def test_a_model_without_batch_norm_is_refused():
    import keras

    from btk.adapt import adapt_model

    inputs = keras.Input((8, 8, 1))
    plain = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(inputs)))
    with pytest.raises(BtkError, match="no batch-normalisation layer"):
        adapt_model(plain, lambda: iter([]))


@pytest.mark.slow
def test_adapt_writes_a_run_that_records_its_cohort_and_refuses_bad_input(tiny_sartaj_run, sartaj, tmp_path):
    run_dir, _ = tiny_sartaj_run("--name", "src")
    site = tmp_path / "site"
    site.mkdir()
    for f in sorted((sartaj / "Testing" / "pituitary_tumor").glob("*.jpg"))[:40]:
        shutil.copy(f, site / f.name)
    runner = CliRunner()
    result = runner.invoke(cli, ["adapt", str(run_dir), "--data", str(site), "--name", "site", "--depth", "all",
                                 "--reporter", "none"])
    assert result.exit_code == 0, result.output
    assert "a cohort of 200+ images is better" in result.output
    adapted = next(p for p in run_dir.parent.iterdir() if p.name.endswith("-site"))
    config = json.loads((adapted / "config.json").read_text())
    record = config["adaptation"]
    assert record["images"] == 40 and record["from_run"] == run_dir.name and record["batch_norm_layers"] >= 2
    assert len(record["inputs_sha256"]) == 64
    from btk.runs import load_run

    assert load_run(adapted).adaptation == record  # the typed record carries it
    # its prediction sets are its own: its validation images scored by the adapted network
    own, source = load_run(adapted).conformal(), load_run(run_dir).conformal()
    assert own is not None and source is not None and own.sources == source.sources
    assert not np.allclose(own.probabilities, source.probabilities)
    import keras

    before = keras.saving.load_model(run_dir / "model.keras", compile=False)
    after = keras.saving.load_model(adapted / "model.keras", compile=False)
    bn = [la.name for la in before.layers if isinstance(la, keras.layers.BatchNormalization)]
    changed = [not np.allclose(before.get_layer(n).moving_mean.numpy(), after.get_layer(n).moving_mean.numpy())
               for n in bn]
    assert all(changed)  # every statistic re-estimated, ...
    for b, a in zip(before.layers, after.layers):  # ... and no weight trained
        if not isinstance(b, keras.layers.BatchNormalization):
            assert all(np.array_equal(x, y) for x, y in zip(b.get_weights(), a.get_weights()))
    # too few images, an unreadable folder: one line each, nothing written
    few = tmp_path / "few"
    few.mkdir()
    for f in sorted(site.iterdir())[:5]:
        shutil.copy(f, few / f.name)
    bad = runner.invoke(cli, ["adapt", str(run_dir), "--data", str(few)])
    assert bad.exit_code == 1 and "only 5 image(s)" in bad.output and "Traceback" not in bad.output
    junk = tmp_path / "junk"
    junk.mkdir()
    for i in range(3):
        (junk / f"{i}.jpg").write_bytes(b"not an image")
    bad = runner.invoke(cli, ["adapt", str(run_dir), "--data", str(junk)])
    assert bad.exit_code == 1 and "Traceback" not in bad.output
    assert "no readable images" in bad.output or "nothing readable" in bad.output
    assert sum(p.name.endswith("-site") for p in run_dir.parent.iterdir()) == 1


@pytest.mark.slow
def test_adapt_refuses_a_model_without_batch_norm(tmp_path, sartaj):
    data = tmp_path / "data"
    for c in ("meningioma_tumor", "no_tumor"):
        (data / c).mkdir(parents=True)
        for f in sorted((sartaj / "Training" / c).glob("*.jpg"))[:6]:
            shutil.copy(f, data / c / f.name)
    out = tmp_path / "runs"
    result = CliRunner().invoke(cli, ["run", "--data", str(data), "--model", "seed-cnn", "--image-size", "84",
                                      "--epochs", "1", "--out", str(out), "--reporter", "none"])
    assert result.exit_code == 0, result.output
    run_dir = next(Path(out).iterdir())
    bad = CliRunner().invoke(cli, ["adapt", str(run_dir), "--data", str(data)])
    assert bad.exit_code == 1 and "no batch-normalisation layer" in bad.output and "Traceback" not in bad.output
