"""btk explain: Grad-CAM and occlusion find what decides the class, the outside-the-head
share, the fallback for a model without convolutions, and the command on a tiny real run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from btk.explain import explain_images, find_gradcam_layer, gradcam, head_mask, occlusion, outside_share
from btk.scoring import Scorer

SIDE = 64


def _blob_images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` noisy 64 x 64 images; class 1 has a bright disc (radius 5) at a random position.
    Returns (uint8 images N x H x W x 1, labels, blob centres (row, column))."""
    import cv2

    rng = np.random.default_rng(seed)
    images = rng.normal(60, 15, (n, SIDE, SIDE)).clip(0, 255).astype(np.uint8)
    labels = np.arange(n) % 2
    centres = rng.integers(10, SIDE - 10, (n, 2))
    for i in np.flatnonzero(labels):
        cv2.circle(images[i], (int(centres[i, 1]), int(centres[i, 0])), 5, 230, -1)
    return images[..., None], labels, centres


def _train(name: str) -> object:
    import keras

    from btk.plugins import get_host

    keras.utils.set_random_seed(0)
    images, labels, _ = _blob_images(256, 0)
    model = get_host().models.get(name).build((SIDE, SIDE, 1), 2, {"learning_rate": 0.003})
    model.fit(images.astype(np.float32) / 255, keras.utils.to_categorical(labels, 2), epochs=10, batch_size=32,
              verbose=0)
    return model


def _peak(heat: np.ndarray) -> np.ndarray:
    return np.array(np.unravel_index(int(np.argmax(heat)), heat.shape))


def _near_cell(heat: np.ndarray, point: np.ndarray, cell: int, slack: int = 8) -> bool:
    """Whether ``point`` lies within ``slack`` pixels of the feature-map cell (``cell`` pixels
    a side) that holds ``heat``'s peak: a coarse map cannot place its peak more finely."""
    top, left = (_peak(heat) // cell) * cell
    dy = max(top - point[0], 0, point[0] - (top + cell - 1))
    dx = max(left - point[1], 0, point[1] - (left + cell - 1))
    return max(dy, dx) <= slack


@pytest.mark.slow
@pytest.mark.parametrize("name", ["small-cnn", "res-cnn"])
def test_gradcam_and_occlusion_peak_on_the_blob(name: str, tmp_path: Path) -> None:
    model = _train(name)
    images, labels, centres = _blob_images(16, 1)
    x = images.astype(np.float32) / 255
    probs = np.asarray(model.predict_on_batch(x))
    assert (probs.argmax(axis=1) == labels).mean() >= 0.8
    held = [i for i in np.flatnonzero(labels) if probs[i, 1] > 0.5][:3]
    assert held
    layer = find_gradcam_layer(model)
    cell = SIDE // int(layer.output.shape[1])  # small-cnn: 4 x 4 at 64 px, res-cnn: 2 x 2
    cams = gradcam(model, x[held], layer, np.ones(len(held), int))
    occ = occlusion(lambda b: np.asarray(model.predict_on_batch(b)), x[held], np.ones(len(held), int))
    for cam, o, i in zip(cams, occ, held):
        assert cam.shape == (SIDE, SIDE) and cam.min() >= 0 and cam.max() == pytest.approx(1)
        assert _near_cell(cam, centres[i], cell), (_peak(cam), centres[i])
        assert np.abs(_peak(o) - centres[i]).max() <= 8, (_peak(o), centres[i])
        assert _near_cell(cam, _peak(o), cell), (_peak(cam), _peak(o))  # the two methods agree
    if name == "res-cnn":  # the default network; one architecture shows the backends agree
        _same_maps_on_jax(model, x[held], cams, tmp_path)


JAX_GRADCAM = """
import sys
import keras
import numpy as np
from btk.explain import find_gradcam_layer, gradcam
assert keras.backend.backend() == "jax", keras.backend.backend()
model = keras.saving.load_model(sys.argv[1], compile=False)
x = np.load(sys.argv[2])
np.save(sys.argv[3], gradcam(model, x, find_gradcam_layer(model), np.ones(len(x), int)))
"""


def _same_maps_on_jax(model: object, x: np.ndarray, cams: np.ndarray, folder: Path) -> None:
    """The same network (saved and loaded again) under the JAX backend gives the same maps."""
    import os
    import subprocess
    import sys

    pytest.importorskip("jax")
    model.save(folder / "m.keras")  # type: ignore[attr-defined]
    np.save(folder / "x.npy", x)
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, "-c", JAX_GRADCAM, str(folder / "m.keras"), str(folder / "x.npy"),
                           str(folder / "jax.npy")], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    on_jax = np.load(folder / "jax.npy")
    assert on_jax.shape == cams.shape
    assert np.abs(on_jax - cams).max() < 0.02, np.abs(on_jax - cams).max()


