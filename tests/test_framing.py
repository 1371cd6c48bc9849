"""Cropping to the head (``--crop head``): the same slice framed differently comes out alike."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from btk.cli import cli
from btk.framing import crop_square, frame, head_box

SLICES = ["Training/glioma_tumor/gg (1).jpg", "Training/meningioma_tumor/m (2).jpg",
          "Training/no_tumor/1.jpg", "Training/pituitary_tumor/p (10).jpg"]


def _reframed(image: np.ndarray, zoom: float, canvas: tuple[int, int], at: tuple[int, int]) -> np.ndarray:
    """``image`` scaled by ``zoom`` and pasted at ``at`` on a black canvas: another source's framing."""
    small = cv2.resize(image, None, fx=zoom, fy=zoom, interpolation=cv2.INTER_AREA)
    out = np.zeros(canvas, np.uint8)
    out[at[0]:at[0] + small.shape[0], at[1]:at[1] + small.shape[1]] = small
    return out


@pytest.mark.parametrize("name", SLICES)
def test_a_slice_framed_another_way_is_cropped_to_the_same_image(sartaj, name):
    image = cv2.imread(str(sartaj / name), cv2.IMREAD_GRAYSCALE)
    other = _reframed(image, 0.55, (640, 560), (150, 20))
    plain = [cv2.resize(i, (128, 128)).astype(float) for i in (image, other)]
    cropped = [frame(i, 128, "head").astype(float) for i in (image, other)]
    before = np.abs(plain[0] - plain[1]).mean()
    after = np.abs(cropped[0] - cropped[1]).mean()
    assert after < 10 and after < before / 5, (before, after)  # a pixel of misalignment and the lost detail remain


def test_the_box_is_a_square_centred_on_the_head_and_padded_where_it_leaves_the_image():
    image = np.zeros((100, 200), np.uint8)
    cv2.ellipse(image, (150, 50), (30, 45), 0, 0, 360, 200, -1)  # a head 61 wide, 91 tall, near an edge
    top, left, side = head_box(image, margin=0.0)
    assert side == 91 and (top, left) == (5, 105)
    assert head_box(image, margin=0.1) == (-4, 96, 109)
    patch = crop_square(image, -4, 96, 109)
    assert patch.shape == (109, 109)
    assert np.array_equal(patch[4:104, :104], image[:, 96:200])
    assert not patch[:4].any() and not patch[104:].any() and not patch[:, 104:].any()  # outside: black


def _box_from_opencv_statistics(image: np.ndarray, margin: float = 0.04, min_share: float = 0.02):
    """head_box computed the plain way: OpenCV's statistics of every region."""
    from btk.framing import bright_mask

    mask = bright_mask(image)
    _, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    k = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    x, y, w, h, area = (int(v) for v in stats[k])
    if area < min_share * image.size:
        return None
    side = int(round(max(w, h) * (1 + 2 * margin)))
    return y + h // 2 - side // 2, x + w // 2 - side // 2, side


def test_the_head_box_is_the_one_opencvs_region_statistics_give(sartaj):
    files = sorted(sartaj.glob("*/*/*.jpg"))[::40]
    images = [cv2.imread(str(f), cv2.IMREAD_GRAYSCALE) for f in files]
    twins = np.zeros((64, 64), np.uint8)  # two regions of the same area: the first one wins in both
    twins[5:15, 5:15] = twins[40:50, 30:40] = 200
    for image in [*images, twins]:
        assert head_box(image) == _box_from_opencv_statistics(image)
    assert head_box(twins)[2] == round(10 * 1.08)


def test_blank_images_and_empty_slices_are_only_resized():
    blank = np.zeros((60, 80), np.uint8)
    assert head_box(blank) is None
    assert frame(blank, 32, "head").shape == (32, 32)
    speck = blank.copy()
    speck[5, 5] = 255  # too small to be a head
    assert head_box(speck) is None
    color = np.zeros((64, 64, 1), np.uint8)
    assert frame(color, 16, "none").shape == (16, 16, 1)
    with pytest.raises(ValueError, match="unknown crop"):
        frame(blank, 32, "brain")


def test_run_reads_cropped_images_and_caches_them_apart(tmp_path, sartaj):
    from btk.dataset import load_dataset
    from btk.plugins import get_host
    from btk.types import ReadOptions

    for k, name in enumerate(SLICES[:2]):
        image = cv2.imread(str(sartaj / name), cv2.IMREAD_GRAYSCALE)
        for label, img in (("a", image), ("b", _reframed(image, 0.6, (600, 600), (200, 100)))):
            (tmp_path / label).mkdir(exist_ok=True)
            cv2.imwrite(str(tmp_path / label / f"{k}.png"), img)
    reader = get_host().readers.get("folder")
    plain = load_dataset(reader, tmp_path, ReadOptions(64, 1))
    cropped = load_dataset(reader, tmp_path, ReadOptions(64, 1, crop="head"))
    assert cropped.images.shape == plain.images.shape == (4, 64, 64, 1)
    a, b = (np.asarray(cropped.images[cropped.labels == c], float) for c in ("a", "b"))
    pa, pb = (np.asarray(plain.images[plain.labels == c], float) for c in ("a", "b"))
    assert np.abs(a - b).mean() < np.abs(pa - pb).mean() / 4
    assert np.array_equal(load_dataset(reader, tmp_path, ReadOptions(64, 1, crop="head")).images, cropped.images)


def test_unknown_crop_is_a_one_line_error():
    result = CliRunner().invoke(cli, ["run", "--set", "crop=brain"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.startswith("Error: --set crop=brain: recipe.crop: 'brain' is not one of")
    assert len(result.output.strip().splitlines()) == 1


@pytest.mark.slow
def test_predict_frames_new_scans_as_the_run_was_trained(tmp_path, sartaj, tiny_sartaj_run, monkeypatch):
    import json

    from btk import training

    run_dir, _ = tiny_sartaj_run("--set", "crop=head")
    assert json.loads((run_dir / "config.json").read_text())["recipe"]["crop"] == "head"
    scan = tmp_path / "new.png"
    slice_ = cv2.imread(str(sartaj / SLICES[1]), cv2.IMREAD_GRAYSCALE)
    cv2.imwrite(str(scan), _reframed(slice_, 0.5, (500, 700), (30, 300)))
    seen = []
    real = training.network_input  # the uint8 images the scorer gives the network
    monkeypatch.setattr(training, "network_input", lambda batch, scale, intensity="none":
                        seen.append(batch) or real(batch, scale, intensity))
    result = CliRunner().invoke(cli, ["predict", str(run_dir), "--data", str(scan), "--json"])
    assert result.exit_code == 0, result.output
    expected = frame(cv2.imread(str(scan), cv2.IMREAD_GRAYSCALE), 32, "head")
    assert np.array_equal(seen[0][0, ..., 0], expected)
