"""What drove a prediction: a heat map per image (Grad-CAM or occlusion) and how much of it
lies outside the head.

Grad-CAM (Selvaraju et al. 2017) weighs each channel of the last convolutional feature map by
the spatial mean of the gradient of the predicted class score (the logit before the softmax
where the model ends in a softmax ``Dense`` layer, else the output) and keeps the positive part
of the weighted sum. Occlusion needs no gradients: a black square (1/8 of the side, moved by
half its side) is laid over the image as the network sees it, and each pixel gets the mean drop
of the predicted class' probability over the squares that covered it.

The outside-the-head share is the part of a map's mass outside the head mask
(:func:`head_mask`): a model that looks at the background, the border or a label burnt into
the image rather than at the anatomy has a high share.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from btk.errors import BtkError

__all__ = ["ExplainResult", "Explanation", "explain_images", "explain_run", "explain_test_images",
           "find_gradcam_layer", "gradcam", "gradcam_available", "head_mask", "heat_maps", "heat_summary", "occlusion",
           "outside_share", "read_network_images"]

METHODS = ("gradcam", "occlusion")
TEST_IMAGE_LIMIT = 400  # a run explains at most this many of its test images
OCCLUSION_LIMIT = 32  # ... and at most this many when it has to fall back to occlusion


@dataclass
class Explanation:
    """One image's heat map.

    Attributes:
        path: the input as named by the user (a slice index appended for a series or volume).
        image: the image as the network saw it (uint8, H x W x C, after crop and resize).
        heat: the map, H x W float in 0..1.
        predicted: the predicted class.
        probability: its probability.
        method: ``gradcam`` or ``occlusion``.
        outside_head_share: the map's mass outside the head mask (``None`` for an empty map).
    """

    path: str
    image: np.ndarray
    heat: np.ndarray
    predicted: str
    probability: float
    method: str
    outside_head_share: float | None

    def record(self) -> dict[str, Any]:
        """The row written to ``explain.json`` and ``explain.csv``."""
        return {"path": self.path, "predicted": self.predicted, "probability": round(self.probability, 6),
                "method": self.method, "outside_head_share": None if self.outside_head_share is None
                else round(self.outside_head_share, 4)}


def note(text: str) -> None:
    """One line on standard error."""
    print(f"btk: {text}", file=sys.stderr)


def find_gradcam_layer(model: Any, name: str | None = None) -> Any | None:
    """The layer whose output Grad-CAM uses: ``name`` if the model has it, else the last layer
    (searching ``model.layers`` backwards) whose output is 4-D (a convolution, or the
    normalisation or activation after one); ``None`` when there is none."""
    if name:
        try:
            return model.get_layer(name)
        except ValueError:
            pass
    for layer in reversed(model.layers):
        try:
            shape = layer.output.shape
        except (AttributeError, ValueError):  # no single output
            continue
        if len(shape) == 4 and type(layer).__name__ != "InputLayer":
            return layer
    return None


def _score_layer(model: Any) -> Any | None:
    """The final softmax ``Dense`` layer, whose logits make a better score than the probability
    (no saturation at probabilities near 1); ``None`` otherwise."""
    import keras

    last = model.layers[-1]
    if isinstance(last, keras.layers.Dense) and getattr(last.activation, "__name__", "") == "softmax":
        return last
    return None


def gradcam(model: Any, x: np.ndarray, layer: Any, classes: np.ndarray | None = None) -> np.ndarray:
    """Grad-CAM maps (N x H x W, each 0..1) of network inputs ``x`` (N x H x W x C float32) for
    ``classes`` (default: the predicted ones), from ``layer``'s output. On TensorFlow (a gradient
    tape) and on JAX (``jax.grad`` through the part of the network after ``layer``).

    Raises:
        NotImplementedError: another Keras backend, or (JAX) a network whose part after
            ``layer`` also needs tensors from before it.
    """
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        cam = _gradcam_tensorflow(model, x, layer, classes)
    elif backend == "jax":
        cam = _gradcam_jax(model, x, layer, classes)
    else:
        raise NotImplementedError(f"Grad-CAM on the {backend} backend")
    return _normalise(_resize(cam, x.shape[1:3]))


def _gradcam_tensorflow(model: Any, x: np.ndarray, layer: Any, classes: np.ndarray | None) -> np.ndarray:
    import keras
    import tensorflow as tf

    dense = _score_layer(model)
    sub = keras.Model(model.inputs, [layer.output, dense.input if dense is not None else model.output])
    xt = tf.convert_to_tensor(x)
    with tf.GradientTape() as tape:
        features, out = sub(xt, training=False)
        scores = tf.cast(out, tf.float32)
        if dense is not None:
            scores = tf.matmul(scores, tf.cast(dense.kernel, tf.float32))
            if dense.bias is not None:
                scores = scores + tf.cast(dense.bias, tf.float32)
        if classes is None:
            classes = np.asarray(tf.argmax(scores, axis=-1))
        chosen = tf.gather(scores, tf.constant(classes, tf.int32), axis=1, batch_dims=1)
    grads = tape.gradient(chosen, features)
    weights = tf.reduce_mean(tf.cast(grads, tf.float32), axis=(1, 2), keepdims=True)
    return np.asarray(tf.nn.relu(tf.reduce_sum(weights * tf.cast(features, tf.float32), axis=-1)))


def _gradcam_jax(model: Any, x: np.ndarray, layer: Any, classes: np.ndarray | None) -> np.ndarray:
    import jax
    import jax.numpy as jnp
    import keras

    dense = _score_layer(model)
    bottom = keras.Model(model.inputs, layer.output)
    try:  # the network after the layer, as a model of its own: the gradient is taken through it
        top = keras.Model(layer.output, dense.input if dense is not None else model.output)
    except ValueError as exc:
        raise NotImplementedError(f"Grad-CAM on JAX needs the network after '{layer.name}' to depend on it "
                                  f"alone ({str(exc).splitlines()[0]})") from None
    features = jnp.asarray(bottom(x, training=False), jnp.float32)
    kernel = jnp.asarray(dense.kernel, jnp.float32) if dense is not None else None
    bias = jnp.asarray(dense.bias, jnp.float32) if dense is not None and dense.bias is not None else None

    def scores(f: Any) -> Any:
        out = jnp.asarray(top(f.astype(features.dtype), training=False), jnp.float32)
        if kernel is not None:
            out = out @ kernel
            if bias is not None:
                out = out + bias
        return out

    if classes is None:
        classes = np.asarray(jnp.argmax(scores(features), axis=-1))
    picked = jnp.asarray(classes, jnp.int32)[:, None]
    grads = jax.grad(lambda f: jnp.take_along_axis(scores(f), picked, axis=1).sum())(features)
    weights = grads.mean(axis=(1, 2), keepdims=True)
    return np.asarray(jax.nn.relu((weights * features).sum(axis=-1)))


def occlusion(predict: Any, x: np.ndarray, classes: np.ndarray, patch: int | None = None,
              batch_size: int = 256) -> np.ndarray:
    """Occlusion maps (N x H x W, each 0..1) of network inputs ``x`` for ``classes``.

    ``predict(batch) -> probabilities``. A black (zero) square of side ``patch`` (default 1/8 of
    the image side) moves by half its side; a pixel's value is the mean drop of the class
    probability over the squares that covered it (negative drops count as zero).
    """
    n, h, w = x.shape[:3]
    side = patch or max(2, min(h, w) // 8)
    stride = max(1, side // 2)
    spots = [(t, left) for t in range(0, max(h - side, 0) + 1, stride)
             for left in range(0, max(w - side, 0) + 1, stride)]
    base = predict(x)
    maps = np.zeros((n, h, w), np.float32)
    for i in range(n):
        drops = np.zeros((h, w), np.float32)
        counts = np.zeros((h, w), np.float32)
        for start in range(0, len(spots), batch_size):
            chunk = spots[start:start + batch_size]
            batch = np.repeat(x[i:i + 1], len(chunk), axis=0)
            for k, (t, left) in enumerate(chunk):
                batch[k, t:t + side, left:left + side] = 0
            probs = predict(batch)[:, classes[i]]
            for (t, left), p in zip(chunk, probs):
                drops[t:t + side, left:left + side] += base[i, classes[i]] - p
                counts[t:t + side, left:left + side] += 1
        maps[i] = np.maximum(drops / np.maximum(counts, 1), 0)
    return _normalise(maps)


def _resize(maps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    import cv2

    return np.stack([cv2.resize(m.astype(np.float32), (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
                     for m in maps])


def _normalise(maps: np.ndarray) -> np.ndarray:
    out = np.zeros_like(maps, dtype=np.float32)
    for i, m in enumerate(maps):
        m = np.maximum(m, 0)
        top = float(m.max())
        out[i] = m / top if top > 0 else m
    return out


def head_mask(image: np.ndarray) -> np.ndarray:
    """The head in ``image`` (H x W or H x W x C uint8, as the network saw it) as a boolean mask.

    The largest connected region above Otsu's threshold (:func:`btk.framing.bright_mask`), with
    its holes filled (dark ventricles, a dark tumour core and the skull's dark inner band are
    inside the head), then dilated by 1/32 of the side so the scalp's edge counts as head. A
    blank image has no head: the mask is all false.
    """
    import cv2

    from btk.framing import bright_mask

    gray = image if image.ndim == 2 else (image[..., 0] if image.shape[-1] == 1 else image.max(axis=-1))
    mask = bright_mask(np.ascontiguousarray(gray))
    if mask is None:
        return np.zeros(gray.shape, bool)
    n, labels = cv2.connectedComponents(mask, connectivity=8, ltype=cv2.CV_32S)
    if n < 2:
        return np.zeros(gray.shape, bool)
    areas = np.bincount(labels.ravel(), minlength=n)
    region = (labels == 1 + int(np.argmax(areas[1:]))).astype(np.uint8)
    contours, _ = cv2.findContours(region, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    filled = np.zeros_like(region)
    cv2.drawContours(filled, contours, -1, 1, thickness=cv2.FILLED)
    k = max(1, min(gray.shape) // 32)
    filled = cv2.dilate(filled, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * k + 1, 2 * k + 1)))
    return filled.astype(bool)


def outside_share(heat: np.ndarray, mask: np.ndarray) -> float | None:
    """The share of ``heat``'s mass outside ``mask``; ``None`` for an all-zero map."""
    total = float(heat.sum())
    if total <= 0:
        return None
    return float(heat[~mask].sum()) / total


