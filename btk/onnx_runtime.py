"""Scoring with ONNX Runtime: a run's network as an ONNX graph (:mod:`btk.onnx_export`) behind the
one scorer (:class:`btk.scoring.Scorer`), so every command that scores can use it
(``--runtime``).

- ``keras``: the run's Keras network, as trained (its precision).
- ``onnx``: the float32 graph: the one ``btk export RUN`` left in the run's folder when it has
  the same test-time augmentation, else one converted now and kept in btk's cache
  (``$BTK_CACHE_DIR/onnx``; made again when the model file changes).
- ``int8``: the int8 graph ``btk export RUN --int8`` left in the run, with its own temperature,
  prediction sets and shift-check features (:mod:`btk.onnx_int8`); never chosen by ``auto``.
- ``auto`` (the default): the graph in the run's folder when ``btk export`` measured it
  within 1e-5 of the Keras scorer's probabilities on the run's own test images and faster on
  this machine's kind of CPU; else Keras. The answer never depends on which one runs.

The CPU execution provider is used, CUDA's first where ONNX Runtime has it.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from btk.errors import BtkError
from btk.onnx_graph import OnnxNetwork

RUNTIMES = ("auto", "keras", "onnx", "int8")


def check_runtime(runtime: str, devices: str = "") -> str:
    """``runtime`` when known and usable with ``devices``.

    Raises:
        BtkError: an unknown runtime, or ``onnx`` with ``--devices`` (one line).
    """
    if runtime not in RUNTIMES:
        raise BtkError(f"--runtime {runtime}: unknown (known: {', '.join(RUNTIMES)})")
    if runtime in ("onnx", "int8") and devices:
        raise BtkError(f"--runtime {runtime} scores on one device: leave out --devices")
    return runtime


def run_graph(run: Any, tta: bool, agreeing: bool = True) -> Path | None:
    """The graph ``btk export`` left in ``run``'s folder with this test-time augmentation (and,
    where ``agreeing``, measured within 1e-5 of its Keras scorer), or ``None``."""
    from btk.onnx_export import GRAPH, agrees, read_sidecar

    folder = run.evaluated_run().path if run.is_evaluation else run.path
    sidecar = read_sidecar(folder)
    if agreeing:
        return Path(folder) / GRAPH if agrees(sidecar, tta) else None
    return Path(folder) / GRAPH if sidecar is not None and bool(sidecar.get("tta")) == bool(tta) else None


def _faster(run: Any) -> bool:
    from btk.onnx_export import read_sidecar

    folder = run.evaluated_run().path if run.is_evaluation else run.path
    seconds = ((read_sidecar(folder) or {}).get("measured") or {}).get("seconds_per_batch") or {}
    return bool(seconds) and float(seconds.get("onnx", 1e9)) < float(seconds.get("keras", 0.0))


def chosen_runtime(run: Any, runtime: str, tta: bool, devices: str = "") -> str:
    """``keras``, ``onnx`` or ``int8``: what ``runtime`` means for ``run`` (see the module docstring)."""
    check_runtime(runtime, devices)
    if runtime != "auto":
        return runtime
    if devices or run_graph(run, tta) is None or not _faster(run):
        return "keras"
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return "keras"
    return "onnx"


_sessions: dict[tuple[str, int, int], OnnxNetwork] = {}


def onnx_network(run: Any, tta: bool, feedback: Any = None) -> OnnxNetwork:
    """``run``'s network in ONNX Runtime, with test-time augmentation as ``tta`` says: the graph
    in the run's folder (:func:`run_graph`), else one converted now into btk's cache (or, with
    the cache off, a temporary folder). Kept loaded for the next scorer in this process."""
    graph = run_graph(run, tta, agreeing=False) or _cached_graph(run, tta, feedback)
    stat = graph.stat()
    key = (str(graph.resolve()), stat.st_mtime_ns, stat.st_size)
    if key not in _sessions:
        while len(_sessions) >= 2:
            _sessions.pop(next(iter(_sessions)))
        _sessions[key] = OnnxNetwork(graph)
    return _sessions[key]


def _cached_graph(run: Any, tta: bool, feedback: Any) -> Path:
    import tempfile

    from btk.cache import cache_root
    from btk.feedback import Feedback
    from btk.onnx_export import graph_model, write_graph

    folder = run.evaluated_run().path if run.is_evaluation else run.path
    model_file = Path(folder) / "model.keras"
    if not model_file.is_file():
        run.load_model(tta=False)  # which says what is wrong
    stat = model_file.stat()
    key = hashlib.sha256(f"{model_file.resolve()}|{stat.st_mtime_ns}|{stat.st_size}|{bool(tta)}".encode()).hexdigest()
    root = cache_root()
    base = root / "onnx" if root is not None else Path(tempfile.gettempdir()) / f"btk-onnx-{os.getuid()}"
    path = base / f"{key[:24]}.onnx"
    if path.is_file():
        return path
    base.mkdir(parents=True, exist_ok=True)
    tmp = base / f".{path.name}.{os.getpid()}.partial"
    with (feedback or Feedback()).task("converting the network to ONNX (once)"):
        try:
            write_graph(graph_model(run.load_model(tta=False), tta), tmp)
            tmp.replace(path)
        finally:
            tmp.unlink(missing_ok=True)
    return path
