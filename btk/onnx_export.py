"""A run's network as an ONNX graph (or a TensorFlow SavedModel), with a sidecar file that says
exactly what a caller does to an image before the graph and to its output after, so another
runtime gives btk's answers.

The graph is made by Keras 3's ``Model.export(..., format="onnx")``, which converts the
TensorFlow graph with tf2onnx. It is always float32: a run trained in ``mixed_bfloat16`` keeps
float32 weights, and the graph computes with them in float32 (ONNX Runtime's CPU kernels have no
bfloat16 convolution). Its input is the prepared image (``image``: N x H x W x C float32, after
framing, intensity normalisation and scaling); its outputs are ``probabilities`` (the network's
own, over its trained classes, before the temperature) and ``features`` (what the shift check
compares, :meth:`btk.scoring.Scorer.features`). Test-time augmentation and an ensemble's
averaging are inside the graph.

:func:`export_run` writes the graph, the sidecar (:data:`SIDECAR`) and, measured on the run's
own test images, how far the graph's probabilities are from the Keras network's in float32 and
from the run's Keras scorer as it is (its precision), and how fast each is here.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from btk.errors import BtkError

GRAPH = "model.onnx"
SIDECAR = "model.onnx.json"
SIDECAR_FORMAT = 1
AGREEMENT = 1e-5
"""The largest difference of probabilities between the ONNX graph and the Keras network under
which ``--runtime auto`` may pick the graph: the answer never depends on the runtime chosen."""
PROBE_IMAGES = 256
"""At most this many of the run's test images measure the agreement and the speed at export."""
FORMATS = ("onnx", "savedmodel")


def _float32_config(config: Any) -> Any:
    """A Keras config with every dtype policy replaced by float32 (nested models too)."""
    if isinstance(config, dict):
        if config.get("class_name") in ("DTypePolicy", "FloatDTypePolicy") and isinstance(config.get("config"), dict):
            return {**config, "config": {**config["config"], "name": "float32"}}
        return {k: _float32_config(v) for k, v in config.items()}
    if isinstance(config, list):
        return [_float32_config(v) for v in config]
    if config in ("mixed_bfloat16", "mixed_float16", "bfloat16", "float16"):
        return "float32"
    return config


def float32_network(model: Any) -> Any:
    """``model`` rebuilt to compute in float32 everywhere, with the same weights (a model that
    already does is returned as it is)."""
    if "16" not in json.dumps(_dtype_names(model)):
        return model
    clone = type(model).from_config(_float32_config(model.get_config()))
    if not clone.built:
        clone.build_from_config(model.get_build_config())
    clone.set_weights(model.get_weights())
    return clone


def network_precision(model: Any) -> str:
    """The precision ``model``'s layers compute in: ``float32``, or the first other dtype policy
    among them (``mixed_bfloat16``), nested models included."""
    return next((name for name in _dtype_names(model) if name != "float32"), "float32")


def _dtype_names(model: Any) -> list[str]:
    names = []
    for layer in getattr(model, "layers", []):
        names.append(str(getattr(layer.dtype_policy, "name", layer.dtype_policy)))
        names.extend(_dtype_names(layer))
    return names


def graph_model(network: Any, tta: bool) -> Any:
    """The Keras model the graph is made from: ``network`` in float32 (:func:`float32_network`),
    with test-time augmentation around it when ``tta``, and two named outputs, ``probabilities``
    and ``features`` (each inner network's penultimate features side by side, of the image as it
    is: :meth:`btk.scoring.Scorer.features`)."""
    import keras

    from btk.scoring import penultimate_models
    from btk.tta import scoring_model

    scoring = scoring_model(float32_network(network), tta)
    image = keras.Input(shape=tuple(scoring.input_shape[1:]), name="image", dtype="float32")
    feature_parts = [keras.layers.Flatten()(m(image)) for m in penultimate_models(scoring)]
    features = feature_parts[0] if len(feature_parts) == 1 else keras.layers.Concatenate()(feature_parts)
    return keras.Model(image, {"probabilities": scoring(image), "features": features}, name="btk_scoring")


