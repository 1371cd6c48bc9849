"""The shapes that flow between plugins and the core: samples, readers, models, reporters.

Readers produce :class:`Sample` objects and nothing else; everything after them is
format-agnostic. A plugin registers instances of the classes here (or any object with the
same attributes).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from btk.runs import Run


@dataclass
class Sample:
    """One 2D image with its label and provenance.

    Attributes:
        image: uint8 array, H x W or H x W x C.
        label: class name, or ``None`` for unlabelled input (prediction).
        group: the unit that must stay on one side of a split (patient, volume, series, file).
        source: where it came from (a file path, with a slice index where there is one).
        split: the split the data declares (``"train"``, ``"test"``) or ``""`` when none.
        meta: anything else the reader knows (original size, spacing, ...). ``meta["note"]``:
            what the reader left out of the input this sample came from, in words (e.g. the other
            volumes of a 4-D file), which the commands count and report with their results.
    """

    image: np.ndarray
    label: str | None
    group: str
    source: str
    split: str = ""
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Entry:
    """A unit a reader can load independently (a file, a series, a volume): the result of a scan."""

    source: str
    label: str | None
    group: str
    split: str = ""
    payload: Any = None


@dataclass(frozen=True)
class ReadOptions:
    """What the core asks of every reader.

    Attributes:
        image_size: side of the square output image in pixels, or ``None`` to keep sizes.
        channels: 1 (grayscale) or 3 (three equal channels, as ``cv2.imread`` gives).
        extra: reader-specific options from ``--reader-option KEY=VALUE``.
        crop: ``none``, or ``head``: each image is cropped to a square around the head before
            it is resized (:mod:`btk.framing`). The core does this: readers are then asked for
            full-size images and never see this field.
    """

    image_size: int | None = 256
    channels: int = 3
    extra: dict[str, str] = field(default_factory=dict)
    crop: str = "none"


@runtime_checkable
class Reader(Protocol):
    """Turns a path into samples, in two steps so the core can show progress and skip bad items.

    ``scan`` lists the entries cheaply and raises :class:`btk.errors.BtkError` for a path that
    is missing or empty; ``load`` decodes one entry into one or more samples and raises
    :class:`btk.errors.UnreadableInputError` for an entry it cannot decode. ``load`` is called
    from several threads at once.
    """

    name: str
    description: str

    def scan(self, path: Path | None, options: ReadOptions) -> list[Entry]: ...

    def load(self, entry: Entry, options: ReadOptions) -> list[Sample]: ...


@dataclass(frozen=True)
class ModelSpec:
    """A model plugin: builds a compiled Keras model.

    Attributes:
        name: the name used with ``--model``.
        build: ``build(input_shape, n_classes, options) -> keras.Model``, compiled. ``options``
            holds ``learning_rate`` (``None`` for the optimiser's default) and any
            ``--model-option KEY=VALUE``.
        description: one line for ``btk plugins``.
        min_image_size: the smallest square input the architecture accepts.
        gradcam_layer: the name of the layer whose output ``btk explain`` uses for Grad-CAM;
            ``None``: the last layer with a 4-D output.
    """

    name: str
    build: Callable[..., Any]
    description: str = ""
    min_image_size: int = 1
    gradcam_layer: str | None = None


@dataclass(frozen=True)
class PackagedRun:
    """A finished run shipped inside a Python package, usable by its name wherever a run is
    asked for (``btk predict NAME``, ``btk evaluate NAME``, ...; ``btk predict`` without a run
    uses btk's own or the one ``BTK_RUN`` names).

    Attributes:
        name: the name commands accept in place of a run directory.
        path: the run directory inside the package (a complete run: ``btk-run.json``,
            ``config.json``, ``model.keras``, its card; ``model.onnx`` where it was exported).
        description: one line for ``btk plugins`` and for the line a command prints when it
            uses the run: what it was trained on and what it is for.
    """

    name: str
    path: Path
    description: str = ""


@dataclass(frozen=True)
class Reporter:
    """A reporter plugin: presents a finished run.

    Attributes:
        name: the name used with ``--reporter``.
        report: ``report(run, console)`` where ``run`` is a :class:`btk.runs.Run` and ``console``
            a ``rich.console.Console`` (reporters draw with rich; the core passes the console).
        description: one line for ``btk plugins``.
        write: optional ``write(report, path)`` (``report``: a :class:`btk.compare.Report`) for
            reporters that put several runs (and suite tables) into one file; ``btk report --html
            PATH`` uses the ``html`` reporter's.
    """

    name: str
    report: Callable[[Run, Any], None]
    description: str = ""
    write: Callable[..., None] | None = None