def _head() -> np.ndarray:
    import cv2

    image = np.zeros((SIDE, SIDE, 1), np.uint8)
    cv2.circle(image, (32, 32), 20, 200, -1)
    cv2.circle(image, (32, 32), 6, 40, -1)  # a dark hole inside the head is head
    return image


def test_outside_share_inside_and_on_the_border() -> None:
    mask = head_mask(_head())
    assert mask[32, 32] and not mask[2, 2]
    inside = np.zeros((SIDE, SIDE), np.float32)
    inside[28:37, 28:37] = 1
    border = np.zeros((SIDE, SIDE), np.float32)
    border[:, :4] = 1
    border[:4, :] = 1
    assert outside_share(inside, mask) == pytest.approx(0, abs=0.01)
    assert outside_share(border, mask) == pytest.approx(1, abs=0.01)
    assert outside_share(np.zeros((SIDE, SIDE)), mask) is None
    assert not head_mask(np.zeros((SIDE, SIDE), np.uint8)).any()


def test_model_without_convolution_falls_back_to_occlusion(capsys: pytest.CaptureFixture[str]) -> None:
    import keras

    inputs = keras.Input((16, 16, 1))
    outputs = keras.layers.Dense(2, activation="softmax")(keras.layers.Flatten()(inputs))
    model = keras.Model(inputs, outputs)
    assert find_gradcam_layer(model) is None
    images = np.random.default_rng(0).integers(0, 255, (2, 16, 16, 1), dtype=np.uint8)
    result = explain_images(Scorer(model, 1 / 255, "none", ("x", "y"), ("x", "y")), images, ["a.png", "b.png"])
    assert [e.method for e in result] == ["occlusion", "occlusion"]
    assert {e.predicted for e in result} <= {"x", "y"}
    assert all(e.heat.shape == (16, 16) for e in result)
    err = capsys.readouterr().err
    assert "no convolutional layer" in err and err.count("\n") == 1


