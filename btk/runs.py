"""Run directories: written under a temporary name and renamed when complete, then re-read.

A run directory holds:

- ``config.json``: the resolved configuration, classes, input shape, resolved degradations,
  which plugin provided what, library versions, and ``provenance`` (:mod:`btk.provenance`: the
  command, backend version, btk's commit, device, precision, a fingerprint of the files read,
  start and end), and ``calibration`` (the temperature fitted on the validation split, with the
  validation ECE and NLL before and after, :mod:`btk.calibration`); ``btk run --config`` reads it
  back, ``btk rerun`` repeats it;
- ``split.csv``: which sample went to train, val or test;
- ``history.json``: per-epoch training history;
- ``model.keras``: the trained model;
- ``predictions.csv``: per test image and condition (clean, each degradation): true label,
  predicted label and class probabilities;
- ``metrics.json``: metrics per condition, timings and skipped inputs;
- ``examples.npz``: a few right and wrong test images (128 px grayscale) under every test
  condition, for reports;
- ``MODEL_CARD.md``: the model card (:mod:`btk.model_card`; ``btk card`` writes it again);
- ``btk-run.json``: the format version, kind and completion time, written last.

``btk evaluate`` writes an evaluation directory (by default into the run's ``evaluations/``)
in the same format, with ``"kind": "evaluation"`` in its ``config.json``: the run's model
scored on other data. Everything that reads runs reads it too.

While a run trains, its hidden ``.<id>.partial`` directory holds ``resume.json`` and a
checkpoint of the last epoch; an interrupted run leaves it for ``btk run --resume``. Readers of
runs skip it; a finished run has neither file.
"""

from __future__ import annotations

import csv
import json
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from btk.errors import BtkError
from btk.types import ReadOptions

FORMAT_VERSION = 1
MARKER = "btk-run.json"
EVALUATIONS = "evaluations"  # btk evaluate's default folder inside a run


def new_run_id(name: str) -> str:
    """``YYYYmmdd-HHMMSS-name``: sortable and readable."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{name}" if name else stamp


def unique_dir(parent: Path, run_id: str) -> Path:
    """``parent/run_id``, with a numeric suffix if it exists already."""
    path, k = parent / run_id, 2
    while path.exists() or (parent / f".{path.name}.partial").exists():
        path, k = parent / f"{run_id}-{k}", k + 1
    return path


class RunWriter:
    """Context manager that writes into ``.<id>.partial`` and renames it to ``<id>`` on success."""

    def __init__(self, final: Path, kind: str = "run") -> None:
        self.final = final
        self.kind = kind
        self.tmp = final.parent / f".{final.name}.partial"

    def __enter__(self) -> RunWriter:
        self.tmp.mkdir(parents=True, exist_ok=True)  # training may have checkpointed into it
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            shutil.rmtree(self.tmp / "checkpoint", ignore_errors=True)
            (self.tmp / "resume.json").unlink(missing_ok=True)
            self.write_json(MARKER, {"format": FORMAT_VERSION, "id": self.final.name, "kind": self.kind,
                                     "completed": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
            self.tmp.rename(self.final)
        elif not (self.tmp / "checkpoint").is_dir():  # a training checkpoint stays for --resume
            shutil.rmtree(self.tmp, ignore_errors=True)

    def path(self, name: str) -> Path:
        """Where file ``name`` goes while the run is being written."""
        return self.tmp / name

    def write_json(self, name: str, obj: Any) -> None:
        """Write ``obj`` as indented JSON."""
        self.path(name).write_text(json.dumps(obj, indent=1, default=_json_default) + "\n")

    def write_csv(self, name: str, header: list[str], rows: Iterator[list[Any]] | list[list[Any]]) -> None:
        """Write rows under ``header``."""
        with open(self.path(name), "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(header)
            writer.writerows(rows)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def recipe_read_options(recipe: dict[str, Any], extra: dict[str, str] | None = None) -> ReadOptions:
    """The image options a run's recorded ``recipe`` read its data with (size, channels, crop),
    with reader options ``extra``: what every command that reads images for a run uses."""
    return ReadOptions(int(recipe["image_size"]), int(recipe["channels"]), dict(extra or {}),
                       crop=recipe.get("crop", "none"))


def to_task_probabilities(probs: np.ndarray, trained_classes: list[str], negative_class: str) -> np.ndarray:
    """Binary probabilities ``[P(negative), P(positive)]`` from a model trained on all classes:
    P(positive) is the sum of the positive classes' probabilities, 1 - P(negative)."""
    neg = list(trained_classes).index(negative_class)
    p_neg = np.asarray(probs, dtype=np.float64)[:, neg]
    return np.stack([p_neg, 1.0 - p_neg], axis=1)


