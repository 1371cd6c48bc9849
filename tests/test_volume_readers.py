"""DICOM and NIfTI readers on files that pydicom and nibabel ship, and round trips of real images."""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from btk.cli import cli
from btk.dataset import load_dataset
from btk.errors import BtkError
from btk.plugins import get_host
from btk.types import ReadOptions


def _dicom_file(name: str) -> Path:
    from pydicom.data import get_testdata_file

    return Path(get_testdata_file(name))


def _read(reader: str, path: Path, size=None, channels=1, **extra):
    return load_dataset(get_host().readers.get(reader), path, ReadOptions(size, channels, extra))


def _window(values, center, width):
    low, high = center - 0.5 - (width - 1) / 2, center - 0.5 + (width - 1) / 2
    return np.clip(np.rint((values - low) / (high - low) * 255), 0, 255).astype(np.uint8)


def test_mr_small_uses_its_window(tmp_path):
    import pydicom

    ds = pydicom.dcmread(_dicom_file("MR_small.dcm"))
    data = _read("dicom", _dicom_file("MR_small.dcm"))
    assert data.images.shape == (1, 64, 64, 1)
    assert np.array_equal(data.images[0, ..., 0], _window(ds.pixel_array.astype(float), 600, 1600))
    assert data.groups[0] == "4MR1"  # PatientID
    override = _read("dicom", _dicom_file("MR_small.dcm"), window="1000/500")
    assert np.array_equal(override.images[0, ..., 0], _window(ds.pixel_array.astype(float), 1000, 500))


def test_ct_rescale_slope_and_intercept_are_applied():
    import pydicom

    ds = pydicom.dcmread(_dicom_file("CT_small.dcm"))
    hu = ds.pixel_array.astype(float) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    data = _read("dicom", _dicom_file("CT_small.dcm"), window="40/400")  # a brain/soft-tissue window in HU
    assert np.array_equal(data.images[0, ..., 0], _window(hu, 40, 400))


@pytest.mark.parametrize("name", ["MR_small_RLE.dcm", "MR_small_jpeg_ls_lossless.dcm", "MR_small_jp2klossless.dcm"])
def test_compressed_transfer_syntaxes_decode_to_the_same_pixels(name):
    plain = _read("dicom", _dicom_file("MR_small.dcm")).images
    assert np.array_equal(_read("dicom", _dicom_file(name)).images, plain)


def test_jpeg2000_and_jpeg_files_open():
    for name in ("JPEG2000.dcm", "JPGExtended.dcm"):
        data = _read("dicom", _dicom_file(name))
        assert data.images.shape[1:] == (1024, 256, 1) and data.images.std() > 0


def test_monochrome1_is_inverted(tmp_path):
    import pydicom

    ds = pydicom.dcmread(_dicom_file("MR_small.dcm"))
    ds.PhotometricInterpretation = "MONOCHROME1"
    ds.save_as(tmp_path / "mono1.dcm")
    inverted = _read("dicom", tmp_path / "mono1.dcm").images
    assert np.array_equal(inverted, 255 - _read("dicom", _dicom_file("MR_small.dcm")).images)


def test_multiframe_file_is_one_series_of_frames():
    data = _read("dicom", _dicom_file("SC_rgb_rle_2frame.dcm"), channels=3, slices="all")
    assert data.images.shape == (2, 100, 100, 3)
    assert len(set(data.groups)) == 1


def test_series_with_shuffled_file_names_is_read_in_anatomical_order(tmp_path):
    from btk.default_plugins.convert import write_dicom_series

    slices = [np.full((16, 16), 10 * (k + 1), np.uint8) for k in range(6)]  # slice k is brightness 10(k+1)
    names = ["f.dcm", "c.dcm", "a.dcm", "e.dcm", "b.dcm", "d.dcm"]  # alphabetical order is not z order
    write_dicom_series(slices, tmp_path / "series", "P1", file_names=names)
    import pydicom

    for p in (tmp_path / "series").iterdir():  # geometry added (as a scanner writes it, 5 mm apart), then
        ds = pydicom.dcmread(p)                # InstanceNumber scrambled: only the geometry is right
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [0, 0, 5.0 * (ds.InstanceNumber - 1)]
        ds.InstanceNumber = 7 - ds.InstanceNumber
        ds.save_as(p)
    data = _read("dicom", tmp_path / "series", slices="all")
    assert [int(im.mean()) for im in data.images] == [10, 20, 30, 40, 50, 60]


