"""An ONNX graph of a run's network in ONNX Runtime, called as the one scorer calls a Keras
network (:class:`OnnxNetwork`); :mod:`btk.onnx_export` makes the graph, :mod:`btk.onnx_runtime`
chooses it."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from btk.errors import BtkError

__all__ = ["OnnxNetwork"]


class OnnxNetwork:
    """An ONNX graph made by :func:`btk.onnx_export.graph_model`, called as the scorer calls a
    Keras network (:meth:`predict_on_batch`), and for its features (:meth:`features`) and both
    at once (:meth:`outputs_and_features`)."""

    runtime = "onnx"

    def __init__(self, path: Path | str, threads: int | None = None) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise BtkError("--runtime onnx needs onnxruntime: pip install 'btk[onnx]'") from None
        options = ort.SessionOptions()
        options.log_severity_level = 3
        # no busy-waiting between calls: the threads that decode the next images need those cores
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if threads:
            options.intra_op_num_threads = int(threads)
        available = ort.get_available_providers()
        providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
        try:
            self.session = ort.InferenceSession(str(path), options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own exception types
            raise BtkError(f"{path}: ONNX Runtime cannot load this graph ({str(exc).splitlines()[0]})") from None
        self.path = Path(path)
        self.input_name = self.session.get_inputs()[0].name
        self.names = [o.name for o in self.session.get_outputs()]
        self.input_shape = tuple(self.session.get_inputs()[0].shape)
        self.providers = self.session.get_providers()

    def _run(self, x: np.ndarray, wanted: list[str]) -> list[np.ndarray]:
        return self.session.run(wanted, {self.input_name: np.ascontiguousarray(x, np.float32)})

    def predict_on_batch(self, x: np.ndarray) -> np.ndarray:
        """The network's probabilities over its trained classes for a prepared batch ``x``."""
        return np.asarray(self._run(x, ["probabilities"])[0], np.float32)

    def features(self, x: np.ndarray) -> np.ndarray:
        """The penultimate features (:meth:`btk.scoring.Scorer.features`) of a prepared batch."""
        return np.asarray(self._run(x, ["features"])[0], np.float32).reshape(len(x), -1)

    def outputs_and_features(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Both outputs of one pass."""
        probs, feats = self._run(x, ["probabilities", "features"])
        return np.asarray(probs, np.float32), np.asarray(feats, np.float32).reshape(len(x), -1)
