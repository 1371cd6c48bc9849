"""Model files: the run's ``model.keras`` (saved and loaded), the checkpoint written after every
epoch, and the hidden folder of a run in progress that ``btk resume`` continues (:class:`PartialRun`)."""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from btk.errors import DivergedError

RESUME_FILE = "resume.json"
SEEDS_FILE = "seeds.npz"


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
    import zipfile

    import keras

    from btk.errors import BtkError

    path = Path(path)
    if not path.is_file():
        raise BtkError(f"{path.parent}: run has no {path.name}")
    if not zipfile.is_zipfile(path):  # Keras would say "File not found"
        raise BtkError(f"{path}: damaged: a .keras model is a zip archive and these {path.stat().st_size:,} bytes "
                       "are not a complete one (truncated or overwritten?)")
    try:
        return keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as exc:  # Keras raises ValueError, TypeError, zipfile and h5 errors alike
        text = str(exc)
        if "Lambda" in text or "safe_mode" in text:
            raise BtkError(f"{path}: Keras refuses to load this model safely: it holds a Lambda layer "
                           "(arbitrary Python code); btk loads only models without one") from None
        first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
        raise BtkError(f"{path}: not a loadable Keras model ({first})") from None


def seed_states(model: Any) -> list[Any]:
    """The state variables of ``model``'s random seed generators (a dropout layer's, a random
    augmentation layer's): Keras' ``model.save`` leaves them out, and a model loaded from its file
    draws new ones, so a resumed run would drop different units than the uninterrupted run."""
    weights = {id(v) for v in model.weights}
    return [v for v in model.variables if id(v) not in weights]


def random_state() -> dict[str, Any]:
    """The process-wide generators' states (Python's ``random``, NumPy's legacy global one), JSON-ready:
    btk draws from its own seeded generators, but a library drawing from these between epochs must
    draw the same after a resume."""
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    return {"python": [version, list(internal), gauss],
            "numpy": [name, np.asarray(keys).tolist(), int(pos), int(has_gauss), float(cached)]}


def restore_random_state(state: dict[str, Any]) -> None:
    """Put back what :func:`random_state` recorded."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, np.uint32), pos, has_gauss, cached))


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
        self.folder.mkdir(parents=True, exist_ok=True)
        current = self._state().get("slot") if self.exists else None
        slot = "model-b" if current == "model-a" else "model-a"
        shutil.rmtree(self.folder / slot, ignore_errors=True)
        model.save(self.folder / slot, zipped=False)
        with open(self.folder / slot / SEEDS_FILE, "wb") as fh:
            np.savez(fh, *[keras_value(v) for v in seed_states(model)])
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
        """The saved model (compiled, optimizer state and seed generators' states included), state
        and best weights."""
        import keras

        state = self._state()
        model = keras.saving.load_model(self.folder / state["slot"])
        if (self.folder / state["slot"] / SEEDS_FILE).is_file():
            with np.load(self.folder / state["slot"] / SEEDS_FILE) as z:
                for i, variable in enumerate(seed_states(model)):
                    variable.assign(z[f"arr_{i}"])
        best = None
        if (self.folder / "best.npz").is_file():
            with np.load(self.folder / "best.npz") as z:
                best = [z[f"arr_{i}"] for i in range(len(z.files))]
        return model, state, best


def keras_value(variable: Any) -> np.ndarray:
    """A Keras variable's value as a NumPy array (any backend)."""
    import keras

    return np.asarray(keras.ops.convert_to_numpy(variable))


class PartialRun:
    """A run in progress: the hidden ``.<id>.partial`` folder beside where the run will be, holding
    what ``btk resume`` needs (``resume.json``: the run's id and configuration; ``checkpoint/``).
    Renamed into the run when complete (:class:`btk.run_files.RunWriter`)."""

    def __init__(self, path: Path | str) -> None:
        """``path``: the partial folder itself, or the run path it is for."""
        path = Path(path)
        self.folder = path if path.name.endswith(".partial") else path.parent / f".{path.name}.partial"
        self.made: list[Path] = []  # the folders begin() made, removed again if nothing is kept

    @property
    def checkpoint(self) -> Checkpoint:
        return Checkpoint(self.folder / "checkpoint")

    def begin(self, run_id: str, config: dict[str, Any]) -> None:
        """Make the folder (kept if there) and record the run's id and configuration."""
        from btk.run_files import make_folder

        self.made = make_folder(self.folder)
        (self.folder / RESUME_FILE).write_text(json.dumps({"id": run_id, "config": config}, indent=1))

    def read(self) -> dict[str, Any] | None:
        """What :meth:`begin` recorded, or ``None`` when the folder holds no run in progress."""
        info = self.folder / RESUME_FILE
        return json.loads(info.read_text()) if info.is_file() else None

    def stopped(self, exc: BaseException, warn: Any) -> None:
        """After an interruption or any error (a ``BtkError`` too): a folder holding a checkpoint
        stays for ``btk resume`` and ``warn(line)`` says how; one without is removed. An error
        never deletes a checkpoint, but a diverged training's (:class:`btk.errors.DivergedError`),
        which resuming would repeat."""
        if self.checkpoint.exists and not isinstance(exc, DivergedError):
            from btk.interrupt import KEPT

            what = "interrupted" if isinstance(exc, KeyboardInterrupt) else "stopped by an error"
            warn(f"{what}: resume with btk resume {self.folder}")
            KEPT.append(self.folder)
        else:
            from btk.run_files import remove_made

            shutil.rmtree(self.folder, ignore_errors=True)
            remove_made(self.made)
