"""One scorer: images in, a run's task probabilities out, the same way for every command.

A :class:`Scorer` holds a trained network (wrapped for test-time augmentation when asked) and
everything a run recorded about reading its output: the input preparation (intensity
normalisation, scale), the classes it was trained on and the task's classes (a binary task
learned through the classes folds them: P(tumour) = 1 - P(no tumour)), and the temperature
fitted on the validation images. The run's own test step, ``evaluate``, ``predict``,
``explain``, ``robustness``, ``ensemble`` and ``adapt`` all score through it
(:meth:`btk.runs.Run.scorer` builds one from a run), so one image gets one answer.

Images always go through the network in batches of one fixed shape (the last batch filled up
with blank images whose answers are dropped), so an image's answer does not depend on which
other images came with it or on how many there were.

:func:`score_conditions` scores labelled images clean and under degradations: the metrics and
per-image rows every run and evaluation writes.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from btk.config import Recipe
from btk.degraders import Degradation
from btk.metrics import evaluate
from btk.stats import reliability

__all__ = ["Scorer", "TestResults", "example_indices", "score_conditions", "set_conditions", "thumbnails",
           "to_task_probabilities"]


def to_task_probabilities(probs: np.ndarray, trained_classes: list[str] | tuple[str, ...],
                          negative_class: str) -> np.ndarray:
    """Binary probabilities ``[P(negative), P(positive)]`` from a model trained on all classes:
    P(positive) is the sum of the positive classes' probabilities, 1 - P(negative)."""
    neg = list(trained_classes).index(negative_class)
    p_neg = np.asarray(probs, dtype=np.float64)[:, neg]
    return np.stack([p_neg, 1.0 - p_neg], axis=1)