def read_network_images(run: Any, paths: Sequence[str | Path], host: Any, reader_name: str | None = None,
                        reader_options: dict[str, str] | None = None,
                        slices: str = "middle") -> tuple[list[tuple[str, np.ndarray]], list[tuple[str, str]]]:
    """The images of ``paths`` as ``run``'s network sees them (uint8, after its crop and resize),
    read as ``btk predict`` reads them; a series or volume gives its middle slice (``slices``:
    ``all``, every one).

    Returns:
        (images, skipped): ``(name, image)`` pairs in input order, and the unreadable inputs.
    """
    from btk.dataset import as_hwc, iter_entries
    from btk.predict import InputsReader
    from btk.predict_inputs import gather_inputs
    from btk.types import ReadOptions

    channels = int(run.config.recipe.channels)
    inputs = gather_inputs(paths, host, run.read_options({}), reader_name, reader_options, slices)
    adapter = InputsReader(inputs)
    jobs = adapter.scan(None, ReadOptions())
    images, skipped = [], []
    for job, samples in iter_entries(adapter, None, run.read_options({}), entries=jobs):
        if isinstance(samples, str) or not samples:
            skipped.append((job.source, samples or "no slices"))
            continue
        images += [(job.source, as_hwc(s.image, channels, s.source)) for s in samples[: None if slices == "all" else 1]]
    return images, skipped