def test_nibabel_4d_volume_and_volume_choice():
    import nibabel as nib

    path = Path(nib.__file__).parent / "tests" / "data" / "example4d.nii.gz"
    shape = nib.load(path).shape
    first = _read("nifti", path, slices="all")
    assert len(first) == nib.as_closest_canonical(nib.load(path)).shape[2]
    second = _read("nifti", path, slices="all", volume="1")
    assert len(second) == len(first) and not np.array_equal(first.images, second.images)
    with pytest.raises(BtkError, match="unknown axis"):
        _read("nifti", path, axis="oblique")
    assert shape[3] >= 2


def test_nifti_orientation_is_canonical_whatever_the_affine(tmp_path):
    """A bright marker at the patient's anterior-right-superior corner appears at the top right
    of the uppermost axial slices, whether the file is stored RAS or LPI with axes swapped."""
    import nibabel as nib

    ras = np.zeros((20, 24, 10), np.float32)  # x: left->right, y: posterior->anterior, z: inferior->superior
    ras[15:19, 18:22, 7:9] = 100
    ras += 1
    nib.save(nib.Nifti1Image(ras, np.eye(4)), tmp_path / "ras.nii.gz")
    # the same head stored as (z, y, x) with x, y and z flipped: axis codes (I, P, L)
    stored = np.transpose(ras[::-1, ::-1, ::-1], (2, 1, 0))
    affine = np.array([[0, 0, -1, 19], [0, -1, 0, 23], [-1, 0, 0, 9], [0, 0, 0, 1]], float)
    nib.save(nib.Nifti1Image(stored, affine), tmp_path / "lpi.nii.gz")
    for name in ("ras.nii.gz", "lpi.nii.gz"):
        data = _read("nifti", tmp_path / name, slices="all")
        assert data.images.shape == (10, 24, 20, 1)
        bright = [k for k, im in enumerate(data.images) if im.max() > 200]
        assert bright == [7, 8], name
        rows, cols = np.nonzero(data.images[7, ..., 0] > 200)
        assert rows.max() < 24 / 2 and cols.min() > 20 / 2, name  # anterior at the top, right on the right


def test_convert_help_shows_its_example_without_a_stray_backspace_marker():
    runner = CliRunner()
    result = runner.invoke(cli, ["convert", "--help"])
    assert result.exit_code == 0, result.output
    assert "\\b" not in result.output and "\b" not in result.output
    lines = result.output.splitlines()
    example = lines.index("  Example:")  # click's \b paragraph: kept as written, on lines of its own
    assert lines[example + 1].strip() == "btk convert --data DATA/sartaj --to dicom --out converted/"
    for name in runner.invoke(cli, ["--help"]).output.split("Commands:")[1].split():
        if name in cli.commands:  # every command's help, built-in or from a plugin
            output = runner.invoke(cli, [name, "--help"]).output
            assert "\\b" not in output and "\b" not in output, name


