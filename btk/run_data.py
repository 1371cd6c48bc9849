"""A finished run's data read again as the run read it: its dataset, the images of one of its
subsets or roles, its model and scorer. :class:`btk.runs.Run` has these methods from
:class:`RunData`."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from btk.errors import BtkError
from btk.record import SUBSETS, Images, locate
from btk.types import ReadOptions

if TYPE_CHECKING:
    from btk.config import RunConfig
    from btk.record import EvaluationSource, Provenance

WARM_MODELS = 2
"""How many scoring models a process keeps loaded (:meth:`RunData.scoring_model`), the last used."""
_warm: dict[tuple[str, int, int, bool], Any] = {}


class RunData:
    """The methods of :class:`btk.runs.Run` that read its data, model and images again."""

    path: Path
    config: RunConfig
    classes: tuple[str, ...]
    trained_classes: tuple[str, ...]
    provenance: Provenance | None
    evaluation: EvaluationSource | None

    if TYPE_CHECKING:  # defined by btk.runs.Run
        @property
        def tta(self) -> bool: ...
        @property
        def temperature(self) -> float: ...
        @property
        def is_evaluation(self) -> bool: ...
        def conformal(self) -> Any: ...
        def evaluated_run(self) -> Any: ...
        def split_rows(self) -> list[dict[str, str]]: ...
        def role_subset(self, role: str) -> str | None: ...

    def read_options(self, extra: Mapping[str, str] | None = None) -> ReadOptions:
        """The image options the run read its data with (size, channels, crop), with reader
        options ``extra`` (default: the run's)."""
        recipe = self.config.recipe
        return ReadOptions(int(recipe.image_size), int(recipe.channels),
                           dict(self.config.reader_options if extra is None else extra), crop=recipe.crop)

    @property
    def data_path(self) -> Path | None:
        """The run's data folder, found from here: as recorded, or, for a relative path, relative
        to the folder the run was made in when it is not there from the current one."""
        return locate(self.config.data, self.provenance)

    def load_model(self, tta: bool | None = None) -> Any:
        """The run's trained Keras model (``model.keras``), loaded in Keras' safe mode; with
        ``tta`` (default: the run's own choice) wrapped to average it over the image and its
        mirror image (:func:`btk.tta.with_tta`).

        Raises:
            BtkError: no model file, a damaged one, or one Keras refuses to load safely (a
                ``Lambda`` layer holds arbitrary Python code).
        """
        from btk.checkpoint import load_model_file
        from btk.tta import scoring_model

        model_dir = self.evaluated_run().path if self.is_evaluation else self.path
        return scoring_model(load_model_file(model_dir / "model.keras"), self.tta if tta is None else tta)

    def scoring_model(self, tta: bool | None = None) -> Any:
        """:meth:`load_model` for scoring, kept loaded for the next scorer of the same model
        file (its path, size and time) and test-time augmentation in this process (the last
        :data:`WARM_MODELS`): a node that answers study after study loads and traces the network
        once. Never handed to code that changes a model (``btk adapt`` loads its own)."""
        model_dir = self.evaluated_run().path if self.is_evaluation else self.path
        if not (model_dir / "model.keras").is_file():
            return self.load_model(tta)  # which says what is wrong
        stat = (model_dir / "model.keras").stat()
        key = (str((model_dir / "model.keras").resolve()), stat.st_mtime_ns, stat.st_size,
               bool(self.tta if tta is None else tta))
        if key not in _warm:
            model = self.load_model(tta)
            while len(_warm) >= WARM_MODELS:
                _warm.pop(next(iter(_warm)))
            _warm[key] = model
        return _warm[key]

    @contextmanager
    def scorer(self, tta: bool | None = None, devices: str = "", calibrated: bool = True,
               feedback: Any = None, runtime: str = "keras") -> Iterator[Any]:
        """The run's :class:`btk.scoring.Scorer` inside a ``with`` block: its model loaded (over
        ``devices``, :func:`btk.distribute.scoring`), with test-time augmentation as ``tta``
        says (default: the run's choice) and its temperature unless ``calibrated`` is false; with
        its prediction sets and the calibration images' features that a shift check compares
        cohorts with, where the run keeps them (:func:`btk.shift.read_reference`). ``runtime``:
        ``keras``, ``onnx`` or ``auto`` (:mod:`btk.onnx_runtime`); the scorer's ``runtime``
        says which one scores.

        Raises:
            BtkError: the model cannot be loaded, or the devices or the runtime cannot be used.
        """
        from btk.distribute import scoring
        from btk.onnx_runtime import chosen_runtime, onnx_network
        from btk.scoring import Scorer
        from btk.shift import read_reference

        use_tta = self.tta if tta is None else bool(tta)
        chosen = chosen_runtime(self, runtime, use_tta, devices)
        with scoring(devices, feedback) as layout:
            # several devices: the model is made inside the layout's scope, every time
            temperature, sets, reference = self.temperature, self.conformal(), None
            if chosen == "int8":  # another predictor: its own calibration, never the run's
                from btk.onnx_int8 import int8_parts

                model, temperature, sets, reference = int8_parts(self, use_tta)
            elif chosen == "onnx":
                model = onnx_network(self, use_tta, feedback)
            else:
                model = self.load_model(tta) if devices else self.scoring_model(tta)
            scorer = Scorer.for_recipe(model, self.config.recipe, self.trained_classes, self.classes,
                                       self.config.negative_class, temperature, calibrated, sets)
            if scorer.conformal is not None:
                scorer = scorer.with_shift_reference(reference if chosen == "int8" else read_reference(self.path))
            scorer.layout = layout
            yield scorer

    def targets(self, labels: list[str]) -> np.ndarray:
        """The task's class indices of data labels ``labels``: renamed by an evaluation's class
        map, then the run's classes (binary: 0 for the negative class, 1 for any other)."""
        mapping = dict(self.evaluation.class_map) if self.evaluation else {}
        names = [mapping.get(str(label), str(label)) for label in labels]
        if self.config.task == "binary":
            return np.array([0 if n == self.config.negative_class else 1 for n in names], dtype=int)
        index = {c: k for k, c in enumerate(self.classes)}
        unknown = sorted({n for n in names if n not in index})
        if unknown:
            raise BtkError(f"{self.path}: labels {', '.join(unknown)} are not among the run's classes "
                           f"{', '.join(self.classes)}")
        return np.array([index[n] for n in names], dtype=int)

    def dataset(self, host: Any = None, feedback: Any = None) -> Any:
        """The run's data read again as the run read it (:class:`btk.dataset.Dataset`; the decode
        cache makes this cheap), from where :attr:`data_path` finds it.

        Raises:
            BtkError: the data is no longer where it was.
        """
        from btk.dataset import load_dataset
        from btk.feedback import Feedback
        from btk.plugins import get_host

        host = host or get_host()
        feedback = feedback or Feedback()
        reader = host.readers.get(self.config.reader)
        path = self.data_path
        if self.config.data is not None and path is None:
            raise BtkError(f"{self.path}: its data {self.config.data} is not here (nor relative to the folder the "
                           f"run was made in, {self.provenance.cwd if self.provenance else 'not recorded'})")
        with feedback.task(f"reading {path or reader.name}") as task:
            data = load_dataset(reader, path, self.read_options(),
                                progress=lambda done, total: task.update(completed=done, total=total))
        if self.config.labels:  # the corrections the run was made with, found as its data is
            from btk.label_corrections import apply_corrections

            corrections = locate(self.config.labels, self.provenance)
            if corrections is None:
                raise BtkError(f"{self.path}: its label corrections {self.config.labels} are not here")
            data = apply_corrections(data, corrections)[0]
        return data

    def _subset_name(self, subset: str | None, role: str | None) -> tuple[str, str]:
        """``(split.csv subset, words for messages)`` of a subset name or a role."""
        if role is not None:
            found = self.role_subset(role)
            if found is None:
                raise BtkError(f"{self.path}: the run has no {role} images")
            return found, f"{role} ({found})"
        name = subset or "test"
        return SUBSETS.get(name, name), name

    def positions(self, data: Any, subset: str | None = None, role: str | None = None) -> np.ndarray:
        """The rows of ``data`` (:meth:`dataset`) that ``subset`` (train, val, test, or another
        name in ``split.csv``) or the subset serving ``role`` holds, in ``split.csv`` order.

        Raises:
            BtkError: the run has no such images, or some are no longer in the data.
        """
        wanted, words = self._subset_name(subset, role)
        sources = [r["source"] for r in self.split_rows() if r["subset"] == wanted]
        if not sources:
            raise BtkError(f"{self.path}: the run has no {words} images")
        position = {str(s): i for i, s in enumerate(data.sources)}
        missing = [s for s in sources if s not in position]
        if missing:
            raise BtkError(f"{self.path}: {len(missing)} {words} image(s) of the run are missing from its data "
                           f"{self.data_path}, e.g. {missing[0]}")
        return np.array([position[s] for s in sources], dtype=int)

    def images(self, subset: str | None = None, host: Any = None, feedback: Any = None, data: Any = None,
               role: str | None = None) -> Images:
        """The images of ``subset`` (test, val or train; default test; for an evaluation, test:
        the images it scored) or of the subset serving ``role`` (:data:`btk.record.ROLES`), read
        again as the run read them, in ``split.csv`` order, with their labels (``data``: the
        run's dataset, when already read).

        Raises:
            BtkError: the run has no such images, or its data is no longer where it was.
        """
        from btk.cache import gather

        wanted, _ = self._subset_name(subset, role)
        data = data if data is not None else self.dataset(host, feedback)
        index = self.positions(data, wanted)
        rows = [r for r in self.split_rows() if r["subset"] == wanted]
        return Images(gather(data.images, index), self.targets([r["label"] for r in rows]),
                      np.array([r["source"] for r in rows], dtype=object),
                      np.array([r.get("copy_in_train") == "1" for r in rows], dtype=bool))
