"""``res-cnn``: a small residual CNN, the fast model of btk's recipes.

A stride-2 3x3 stem (24 filters), then four stages of basic residual blocks (two 3x3
convolutions with batch normalisation, an identity or 1x1 projection shortcut) of 32, 64, 128
and 192 filters, each stage halving the resolution, then global average pooling, dropout and a
softmax. 1.94 M parameters whatever the image size; at 128x128x1 it needs 124 M
multiply-adds per image, a thirtieth of the seed CNN's 3.79 G at 256x256x3, and 503 M at
256x256x3 (:func:`btk.flops.count_macs`). Compiled like ``seed-cnn`` (categorical cross-entropy, Adam,
accuracy), so every recipe option (learning-rate schedule, class weights) applies.
"""

from __future__ import annotations

from typing import Any

from btk.api import ModelSpec, RegisterModel, compile_like_report, hookimpl, softmax_head

STAGES = (32, 64, 128, 192)


def _block(x: Any, filters: int, stride: int) -> Any:
    import keras

    layers = keras.layers
    shortcut = x
    y = layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False)(x)
    y = layers.BatchNormalization(momentum=0.9)(y)
    y = layers.Activation("relu")(y)
    y = layers.Conv2D(filters, 3, padding="same", use_bias=False)(y)
    y = layers.BatchNormalization(momentum=0.9)(y)
    if stride != 1 or x.shape[-1] != filters:
        shortcut = layers.Conv2D(filters, 1, strides=stride, use_bias=False)(x)
        shortcut = layers.BatchNormalization(momentum=0.9)(shortcut)
    return layers.Activation("relu")(layers.Add()([y, shortcut]))


def build_res_cnn(input_shape: tuple[int, ...], n_classes: int, options: dict[str, Any]) -> Any:
    """The residual CNN for ``input_shape`` (H, W, C), compiled.

    Options:
        dropout: dropout rate before the classifier (default 0.3).
        width: multiplier of every layer's filters (default 1.0).
        learning_rate: Adam's learning rate, a number or a Keras schedule (default 0.001).
    """
    import keras

    layers = keras.layers
    width = float(options.get("width", 1.0))
    inputs = keras.Input(tuple(input_shape))
    x = layers.Conv2D(max(8, int(24 * width)), 3, strides=2, padding="same", use_bias=False)(inputs)
    x = layers.BatchNormalization(momentum=0.9)(x)
    x = layers.Activation("relu")(x)
    for filters in STAGES:
        x = _block(x, max(8, int(filters * width)), 2)
        x = _block(x, max(8, int(filters * width)), 1)
    outputs = softmax_head(x, n_classes, options)
    model = keras.Model(inputs, outputs, name="res_cnn")
    return compile_like_report(model, options)


RES_CNN = ModelSpec(
    name="res-cnn",
    build=build_res_cnn,
    description="small residual CNN with batch norm and global pooling (1.94 M parameters; btk's fast recipe)",
    min_image_size=32,
)


@hookimpl
def btk_register_models(register: RegisterModel) -> None:
    register(RES_CNN)