def gradcam_available(model: Any, layer_name: str | None = None) -> bool:
    """Whether Grad-CAM can explain ``model`` here: a backend it runs on (TensorFlow, JAX) and a
    convolutional layer in every network inside."""
    import keras

    return keras.backend.backend() in ("tensorflow", "jax") and all(
        find_gradcam_layer(m, layer_name) is not None for m in _members(model))


def heat_maps(scorer: Any, images: np.ndarray, targets: np.ndarray, method: str = "gradcam",
              layer_name: str | None = None, batch_size: int = 32) -> tuple[np.ndarray, str]:
    """Heat maps (N x H x W, each 0..1) of uint8 ``images`` for the network's ``targets`` (the
    trained class each map explains, :meth:`btk.scoring.Scorer.fine_class`), and the method used.

    A wrapper of one network (test-time augmentation) is explained through the network inside;
    an ensemble (a wrapper of several) by its members' Grad-CAM maps of the same class,
    averaged. ``gradcam`` falls back to occlusion, with a note on standard error, for a network
    without a convolutional layer or a backend without Grad-CAM here.
    """
    from btk.training import network_input

    x = network_input(images, scorer.scale, scorer.intensity)
    model = scorer.model
    if method not in METHODS:
        raise BtkError(f"unknown method '{method}' (known: {', '.join(METHODS)})")
    if method == "gradcam":
        members = _members(model)
        layers = [find_gradcam_layer(m, layer_name) for m in members]
        if any(layer is None for layer in layers):
            note("the model has no convolutional layer: occlusion instead of Grad-CAM")
        else:
            try:
                maps = [_in_batches(lambda s, m=m, layer=layer: gradcam(m, x[s], layer, targets[s]), len(x),
                                    batch_size) for m, layer in zip(members, layers)]
                return (maps[0] if len(maps) == 1 else _normalise(np.mean(maps, axis=0))), "gradcam"
            except NotImplementedError as e:
                note(f"{e} is not implemented: occlusion instead")

    def predict(batch: np.ndarray) -> np.ndarray:
        return np.asarray(model.predict_on_batch(batch), dtype=np.float32)

    return occlusion(predict, x, targets), "occlusion"