def write_graph(model: Any, path: Path) -> dict[str, Any]:
    """Write ``model`` (:func:`graph_model`) as an ONNX graph at ``path``; what made it."""
    import io
    import warnings
    from contextlib import redirect_stdout

    import keras

    from btk.quiet import stderr_silenced

    model.predict_on_batch(np.zeros((1, *model.input_shape[1:]), np.float32))  # built and traced once
    try:
        with redirect_stdout(io.StringIO()), stderr_silenced(), warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # tf2onnx's own use of np.object
            model.export(str(path), format="onnx", verbose=False)
    except ImportError as exc:
        raise BtkError(f"ONNX export needs tf2onnx and onnx: pip install 'btk[onnx]' ({exc})") from None
    import onnx
    import tf2onnx

    opset = max((o.version for o in onnx.load(str(path), load_external_data=False).opset_import
                 if o.domain in ("", "ai.onnx")), default=0)
    return {"converter": f"keras {keras.__version__} Model.export(format='onnx') with tf2onnx {tf2onnx.__version__}",
            "opset": int(opset), "bytes": path.stat().st_size}


def describe(run: Any, tta: bool) -> dict[str, Any]:
    """The sidecar's account of ``run``'s preparation of an image and its reading of the graph's
    output: enough to give btk's answers with any runtime (``examples/onnx_predict.py`` does)."""
    from btk.calibration import EPS
    from btk.framing import CROPS

    recipe = run.config.recipe
    crop = recipe.crop if recipe.crop in CROPS else "none"
    before: dict[str, Any] = {
        "decode": ("8-bit grayscale (OpenCV IMREAD_GRAYSCALE; DICOM and NIfTI: btk's readers' windowing)"
                   if int(recipe.channels) == 1 else "8-bit BGR, 3 channels (OpenCV IMREAD_COLOR)"),
        "channels": int(recipe.channels),
        "crop": crop,
        "resize": {"size": int(recipe.image_size), "interpolation": "bilinear (cv2.resize, INTER_LINEAR)",
                   "when": "after the crop"},
        "intensity": recipe.intensity,
        "scale": float(recipe.scale),
        "dtype": "float32: (intensity-normalised uint8 image as float32) * scale",
        "layout": "NHWC",
    }
    if crop == "head":
        before["head_crop"] = {
            "gray": "the image itself (1 channel) or its per-pixel maximum over channels",
            "mask": "pixels above Otsu's threshold of the image blurred with a 5 x 5 Gaussian (sigma from size)",
            "region": "the largest 8-connected region of the mask; none when it covers under 2% of the "
                      "image, or the image is blank: the image is kept whole",
            "square": "centred on the region's bounding box (x, y, w, h): side = round(max(w, h) * 1.08), "
                      "top = y + h // 2 - side // 2, left = x + w // 2 - side // 2",
            "outside": "where the square leaves the image, zeros",
        }
    if recipe.intensity != "none":
        kind = recipe.intensity.split(":")[0]
        before["intensity_method"] = {
            "when": "after the crop and the resize, on each channel",
            "head": "the largest external contour (by area) of the Otsu mask above (5 x 5 Gaussian blur first), "
                    "filled; the image's grey-level histogram inside it",
            "table": {"stretch": "level * 255 / max(p99, 1), rounded, clipped to 0..255; p99: the first grey level "
                                 "at which the head's cumulative histogram reaches 0.99",
                      "equalize": "the head's cumulative histogram (0..1) * 255, rounded",
                      "nyul": "Nyul-Udupa: the head's landmarks mapped piecewise-linearly onto the run's standard "
                              "scale (btk/intensity.py)"}.get(kind, kind),
            "blank": "an image of one grey level, or without a head, is left as it is",
        }
    binary = run.trained_classes != run.classes
    after: dict[str, Any] = {
        "temperature": float(run.temperature),
        "calibrate": f"softmax(log(max(p, {EPS})) / temperature) over the trained classes; temperature 1: p as it is",
        "trained_classes": list(run.trained_classes),
        "classes": list(run.classes),
        "answer": "the class of the highest (folded) probability",
    }
    if binary:
        after["fold"] = {"negative_class": run.config.negative_class,
                         "rule": "[P(negative), 1 - P(negative)] over classes, after the temperature"}
    return {"before": before, "after": after, "tta": bool(tta),
            "batch": "any number of images per call; an image's answer never depends on the others"}


