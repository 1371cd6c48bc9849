"""Classify new images with a trained run: its model and the preprocessing it recorded."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from btk.dataset import iter_entries
from btk.errors import BtkError
from btk.plugins import PluginHost
from btk.runs import Run
from btk.training import predict as predict_batches
from btk.types import ReadOptions


@dataclass
class Prediction:
    """One slice's (or image's) answer, or a series' / volume's aggregated answer (``slice`` None)."""

    source: str
    slice: int | None
    predicted: str
    probabilities: dict[str, float]
    aggregated_over: int = 1


READER_ORDER = ("dicom", "nifti", "folder")


def pick_reader(host: PluginHost, path: Path, name: str | None) -> Any:
    """The reader for ``path``: ``name`` if given, else the first that says it can read it
    (DICOM and NIfTI before plain images, then any other reader with ``can_read``)."""
    if name:
        return host.readers.get(name)
    ordered = [host.readers.get(n) for n in READER_ORDER if n in host.readers]
    ordered += [r for r in host.readers if r.name not in READER_ORDER]
    for reader in ordered:
        can_read = getattr(reader, "can_read", None)
        if can_read is not None and can_read(path):
            return reader
    raise BtkError(f"no reader recognises {path} (use --reader; readers: {', '.join(host.readers.names())})")


def predict_paths(run: Run, paths: list[Path], host: PluginHost, reader_name: str | None = None,
                  reader_options: dict[str, str] | None = None,
                  slices: str = "all") -> tuple[list[Prediction], list[tuple[str, str]]]:
    """Predict every image, slice, series or volume at ``paths`` with ``run``'s model.

    Returns:
        (predictions, skipped): per-slice predictions followed, for every entry with several
        slices, by their mean ("aggregated"), and the unreadable inputs with their reasons.
    """
    model = run.load_model()
    recipe = run.config["recipe"]
    size, channels = recipe["image_size"], recipe["channels"]
    classes = run.classes
    out: list[Prediction] = []
    skipped: list[tuple[str, str]] = []
    for path in paths:
        if not Path(path).exists():
            raise BtkError(f"not found: {path}")
        reader = pick_reader(host, Path(path), reader_name)
        extra = dict(reader_options or {})
        if "slices" in getattr(reader, "options", ()) and "slices" not in extra:
            extra["slices"] = slices
        options = ReadOptions(size, channels, extra, crop=recipe.get("crop", "none"))
        for entry, result in iter_entries(reader, Path(path), options):
            if isinstance(result, str):
                skipped.append((entry.source, result))
                continue
            images = np.stack([s.image if s.image.ndim == 3 else s.image[..., None] for s in result])
            probs = run.task_probabilities(predict_batches(model, images, recipe["scale"],
                                                            intensity=recipe.get("intensity", "none")))
            for sample, p in zip(result, probs):
                out.append(Prediction(sample.source, sample.meta.get("slice"), classes[int(p.argmax())],
                                      {c: float(v) for c, v in zip(classes, p)}))
            if len(result) > 1:
                mean = probs.mean(axis=0)
                out.append(Prediction(entry.source, None, classes[int(mean.argmax())],
                                      {c: float(v) for c, v in zip(classes, mean)}, aggregated_over=len(result)))
    return out, skipped