@pytest.mark.slow
def test_dicom_round_trip_of_real_images_gives_the_same_predictions(sartaj, tmp_path):
    src = tmp_path / "src"
    for split, n in (("Training", 8), ("Testing", 3)):
        for c in ("glioma_tumor", "no_tumor"):
            (src / split / c).mkdir(parents=True)
            for f in sorted((sartaj / split / c).glob("*.jpg"))[:n]:
                shutil.copy(f, src / split / c / f.name)
    runner = CliRunner()
    converted = {}
    for kind in ("dicom", "nifti"):  # --out DIR: a new directory DIR/<time>-convert-<to>/ inside it
        result = runner.invoke(cli, ["convert", "--data", str(src), "--to", kind, "--out", str(tmp_path / "conv"),
                                     "--json"])
        assert result.exit_code == 0, result.output
        info = json.loads(result.stdout)
        converted[kind] = Path(info["folder"])
        assert info["images"] == 22 and info["format"] == kind
        assert converted[kind].parent == tmp_path / "conv" and converted[kind].name.endswith(f"-convert-{kind}")
    assert sorted(p.name for p in (tmp_path / "conv").iterdir()) == sorted(p.name for p in converted.values())
    jpeg = _read("folder", src, 64, 1)
    dicom = _read("dicom", converted["dicom"], 64, 1)
    nifti = _read("nifti", converted["nifti"], 64, 1, clip="none")
    order = lambda d: sorted(range(len(d)), key=lambda i: (d.splits[i], d.labels[i], d.images[i].tobytes()))  # noqa: E731
    for other in (dicom, nifti):
        assert np.array_equal(jpeg.images[order(jpeg)], other.images[order(other)])
    out = tmp_path / "runs"
    result = runner.invoke(cli, ["run", "--data", str(src), "--model", "small-cnn", "--image-size", "64", "--set",
                                 "channels=1", "--epochs", "1", "--out", str(out), "--reporter", "none"])
    assert result.exit_code == 0, result.output
    run_dir = next(out.iterdir())
    test_jpegs = sorted((src / "Testing").glob("*/*.jpg"))
    jpeg_args = [arg for f in test_jpegs for arg in ("--data", str(f))]
    from_jpeg = json.loads(runner.invoke(cli, ["predict", str(run_dir), *jpeg_args, "--json"]).stdout)
    from_dicom = json.loads(runner.invoke(cli, ["predict", str(run_dir), "--data", str(converted["dicom"] / "Testing"),
                                                "--json"]).output)
    assert len(from_jpeg) == len(from_dicom) == 6
    key = lambda r: tuple(round(v, 5) for v in r["probabilities"].values())  # noqa: E731
    assert sorted(map(key, from_jpeg)) == sorted(map(key, from_dicom))


@pytest.mark.slow
def test_no_patient_on_both_sides_of_a_split(tmp_path):
    from btk.default_plugins.convert import write_dicom_series
    from btk.phantoms import CLASSES, make_phantom

    for c in CLASSES[:2]:
        for p in range(8):
            rng = np.random.default_rng([CLASSES.index(c), p])
            write_dicom_series([make_phantom(c, rng, 48) for _ in range(4)], tmp_path / "data" / c / f"P{c[:2]}{p}",
                               f"P{c[:2]}{p}")
    out = tmp_path / "runs"
    result = CliRunner().invoke(cli, ["run", "--reader", "dicom", "--data", str(tmp_path / "data"), "-R", "slices=all",
                                      "--model", "small-cnn", "--image-size", "32", "--set", "channels=1",
                                      "--epochs", "1", "--set", "val_fraction=0.25", "--duplicate-threshold", "0",
                                      "--out", str(out), "--reporter", "none"])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader((next(out.iterdir()) / "split.csv").read_text().splitlines()))
    assert len(rows) == 2 * 8 * 4
    sides: dict[str, set] = {}
    for r in rows:
        sides.setdefault(r["group"], set()).add(r["subset"])
    assert len(sides) == 16 and all(len(s) == 1 for s in sides.values())
    assert {s for v in sides.values() for s in v} == {"train", "val", "test"}


def test_bad_dicom_input_is_counted(tmp_path):
    shutil.copy(_dicom_file("MR_small.dcm"), tmp_path / "good.dcm")
    (tmp_path / "notes.txt").write_text("not dicom")
    data = _read("dicom", tmp_path)
    assert len(data) == 1 and [s for s, _ in data.skipped] == ["notes.txt"]
    with pytest.raises(BtkError, match="window must be CENTER/WIDTH"):
        _read("dicom", tmp_path, window="wide")
    with pytest.raises(BtkError, match="unknown slice rule"):
        _read("dicom", tmp_path, slices="some")
    os.remove(tmp_path / "good.dcm")
    with pytest.raises(BtkError, match="no readable images"):
        _read("dicom", tmp_path)
