"""Model files: the run's ``model.keras`` (saved and loaded) and the checkpoint written after every epoch."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np


def network_only(model: Any) -> Any:
    """``model`` without its training state: a clone (same architecture, layer names and dtype
    policies) holding the same weights, never compiled, so saving it writes no optimizer
    variables (Adam's moments: twice the weights again) and no compile configuration.
    ``model`` itself when Keras cannot clone it."""
    if getattr(model, "optimizer", None) is None:
        return model
    try:  # from its config, not keras.models.clone_model: that one compiles the clone like the model
        clone = type(model).from_config(model.get_config())
        if not clone.built:
            clone.build_from_config(model.get_build_config())
        clone.set_weights(model.get_weights())
    except Exception:  # a model Keras cannot rebuild from its config: saved as it is
        return model
    return clone


def save_model_file(model: Any, path: Path | str) -> None:
    """Save ``model``'s network (architecture and weights, no optimizer state: see
    :func:`network_only`) as a ``.keras`` file, without assembling the archive in memory: Keras
    writes an unzipped model directory, which is then zipped from disk (same file names, so
    ``keras.saving.load_model`` reads it as any ``.keras`` file). The training checkpoint
    (:class:`Checkpoint`) keeps the optimizer state that resuming needs."""
    import shutil
    import tempfile
    import zipfile

    path = Path(path)
    tmp = Path(tempfile.mkdtemp(prefix=".keras-", dir=path.parent))
    try:
        network_only(model).save(tmp / "model", zipped=False)
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
            for f in sorted((tmp / "model").rglob("*")):
                if f.is_file():
                    zf.write(f, f.relative_to(tmp / "model").as_posix())
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def load_model_file(path: Path | str) -> Any:
    """The Keras model in ``path`` (a ``.keras`` file), loaded in Keras' safe mode, uncompiled.

    Raises:
        BtkError: no model file, a damaged one, or one Keras refuses to load safely (a
            ``Lambda`` layer holds arbitrary Python code).
    """
    import keras

    from btk.errors import BtkError

    path = Path(path)
    if not path.is_file():
        raise BtkError(f"{path.parent}: run has no {path.name}")
    try:
        return keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as exc:  # Keras raises ValueError, TypeError, zipfile and h5 errors alike
        text = str(exc)
        if "Lambda" in text or "safe_mode" in text:
            raise BtkError(f"{path}: Keras refuses to load this model safely: it holds a Lambda layer "
                           "(arbitrary Python code); btk loads only models without one") from None
        first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
        raise BtkError(f"{path}: not a loadable Keras model ({first})") from None


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
