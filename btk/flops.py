"""Multiply-add counts of Keras models: the cost of one image through the network."""

from __future__ import annotations

from typing import Any

import numpy as np


def count_macs(model: Any) -> int:
    """Multiply-accumulate operations of one forward pass of one image through ``model``.

    Counts convolutions (regular, depthwise, separable) and dense layers, the layers that
    dominate a CNN's arithmetic; batch normalisation, activations and pooling are left out.
    Recurses into nested models. One MAC is two FLOPs.
    """
    import keras

    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            total += count_macs(layer)
            continue
        kind = type(layer).__name__
        if kind not in ("Conv2D", "DepthwiseConv2D", "SeparableConv2D", "Dense"):
            continue
        out = layer.output.shape
        spatial = int(np.prod(list(out[1:-1]))) if len(out) > 2 else 1
        c_in = int(layer.input.shape[-1])
        if kind == "Dense":
            total += c_in * int(out[-1])
        elif kind == "Conv2D":
            kh, kw = layer.kernel_size
            total += spatial * int(out[-1]) * kh * kw * c_in // layer.groups
        elif kind == "DepthwiseConv2D":
            kh, kw = layer.kernel_size
            total += spatial * int(out[-1]) * kh * kw
        else:  # SeparableConv2D
            kh, kw = layer.kernel_size
            mult = layer.depth_multiplier
            total += spatial * c_in * mult * kh * kw + spatial * c_in * mult * int(out[-1])
    return total