@dataclass
class Scorer:
    """A trained network and how a run reads its answers.

    Attributes:
        model: the Keras model (already wrapped for test-time augmentation if the run uses it), or
            the same network as an ONNX graph (:class:`btk.onnx_runtime.OnnxNetwork`).
        scale, intensity: the input preparation (:func:`btk.training.network_input`).
        trained_classes: the network's output classes; ``classes``: the task's.
        negative_class: the class a binary task learned through the classes folds against.
        temperature: divides the logits (:mod:`btk.calibration`); 1.0: the network's own.
        batch_size: images per network call (every call has this shape).
        calibrated: whether :meth:`__call__` applies the temperature.
        layout: the devices every batch is split over (:func:`btk.distribute.scoring`).
    """

    model: Any
    scale: float
    intensity: str
    trained_classes: tuple[str, ...]
    classes: tuple[str, ...]
    negative_class: str = "no_tumor"
    temperature: float = 1.0
    batch_size: int = 32
    calibrated: bool = True
    conformal: Any = None  # btk.conformal.Conformal: the prediction sets' calibration, None: no sets
    layout: dict[str, Any] | None = None  # the devices it scores on (btk.distribute.scoring), None: one
    shift_reference: Any = None  # btk.shift.Reference: the calibration images' features, None: none kept

    @classmethod
    def for_recipe(cls, model: Any, recipe: Recipe, trained_classes: list[str] | tuple[str, ...],
                   classes: list[str] | tuple[str, ...], negative_class: str, temperature: float = 1.0,
                   calibrated: bool = True, conformal: Any = None) -> Scorer:
        """The scorer of ``model`` trained with ``recipe``: its input preparation and its batch
        size (images per network call)."""
        return cls(model, recipe.scale, recipe.intensity, tuple(trained_classes), tuple(classes), negative_class,
                   temperature, recipe.batch_size, calibrated, conformal)

    @property
    def runtime(self) -> str:
        """What computes the network: ``keras`` or ``onnx`` (:mod:`btk.onnx_runtime`)."""
        return "onnx" if _is_graph(self.model) else "keras"

    @property
    def via_classes(self) -> bool:
        """Whether the network answers finer classes than the task's (folded by :meth:`probabilities`)."""
        return self.trained_classes != self.classes

    def with_temperature(self, temperature: float) -> Scorer:
        """The same network read with another temperature."""
        return replace(self, temperature=float(temperature))

    def with_calibration(self, calibration: Any) -> Scorer:
        """The same network read with a :class:`btk.runs.Calibration`'s temperature, prediction
        sets and the features a shift check compares with (``None``: as it is)."""
        if calibration is None:
            return self
        return replace(self, temperature=float(calibration.temperature), conformal=calibration.sets,
                       shift_reference=getattr(calibration, "shift_reference", None))

    def with_shift_reference(self, reference: Any) -> Scorer:
        """The same network with the calibration images' features (:class:`btk.shift.Reference`)
        that a shift check compares cohorts with (``None``: none)."""
        return replace(self, shift_reference=reference)

    def sets(self, probabilities: np.ndarray, coverage: float) -> np.ndarray:
        """The prediction sets (:meth:`btk.conformal.Conformal.sets`) of images with these task
        ``probabilities`` (from :meth:`probabilities`).

        Raises:
            BtkError: the scorer has no prediction-set calibration.
        """
        if self.conformal is None:
            from btk.errors import BtkError

            raise BtkError("this model has no prediction-set calibration: fit one with `btk calibrate RUN`")
        return self.conformal.sets(probabilities, coverage)

    def outputs(self, images: np.ndarray) -> np.ndarray:
        """The network's probabilities over its trained classes for uint8 ``images``
        (N x H x W x C), uncalibrated, in batches of :attr:`batch_size`; under a data-parallel
        distribution (:func:`btk.distribute.scoring`) every batch is split over the devices."""
        from btk.distribute import batch_layout

        if len(images) == 0:
            return np.zeros((0, len(self.trained_classes)), np.float32)
        multiple = batch_layout()[0]

        def run(x: np.ndarray, size: int) -> np.ndarray:
            if multiple == 1:
                return np.asarray(self.model.predict_on_batch(x), dtype=np.float32)
            return np.asarray(self.model.predict(x, batch_size=size, verbose=0), dtype=np.float32)

        return self._batched(images, -(-self.batch_size // multiple) * multiple, run)

    def features(self, images: np.ndarray) -> np.ndarray:
        """The network's penultimate features for uint8 ``images``: the input of its last layer
        (after global pooling), of each member side by side for an ensemble, of the image as it
        is (not its mirror image) under test-time augmentation; ``(N, D)`` float32, in batches
        of :attr:`batch_size` (an image's features never depend on its neighbours). What a shift
        check compares (:mod:`btk.shift`)."""
        if _is_graph(self.model):  # an ONNX graph has its features as an output
            def run(x: np.ndarray, size: int) -> np.ndarray:
                return self.model.features(x)
        else:
            extractors = _EXTRACTORS.get(self.model)
            if extractors is None:  # built once per network: traced once
                extractors = _EXTRACTORS[self.model] = penultimate_models(self.model)

            def run(x: np.ndarray, size: int) -> np.ndarray:
                parts = [np.asarray(m.predict_on_batch(x), dtype=np.float32).reshape(len(x), -1) for m in extractors]
                return np.concatenate(parts, axis=1)

        from btk.distribute import batch_layout

        if len(images) == 0:
            return np.zeros((0, 0), np.float32)
        multiple = batch_layout()[0]
        return self._batched(images, -(-self.batch_size // multiple) * multiple, run)

    def outputs_and_features(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`outputs` and :meth:`features` of the same uint8 ``images``, in one pass of the
        network where it is one plain network on one device (a model with both as outputs: the
        same layers, the same weights, the same batches, so the same numbers, as the test checks);
        else in two passes."""
        from btk.distribute import batch_layout

        multiple = batch_layout()[0]
        graph = _is_graph(self.model)
        if len(images) == 0 or (not graph and (multiple != 1 or len(penultimate_models(self.model)) != 1 or any(
                _is_model(layer) for layer in self.model.layers))):
            return self.outputs(images), self.features(images)
        both = self.model.outputs_and_features if graph else None
        if both is None:
            keras_both = _ONE_PASS.get(self.model)
            if keras_both is None:  # built once per network (a node's scorers share it): traced once
                import keras

                [extractor] = penultimate_models(self.model)
                keras_both = _ONE_PASS[self.model] = keras.Model(self.model.inputs,
                                                                 [self.model.output, extractor.output])
            both = keras_both.predict_on_batch
        width = len(self.trained_classes)

        def run(x: np.ndarray, size: int) -> np.ndarray:
            out, feats = both(x)
            return np.concatenate([np.asarray(out, dtype=np.float32).reshape(len(x), -1),
                                   np.asarray(feats, dtype=np.float32).reshape(len(x), -1)], axis=1)

        joined = self._batched(images, self.batch_size, run)
        return joined[:, :width], joined[:, width:]

    def probabilities_and_features(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The task's probabilities (:meth:`__call__`) and the features (:meth:`features`) of
        uint8 ``images``, in one pass of the network where it can (:meth:`outputs_and_features`)."""
        outputs, features = self.outputs_and_features(images)
        return self.probabilities(outputs), features

    def _batched(self, images: np.ndarray, size: int, run: Callable[[np.ndarray, int], np.ndarray]) -> np.ndarray:
        """``run`` on the prepared network input of ``images`` in batches of one shape ``size``
        (the last filled up with blank images whose rows are dropped)."""
        from btk.training import network_input

        out = []
        for start in range(0, len(images), size):
            chunk = np.asarray(images[start:start + size])
            k = len(chunk)
            if k < size:  # one shape for every call: an image's answer never depends on its neighbours
                chunk = np.concatenate([chunk, np.zeros((size - k, *chunk.shape[1:]), chunk.dtype)])
            out.append(run(network_input(chunk, self.scale, self.intensity), size)[:k])
        return np.concatenate(out)

    def probabilities(self, outputs: np.ndarray, calibrated: bool | None = None) -> np.ndarray:
        """The task's probabilities from the network's ``outputs``: the temperature applied
        (``calibrated``, default :attr:`calibrated`), then fine classes folded into the task's."""
        from btk.calibration import apply_temperature

        calibrated = self.calibrated if calibrated is None else calibrated
        probs = np.asarray(outputs, dtype=np.float64)
        if calibrated and self.temperature != 1.0:
            probs = apply_temperature(probs, self.temperature)
        if self.via_classes:
            probs = to_task_probabilities(probs, self.trained_classes, self.negative_class)
        return probs

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """The task's probabilities for uint8 ``images`` (N x K over :attr:`classes`)."""
        return self.probabilities(self.outputs(images))

    def fine_class(self, outputs: np.ndarray, task_class: np.ndarray) -> np.ndarray:
        """For each image, the trained class behind the task's answer ``task_class``: the class
        itself, or for a binary task learned through the classes the most probable trained class
        among those folded into it (what a heat map explains)."""
        task_class = np.asarray(task_class, int)
        if not self.via_classes:
            return task_class
        neg = list(self.trained_classes).index(self.negative_class)
        positives = np.array([k for k in range(len(self.trained_classes)) if k != neg])
        best_positive = positives[np.asarray(outputs)[:, positives].argmax(axis=1)]
        return np.where(task_class == 0, neg, best_positive)


_EXTRACTORS: weakref.WeakKeyDictionary[Any, list[Any]] = weakref.WeakKeyDictionary()
"""Each network's feature models (:func:`penultimate_models`), kept while the network lives."""

_ONE_PASS: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
"""Each network's model with both its outputs and its features as outputs
(:meth:`Scorer.outputs_and_features`), kept while the network lives."""


def _is_graph(model: Any) -> bool:
    """Whether ``model`` is an ONNX graph (:class:`btk.onnx_runtime.OnnxNetwork`), not Keras."""
    return getattr(model, "runtime", "keras") == "onnx"


def _is_model(layer: Any) -> bool:
    """Whether ``layer`` is a whole network inside another (an ensemble's member, a TTA wrapper's)."""
    import keras

    return isinstance(layer, keras.Model)


def penultimate_models(model: Any) -> list[Any]:
    """Keras models that map ``model``'s input to the input of its last layer with weights (the
    classifier's features), one per network inside it: the members of an ensemble, the network
    inside a test-time-augmentation wrapper (:mod:`btk.tta`), or ``model`` itself."""
    import keras

    nested: list[Any] = []
    for layer in model.layers:
        if isinstance(layer, keras.Model) and all(layer is not m for m in nested):
            nested.append(layer)
    if nested:
        return [m for inner in nested for m in penultimate_models(inner)]
    last = next(layer for layer in reversed(model.layers) if layer.weights)
    return [keras.Model(model.inputs, last.input)]


@dataclass
class TestResults:
    """Labelled images' predictions and metrics per condition (:func:`score_conditions`).

    Attributes:
        conditions: metrics per condition (``clean`` and each degradation's label).
        unseen_conditions: the same on the images with no copy in the training data.
        has_copy: per image, whether it has an exact or near copy in the training data.
        rows: ``predictions.csv`` rows (condition, source, label, predicted, probabilities).
        examples: thumbnails of a few right and wrong images per condition (and
            ``heat/clean``, their clean heat maps, when explained).
        example_index: the examples' positions among the images.
        explanations: the clean images' heat-map summary (:func:`btk.pipeline.explain_test`).
    """

    conditions: dict[str, dict[str, Any]]
    unseen_conditions: dict[str, dict[str, Any]]
    has_copy: np.ndarray
    rows: list[list[Any]]
    examples: dict[str, np.ndarray]
    example_index: np.ndarray | None = None
    explanations: dict[str, Any] | None = None
    outputs: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    @property
    def collapsed(self) -> list[str]:
        """The conditions under which the model predicted one class for every image."""
        return [c for c, m in self.conditions.items() if m["collapsed"]]


def example_indices(y: np.ndarray, pred: np.ndarray, seed: int, per_kind: int = 4) -> np.ndarray:
    """Up to ``per_kind`` right and ``per_kind`` wrong images, drawn with ``seed``."""
    rng = np.random.default_rng(seed)
    right, wrong = np.where(pred == y)[0], np.where(pred != y)[0]
    pick = [rng.choice(group, min(per_kind, len(group)), replace=False) for group in (right, wrong) if len(group)]
    return np.concatenate(pick).astype(int) if pick else np.zeros(0, int)


def thumbnails(images: np.ndarray, size: int = 128) -> np.ndarray:
    """Grayscale ``size`` px copies of uint8 images, for the examples a run keeps."""
    import cv2

    out = [cv2.resize(im.mean(axis=-1).astype(np.uint8) if im.ndim == 3 else im, (size, size),
                      interpolation=cv2.INTER_AREA) for im in images]
    return np.stack(out) if out else np.zeros((0, size, size), np.uint8)


def condition_metrics(y: np.ndarray, probs: np.ndarray, raw: np.ndarray, classes: list[str]) -> dict[str, Any]:
    """Every metric of one condition (:func:`btk.metrics.evaluate`) with the expected
    calibration error of the reported probabilities (``ece``) and of the network's own, before
    the temperature (``ece_uncalibrated``)."""
    return {**evaluate(y, probs, classes), "ece": reliability(y, probs)["ece"],
            "ece_uncalibrated": reliability(y, raw)["ece"]}


def set_conditions(scorer: Scorer, y: np.ndarray, probs: np.ndarray, coverages: tuple[float, ...],
                   features: np.ndarray | None = None, groups: Any = None) -> dict[str, Any]:
    """What the scorer's prediction sets did on labelled images: ``sets`` (per coverage,
    :func:`btk.conformal.set_metrics`) and ``shift``: one verdict (:func:`btk.shift.shift_check`)
    from the images' ``features`` against its calibration images' (or, without them, their
    probabilities), slices of one of ``groups`` counted once, that says "differs" whenever a
    class fell short of a promise; nothing when it has no prediction-set calibration or no images."""
    if scorer.conformal is None or len(y) == 0:
        return {}
    from btk.conformal import set_metrics, shortfalls
    from btk.shift import shift_check

    sets = {f"{c:g}": set_metrics(scorer.sets(probs, c), y, probs, scorer.classes) for c in coverages}
    short = [line for c in coverages for line in shortfalls(sets[f"{c:g}"], c)]
    check = shift_check(scorer.shift_reference, features, groups, scorer.conformal.reference(), probs, short)
    return {"sets": sets, "shift": check.to_json()}


def score_conditions(scorer: Scorer, images: np.ndarray, y: np.ndarray, sources: np.ndarray,
                     degradations: list[Degradation], seed: int, has_copy: np.ndarray | None = None,
                     progress: Callable[[str], None] | None = None, examples: bool = True,
                     coverages: tuple[float, ...] | None = None, groups: np.ndarray | None = None) -> TestResults:
    """Score labelled ``images`` with ``scorer``, clean and under each degradation (seeded with
    ``seed``): metrics per condition, the rows of ``predictions.csv``, a few example thumbnails;
    the images with ``has_copy`` set are also left out in a second score. ``progress`` hears
    each condition's label when it is done; ``examples=False`` keeps no thumbnails (a sweep).
    Where the scorer has prediction sets, each condition also gets their coverage at
    ``coverages`` (default :data:`btk.conformal.DEFAULT_COVERAGES`) and a shift check
    (:func:`set_conditions`: on the network's features where the scorer has its calibration
    images' features, each of ``groups`` counted once)."""
    from btk.conformal import DEFAULT_COVERAGES

    coverages = DEFAULT_COVERAGES if coverages is None else tuple(coverages)
    classes = list(scorer.classes)
    has_copy = np.zeros(len(images), bool) if has_copy is None else np.asarray(has_copy, bool)
    unseen = ~has_copy
    conditions: dict[str, dict[str, Any]] = {}
    unseen_conditions: dict[str, dict[str, Any]] = {}
    rows: list[list[Any]] = []
    kept: dict[str, np.ndarray] = {}
    outputs_of: dict[str, np.ndarray] = {}
    index = np.zeros(0, int)
    for label, deg in [("clean", None)] + [(d.label, d) for d in degradations]:
        x = images if deg is None else deg.apply(images, seed=seed)
        outputs = scorer.outputs(x)
        outputs_of[label] = outputs
        probs = scorer.probabilities(outputs)
        raw = scorer.probabilities(outputs, calibrated=False)
        if examples:
            if deg is None:
                index = example_indices(y, probs.argmax(axis=1), seed)
                kept["sources"] = np.asarray(sources)[index].astype(str)
            kept[f"images/{label}"] = thumbnails(x[index])
        features = scorer.features(x) if scorer.conformal is not None and scorer.shift_reference is not None \
            and len(y) else None
        conditions[label] = {**condition_metrics(y, probs, raw, classes),
                             **set_conditions(scorer, y, probs, coverages, features, groups)}
        if has_copy.any() and unseen.sum() >= 2:
            unseen_conditions[label] = condition_metrics(y[unseen], probs[unseen], raw[unseen], classes)
        for source, truth, p in zip(sources, y, probs):
            rows.append([label, source, classes[truth], classes[int(p.argmax())], *[f"{v:.6f}" for v in p]])
        if progress:
            progress(label)
    return TestResults(conditions, unseen_conditions, has_copy, rows, kept, index if examples else None,
                       outputs=outputs_of)