def test_cli_writes_a_png_per_image_the_grid_and_the_json(tiny_sartaj_run, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from btk.cli import cli

    run_dir, data = tiny_sartaj_run()
    files = sorted((data / "no_tumor").glob("*.jpg"))[:2] + sorted((data / "meningioma_tumor").glob("*.jpg"))[:1]
    inputs = [arg for f in files for arg in ("--data", str(f))]
    out = tmp_path / "explained"
    result = CliRunner().invoke(cli, ["explain", str(run_dir), *inputs, "--out", str(out)])
    assert result.exit_code == 0, result.output
    made = list(out.iterdir())
    assert len(made) == 1 and made[0].name.endswith("-explain-gradcam"), made
    folder = made[0]
    pngs = sorted(p.name for p in folder.glob("*.png"))
    assert len(pngs) == len(files) + 1 and "grid.png" in pngs
    summary = json.loads((folder / "explain.json").read_text())
    assert [r["path"] for r in summary["images"]] == list(map(str, files))
    assert {r["method"] for r in summary["images"]} == {"gradcam"}
    assert all(0 <= r["outside_head_share"] <= 1 for r in summary["images"])
    assert (folder / "explain.csv").read_text().startswith("path,predicted,probability,method,outside_head_share")
    assert "mean share of the heat outside the head" in result.output
    assert json.loads((run_dir / "explain.json").read_text()) == summary  # the run keeps the latest summary
    # the class and probability are the run's scorer's: what btk predict says of the same image
    predicted = CliRunner().invoke(cli, ["predict", str(run_dir), *inputs, "--json"])
    assert predicted.exit_code == 0, predicted.output
    for row, explained in zip(json.loads(predicted.stdout), summary["images"]):
        assert row["path"] == explained["path"] and row["predicted"] == explained["predicted"]
        assert row["probabilities"][row["predicted"]] == pytest.approx(explained["probability"], abs=1e-6)
    # without --out, into the run's explanations folder; --json prints the result alone on stdout
    again = CliRunner().invoke(cli, ["explain", str(run_dir), *inputs, "--json"])
    assert again.exit_code == 0, again.output
    record = json.loads(again.stdout)
    assert Path(record["folder"]).parent == run_dir / "explanations" and Path(record["folder"]).is_dir()
    assert [r["path"] for r in record["images"]] == list(map(str, files))


def test_heat_summary_of_maps_inside_and_on_the_border() -> None:
    from btk.explain import heat_summary

    mask = head_mask(_head())
    inside = np.zeros((SIDE, SIDE), np.float32)
    inside[28:37, 28:37] = 1
    border = np.zeros((SIDE, SIDE), np.float32)
    border[:, :4] = 1
    border[:4, :] = 1
    looking_in = heat_summary([inside] * 3 + [border], [mask] * 4, "gradcam")
    assert looking_in["n"] == 4 and looking_in["median"] == pytest.approx(0, abs=0.01)
    assert not looking_in["mostly_outside"] and looking_in["n_over_half"] == 1
    assert looking_in["share_over_half"] == pytest.approx(0.25)
    assert sum(looking_in["histogram"]) == 4 and looking_in["histogram"][0] == 3 and looking_in["histogram"][-1] == 1
    looking_out = heat_summary([border] * 3 + [inside, np.zeros((SIDE, SIDE))], [mask] * 5, "occlusion")
    assert looking_out["mostly_outside"] and looking_out["median"] == pytest.approx(1, abs=0.01)
    assert looking_out["n"] == 5 and looking_out["n_empty"] == 1 and sum(looking_out["histogram"]) == 4
    assert looking_out["mean"] == pytest.approx(0.75, abs=0.01) and looking_out["method"] == "occlusion"


def test_test_images_are_capped_and_the_examples_maps_kept() -> None:
    import keras

    from btk.explain import explain_test_images

    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 16, 1))
    features = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    outputs = keras.layers.Dense(2, activation="softmax")(keras.layers.GlobalAveragePooling2D()(features))
    model = keras.Model(inputs, outputs)
    images = np.random.default_rng(0).integers(0, 255, (10, 16, 16, 1), dtype=np.uint8)
    scorer = Scorer(model, 1 / 255, "none", ("a", "b"), ("a", "b"))
    summary, heat = explain_test_images(scorer, images, examples=[0, 9], strata=np.arange(10) % 2, limit=4,
                                        thumbnail=32)
    assert summary["n_test"] == 10 and summary["n"] == 4 and summary["method"] == "gradcam"
    assert heat.shape == (2, 32, 32) and heat.dtype == np.float16
    assert sum(summary["histogram"]) == summary["n"] - summary["n_empty"]


def test_a_run_explains_its_test_images_and_the_report_shows_them(tiny_sartaj_run, tmp_path: Path) -> None:
    import csv

    from click.testing import CliRunner

    from btk.cli import cli

    run_dir, _ = tiny_sartaj_run()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    with open(run_dir / "predictions.csv") as f:
        clean = [r for r in csv.DictReader(f) if r["condition"] == "clean"]
    info = metrics["explanations"]
    assert info["n"] == info["n_test"] == len(clean) and info["method"] == "gradcam"
    assert sum(info["histogram"]) == info["n"] - info["n_empty"] and isinstance(info["mostly_outside"], bool)
    with np.load(run_dir / "examples.npz") as ex:
        assert ex["heat/clean"].shape == ex["images/clean"].shape and ex["heat/clean"].dtype == np.float16
    html_path = tmp_path / "report.html"
    result = CliRunner().invoke(cli, ["report", str(run_dir), "--html", str(html_path)])
    assert result.exit_code == 0, result.output
    page = html_path.read_text()
    assert "what drove the predictions" in page and "heat map (clean)" in page
    assert "## Explanations" in (run_dir / "MODEL_CARD.md").read_text()
    assert f"of the {len(clean)} clean test images" in (run_dir / "MODEL_CARD.md").read_text()
    terminal = CliRunner().invoke(cli, ["report", str(run_dir)])
    assert f"heat maps of {info['n']} test images: median" in terminal.output
