"""The training loop: batches converted to float one at a time, class weights, best-epoch
weights, a learning-rate schedule, early stopping, a checkpoint each epoch, rich progress. Models
only build and compile; everything here is shared by all.

Uses ``keras`` only (imported inside functions): TensorFlow, JAX and PyTorch backends alike.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from btk.config import Recipe


class Rows:
    """Rows ``index`` of an image array, without copying them: ``rows[i]`` is
    ``images[index[i]]``. Lets training read its batches straight from a memory-mapped dataset."""

    def __init__(self, images: np.ndarray, index: np.ndarray) -> None:
        self.images, self.index = images, np.asarray(index)
        self.shape = (len(self.index), *images.shape[1:])

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: Any) -> np.ndarray:
        from btk.cache import gather

        return gather(self.images, self.index[i])


def make_batches(images: np.ndarray, targets: np.ndarray | None, scale: float, batch_size: int,
                 weights: np.ndarray | None = None, shuffle_seed: int | None = None,
                 augment: Callable[[np.ndarray, np.random.Generator], np.ndarray] | None = None,
                 start_epoch: int = 0, group: int = 0, intensity: str = "none") -> Any:
    """A ``keras.utils.PyDataset`` over uint8 ``images`` that yields float32 batches times ``scale``.

    Args:
        images: N x H x W x C uint8 (an array or :class:`Rows`).
        targets: one-hot N x K float32, or ``None`` for prediction.
        weights: per-sample weights (class weights), or ``None``.
        shuffle_seed: reshuffle the order after every epoch from this seed; ``None`` keeps order.
        augment: ``augment(uint8 batch, rng) -> uint8 batch`` applied before the float
            conversion, with a generator seeded by (seed, epoch, batch): reproducible whatever
            the worker threads do.
        start_epoch: the epoch training starts at (a resumed run): the shuffles of the earlier
            epochs are replayed, so the order is the one an uninterrupted run would have seen.
        group: with micro-batches, the whole batch size (a multiple of ``batch_size``). Each
            epoch's last, partial batch of ``r`` images is then filled up to ``group`` with
            zero-weight copies and its real images are weighted ``group / r``, so the gradients
            accumulated over its micro-batches average as that partial batch's would, and no
            micro-batch spills into the next epoch's first update. Batches then always carry
            sample weights.
        intensity: per-image intensity normalisation (:func:`btk.intensity.normalise_intensity`),
            after ``augment`` and before the float conversion.
    """
    from btk.intensity import normalise_intensity

    import keras

    class Batches(keras.utils.PyDataset):
        def __init__(self) -> None:
            super().__init__(workers=min(4, os.cpu_count() or 1), use_multiprocessing=False)
            self.order = np.arange(len(images))
            self.epoch = start_epoch
            self.n = n = len(images)
            self.pad = 0
            self.factor = np.ones(n, np.float32)
            if group > batch_size and targets is not None and n % group:
                real = n % group
                self.pad = group - real
                self.factor = np.concatenate([np.ones(n - real, np.float32), np.full(real, group / real, np.float32),
                                              np.zeros(self.pad, np.float32)])
            self.rng = np.random.default_rng(shuffle_seed) if shuffle_seed is not None else None
            if self.rng is not None:
                for _ in range(start_epoch + 1):
                    self.rng.shuffle(self.order)

        def __len__(self) -> int:
            return (self.n + self.pad + batch_size - 1) // batch_size

        def __getitem__(self, i: int):
            # positions past the end are the fill: they wrap round to the epoch's first images
            positions = np.arange(i * batch_size, min((i + 1) * batch_size, self.n + self.pad))
            seq = self.order[positions % self.n]
            ranks = np.argsort(seq, kind="stable")  # sorted reads from the cached file
            idx, factor = seq[ranks], self.factor[positions][ranks]
            batch = images[idx]
            if augment is not None:
                batch = augment(batch, np.random.default_rng([shuffle_seed or 0, self.epoch, i]))
            x = normalise_intensity(batch, intensity).astype(np.float32)
            if scale != 1.0:
                x *= np.float32(scale)
            if targets is None:
                return (x,)
            if group > batch_size:
                return x, targets[idx], factor if weights is None else weights[idx] * factor
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


def learning_rate_at(epoch: int, recipe: Recipe) -> float:
    """The learning rate of ``epoch`` (0-based) under the recipe's schedule.

    ``cosine``: linear warm-up over ``warmup_epochs`` to the base rate, then a cosine decay
    towards zero at the last planned epoch. ``constant``: the base rate throughout.
    """
    base = recipe.learning_rate if recipe.learning_rate is not None else 1e-3
    if recipe.schedule == "constant":
        return base
    warm = min(recipe.warmup_epochs, recipe.epochs - 1)
    if epoch < warm:
        return base * (epoch + 1) / (warm + 1)
    span = max(recipe.epochs - warm, 1)
    return base * 0.5 * (1.0 + math.cos(math.pi * (epoch - warm) / span))


def save_model_file(model: Any, path: Path | str) -> None:
    """Save ``model`` as a ``.keras`` file without assembling the archive in memory: Keras
    writes an unzipped model directory, which is then zipped from disk (same file names, so
    ``keras.saving.load_model`` reads it as any ``.keras`` file)."""
    import shutil
    import tempfile
    import zipfile

    path = Path(path)
    tmp = Path(tempfile.mkdtemp(prefix=".keras-", dir=path.parent))
    try:
        model.save(tmp / "model", zipped=False)
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
            for f in sorted((tmp / "model").rglob("*")):
                if f.is_file():
                    zf.write(f, f.relative_to(tmp / "model").as_posix())
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class Checkpoint:
    """A training checkpoint in a folder: the model with its optimizer state, the best weights
    so far and the loop's state, rewritten after every epoch (each file replaced atomically)."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    @property
    def exists(self) -> bool:
        return (self.folder / "state.json").is_file()

    def save(self, model: Any, state: dict[str, Any], best_weights: list[np.ndarray] | None) -> None:
        """Write the model, the best weights and ``state`` (JSON-ready).

        The model goes to an unzipped Keras directory, written straight to disk (a zipped
        ``.keras`` file is assembled in memory first: hundreds of MB for a large network), into
        whichever of two slots the current state does not point to; ``state.json``, replaced
        last, names the slot, so an interruption at any moment leaves a complete checkpoint.
        """
        import shutil

        self.folder.mkdir(parents=True, exist_ok=True)
        current = self._state().get("slot") if self.exists else None
        slot = "model-b" if current == "model-a" else "model-a"
        shutil.rmtree(self.folder / slot, ignore_errors=True)
        model.save(self.folder / slot, zipped=False)
        if best_weights is not None:
            with open(self.folder / "best.tmp.npz", "wb") as fh:
                np.savez(fh, *best_weights)
            os.replace(self.folder / "best.tmp.npz", self.folder / "best.npz")
        (self.folder / "state.tmp.json").write_text(json.dumps({**state, "slot": slot}))
        os.replace(self.folder / "state.tmp.json", self.folder / "state.json")

    def _state(self) -> dict[str, Any]:
        return json.loads((self.folder / "state.json").read_text())

    @property
    def epoch(self) -> int:
        """Epochs the checkpoint holds (0 when there is none)."""
        return self._state()["epoch"] if self.exists else 0

    def load(self) -> tuple[Any, dict[str, Any], list[np.ndarray] | None]:
        """The saved model (compiled, optimizer state included), state and best weights."""
        import keras

        state = self._state()
        model = keras.saving.load_model(self.folder / state["slot"])
        best = None
        if (self.folder / "best.npz").is_file():
            with np.load(self.folder / "best.npz") as z:
                best = [z[f"arr_{i}"] for i in range(len(z.files))]
        return model, state, best


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
    checkpoint: Checkpoint | None = None,
) -> tuple[Any, dict[str, list[float]]]:
    """Fit ``model`` following ``recipe``; returns the model and the per-epoch history.

    Args:
        x_train, x_val: uint8 images; y_train, y_val: integer labels.
        on_epoch: called as ``on_epoch(epoch, logs, seconds)`` after each epoch.
        on_batch: called as ``on_batch(batch, n_batches)``; left out on accelerators, where a
            per-batch callback would force a device sync every step.
        augment: on-the-fly augmentation of training batches (see :func:`make_batches`).
        checkpoint: saved after every epoch; if it holds a saved state, training resumes from
            it (the saved model replaces ``model``) and continues as the interrupted run would.

    The learning rate follows :func:`learning_rate_at`. With ``recipe.restore_best`` the
    weights of the epoch with the best validation accuracy (first best on ties) are restored at
    the end and ``history["best_epoch"]`` says which; with ``recipe.patience`` training stops
    after that many epochs without a better validation accuracy (``history["stopped_epoch"]``).
    Both look only at the epochs after the first ``recipe.monitor_after`` share of them.
    With micro-batches (:func:`step_batch_size`) each batch is computed in pieces whose gradients are
    averaged before one update (Keras' gradient accumulation): the same updates as the whole
    batch (batch statistics of batch-norm layers aside), with a fraction of the memory.
    """
    import keras

    start, prior, best = 0, {}, None
    if checkpoint is not None and checkpoint.exists:
        model, state, best_weights = checkpoint.load()
        start, prior = state["epoch"], state["history"]
        if state.get("best") is not None and best_weights is not None:
            best = (state["best"][0], state["best"][1], best_weights)
    eye = np.eye(n_classes, dtype=np.float32)
    weights = None
    if recipe.class_weight:
        cw = balanced_class_weights(y_train, n_classes)
        if not np.allclose(cw, 1.0, atol=0.1):
            weights = cw[y_train].astype(np.float32)
    step = step_batch_size(recipe, model)
    if step < recipe.batch_size and not model.optimizer.built:
        # micro-batches: the optimizer averages the gradients of batch_size / micro_batch steps
        # and updates once, as one batch of batch_size would (less memory for activations)
        model.optimizer.gradient_accumulation_steps = recipe.batch_size // step
    train_data = make_batches(x_train, eye[y_train], recipe.scale, step, weights, shuffle_seed=seed,
                              augment=augment, start_epoch=start, group=recipe.batch_size, intensity=recipe.intensity)
    val_data = make_batches(x_val, eye[y_val], recipe.scale, step, intensity=recipe.intensity) if len(x_val) else None
    n_batches = len(train_data)
    first_monitored = int(recipe.monitor_after * recipe.epochs)  # 0-based; always before the last epoch
    history: dict[str, list[float]] = {k: list(v) for k, v in prior.items()}
    if step < recipe.batch_size:
        history["micro_batch"] = [step]

    class Progress(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.best: tuple[float, int, Any] | None = best
            self.t0 = 0.0

        def on_epoch_begin(self, epoch, logs=None):
            self.t0 = time.perf_counter()
            if recipe.schedule != "constant":
                self.model.optimizer.learning_rate.assign(learning_rate_at(epoch, recipe))

        def on_epoch_end(self, epoch, logs=None):
            logs = {k: float(v) for k, v in (logs or {}).items()}
            logs["epoch_seconds"] = time.perf_counter() - self.t0
            if recipe.schedule != "constant":
                logs["learning_rate"] = learning_rate_at(epoch, recipe)
            for k, v in logs.items():
                history.setdefault(k, []).append(v)
            counts = epoch >= first_monitored
            if recipe.restore_best and counts and "val_accuracy" in logs:
                if self.best is None or logs["val_accuracy"] > self.best[0]:
                    self.best = (logs["val_accuracy"], epoch, self.model.get_weights())
            if recipe.patience and counts and self.best is not None and epoch - self.best[1] >= recipe.patience:
                self.model.stop_training = True
                history["stopped_epoch"] = [epoch + 1]
            if checkpoint is not None:
                state = {"epoch": epoch + 1, "history": history,
                         "best": None if self.best is None else [self.best[0], self.best[1]]}
                checkpoint.save(self.model, state, None if self.best is None else self.best[2])
            if on_epoch:
                on_epoch(epoch, logs, logs["epoch_seconds"])

    class BatchProgress(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            on_batch(batch + 1, n_batches)

    progress = Progress()
    callbacks: list[Any] = [progress]
    if on_batch is not None and not accelerator_present():
        callbacks.append(BatchProgress())
    keras.utils.set_random_seed(seed + start)
    stopped = "stopped_epoch" in history
    if start < recipe.epochs and not stopped:
        # shuffle=False: the loader shuffles images itself (seeded, replayable on resume); Keras would
        # also shuffle the order of batches, which splits micro-batch groups differently
        model.fit(train_data, validation_data=val_data, epochs=recipe.epochs, initial_epoch=start, verbose=0,
                  shuffle=False, callbacks=callbacks)
    history.pop("best_epoch", None)
    if progress.best is not None:
        model.set_weights(progress.best[2])
        history["best_epoch"] = [progress.best[1] + 1]
    return model, history


def predict(model: Any, images: np.ndarray, scale: float, batch_size: int = 64, intensity: str = "none") -> np.ndarray:
    """Class probabilities for uint8 ``images`` (N x K float), normalised as ``intensity`` says."""
    return np.asarray(model.predict(make_batches(images, None, scale, batch_size, intensity=intensity), verbose=0))
