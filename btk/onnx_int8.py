"""An int8 version of a run's ONNX graph (``btk export RUN --int8``), never the default.

ONNX Runtime's static quantisation (QDQ, weights int8 per channel, activations uint8) calibrated
on the run's own training images (up to :data:`CALIBRATION_IMAGES`, evenly spaced, prepared as
the network sees them). It is kept only where its accuracy on the run's validation images is
within :data:`MAX_MOVE` points of the float32 graph's. It is another predictor, so it gets its
own temperature, prediction sets and shift-check features, fitted on its own outputs for the
run's calibration images (``model.int8.onnx.json``, ``conformal.int8.csv``,
``shift_reference.int8.npz``): the run's float calibration is never applied to it. ``--runtime
int8`` scores with all of these; the model card says so beside the run's own figures.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from btk.errors import BtkError

INT8_GRAPH = "model.int8.onnx"
INT8_SIDECAR = "model.int8.onnx.json"
INT8_SETS = "conformal.int8.csv"
INT8_REFERENCE = "shift_reference.int8.npz"
MAX_MOVE = 0.3
"""The largest change of validation accuracy, in points, under which the int8 graph is kept."""
CALIBRATION_IMAGES = 256


def quantize(graph: Path, out: Path, prepared: np.ndarray, batch: int) -> None:
    """Write the int8 version of ``graph`` at ``out``, calibrated on ``prepared`` (the network's
    input, float32)."""
    import tempfile

    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Batches(CalibrationDataReader):
        def __init__(self) -> None:
            self.starts = iter(range(0, len(prepared), batch))

        def get_next(self) -> dict[str, np.ndarray] | None:
            start = next(self.starts, None)
            return None if start is None else {"image": prepared[start:start + batch]}

    with tempfile.TemporaryDirectory(prefix="btk-int8-") as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(graph), str(pre), skip_symbolic_shape=True)
        quantize_static(str(pre), str(out), Batches(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)


def _labelled(run: Any, role: str, feedback: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray,
                                                               np.ndarray]:
    """``(images, task y, trained-class y, sources, groups)`` of the subset serving ``role``."""
    data = run.dataset(feedback=feedback)
    index = run.positions(data, role=role)
    labels = [str(x) for x in np.asarray(data.labels)[index]]
    y = run.targets(labels)
    if run.trained_classes != run.classes:
        trained = {c: k for k, c in enumerate(run.trained_classes)}
        y_fit = np.array([trained[label] for label in labels], int)
    else:
        y_fit = y
    from btk.cache import gather

    return (np.asarray(gather(data.images, index)), y, y_fit, np.asarray(data.sources)[index],
            np.asarray(data.groups)[index])


def export_int8(run: Any, folder: Path, graph: Path, tta: bool, feedback: Any) -> dict[str, Any]:
    """Quantise ``graph`` (``run``'s float32 graph, with test-time augmentation as ``tta`` says)
    into ``folder`` with its own calibration (see the module docstring); the int8 sidecar's
    content.

    Raises:
        BtkError: the run's data is not here, or int8 moves validation accuracy by more than
            :data:`MAX_MOVE` points (nothing is written then).
    """
    from btk.calibration import fit_temperature, nll
    from btk.conformal import Conformal
    from btk.onnx_graph import OnnxNetwork
    from btk.run_files import write_json_atomic
    from btk.scoring import Scorer
    from btk.shift import Reference
    from btk.stats import reliability
    from btk.training import network_input

    recipe = run.config.recipe
    try:
        train = run.images("train", feedback=feedback).images
        selection = "selection" if run.role_subset("selection") else "calibration"
        val_images, val_y, *_ = _labelled(run, selection, feedback)
        cal_images, cal_y, cal_fit, cal_sources, cal_groups = _labelled(run, "calibration", feedback)
        test = run.images("test", feedback=feedback)
    except BtkError as exc:
        raise BtkError(f"--int8 calibrates on the run's own images: {exc}") from None
    pick = np.linspace(0, len(train) - 1, min(CALIBRATION_IMAGES, len(train))).astype(int)
    prepared = network_input(np.asarray(train)[pick], recipe.scale, recipe.intensity)
    target = folder / INT8_GRAPH
    tmp = folder / f".{INT8_GRAPH}.partial"
    try:
        with feedback.task(f"quantising to int8 (calibrated on {len(pick)} training images)"):
            quantize(graph, tmp, prepared, int(recipe.batch_size))

        def scorer(path: Path) -> Scorer:
            return Scorer.for_recipe(OnnxNetwork(path), recipe, run.trained_classes, run.classes,
                                     run.config.negative_class, 1.0, calibrated=False)

        float_scorer, int8_scorer = scorer(graph), scorer(tmp)
        accuracy = {name: float((s(val_images).argmax(axis=1) == val_y).mean())
                    for name, s in (("float32", float_scorer), ("int8", int8_scorer))}
        move = 100 * (accuracy["int8"] - accuracy["float32"])
        if abs(move) > MAX_MOVE:
            raise BtkError(f"--int8: validation accuracy moves by {move:+.2f} points ({100 * accuracy['float32']:.2f} "
                           f"-> {100 * accuracy['int8']:.2f} on {len(val_y)} images), more than {MAX_MOVE}: "
                           "no int8 graph written")
        outputs, features = int8_scorer.outputs_and_features(cal_images)
        temperature = fit_temperature(outputs, cal_fit)
        fitted = int8_scorer.with_temperature(temperature)
        raw, calibrated = fitted.probabilities(outputs, calibrated=False), fitted.probabilities(outputs, True)
        origin = "calibration" if run.role_subset("calibration") == "calibration" else "validation"
        sets = Conformal(tuple(run.classes), calibrated, cal_y, tuple(str(s) for s in cal_sources), origin,
                         delta=run.config.pac_delta)
        test_right = {name: float((s(test.images).argmax(axis=1) == test.y).mean())
                      for name, s in (("float32", float_scorer), ("int8", int8_scorer))}
        sidecar = {
            "graph": INT8_GRAPH, "of": graph.name, "tta": bool(tta),
            "quantisation": "onnxruntime quantize_static, QDQ, int8 weights per channel, uint8 activations",
            "calibrated_on": f"{len(pick)} of the run's training images, evenly spaced",
            "validation_accuracy": {**accuracy, "images": int(len(val_y)), "move_points": move,
                                    "rule": f"kept where |move| <= {MAX_MOVE}"},
            "test_accuracy": {**test_right, "images": int(len(test.y))},
            "temperature": float(temperature),
            "calibration": {"images": int(len(cal_y)), "origin": origin,
                            "ece_before": reliability(cal_y, raw)["ece"],
                            "ece_after": reliability(cal_y, calibrated)["ece"],
                            "nll_before": nll(raw, cal_y), "nll_after": nll(calibrated, cal_y)},
            "sets": INT8_SETS, "shift_reference": INT8_REFERENCE,
        }
        sets.write(folder / INT8_SETS)
        Reference(features, tuple(str(g) for g in cal_groups)).write(folder / INT8_REFERENCE)
        write_json_atomic(folder / INT8_SIDECAR, sidecar)
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)
    return sidecar


def read_int8(folder: Path) -> dict[str, Any] | None:
    """The int8 sidecar in ``folder`` with its graph, or ``None``."""
    path = Path(folder) / INT8_SIDECAR
    if not path.is_file() or not (Path(folder) / INT8_GRAPH).is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def int8_parts(run: Any, tta: bool) -> tuple[Any, float, Any, Any]:
    """What ``--runtime int8`` scores ``run`` with: ``(network, temperature, prediction sets,
    shift reference)``, all of the int8 graph's own.

    Raises:
        BtkError: the run has no int8 graph, or one with other test-time augmentation (one line
            saying how to make one).
    """
    from btk.conformal import Conformal
    from btk.onnx_graph import OnnxNetwork
    from btk.shift import Reference

    folder = run.evaluated_run().path if run.is_evaluation else run.path
    sidecar = read_int8(folder)
    if sidecar is None:
        raise BtkError(f"{folder}: no int8 graph: make one with `btk export {folder} --int8`")
    if bool(sidecar.get("tta")) != bool(tta):
        raise BtkError(f"{folder}: its int8 graph was made {'with' if sidecar.get('tta') else 'without'} test-time "
                       f"augmentation: export it again with --{'' if tta else 'no-'}tta --int8, or score with "
                       f"--{'' if sidecar.get('tta') else 'no-'}tta")
    sets = Conformal.read(folder / INT8_SETS, run.classes) if (folder / INT8_SETS).is_file() else None
    reference = Reference.read(folder / INT8_REFERENCE) if (folder / INT8_REFERENCE).is_file() else None
    return OnnxNetwork(folder / INT8_GRAPH), float(sidecar["temperature"]), sets, reference