@dataclass
class Run:
    """A finished run, read back from its directory."""

    path: Path
    config: dict[str, Any]
    metrics: dict[str, Any]
    history: dict[str, list[float]]

    @property
    def classes(self) -> list[str]:
        """Class names in model output order."""
        return list(self.config["classes"])

    def task_probabilities(self, probs: np.ndarray) -> np.ndarray:
        """The model's output ``probs`` as probabilities over :attr:`classes` (see
        :func:`to_task_probabilities`; unchanged unless the run trained on finer classes)."""
        trained = self.config.get("trained_classes")
        if not trained:
            return probs
        return to_task_probabilities(probs, trained, self.config["config"]["negative_class"])

    @property
    def temperature(self) -> float:
        """The temperature fitted on the validation split at the end of training
        (:mod:`btk.calibration`); 1.0 (no change) for runs from before calibration."""
        return float((self.config.get("calibration") or {}).get("temperature", 1.0))

    def calibrated(self, probs: np.ndarray) -> np.ndarray:
        """The model's output ``probs`` with the run's temperature applied (same top class)."""
        from btk.calibration import apply_temperature

        return apply_temperature(probs, self.temperature)

    @property
    def name(self) -> str:
        """The run directory's name."""
        return self.path.name

    @property
    def is_evaluation(self) -> bool:
        """Whether this is an evaluation of a run on other data (``btk evaluate``), not a run."""
        return self.config.get("kind") == "evaluation"

    def evaluations(self) -> list[Path]:
        """The evaluation directories ``btk evaluate`` wrote into this run, oldest first."""
        folder = self.path / EVALUATIONS
        if not folder.is_dir():
            return []
        return sorted(p for p in folder.iterdir() if (p / MARKER).is_file())

    def predictions(self) -> list[dict[str, str]]:
        """The rows of ``predictions.csv``."""
        with open(self.path / "predictions.csv", newline="") as fh:
            return list(csv.DictReader(fh))

    def condition_arrays(self, condition: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(sources, true class indices, probabilities)`` of the test images under ``condition``."""
        if "_arrays" not in self.__dict__:
            self._arrays: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
            rows = self.predictions()
            index = {c: k for k, c in enumerate(self.classes)}
            cols = [f"p_{c}" for c in self.classes]
            for cond in dict.fromkeys(r["condition"] for r in rows):
                sel = [r for r in rows if r["condition"] == cond]
                self._arrays[cond] = (np.array([r["source"] for r in sel]),
                                      np.array([index[r["label"]] for r in sel]),
                                      np.array([[float(r[c]) for c in cols] for r in sel]))
        return self._arrays[condition]

    @property
    def tta(self) -> bool:
        """Whether the run scores images with test-time augmentation (:mod:`btk.tta`)."""
        return bool((self.config.get("config") or {}).get("tta", False))

    def load_model(self, tta: bool | None = None) -> Any:
        """The run's trained Keras model (``model.keras``), loaded in Keras' safe mode; with
        ``tta`` (default: the run's own choice) wrapped to average it over the image and its
        mirror image (:func:`btk.tta.with_tta`).

        Raises:
            BtkError: no model file, a damaged one, or one Keras refuses to load safely (a
                ``Lambda`` layer holds arbitrary Python code).
        """
        import keras

        path = self.path / "model.keras"
        if not path.is_file():
            raise BtkError(f"{self.path}: run has no model.keras")
        try:
            model = keras.saving.load_model(path, compile=False, safe_mode=True)
        except Exception as exc:  # Keras raises ValueError, TypeError, zipfile and h5 errors alike
            text = str(exc)
            if "Lambda" in text or "safe_mode" in text:
                raise BtkError(f"{path}: Keras refuses to load this model safely: it holds a Lambda layer "
                               "(arbitrary Python code); btk loads only models without one") from None
            first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
            raise BtkError(f"{path}: not a loadable Keras model ({first})") from None
        from btk.tta import scoring_model

        return scoring_model(model, self.tta if tta is None else tta)

    def examples(self) -> dict[str, np.ndarray]:
        """The example images kept with the run (empty if there are none)."""
        path = self.path / "examples.npz"
        if not path.exists():
            return {}
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}


def load_run(path: Path | str) -> Run:
    """Read a complete run directory.

    Raises:
        BtkError: not a run directory, an incomplete one, or one of another format version.
    """
    path = Path(path)
    if not path.is_dir():
        raise BtkError(f"not a run directory: {path}")
    marker = path / MARKER
    if not marker.exists():
        raise BtkError(f"{path} is not a complete btk run (no {MARKER})")
    try:
        info = json.loads(marker.read_text())
        if info.get("format") != FORMAT_VERSION:
            raise BtkError(f"{path}: run format {info.get('format')} is not supported (expected {FORMAT_VERSION})")
        config = json.loads((path / "config.json").read_text())
        metrics = json.loads((path / "metrics.json").read_text())
        history = json.loads((path / "history.json").read_text())
        if not (path / "predictions.csv").exists():
            raise FileNotFoundError(2, "missing", str(path / "predictions.csv"))
    except FileNotFoundError as exc:
        raise BtkError(f"{path}: run is missing {Path(exc.filename).name}") from None
    except json.JSONDecodeError as exc:
        raise BtkError(f"{path}: damaged run file: {exc}") from None
    return Run(path, config, metrics, history)
