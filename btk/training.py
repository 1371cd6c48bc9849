"""The training loop: batches converted to float one at a time, class weights, best-epoch
weights, rich progress. Models only build and compile; everything here is shared by all.

Uses ``keras`` only (imported inside functions): TensorFlow, JAX and PyTorch backends alike.
"""

from __future__ import annotations

import os
import time
from typing import Any, Callable

import numpy as np

from btk.config import Recipe


def make_batches(images: np.ndarray, targets: np.ndarray | None, scale: float, batch_size: int,
                 weights: np.ndarray | None = None, shuffle_seed: int | None = None,
                 augment: Callable[[np.ndarray, np.random.Generator], np.ndarray] | None = None) -> Any:
    """A ``keras.utils.PyDataset`` over uint8 ``images`` that yields float32 batches times ``scale``.

    Args:
        images: N x H x W x C uint8.
        targets: one-hot N x K float32, or ``None`` for prediction.
        weights: per-sample weights (class weights), or ``None``.
        shuffle_seed: reshuffle the order after every epoch from this seed; ``None`` keeps order.
        augment: ``augment(uint8 batch, rng) -> uint8 batch`` applied before the float
            conversion, with a generator seeded by (seed, epoch, batch): reproducible whatever
            the worker threads do.
    """
    import keras

    class Batches(keras.utils.PyDataset):
        def __init__(self) -> None:
            super().__init__(workers=min(4, os.cpu_count() or 1), use_multiprocessing=False)
            self.order = np.arange(len(images))
            self.epoch = 0
            self.rng = np.random.default_rng(shuffle_seed) if shuffle_seed is not None else None
            if self.rng is not None:
                self.rng.shuffle(self.order)

        def __len__(self) -> int:
            return (len(images) + batch_size - 1) // batch_size

        def __getitem__(self, i: int):
            idx = np.sort(self.order[i * batch_size:(i + 1) * batch_size])
            batch = images[idx]
            if augment is not None:
                batch = augment(batch, np.random.default_rng([shuffle_seed or 0, self.epoch, i]))
            x = batch.astype(np.float32)
            if scale != 1.0:
                x *= np.float32(scale)
            if targets is None:
                return (x,)
            if weights is None:
                return x, targets[idx]
            return x, targets[idx], weights[idx]

        def on_epoch_end(self) -> None:
            self.epoch += 1
            if self.rng is not None:
                self.rng.shuffle(self.order)

    return Batches()


def balanced_class_weights(y: np.ndarray, n_classes: int) -> np.ndarray:
    """scikit-learn's 'balanced' weight per class (n / (k * count)); absent classes get 1."""
    from sklearn.utils.class_weight import compute_class_weight

    present = np.unique(y)
    w = np.ones(n_classes)
    w[present] = compute_class_weight("balanced", classes=present, y=y)
    return w


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


def train(
    model: Any,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    n_classes: int,
    recipe: Recipe,
    seed: int,
    on_epoch: Callable[[int, dict[str, float], float], None] | None = None,
    on_batch: Callable[[int, int], None] | None = None,
    augment: Callable[[np.ndarray, np.random.Generator], np.ndarray] | None = None,
) -> dict[str, list[float]]:
    """Fit ``model`` following ``recipe``; returns the per-epoch history.

    Args:
        x_train, x_val: uint8 images; y_train, y_val: integer labels.
        on_epoch: called as ``on_epoch(epoch, logs, seconds)`` after each epoch.
        on_batch: called as ``on_batch(batch, n_batches)``; left out on accelerators, where a
            per-batch callback would force a device sync every step.
        augment: on-the-fly augmentation of training batches (see :func:`make_batches`).

    With ``recipe.restore_best`` the weights of the epoch with the best validation accuracy
    (first best on ties) are restored at the end, and ``history["best_epoch"]`` says which.
    """
    import keras

    eye = np.eye(n_classes, dtype=np.float32)
    weights = None
    if recipe.class_weight:
        cw = balanced_class_weights(y_train, n_classes)
        if not np.allclose(cw, 1.0, atol=0.1):
            weights = cw[y_train].astype(np.float32)
    train_data = make_batches(x_train, eye[y_train], recipe.scale, recipe.batch_size, weights, shuffle_seed=seed,
                              augment=augment)
    val_data = make_batches(x_val, eye[y_val], recipe.scale, recipe.batch_size) if len(x_val) else None
    n_batches = len(train_data)

    class Progress(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.best: tuple[float, int, Any] | None = None
            self.t0 = 0.0

        def on_epoch_begin(self, epoch, logs=None):
            self.t0 = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            logs = {k: float(v) for k, v in (logs or {}).items()}
            if recipe.restore_best and "val_accuracy" in logs:
                if self.best is None or logs["val_accuracy"] > self.best[0]:
                    self.best = (logs["val_accuracy"], epoch, self.model.get_weights())
            if on_epoch:
                on_epoch(epoch, logs, time.perf_counter() - self.t0)

    class BatchProgress(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            on_batch(batch + 1, n_batches)

    progress = Progress()
    callbacks: list[Any] = [progress]
    if on_batch is not None and not accelerator_present():
        callbacks.append(BatchProgress())
    keras.utils.set_random_seed(seed)
    hist = model.fit(train_data, validation_data=val_data, epochs=recipe.epochs, verbose=0,
                     callbacks=callbacks)
    history = {k: [float(v) for v in vs] for k, vs in hist.history.items()}
    if progress.best is not None:
        model.set_weights(progress.best[2])
        history["best_epoch"] = [progress.best[1] + 1]
    return history


def predict(model: Any, images: np.ndarray, scale: float, batch_size: int = 64) -> np.ndarray:
    """Class probabilities for uint8 ``images`` (N x K float)."""
    return np.asarray(model.predict(make_batches(images, None, scale, batch_size), verbose=0))
