"""Test-time augmentation: the model's probabilities averaged over the image and its mirror image.

Training (``augment_images``) flips images left to right, so the network has learned both
orientations; brains are close to symmetric and a tumour's side does not decide its class.
Averaging the two views' probabilities smooths out answers that hinge on one view's detail. The
averaging is a Keras model wrapped around the run's model (:func:`with_tta`), so everything that
scores images (the one scorer, :mod:`btk.scoring`) gets it alike.
"""

from __future__ import annotations

from typing import Any

_flip_layer: Any = None


def flip_layer() -> Any:
    """The Keras layer class that mirrors a batch of NHWC images left to right."""
    global _flip_layer
    if _flip_layer is None:
        import keras

        @keras.saving.register_keras_serializable(package="btk")
        class LeftRightFlip(keras.layers.Layer):
            """Mirror NHWC images left to right (no weights)."""

            def call(self, inputs: Any) -> Any:
                return keras.ops.flip(inputs, axis=2)

        _flip_layer = LeftRightFlip
    return _flip_layer


def with_tta(model: Any) -> Any:
    """A Keras model that returns ``model``'s probabilities averaged over each image and its
    left-right mirror image (one batch through the network per view)."""
    import keras

    inputs = keras.Input(shape=tuple(model.input_shape[1:]), dtype=model.inputs[0].dtype)
    views = [model(inputs), model(flip_layer()()(inputs))]
    out = keras.layers.Average(dtype="float32")([keras.ops.cast(v, "float32") for v in views])
    return keras.Model(inputs, out, name=f"{model.name}_tta")


def scoring_model(model: Any, tta: bool) -> Any:
    """The model that scores images: ``model``, or with test-time augmentation around it
    (:func:`with_tta`)."""
    return with_tta(model) if tta else model
