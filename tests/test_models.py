"""Model plugins: the report's exact architecture and the compact model."""

from __future__ import annotations

from btk.plugins import get_host


def test_seed_cnn_is_listing_1_exactly():
    model = get_host().models.get("seed-cnn").build((256, 256, 3), 4, {"learning_rate": None})
    assert model.count_params() == 17_029_956
    convs = [layer for layer in model.layers if layer.__class__.__name__ == "Conv2D"]
    assert [c.filters for c in convs] == [32, 64, 64, 64, 128, 128, 128, 128, 256]
    assert model.layers[-1].output.shape[-1] == 4
    assert model.get_layer(index=len(model.layers) - 5).output.shape[1:] == (30976,)  # flatten, as listed
    assert model.loss == "categorical_crossentropy"
    assert model.optimizer.__class__.__name__ == "Adam"
    assert abs(float(model.optimizer.learning_rate) - 0.001) < 1e-9  # Keras' default, as 'Adam' in Listing 2


def test_seed_cnn_binary_and_learning_rate():
    model = get_host().models.get("seed-cnn").build((256, 256, 3), 2, {"learning_rate": 1e-4})
    assert model.count_params() == 17_029_956 - 2 * 513
    assert abs(float(model.optimizer.learning_rate) - 1e-4) < 1e-9


def test_small_cnn_is_small_at_any_size():
    spec = get_host().models.get("small-cnn")
    assert spec.build((256, 256, 3), 4, {}).count_params() == spec.build((64, 64, 1), 4, {}).count_params() + 576
