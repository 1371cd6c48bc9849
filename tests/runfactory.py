"""Complete run directories with chosen predictions, for report tests and benchmarks."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from btk.metrics import evaluate
from btk.runs import RunWriter


def make_run(parent: Path, name: str, y: np.ndarray, probs: dict[str, np.ndarray] | np.ndarray,
             classes: list[str], sources: list[str] | None = None, task: str = "multiclass",
             train_degrade: list[str] | None = None, examples: bool = True) -> Path:
    """Write ``parent/name`` as a finished run whose test predictions are ``probs``
    (per condition, or one array for "clean")."""
    conditions = probs if isinstance(probs, dict) else {"clean": probs}
    sources = sources or [f"img{i:05d}.png" for i in range(len(y))]
    path = parent / name
    with RunWriter(path) as w:
        w.write_json("config.json", {
            "config": {"task": task, "reader": "folder", "model": "seed-cnn", "data": "DATA"},
            "recipe": {"name": "btk"}, "classes": classes, "input_shape": [256, 256, 3],
            "train_degrade": [{"name": d, "params": {}, "label": d} for d in (train_degrade or [])],
            "test_degrade": [], "plugins": {}, "versions": {}})
        w.write_json("history.json", {"loss": [1.0, 0.5], "accuracy": [0.5, 0.8], "val_loss": [1.1, 0.7],
                                       "val_accuracy": [0.45, 0.7]})
        rows = []
        for cond, p in conditions.items():
            rows += [[cond, s, classes[t], classes[int(q.argmax())], *[f"{v:.6f}" for v in q]]
                     for s, t, q in zip(sources, y, p)]
        w.write_csv("predictions.csv", ["condition", "source", "label", "predicted", *[f"p_{c}" for c in classes]], rows)
        if examples:  # 8 example images under every condition, as btk run keeps them
            rng = np.random.default_rng(len(y))
            pick = np.arange(min(8, len(y)))
            np.savez_compressed(w.path("examples.npz"), sources=np.array(sources)[pick].astype(str),
                                **{f"images/{c}": rng.integers(0, 256, (len(pick), 128, 128), dtype=np.uint8)
                                   for c in conditions})
        w.write_json("metrics.json", {"conditions": {c: evaluate(y, p, classes) for c, p in conditions.items()},
                                      "collapsed": False, "counts": {"test": len(y)}, "skipped": []})
    return path
