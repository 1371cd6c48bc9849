"""Helpers for model plugins."""

from __future__ import annotations

from typing import Any


def compile_like_report(model: Any, options: dict[str, Any]) -> Any:
    """Compile ``model`` as the report's Listing 2 (categorical cross-entropy, Adam, accuracy).

    ``options["learning_rate"]`` sets Adam's rate; ``None`` or absent keeps Keras' default.
    ``options["label_smoothing"]`` (> 0) smooths the targets of the cross-entropy, and
    ``options["ema"]`` (> 0) makes Adam keep an exponential moving average of the weights with
    that momentum (the recipe fields of the same names). Returns the model.
    """
    import keras

    lr = options.get("learning_rate")
    ema = float(options.get("ema") or 0.0)
    extra: dict[str, Any] = {"use_ema": True, "ema_momentum": ema} if ema > 0 else {}
    optimizer = keras.optimizers.Adam(**extra) if lr is None else keras.optimizers.Adam(float(lr), **extra)
    smoothing = float(options.get("label_smoothing") or 0.0)
    loss = keras.losses.CategoricalCrossentropy(label_smoothing=smoothing) if smoothing > 0 else \
        "categorical_crossentropy"
    model.compile(loss=loss, optimizer=optimizer, metrics=["accuracy"])
    return model


def softmax_head(x: Any, n_classes: int, options: dict[str, Any]) -> Any:
    """Global average pooling, dropout (``options["dropout"]``, default 0.3) and a softmax
    layer kept in float32 under mixed precision: the classifier of btk's compact CNNs."""
    import keras

    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dropout(float(options.get("dropout", 0.3)))(x)
    return keras.layers.Dense(n_classes, activation="softmax", dtype="float32")(x)
