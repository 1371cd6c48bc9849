"""Data-parallel training over several devices, and over several hosts, through the Keras 3
distribution API (``keras.distribution.DataParallel`` over a ``DeviceMesh``).

- :func:`parse_devices` reads ``btk run --devices`` (``auto``, a count ``N`` or a list of
  device indices such as ``0,2``) against the devices there are.
- :func:`begin` sets the distribution before the model is built and returns the layout a run
  records in its ``config.json``; :func:`end` unsets it after training, so a saved model loads
  and predicts on one device.
- :func:`scoring` does the same for evaluation and prediction (``btk evaluate``, ``btk predict``,
  ``btk robustness --devices``): every batch of images is split over the devices (the scorer,
  :mod:`btk.scoring`, fills its batches to a multiple of their number and drops the filling).
- :func:`init_multihost` starts ``jax.distributed`` (several processes, one per host) before
  anything else touches JAX.
- :func:`batch_layout` tells the training loop how batches must be cut: every batch a multiple
  of the device count, each process feeding the contiguous block of rows its devices hold, so
  the global batch is in the same order as on one process (dropout's masks, drawn for the
  global batch, then fall on the same images).

The distribution API is JAX-only in Keras 3: on TensorFlow and PyTorch btk trains on one device
(``--devices auto`` or ``1`` says so in one line; more than one device is refused).

Heavy libraries (keras, jax) are imported inside functions.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from btk.errors import BtkError
from btk.feedback import Feedback

__all__ = ["MultiHost", "batch_layout", "begin", "check_devices", "end", "init_multihost", "is_writer",
           "multihost_from", "parse_devices", "scoring",
           "scoring_after_training"]


def parse_devices(spec: str, available: int) -> list[int]:
    """The device indices ``spec`` names among ``available`` devices.

    ``auto``: all of them; ``N``: the first N; ``I,J,...``: those indices (0-based, each once).

    Raises:
        BtkError: a malformed spec, more devices than there are, or an index that does not exist.
    """
    text = spec.strip().lower()
    if text == "auto":
        return list(range(available))
    try:
        if "," not in text:
            count = int(text)
            if count < 1:
                raise BtkError(f"--devices {spec}: give at least 1 device")
            if count > available:
                raise BtkError(f"--devices {spec}: only {available} device(s) here")
            return list(range(count))
        indices = [int(part) for part in text.split(",")]
    except ValueError:
        raise BtkError(f"--devices {spec!r}: write auto, a count (2) or device indices (0,1)") from None
    bad = [i for i in indices if not 0 <= i < available]
    if bad:
        raise BtkError(f"--devices {spec}: no device {bad[0]} (there are {available}: indices 0..{available - 1})")
    if len(set(indices)) != len(indices):
        raise BtkError(f"--devices {spec}: a device is named twice")
    return indices


def _set_mesh(spec: str, feedback: Feedback, what: str, batch_size: int | None = None) -> dict[str, Any] | None:
    """Set ``DataParallel`` over the devices ``spec`` names for ``what`` (training, scoring);
    the layout record, or None for an empty ``spec``."""
    end()  # a distribution left by an earlier run in this process
    if not spec:
        return None
    import keras

    backend = keras.backend.backend()
    if backend != "jax":
        check_devices(spec, what)  # several devices are refused; auto and 1 mean one
        feedback.info(f"--devices {spec}: backend {backend} has no Keras distribution API: {what} on one device "
                      "(KERAS_BACKEND=jax uses all)")
        return {"devices": [], "mesh": None, "backend": backend, "processes": 1,
                **({"per_device_batch": batch_size} if batch_size else {}),
                "note": "one device: Keras' distribution API is JAX-only"}
    import jax

    names = keras.distribution.list_devices()
    chosen = [names[i] for i in parse_devices(spec, len(names))]
    if batch_size is not None and batch_size % len(chosen):
        raise BtkError(f"batch size {batch_size} does not split over {len(chosen)} devices: give a multiple of "
                       f"{len(chosen)}")
    processes = jax.process_count()
    if processes > 1:
        chosen = _by_process(spec, chosen)
    mesh = keras.distribution.DeviceMesh(shape=(len(chosen),), axis_names=["batch"], devices=chosen)
    # auto_shard_dataset off: btk's batches are already cut per process (batch_layout)
    keras.distribution.set_distribution(keras.distribution.DataParallel(device_mesh=mesh, auto_shard_dataset=False))
    layout: dict[str, Any] = {"devices": chosen, "mesh": {"shape": [len(chosen)], "axis_names": ["batch"]},
                              "backend": backend, "processes": processes}
    if batch_size is not None:
        layout["per_device_batch"] = batch_size // len(chosen)
    return layout


def begin(spec: str, batch_size: int, feedback: Feedback | None = None) -> dict[str, Any] | None:
    """Set Keras' data-parallel distribution over the devices ``spec`` names (see
    :func:`parse_devices`), before the model is built. ``""``: no distribution (Keras' default
    device), nothing recorded.

    The global batch (``batch_size``) is split evenly over the devices, so it must be a multiple
    of their number. On TensorFlow and PyTorch (no distribution API in Keras 3) ``auto`` and
    ``1`` train on one device, with one line to ``feedback``.

    Returns:
        The layout a run records: ``{"devices", "mesh", "backend", "processes",
        "per_device_batch"}``, or None when ``spec`` is empty.

    Raises:
        BtkError: a bad spec, a batch that does not split, or several devices on a backend
            without the distribution API.
    """
    feedback = feedback or Feedback()
    layout = _set_mesh(spec, feedback, "training", batch_size)
    if layout and layout["devices"]:
        chosen, processes = layout["devices"], layout["processes"]
        feedback.info(f"data-parallel over {len(chosen)} device(s) ({', '.join(chosen)})"
                      + (f" in {processes} processes" if processes > 1 else "")
                      + f": {batch_size // len(chosen)} images per device per step")
    return layout


def check_devices(spec: str, what: str = "scoring") -> None:
    """Refuse, before any long work, a ``--devices`` spec that :func:`scoring` (or
    :func:`begin`) would refuse: malformed, more devices than there are, or several devices on a
    backend without Keras' distribution API. ``""`` is always fine.

    Raises:
        BtkError: one line naming the problem.
    """
    if not spec:
        return
    import keras

    backend = keras.backend.backend()
    if backend != "jax":
        if spec.strip().lower() not in ("auto", "1"):
            raise BtkError(f"--devices {spec}: {what} on several devices needs the JAX backend (Keras' "
                           f"distribution API is JAX-only); this is {backend}: set KERAS_BACKEND=jax")
        return
    parse_devices(spec, len(keras.distribution.list_devices()))


@contextmanager
def scoring(spec: str, feedback: Feedback | None = None) -> Iterator[dict[str, Any] | None]:
    """Evaluate or predict over the devices ``spec`` names (:func:`parse_devices`) inside the
    ``with`` block: load the model inside it, after the distribution is set. Every batch is then
    split over the devices (:meth:`btk.scoring.Scorer.outputs` rounds its batch up to a multiple
    of their number). ``""``: Keras' default device. The
    distribution is unset when the block ends.

    Yields:
        The layout (as a run records it, without ``per_device_batch``), or None for ``""``.

    Raises:
        BtkError: a bad spec, several devices on a backend without the distribution API, or a
            multi-host process (scoring runs in one process).
    """
    feedback = feedback or Feedback()
    if spec and "jax" in sys.modules:
        import jax

        if jax.process_count() > 1:
            raise BtkError("--devices: evaluation and prediction run in one process; start them without "
                           "JAX_COORDINATOR_ADDRESS")
    layout = _set_mesh(spec, feedback, "scoring")
    if layout and layout["devices"]:
        feedback.info(f"scoring over {len(layout['devices'])} device(s) ({', '.join(layout['devices'])}): "
                      "every batch split between them")
    try:
        yield layout
    finally:
        end()


def scoring_after_training(spec: str) -> str:
    """The devices a run scores its own validation and test images on after training with
    ``spec``: the same ones in a single JAX process; ``""`` (Keras' default device) otherwise:
    another backend (one device anyway) or several processes (scoring is single-process)."""
    if not spec or "jax" not in sys.modules:
        return ""
    import jax
    import keras

    return spec if keras.backend.backend() == "jax" and jax.process_count() == 1 else ""


def end() -> None:
    """Unset the distribution :func:`begin` set (evaluation then runs on one device)."""
    if "keras" not in sys.modules:  # none can have been set: nothing to import (ONNX Runtime scoring)
        return
    import keras

    if keras.backend.backend() == "jax" and keras.distribution.distribution() is not None:
        keras.distribution.set_distribution(None)


def _by_process(spec: str, chosen: list[str]) -> list[str]:
    """``chosen`` (device names) grouped by the process that holds them, in process order, so
    each process's devices are neighbours in the mesh and hold one contiguous block of every
    batch (see :func:`batch_layout`).

    Raises:
        BtkError: a process without a device, or processes with unequal numbers of devices.
    """
    import jax

    process_of = {f"{d.platform.lower()}:{d.id}": int(d.process_index) for d in jax.devices()}
    owner = {name: process_of[name] for name in chosen}
    counts = [sum(1 for p in owner.values() if p == k) for k in range(jax.process_count())]
    if min(counts) == 0 or len(set(counts)) > 1:
        raise BtkError(f"--devices {spec}: with {len(counts)} processes every process needs the same number of "
                       f"devices (here {', '.join(map(str, counts))}); --devices auto takes them all")
    return sorted(chosen, key=lambda name: owner[name])  # stable: each process's devices keep their order


def batch_layout() -> tuple[int, int, int]:
    """``(multiple, block, blocks)`` for the batches of the distribution now set: each batch's
    length must be a multiple of ``multiple`` (the devices), and this process feeds block
    ``block`` of ``blocks`` equal, contiguous blocks of rows of each batch: the rows its devices
    hold in the mesh, so the global batch has the order one process would give it. ``(1, 0, 1)``
    without a distribution; ``(devices, 0, 1)`` in a single process."""
    if "keras" not in sys.modules:  # none can have been set
        return 1, 0, 1
    import keras

    if keras.backend.backend() != "jax" or keras.distribution.distribution() is None:
        return 1, 0, 1
    import jax

    mesh = keras.distribution.distribution().device_mesh
    devices = list(mesh.backend_mesh.devices.flat)
    if jax.process_count() == 1:
        return len(devices), 0, 1
    mine = [j for j, device in enumerate(devices) if device.process_index == jax.process_index()]
    if not mine or len(devices) % len(mine) or mine != list(range(mine[0], mine[0] + len(mine))) \
            or mine[0] % len(mine):
        raise BtkError(f"this process's devices are not one block of the mesh (positions {mine} of {len(devices)})")
    return len(devices), mine[0] // len(mine), len(devices) // len(mine)


@dataclass(frozen=True)
class MultiHost:
    """One process of a multi-host run: the coordinator's ``HOST:PORT``, how many processes
    there are and which one this is."""

    coordinator: str
    num_processes: int
    process_id: int


def multihost_from(coordinator: str | None = None, num_processes: int | None = None, process_id: int | None = None,
                   environ: Mapping[str, str] | None = None) -> MultiHost | None:
    """The multi-host setting of this process: the arguments, each defaulting to the environment
    (how ``btk run`` learns it): ``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES`` (else Slurm's
    ``SLURM_NTASKS``), ``JAX_PROCESS_ID`` (else ``SLURM_PROCID``). None: a single process.

    Raises:
        BtkError: a process count or id without a coordinator, or an id out of range.
    """
    env = os.environ if environ is None else environ

    def number(value: int | None, *names: str) -> int | None:
        if value is not None:
            return value
        for name in names:
            if env.get(name, "").strip():
                try:
                    return int(env[name])
                except ValueError:
                    raise BtkError(f"{name}={env[name]!r} is not a number") from None
        return None

    coordinator = coordinator or env.get("JAX_COORDINATOR_ADDRESS", "").strip() or None
    explicit_count = num_processes is not None or bool(env.get("JAX_NUM_PROCESSES", "").strip())
    count = number(num_processes, "JAX_NUM_PROCESSES", "SLURM_NTASKS")
    index = number(process_id, "JAX_PROCESS_ID", "SLURM_PROCID")
    if coordinator is None:
        if explicit_count or process_id is not None or env.get("JAX_PROCESS_ID", "").strip():
            raise BtkError("several processes need a coordinator: set JAX_COORDINATOR_ADDRESS=HOST:PORT")
        return None  # Slurm variables alone (an ordinary srun job) do not start a multi-host run
    host, _, port = coordinator.rpartition(":")
    if not host or not port.isdigit():
        raise BtkError(f"JAX_COORDINATOR_ADDRESS={coordinator!r}: write HOST:PORT, e.g. node01:1234")
    if count is None or index is None:
        raise BtkError("JAX_COORDINATOR_ADDRESS needs JAX_NUM_PROCESSES and JAX_PROCESS_ID (or Slurm's "
                       "SLURM_NTASKS and SLURM_PROCID)")
    if count < 1:
        raise BtkError(f"{count} processes: give at least 1 (JAX_NUM_PROCESSES)")
    if not 0 <= index < count:
        raise BtkError(f"process id {index} must be below the number of processes {count} (0..{count - 1}; "
                       "JAX_PROCESS_ID)")
    return MultiHost(coordinator, count, index)


def init_multihost(setting: MultiHost | None) -> None:
    """Start ``jax.distributed`` for ``setting`` (nothing for None); call it before anything
    else touches JAX. Every process then sees every process's devices
    (``keras.distribution.list_devices()``).

    Raises:
        BtkError: a backend other than JAX, or JAX failing to connect (one line).
    """
    if setting is None:
        return
    backend = os.environ.get("KERAS_BACKEND", "")
    if not backend:
        import keras

        backend = keras.backend.backend()
    if backend != "jax":
        raise BtkError(f"several processes (JAX_COORDINATOR_ADDRESS) need the JAX backend; this is {backend}: "
                       "set KERAS_BACKEND=jax")
    import jax

    try:
        jax.distributed.initialize(coordinator_address=setting.coordinator, num_processes=setting.num_processes,
                                   process_id=setting.process_id)
    except Exception as exc:  # JAX's errors are long; one line says what failed
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        raise BtkError(f"process {setting.process_id} of {setting.num_processes} could not join "
                       f"{setting.coordinator}: {type(exc).__name__}: {first}") from None


def is_writer() -> bool:
    """Whether this process writes the run directory: process 0 of a multi-host run, or the
    only process."""
    if "jax" not in sys.modules:
        return True
    import jax

    try:
        return int(jax.process_index()) == 0
    except Exception:
        return True