@dataclass
class Exported:
    """What :func:`export_run` wrote: the folder, the sidecar's content, the files."""

    folder: Path
    sidecar: dict[str, Any]
    files: list[str]


def measure(run: Any, graph: Path, tta: bool, images: np.ndarray | None, network: Any = None) -> dict[str, Any]:
    """How far the graph's probabilities are from the Keras network's on ``images`` (uint8),
    each scored by the one scorer (:class:`btk.scoring.Scorer`, uncalibrated): in float32 and as
    the run's scorer computes (its precision); and the network alone's time per batch of each
    (the median of five timed batches after one warm-up), on this machine. ``network``: the
    run's network, when already loaded."""
    import os
    import platform

    from btk.onnx_graph import OnnxNetwork
    from btk.scoring import Scorer
    from btk.training import network_input
    from btk.tta import scoring_model

    if images is None or len(images) == 0:
        return {"images": 0, "note": "not measured: the run's test images are not here"}
    recipe = run.config.recipe
    network = network if network is not None else run.load_model(tta=False)
    keras_own, onnx = scoring_model(network, tta), OnnxNetwork(graph)

    def outputs(model: Any) -> np.ndarray:
        scorer = Scorer.for_recipe(model, recipe, run.trained_classes, run.classes, run.config.negative_class,
                                   calibrated=False)
        return np.asarray(scorer.outputs(np.asarray(images)), np.float64)

    p_onnx = outputs(onnx)
    p_f32 = outputs(scoring_model(float32_network(network), tta))
    p_own = outputs(keras_own)
    batch = int(recipe.batch_size)
    chunk = network_input(np.resize(np.asarray(images), (batch, *np.asarray(images).shape[1:])), recipe.scale,
                          recipe.intensity)

    def median_seconds(fn: Any) -> float:
        fn(chunk)
        times = []
        for _ in range(5):
            t = time.perf_counter()
            fn(chunk)
            times.append(time.perf_counter() - t)
        return float(np.median(times))

    seconds = {"onnx": median_seconds(onnx.predict_on_batch), "keras": median_seconds(keras_own.predict_on_batch)}
    return {"images": int(len(images)), "against_keras_float32": float(np.abs(p_onnx - p_f32).max()),
            "against_keras_scorer": float(np.abs(p_onnx - p_own).max()),
            "keras_precision": network_precision(keras_own),
            "batch": batch, "seconds_per_batch": seconds,
            "machine": f"{platform.machine()}, {os.cpu_count()} CPU threads"}


def export_run(run: Any, out: Path | str | None = None, to: str = "onnx", tta: bool | None = None,
               feedback: Any = None, probe: np.ndarray | None = None, int8: bool = False) -> Exported:
    """``btk export``, the whole job: ``run``'s network written as ``to`` (``onnx`` or
    ``savedmodel``) with its sidecar, into a new folder under ``out``, or, without ``out`` (ONNX
    only), into the run's own folder (``model.onnx`` and ``model.onnx.json``, what ``--runtime
    auto`` and ``--runtime onnx`` use). ``tta``: test-time augmentation inside the graph
    (default: the run's choice). ``probe``: the uint8 images the agreement is measured on
    (default: up to :data:`PROBE_IMAGES` of the run's test images, when its data is here).
    ``int8``: also an int8 graph with its own calibration (:mod:`btk.onnx_int8`), kept only where
    it passes its accuracy rule (the caller writes the run's card again: it tells of the graph).

    Raises:
        BtkError: an unknown format, a folder that cannot be written, a graph that cannot be made.
    """
    from btk.feedback import Feedback
    from btk.run_files import ResultDir, check_writable, write_json_atomic

    feedback = feedback or Feedback()
    if to not in FORMATS:
        raise BtkError(f"--to {to}: unknown format (known: {', '.join(FORMATS)})")
    if out is None and to != "onnx":
        raise BtkError(f"--to {to} needs --out DIR (the run's own folder keeps only its ONNX graph)")
    if int8 and to != "onnx":
        raise BtkError("--int8 quantises the ONNX graph: leave out --to, or give --to onnx")
    if run.is_evaluation:
        raise BtkError(f"{run.path}: an evaluation has no network of its own; export the run it evaluated")
    tta = run.tta if tta is None else bool(tta)
    if out is not None:
        check_writable(out)
    network = run.load_model(tta=False)
    model = graph_model(network, tta)
    sidecar: dict[str, Any] = {"format": SIDECAR_FORMAT, "run": run.name, "graph": GRAPH if to == "onnx" else
                               "saved_model", **describe(run, tta)}
    if to == "savedmodel" and out is not None:
        with ResultDir(out, f"export-{run.name}") as folder, feedback.task("writing the SavedModel"):
            model.export(str(folder.path("saved_model")), format="tf_saved_model", verbose=False)
            sidecar["input"] = {"signature": "serve", "name": "image"}
            write_json_atomic(folder.path(SIDECAR.replace("model.onnx", "saved_model")), sidecar)
        return Exported(folder.final, sidecar, ["saved_model", "saved_model.json"])
    if probe is None:
        probe = _test_images(run, feedback)
    if out is None:  # into the run: the sidecar first, so a graph is never without one
        graph_tmp = run.path / f".{GRAPH}.partial"
        try:
            _write_onnx(run, model, network, graph_tmp, run.path / SIDECAR, tta, probe, sidecar, feedback)
            graph_tmp.replace(run.path / GRAPH)
        finally:
            graph_tmp.unlink(missing_ok=True)
        return Exported(run.path, sidecar, [GRAPH, SIDECAR, *_int8(run, run.path, tta, int8, sidecar, feedback)])
    with ResultDir(Path(out), f"export-{run.name}") as folder:
        _write_onnx(run, model, network, folder.path(GRAPH), folder.path(SIDECAR), tta, probe, sidecar, feedback)
        files = [GRAPH, SIDECAR, *_int8(run, folder.tmp, tta, int8, sidecar, feedback)]
    return Exported(folder.final, sidecar, files)


