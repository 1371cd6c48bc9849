"""The training loop: batches converted to float one at a time, class weights, best-epoch
weights, a learning-rate schedule, early stopping, a checkpoint each epoch, progress callbacks.
Models only build and compile; everything here is shared by all. The device and precision are
:mod:`btk.device`'s, checkpoints :mod:`btk.checkpoint`'s.

Uses ``keras`` only (imported inside functions): TensorFlow, JAX and PyTorch backends alike.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from btk.checkpoint import Checkpoint, random_state, restore_random_state
from btk.config import Recipe
from btk.device import accelerator_present, step_batch_size
from btk.distribute import batch_layout
from btk.errors import BtkError, DivergedError
from btk.lesions import LabelAugment


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


def network_input(batch: np.ndarray, scale: float, intensity: str = "none") -> np.ndarray:
    """What the network sees of a uint8 ``batch``: normalised as ``intensity`` says
    (:func:`btk.intensity.normalise_intensity`), as float32, times ``scale``. Training,
    evaluation and ``btk predict`` all prepare their batches here."""
    from btk.intensity import normalise_intensity

    x = normalise_intensity(batch, intensity).astype(np.float32)
    if scale != 1.0:
        x *= np.float32(scale)
    return x


def make_batches(images: np.ndarray | Rows, targets: np.ndarray | None, scale: float, batch_size: int,
                 weights: np.ndarray | None = None, shuffle_seed: int | None = None,
                 augment: Callable[[np.ndarray, np.random.Generator], np.ndarray] | None = None,
                 start_epoch: int = 0, group: int = 0, intensity: str = "none", multiple: int = 1,
                 shard: tuple[int, int] = (0, 1), label_augment: LabelAugment | None = None,
                 mixup: float = 0.0) -> Any:
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
        multiple: with data-parallel training (:mod:`btk.distribute`), the device count: every
            batch's length must be a multiple of it. Without micro-batches, the epoch's last
            partial batch of ``r`` images is then filled up to the next multiple with zero-weight
            copies and its real images are weighted ``filled / r``, so its loss (and gradient) is
            the mean over the real images, as without filling. Batch-norm statistics of that one
            batch, and metrics Keras computes without sample weights (accuracy), include the
            copies. Batches with targets then always carry sample weights.
        shard: ``(block, blocks)``: with several processes (multi-host), this process yields
            block ``block`` of ``blocks`` equal, contiguous blocks of rows of every batch (the
            rows its devices hold, :func:`btk.distribute.batch_layout`); together, in order, they
            make the batch one process would yield.
        label_augment: ``label_augment(uint8 batch, integer labels, rng) -> uint8 batch``, after
            ``augment`` (e.g. :func:`btk.lesions.negative_spot_augmenter`); needs ``targets``.
        mixup: with ``targets``, blend each batch with a shuffled copy of itself by a share
            ``lam`` drawn from Beta(mixup, mixup): images and targets mixed, each image keeping
            its own weight (fill copies keep weight 0); 0 off.
    """
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
            elif multiple > 1 and group <= batch_size and n % batch_size % multiple:
                real = n % batch_size
                self.pad = -real % multiple
                scale_real = (real + self.pad) / real
                self.factor = np.concatenate([np.ones(n - real, np.float32), np.full(real, scale_real, np.float32),
                                              np.zeros(self.pad, np.float32)])
            self.weighted = group > batch_size or multiple > 1
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
            # sorted reads from the cached file; a prediction keeps its order (the fill, last, is dropped)
            ranks = np.argsort(seq, kind="stable") if targets is not None else np.arange(len(seq))
            idx, factor = seq[ranks], self.factor[positions][ranks]
            if shard[1] > 1:  # this process's block of rows of the batch
                rows = slice(len(idx) * shard[0] // shard[1], len(idx) * (shard[0] + 1) // shard[1])
                idx, factor = idx[rows], factor[rows]
            batch = images[idx]
            if augment is not None or label_augment is not None or mixup > 0:
                rng = np.random.default_rng([shuffle_seed or 0, self.epoch, i])
            if augment is not None:
                batch = augment(batch, rng)
            if label_augment is not None and targets is not None:
                batch = label_augment(batch, targets[idx].argmax(axis=1), rng)
            x = network_input(batch, scale, intensity)
            if targets is None:
                return (x,)
            if mixup > 0:
                lam = np.float32(rng.beta(mixup, mixup))
                perm = rng.permutation(len(idx))
                x = lam * x + (1 - lam) * x[perm]
                mixed = lam * targets[idx] + (1 - lam) * targets[idx][perm]
                if self.weighted:
                    return x, mixed, factor if weights is None else weights[idx] * factor
                return (x, mixed) if weights is None else (x, mixed, weights[idx])
            if self.weighted:
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


def train(
    model: Any,
    x_train: np.ndarray | Rows,
    y_train: np.ndarray,
    x_val: np.ndarray | Rows,
    y_val: np.ndarray,
    n_classes: int,
    recipe: Recipe,
    seed: int,
    on_epoch: Callable[[int, dict[str, float], float], None] | None = None,
    on_batch: Callable[[int, int], None] | None = None,
    augment: Callable[[np.ndarray, np.random.Generator], np.ndarray] | None = None,
    checkpoint: Checkpoint | None = None,
    label_augment: LabelAugment | None = None,
) -> tuple[Any, dict[str, list[float]]]:
    """Fit ``model`` following ``recipe``; returns the model and the per-epoch history.

    Args:
        x_train, x_val: uint8 images; y_train, y_val: integer labels.
        on_epoch: called as ``on_epoch(epoch, logs, seconds)`` after each epoch.
        on_batch: called as ``on_batch(batch, n_batches)``; left out on accelerators, where a
            per-batch callback would force a device sync every step.
        augment, label_augment: on-the-fly augmentation of training batches (see :func:`make_batches`);
            ``recipe.mixup`` blends them there too.
        checkpoint: saved after every epoch; if it holds a saved state, training resumes from
            it (the saved model replaces ``model``) and continues as the interrupted run would:
            the same order of images and augmentation (both drawn per epoch from ``seed``), the
            model's weights, optimizer state and dropout seeds, the learning rate of the epoch,
            the best epoch so far and the process's random generators, all as they were after
            the checkpoint's epoch (:func:`btk.determinism.resume_promise` says what each
            backend then promises).

    The learning rate follows :func:`learning_rate_at`. With ``recipe.restore_best`` the
    weights of the epoch with the best validation accuracy (first best on ties) are restored at
    the end and ``history["best_epoch"]`` says which; with ``recipe.patience`` training stops
    after that many epochs without a better validation accuracy (``history["stopped_epoch"]``).
    Both look only at the epochs after the first ``recipe.monitor_after`` share of them.
    With micro-batches (:func:`step_batch_size`) each batch is computed in pieces whose gradients are
    averaged before one update (Keras' gradient accumulation): the same updates as the whole
    batch (batch statistics of batch-norm layers aside), with a fraction of the memory.
    With ``recipe.ema`` (a model compiled by :func:`btk.models.compile_like_report`, whose Adam
    then keeps the average), validation, the best epoch's weights, the checkpoint and the
    returned model all hold the averaged weights.
    """
    import keras

    from btk.determinism import enable_determinism

    enable_determinism()
    start, prior, best, resumed = 0, {}, None, None
    if checkpoint is not None and checkpoint.exists:
        model, resumed, best_weights = checkpoint.load()
        start, prior = resumed["epoch"], resumed["history"]
        if resumed.get("best") is not None:
            best = (resumed["best"][0], resumed["best"][1], best_weights)
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
    multiple, process, processes = batch_layout()
    if step % multiple:
        raise BtkError(f"micro-batches of {step} do not split over {multiple} devices: set --micro-batch to a "
                       f"multiple of {multiple}")
    shard = (process, processes)
    train_data = make_batches(x_train, eye[y_train], recipe.scale, step, weights, shuffle_seed=seed,
                              augment=augment, start_epoch=start, group=recipe.batch_size, intensity=recipe.intensity,
                              multiple=multiple, shard=shard, label_augment=label_augment, mixup=recipe.mixup)
    val_data = make_batches(x_val, eye[y_val], recipe.scale, step, intensity=recipe.intensity, multiple=multiple,
                            shard=shard) if len(x_val) else None
    n_batches = len(train_data)
    first_monitored = int(recipe.monitor_after * recipe.epochs)  # 0-based; always before the last epoch
    history: dict[str, list[float]] = {k: list(v) for k, v in prior.items()}
    if resumed is not None and start < recipe.epochs and "stopped_epoch" not in history:
        history.setdefault("resumed_after_epoch", []).append(start)
    if step < recipe.batch_size:
        history["micro_batch"] = [step]

    class Progress(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            # (validation accuracy, epoch, weights): the best monitored epoch so far; early
            # stopping needs it whether or not the best weights are kept (weights then None)
            self.best: tuple[float, int, Any] | None = best
            self.last: Any = None
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
            for key in ("loss", "val_loss"):
                if not np.isfinite(logs.get(key, 0.0)):
                    raise DivergedError(f"training diverged: the {key.replace('_', 'idation ')} is {logs[key]} after "
                                        f"epoch {epoch + 1} (try a smaller learning rate; resuming would repeat it)")
            for k, v in logs.items():
                history.setdefault(k, []).append(v)
            if ema:
                self.last = self.model.get_weights()
            counts = epoch >= first_monitored
            if counts and "val_accuracy" in logs and (self.best is None or logs["val_accuracy"] > self.best[0]):
                self.best = (logs["val_accuracy"], epoch, self.model.get_weights() if recipe.restore_best else None)
            if recipe.patience and counts and self.best is not None and epoch - self.best[1] >= recipe.patience:
                self.model.stop_training = True
                history["stopped_epoch"] = [epoch + 1]
            if checkpoint is not None:
                state = {"epoch": epoch + 1, "history": history, "random": random_state(),
                         "best": None if self.best is None else [self.best[0], self.best[1]]}
                checkpoint.save(self.model, state, None if self.best is None else self.best[2])
            if on_epoch:
                on_epoch(epoch, logs, logs["epoch_seconds"])

    class BatchProgress(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            assert on_batch is not None  # only installed when on_batch is given
            on_batch(batch + 1, n_batches)

    progress = Progress()
    callbacks: list[Any] = [progress]
    ema = getattr(model.optimizer, "use_ema", False)
    if ema:
        # first in line: from each epoch's end to the next epoch's start the model holds the
        # averaged weights (so do validation, the best weights and the checkpoint); a resumed
        # run's checkpoint was saved in that state
        swap = keras.callbacks.SwapEMAWeights(swap_on_epoch=True)
        swap._ema_weights_in_model = start > 0
        callbacks.insert(0, swap)
    if on_batch is not None and not accelerator_present():
        callbacks.append(BatchProgress())
    keras.utils.set_random_seed(seed)
    if resumed is not None and resumed.get("random"):
        restore_random_state(resumed["random"])  # as they were after the checkpoint's epoch
    stopped = "stopped_epoch" in history
    if start < recipe.epochs and not stopped:
        # shuffle=False: the loader shuffles images itself (seeded, replayable on resume); Keras would
        # also shuffle the order of batches, which splits micro-batch groups differently
        model.fit(train_data, validation_data=val_data, epochs=recipe.epochs, initial_epoch=start, verbose=0,
                  shuffle=False, callbacks=callbacks)
    if ema and progress.last is not None:
        # early stopping skips the swap callback's own finish, and fit's end would then put
        # the raw weights back: keep the averaged weights of the last epoch
        model.set_weights(progress.last)
    history.pop("best_epoch", None)
    if recipe.restore_best and progress.best is not None and progress.best[2] is not None:
        model.set_weights(progress.best[2])
        history["best_epoch"] = [progress.best[1] + 1]
    return model, history
