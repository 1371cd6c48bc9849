"""``small-cnn``: a compact CNN with batch normalisation and global average pooling.

Five 3x3 convolutions (32, 64, 128, 128, 256 filters; the first with stride 2), each followed
by batch normalisation (momentum 0.9, so short runs have usable statistics) and ReLU, max
pooling after the second to fourth, then global average
pooling, dropout and a softmax. About 0.54 M parameters whatever the image size; it trains
from scratch in a few epochs where the seed CNN needs dozens, so the built-in demo uses it.
Compiled like ``seed-cnn`` (categorical cross-entropy, Adam, accuracy).
"""

from __future__ import annotations

from typing import Any

from btk.api import ModelSpec, RegisterModel, compile_like_report, hookimpl, softmax_head


def build_small_cnn(input_shape: tuple[int, ...], n_classes: int, options: dict[str, Any]) -> Any:
    """The compact CNN for ``input_shape`` (H, W, C), compiled.

    Options:
        dropout: dropout rate before the classifier (default 0.3).
        learning_rate: Adam's learning rate (default: Keras' own, 0.001).
    """
    import keras

    layers = keras.layers
    inputs = keras.Input(tuple(input_shape))
    x = inputs
    for i, filters in enumerate((32, 64, 128, 128, 256)):
        x = layers.Conv2D(filters, 3, strides=2 if i == 0 else 1, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization(momentum=0.9)(x)
        x = layers.Activation("relu")(x)
        if 1 <= i <= 3:
            x = layers.MaxPooling2D(2)(x)
    outputs = softmax_head(x, n_classes, options)
    model = keras.Model(inputs, outputs, name="small_cnn")
    return compile_like_report(model, options)


SMALL_CNN = ModelSpec(
    name="small-cnn",
    build=build_small_cnn,
    description="compact CNN with batch norm and global pooling (about 0.54 M parameters)",
    min_image_size=16,
)


@hookimpl
def btk_register_models(register: RegisterModel) -> None:
    register(SMALL_CNN)
