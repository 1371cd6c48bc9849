"""Deterministic training, per Keras backend: what lets a resumed run (``btk resume``) be the
uninterrupted run, and what each backend is known to promise.

The data order, the augmentation streams, dropout's seeds and the optimizer's and schedule's state
are restored by :mod:`btk.training` and :mod:`btk.checkpoint` on every backend; what differs is
whether the backend's kernels compute bit for bit the same twice. Backends are imported inside
functions, only the one Keras runs on.
"""

from __future__ import annotations

# Measured by tests/test_resume.py and benchmarks/resume_equality.py (docs/runs.md); a backend
# not named here has not been checked.
PROMISES = {
    "tensorflow": "the resumed run's weights equal the uninterrupted run's on the same machine (checked on CPU; on "
                  "a GPU btk turns TensorFlow's op determinism on, not checked)",
    "jax": "the resumed run's weights equal the uninterrupted run's, on the same machine (checked on CPU; on a "
           "GPU only with XLA_FLAGS=--xla_gpu_deterministic_ops=true set before btk starts)",
}
UNCHECKED = ("data order, augmentation, dropout seeds, optimizer and schedule state are restored, but equal "
             "weights are not checked on this backend: its kernels may round differently from run to run, so "
             "the weights can differ in the last bits and then drift apart")


def resume_promise(backend: str) -> str:
    """What ``btk resume`` promises on ``backend`` (a Keras backend name), in one sentence."""
    return PROMISES.get(backend, UNCHECKED)


def enable_determinism() -> None:
    """Make the current Keras backend's kernels deterministic where they are not already and the
    backend has a switch for it: on an accelerator, TensorFlow's op determinism (every op then runs
    its deterministic kernel, or refuses) and PyTorch's deterministic algorithms. On a CPU nothing
    is switched: TensorFlow's and JAX's CPU kernels gave equal weights run after run as they are
    (tests/test_resume.py), and op determinism is process-wide (it would also bind every later
    step of the process). JAX on a GPU reads its flag at start-up (see :data:`PROMISES`)."""
    import keras

    from btk.device import accelerator_present

    if not accelerator_present():
        return
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
    elif backend == "torch":
        import torch

        torch.use_deterministic_algorithms(True, warn_only=True)
