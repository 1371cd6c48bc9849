"""What made a run: the backend's version, btk's commit, the device and precision, the command
line, a fingerprint of the data read, and when it started and ended. Kept in every run's and
evaluation's ``config.json`` (``"provenance"``) beside the library versions."""

from __future__ import annotations

import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


def now() -> str:
    """The local time in ISO 8601 with its UTC offset."""
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


TYPED: list[str] | None = None
"""The arguments of the ``btk`` command running now (set by :meth:`btk.cli.BtkGroup.main`), or None
outside one."""


def command_line(argv: list[str] | None = None) -> str:
    """The command as typed (``btk`` and its arguments, shell-quoted): ``argv``, else the arguments
    of the ``btk`` command running now, else the process's."""
    args = argv if argv is not None else TYPED if TYPED is not None else sys.argv[1:]
    return shlex.join(["btk", *args])


def backend_version() -> dict[str, str]:
    """The Keras backend's name and version."""
    import importlib

    import keras

    name = keras.backend.backend()
    module = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch", "numpy": "numpy"}.get(name, name)
    try:
        version = str(getattr(importlib.import_module(module), "__version__", "unknown"))
    except ImportError:
        version = "unknown"
    return {"name": name, "version": version}


def source_commit() -> dict[str, Any] | None:
    """btk's git commit (and whether its checkout has uncommitted changes) when it runs from a
    checkout; ``None`` for an installed copy or where git is missing."""
    root = Path(__file__).resolve().parent.parent
    if not (root / ".git").exists():
        return None
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
        status = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": head, "dirty": bool(status.strip())}


def device_description() -> str:
    """The device the backend computes on: the accelerator's name, or the CPU and its cores."""
    from btk.device import accelerator_present, cpu_has_bf16

    if accelerator_present():
        import keras

        backend = keras.backend.backend()
        try:
            if backend == "jax":
                import jax

                return str(jax.devices()[0].device_kind)
            if backend == "torch":
                import torch

                return str(torch.cuda.get_device_name(0))
        except Exception:  # a name is a courtesy: never fail a run over it
            pass
        return f"accelerator ({backend})"
    cpu = platform.processor() or platform.machine()
    return f"CPU {cpu}, {os.cpu_count()} cores" + (", native bfloat16" if cpu_has_bf16() else "")


def provenance(precision: str, data: dict[str, Any] | None, started: str, command: str | None = None) -> dict[str, Any]:
    """The provenance record of a run or an evaluation that started at ``started`` and ends now.

    Args:
        precision: the dtype policy the model computed in (e.g. ``mixed_bfloat16``).
        data: the data's fingerprint (:attr:`btk.dataset.Dataset.fingerprint`).
        command: the command line; default: this process's arguments.
    """
    return {"command": command if command is not None else command_line(), "cwd": os.getcwd(),
            "backend": backend_version(),
            "source": source_commit(), "device": device_description(), "precision": precision,
            "data": data or {}, "started": started, "ended": now()}