def _write_onnx(run: Any, model: Any, network: Any, graph: Path, sidecar_path: Path, tta: bool,
                probe: np.ndarray | None, sidecar: dict[str, Any], feedback: Any) -> None:
    """The graph at ``graph``, measured, and its sidecar at ``sidecar_path``."""
    from btk.run_files import write_json_atomic

    with feedback.task("converting the network to ONNX"):
        sidecar.update(write_graph(model, graph))
    with feedback.task("measuring the graph against the Keras network"):
        sidecar["measured"] = measure(run, graph, tta, probe, network)
    write_json_atomic(sidecar_path, sidecar)


def _int8(run: Any, folder: Path, tta: bool, wanted: bool, sidecar: dict[str, Any], feedback: Any) -> list[str]:
    """With ``wanted``, the int8 graph of ``folder``'s ``model.onnx`` (:mod:`btk.onnx_int8`), its
    record added to ``sidecar``; the files written."""
    if not wanted:
        return []
    from btk.onnx_int8 import INT8_GRAPH, INT8_SETS, INT8_SIDECAR, export_int8

    sidecar["int8"] = export_int8(run, folder, folder / GRAPH, tta, feedback)
    return [INT8_GRAPH, INT8_SIDECAR, INT8_SETS]


def _test_images(run: Any, feedback: Any) -> np.ndarray | None:
    """Up to :data:`PROBE_IMAGES` of the run's test images, evenly spaced; ``None`` when its data
    is not here."""
    try:
        images = run.images("test", feedback=feedback).images
    except BtkError:
        return None
    if len(images) > PROBE_IMAGES:
        images = images[np.linspace(0, len(images) - 1, PROBE_IMAGES).astype(int)]
    return np.asarray(images)


def read_sidecar(folder: Path) -> dict[str, Any] | None:
    """The sidecar of the ONNX graph in ``folder`` (a run's or an export's), or ``None``."""
    path = Path(folder) / SIDECAR
    if not path.is_file() or not (Path(folder) / GRAPH).is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def agrees(sidecar: dict[str, Any] | None, tta: bool) -> bool:
    """Whether a graph with this sidecar may stand in for the run's Keras scorer: the same
    test-time augmentation, and its probabilities measured within :data:`AGREEMENT` of the
    scorer's as it is."""
    if not sidecar or bool(sidecar.get("tta")) != bool(tta):
        return False
    measured = sidecar.get("measured") or {}
    return bool(measured.get("images")) and float(measured.get("against_keras_scorer", 1.0)) <= AGREEMENT
