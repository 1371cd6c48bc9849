"""``seed-cnn``: the report's Listing 1 CNN, compiled as its Listing 2.

Nine 3x3 ReLU convolutions in four blocks with max pooling and dropout, then two dense layers
of 512 and a softmax: 17,029,956 parameters at 256x256x3 with four classes. The report does
not state the dropout rate; 0.3 is used (it changes no parameter count). Compiled with
categorical cross-entropy, Adam (Keras' default learning rate 0.001 unless the run's recipe
sets one) and accuracy. Backend-agnostic: Keras layers only.
"""

from __future__ import annotations

from typing import Any

from btk.api import ModelSpec, RegisterModel, compile_like_report, hookimpl

# The smallest square input for which every valid convolution and pooling still has output.
MIN_IMAGE_SIZE = 84


def build_seed_cnn(input_shape: tuple[int, ...], n_classes: int, options: dict[str, Any]) -> Any:
    """Listing 1 for ``input_shape`` (H, W, C) and ``n_classes`` outputs, compiled as Listing 2.

    Options:
        dropout: dropout rate (default 0.3).
        learning_rate: Adam's learning rate (default: Keras' own, 0.001).
    """
    import keras

    layers = keras.layers
    rate = float(options.get("dropout", 0.3))
    conv = lambda filters: layers.Conv2D(filters, 3, activation="relu")  # noqa: E731
    model = keras.Sequential(
        [
            keras.Input(tuple(input_shape)),
            conv(32), conv(64), layers.MaxPooling2D(2), layers.Dropout(rate),
            conv(64), conv(64), layers.Dropout(rate), layers.MaxPooling2D(2), layers.Dropout(rate),
            conv(128), conv(128), conv(128), layers.MaxPooling2D(2), layers.Dropout(rate),
            conv(128), conv(256), layers.MaxPooling2D(2), layers.Dropout(rate),
            layers.Flatten(),
            layers.Dense(512, activation="relu"),
            layers.Dense(512, activation="relu"),
            layers.Dropout(rate),
            layers.Dense(n_classes, activation="softmax", dtype="float32"),  # float32 under mixed precision
        ],
        name="seed_cnn",
    )
    return compile_like_report(model, options)


SEED_CNN = ModelSpec(
    name="seed-cnn",
    build=build_seed_cnn,
    description="the report's Listing 1 CNN (17,029,956 parameters at 256x256x3, 4 classes)",
    min_image_size=MIN_IMAGE_SIZE,
)


@hookimpl
def btk_register_models(register: RegisterModel) -> None:
    register(SEED_CNN)
