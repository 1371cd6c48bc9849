"""Helpers for model plugins."""

from __future__ import annotations

from typing import Any


def compile_like_report(model: Any, options: dict[str, Any]) -> Any:
    """Compile ``model`` as the report's Listing 2 (categorical cross-entropy, Adam, accuracy).

    ``options["learning_rate"]`` sets Adam's rate; ``None`` or absent keeps Keras' default.
    Returns the model.
    """
    import keras

    lr = options.get("learning_rate")
    optimizer = keras.optimizers.Adam() if lr is None else keras.optimizers.Adam(float(lr))
    model.compile(loss="categorical_crossentropy", optimizer=optimizer, metrics=["accuracy"])
    return model


def softmax_head(x: Any, n_classes: int, options: dict[str, Any]) -> Any:
    """Global average pooling, dropout (``options["dropout"]``, default 0.3) and a softmax
    layer kept in float32 under mixed precision: the classifier of btk's compact CNNs."""
    import keras

    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dropout(float(options.get("dropout", 0.3)))(x)
    return keras.layers.Dense(n_classes, activation="softmax", dtype="float32")(x)