def answer_maps(scorer: Any, images: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
    """Grad-CAM maps (:func:`heat_maps`) of uint8 ``images`` for the answers their task
    ``probabilities`` give (the trained class behind each, :meth:`btk.scoring.Scorer.fine_class`):
    what ``btk predict --maps`` writes for each DICOM slice."""
    targets = scorer.fine_class(scorer.outputs(images), np.asarray(probabilities).argmax(axis=1))
    return heat_maps(scorer, images, targets)[0]


def explain_images(scorer: Any, images: np.ndarray, names: Sequence[str], method: str = "gradcam",
                   layer_name: str | None = None, batch_size: int = 32) -> list[Explanation]:
    """Heat maps of uint8 ``images`` (N x H x W x C) for the answers ``scorer`` gives them: the
    predicted class and its probability are the scorer's (what ``btk predict`` says of the same
    image), the map is of the trained class behind that answer (:func:`heat_maps`)."""
    if method not in METHODS:
        raise BtkError(f"unknown method '{method}' (known: {', '.join(METHODS)})")
    outputs = scorer.outputs(images)
    probs = scorer.probabilities(outputs)
    predicted = probs.argmax(axis=1)
    heat, used = heat_maps(scorer, images, scorer.fine_class(outputs, predicted), method, layer_name, batch_size)
    return [Explanation(name, image, h, scorer.classes[int(c)], float(p[int(c)]), used,
                        outside_share(h, head_mask(image)))
            for name, image, h, c, p in zip(names, images, heat, predicted, probs)]


def overlay(image: np.ndarray, heat: np.ndarray, side: int = 256) -> np.ndarray:
    """``heat`` in OpenCV's jet colours over ``image`` (uint8), with the head mask's outline in
    white, enlarged to ``side`` pixels: a BGR uint8 image."""
    import cv2

    gray = image if image.ndim == 2 else (image[..., 0] if image.shape[-1] == 1 else image.max(axis=-1))
    base = cv2.cvtColor(np.ascontiguousarray(gray), cv2.COLOR_GRAY2BGR)
    colours = cv2.applyColorMap((np.clip(heat, 0, 1) * 255).astype(np.uint8), cv2.COLORMAP_JET)
    out = cv2.addWeighted(base, 0.6, colours, 0.4, 0)
    out = cv2.resize(out, (side, side), interpolation=cv2.INTER_LINEAR)
    mask = cv2.resize(head_mask(image).astype(np.uint8), (side, side), interpolation=cv2.INTER_NEAREST)
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(out, contours, -1, (255, 255, 255), 1)
    return out


def grid(tiles: Sequence[np.ndarray], labels: Sequence[str], columns: int = 8) -> np.ndarray:
    """``tiles`` (equal-size BGR images) in rows of ``columns``, each with its label on top."""
    import cv2

    h, w = tiles[0].shape[:2]
    band = 18
    rows = -(-len(tiles) // columns)
    canvas = np.zeros((rows * (h + band), min(columns, len(tiles)) * w, 3), np.uint8)
    for k, (tile, label) in enumerate(zip(tiles, labels)):
        r, c = divmod(k, columns)
        y, x0 = r * (h + band), c * w
        canvas[y + band:y + band + h, x0:x0 + w] = tile
        cv2.putText(canvas, label[:34], (x0 + 3, y + 13), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1,
                    cv2.LINE_AA)
    return canvas


def write_outputs(explanations: Sequence[Explanation], out: Path, columns: int = 8) -> list[Path]:
    """One overlay PNG per image (named by its folder and file name), ``grid.png`` of them all,
    ``explain.json`` and ``explain.csv`` into ``out`` (created). Returns the PNG paths written."""
    import csv
    import json
    import re

    import cv2

    out.mkdir(parents=True, exist_ok=True)
    written, tiles, labels, used = [], [], [], set()
    for k, e in enumerate(explanations):
        tile = overlay(e.image, e.heat)
        where = Path(e.path)
        stem = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{where.parent.name}-{where.stem}").strip("_-") or f"image{k}"
        name = stem
        n = 1
        while name in used:
            n += 1
            name = f"{stem}-{n}"
        used.add(name)
        path = out / f"{name}.png"
        cv2.imwrite(str(path), tile)
        written.append(path)
        tiles.append(cv2.resize(tile, (160, 160), interpolation=cv2.INTER_AREA))
        share = "-" if e.outside_head_share is None else f"{e.outside_head_share:.2f}"
        labels.append(f"{e.predicted} {e.probability:.2f} out {share}")
    if tiles:
        cv2.imwrite(str(out / "grid.png"), grid(tiles, labels, columns))
    rows = [e.record() for e in explanations]
    shares = [e.outside_head_share for e in explanations if e.outside_head_share is not None]
    summary = {"images": rows, "mean_outside_head_share": float(np.mean(shares)) if shares else None}
    (out / "explain.json").write_text(json.dumps(summary, indent=2) + "\n")
    with open(out / "explain.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["path", "predicted", "probability", "method", "outside_head_share"])
        writer.writeheader()
        writer.writerows(rows)
    return written


def heat_summary(heats: Sequence[np.ndarray], masks: Sequence[np.ndarray], method: str,
                 bins: int = 10) -> dict[str, Any]:
    """The outside-the-head distribution of heat maps ``heats`` against head masks ``masks``.

    Returns:
        ``method``, ``n`` (maps summarised), ``n_empty`` (all-zero maps, left out of the
        figures), ``mean`` and ``median`` outside-the-head share, ``n_over_half`` and
        ``share_over_half`` (maps with a share above 0.5), ``histogram`` (counts in ``bins``
        equal bins over 0..1, ``bin_edges`` beside it) and ``mostly_outside`` (the median share
        is above 0.5: the model mostly looks outside the head).
    """
    shares = [outside_share(h, m) for h, m in zip(heats, masks)]
    kept = np.asarray([s for s in shares if s is not None], float)
    edges = np.linspace(0.0, 1.0, bins + 1)
    counts = np.histogram(np.clip(kept, 0, 1), bins=edges)[0] if len(kept) else np.zeros(bins, int)
    median = float(np.median(kept)) if len(kept) else None
    over = int((kept > 0.5).sum())
    return {"method": method, "n": len(shares), "n_empty": len(shares) - len(kept),
            "mean": float(kept.mean()) if len(kept) else None, "median": median,
            "n_over_half": over, "share_over_half": over / len(kept) if len(kept) else None,
            "histogram": [int(c) for c in counts], "bin_edges": [round(float(e), 4) for e in edges],
            "mostly_outside": bool(median is not None and median > 0.5)}


def _members(model: Any) -> list[Any]:
    """The networks inside a wrapper of Keras models with the same output (test-time
    augmentation: one, looked into in turn; an ensemble: its members), else ``[model]``."""
    import keras

    out = tuple(model.output.shape[1:])
    inner = [layer for layer in model.layers
             if isinstance(layer, keras.Model) and tuple(layer.output.shape[1:]) == out]
    return _members(inner[0]) if len(inner) == 1 else inner or [model]


def _subset(n: int, limit: int, seed: int, strata: np.ndarray | None) -> np.ndarray:
    """Every index below ``n``, or ``limit`` of them drawn with ``seed`` (in proportion to
    ``strata``'s groups when given), sorted."""
    if n <= limit:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    if strata is None or len(strata) != n:
        return np.sort(rng.choice(n, limit, replace=False))
    picked: list[np.ndarray] = []
    groups = np.unique(strata)
    for g in groups:
        members = np.flatnonzero(strata == g)
        picked.append(rng.choice(members, min(len(members), max(1, round(limit * len(members) / n))), replace=False))
    out = np.unique(np.concatenate(picked))
    if len(out) > limit:
        out = np.sort(rng.choice(out, limit, replace=False))
    return out


def _in_batches(fn: Any, n: int, size: int) -> np.ndarray:
    """``fn(slice)`` over consecutive slices of ``size`` rows out of ``n``, concatenated."""
    return np.concatenate([fn(slice(i, i + size)) for i in range(0, n, size)])


def explain_test_images(scorer: Any, images: np.ndarray, examples: Sequence[int] | np.ndarray = (),
                        strata: np.ndarray | None = None, layer_name: str | None = None,
                        limit: int = TEST_IMAGE_LIMIT, seed: int = 0, batch_size: int = 32,
                        thumbnail: int = 128) -> tuple[dict[str, Any], np.ndarray]:
    """Heat maps of a run's test images (uint8, N x H x W x C, as the network sees them) for the
    answers ``scorer`` gives them, and their outside-the-head distribution (:func:`heat_summary`).

    At most ``limit`` images are explained (a seeded draw, stratified by ``strata`` when given,
    e.g. the labels), plus the ``examples`` (indices into ``images``) whose maps are kept. A
    network without a convolutional layer falls back to occlusion on at most
    :data:`OCCLUSION_LIMIT` images (:func:`heat_maps`).

    Returns:
        (summary, heat): the summary with ``n_test`` (test images) and ``n`` (images explained)
        added, and float16 maps of the ``examples`` resized to ``thumbnail`` px
        (len(examples) x thumbnail x thumbnail).
    """
    import cv2

    wanted = np.asarray(examples, int)
    chosen = _subset(len(images), limit, seed, strata)
    if not gradcam_available(scorer.model, layer_name):
        chosen = chosen[:OCCLUSION_LIMIT]
    index = np.union1d(chosen, wanted).astype(int)
    outputs = scorer.outputs(images[index])
    targets = scorer.fine_class(outputs, scorer.probabilities(outputs).argmax(axis=1))
    heat, method = heat_maps(scorer, images[index], targets, "gradcam", layer_name, batch_size)
    position = {int(k): i for i, k in enumerate(index)}
    rows = [position[int(k)] for k in chosen if int(k) in position]
    summary = heat_summary([heat[i] for i in rows], [head_mask(images[index[i]]) for i in rows], method)
    summary = {"n_test": len(images), **summary}
    kept = [cv2.resize(heat[position[int(k)]], (thumbnail, thumbnail), interpolation=cv2.INTER_AREA)
            for k in wanted]
    out = np.stack(kept).astype(np.float16) if kept else np.zeros((0, thumbnail, thumbnail), np.float16)
    return summary, out


@dataclass
class ExplainResult:
    """What ``btk explain`` made (:func:`explain_run`): the explanations, the inputs it could not
    read, and the directory it wrote."""

    run: Any
    explanations: list[Explanation]
    skipped: list[tuple[str, str]]
    folder: Path


def explain_run(run: Any, paths: Sequence[str | Path], out: Path | str | None = None, method: str = "gradcam",
                reader_name: str | None = None, reader_options: dict[str, str] | None = None, host: Any = None,
                tta: bool | None = None, devices: str = "") -> ExplainResult:
    """``btk explain``, the whole job: read ``paths`` as ``run``'s network sees them, answer
    them with the run's scorer and draw what drove each answer (:func:`explain_images`), write
    the overlays, ``grid.png``, ``explain.json`` and ``explain.csv`` into a new directory under
    ``out`` [the run's ``explanations`` folder], and keep the summary in the run for its model
    card (written again).

    Raises:
        BtkError: nothing readable, an unknown method, a folder that cannot be written.
    """
    import shutil

    from btk.plugins import get_host
    from btk.run_files import check_writable, make_folder, new_run_id, remove_made, unique_dir

    if method not in METHODS:
        raise BtkError(f"unknown method '{method}' (known: {', '.join(METHODS)})")
    host = host or get_host()
    parent = check_writable(Path(out) if out is not None else Path(run.path) / "explanations")
    images, skipped = read_network_images(run, paths, host, reader_name, reader_options)
    if not images:
        raise BtkError("nothing could be read to explain")
    try:  # a model plugin may name the layer Grad-CAM should use
        layer_name = host.models.get(run.config.model_name).gradcam_layer
    except (BtkError, AttributeError):
        layer_name = None
    with run.scorer(tta, devices) as scorer:
        result = explain_images(scorer, np.stack([im for _, im in images]), [n for n, _ in images], method,
                                layer_name)
    final = unique_dir(parent, new_run_id(f"explain-{method}"))
    partial = final.parent / f".{final.name}.partial"
    made = make_folder(partial)
    try:
        write_outputs(result, partial)
        partial.rename(final)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        remove_made(made)
        raise
    owner = run.evaluated_run() if run.is_evaluation else run
    kept = Path(owner.path) / ".explain.json.partial"
    shutil.copyfile(final / "explain.json", kept)
    kept.replace(Path(owner.path) / "explain.json")
    from btk.model_card import write_card

    write_card(owner)
    return ExplainResult(run, result, skipped, final)
