"""The device a model trains on: accelerator or CPU, the compute precision that measured fastest
there, and how many images one training step can hold (micro-batches).

Uses ``keras`` only (imported inside functions): TensorFlow, JAX and PyTorch backends alike.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from btk.config import Recipe


def accelerator_present() -> bool:
    """Whether the Keras backend runs on a GPU or other accelerator."""
    import keras

    backend = keras.backend.backend()
    try:
        if backend == "jax":
            import jax

            return jax.devices()[0].platform != "cpu"
        if backend == "torch":
            import torch

            return bool(torch.cuda.is_available())
        if backend == "tensorflow":
            import tensorflow as tf

            return bool(tf.config.list_logical_devices("GPU"))
    except Exception:
        return False
    return False


def cpu_has_bf16() -> bool:
    """Whether this CPU computes in bfloat16 natively (AVX512-BF16 or AMX; Linux only)."""
    try:
        with open("/proc/cpuinfo") as fh:
            flags = next((line for line in fh if line.startswith("flags")), "").split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(precision: str) -> str:
    """The Keras dtype policy for a recipe's ``precision``.

    ``auto`` picks what measured fastest per device (docs/performance.md): ``mixed_bfloat16``
    on CPUs with native bfloat16 (res-cnn trained 1.54x faster at the same accuracy on a
    2-core AVX512-BF16 machine), ``float32`` on other CPUs (no native bfloat16) and on
    accelerators (not yet measured there).
    """
    if precision != "auto":
        return precision
    if not accelerator_present() and cpu_has_bf16():
        return "mixed_bfloat16"
    return "float32"


def build_with_precision(build: Callable[[], Any], precision: str) -> Any:
    """Call ``build()`` (a model plugin's build) under the dtype policy for ``precision``."""
    import keras

    policy = resolve_precision(precision)
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        return build()
    finally:
        keras.config.set_dtype_policy(previous)


ACTIVATION_BUDGET = 512 * 2**20  # bytes of activations one training step may hold when micro-batches are automatic


def has_batch_norm(model: Any) -> bool:
    """Whether ``model`` (or a model nested in it) has a batch-normalisation layer."""
    return any("BatchNormalization" in type(layer).__name__ or (hasattr(layer, "layers") and has_batch_norm(layer))
               for layer in model.layers)


def activation_bytes_per_image(model: Any) -> int:
    """Estimated activation memory of one training image: every layer's output at its dtype's
    width, twice (kept for the backward pass, and its gradient there)."""
    return 2 * sum(int(np.prod(layer.output.shape[1:])) * np.dtype(layer.output.dtype).itemsize
                   for layer in model.layers)


def step_batch_size(recipe: Recipe, model: Any = None) -> int:
    """Images per forward/backward pass.

    ``recipe.micro_batch`` > 0 sets it. 0 (auto) splits batches on CPUs only, and only for
    networks without batch norm (whose statistics would change): into the largest micro-batch
    that divides the batch and keeps the step's activations (:func:`activation_bytes_per_image`)
    under ``ACTIVATION_BUDGET``. The report's CNN at 256 x 256 x 3 gets micro-batches of 8 in
    bfloat16 and 4 in float32; btk's compact networks keep whole batches.
    """
    batch = recipe.batch_size
    if recipe.micro_batch > 0:
        return min(recipe.micro_batch, batch)
    if model is None or has_batch_norm(model) or accelerator_present():
        return batch
    per_image = activation_bytes_per_image(model)
    fitting = [d for d in range(1, batch + 1) if batch % d == 0 and d * per_image <= ACTIVATION_BUDGET]
    return max(fitting) if fitting else 1
