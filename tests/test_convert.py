"""``btk convert`` keeps every image as it is: no slice resized to another's shape (the
probabilities of the converted series are those of the JPEGs), no invented geometry, the source
named in each instance; synthetic patients that no other conversion shares; valid DICOM."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pydicom
import pytest
from click.testing import CliRunner

from btk.cli import cli


def _convert(data: Path, out: Path, *extra: str) -> Path:
    result = CliRunner().invoke(cli, ["convert", "--data", str(data), "--to", "dicom", "--out", str(out), "--json",
                                      *extra])
    assert result.exit_code == 0, result.output
    return Path(json.loads(result.stdout)["folder"])


def _instances(folder: Path) -> list[pydicom.Dataset]:
    return [pydicom.dcmread(p) for p in sorted(folder.rglob("*.dcm"))]


@pytest.fixture(scope="module")
def mixed(tmp_path_factory, sartaj_small) -> Path:
    """Test JPEGs of two classes, four each, of several sizes."""
    root = tmp_path_factory.mktemp("mixed") / "data"
    for c in ("glioma_tumor", "no_tumor"):
        (root / c).mkdir(parents=True)
        for f in sorted((sartaj_small / "Training" / c).glob("*.jpg"))[:4]:
            shutil.copy(f, root / c / f.name)
    return root


def test_converted_series_keep_every_pixel_and_predict_as_the_jpegs(mixed, sartaj_small_run, tmp_path):
    shapes = {cv2.imread(str(f), cv2.IMREAD_GRAYSCALE).shape for f in mixed.rglob("*.jpg")}
    assert len(shapes) >= 3  # images of mixed sizes
    folder = _convert(mixed, tmp_path / "conv", "--per-patient", "4")
    instances = _instances(folder)
    assert len(instances) == 8
    by_source = {}
    for ds in instances:
        assert ds.DerivationDescription.startswith("btk convert of ")  # the source, in a standard attribute
        source = ds.DerivationDescription.removeprefix("btk convert of ")
        jpeg = cv2.imread(str(mixed / source), cv2.IMREAD_GRAYSCALE)
        assert (ds.Rows, ds.Columns) == jpeg.shape and np.array_equal(ds.pixel_array, jpeg), source  # exactly
        assert "PixelSpacing" not in ds and "ImagerPixelSpacing" not in ds and "NominalScannedPixelSpacing" not in ds
        assert ds.PatientOrientation in (None, "")  # Type 2, empty: a JPEG says no orientation
        by_source[ds.SOPInstanceUID] = source
    series: dict[str, list] = {}
    for ds in instances:
        series.setdefault(ds.SeriesInstanceUID, []).append((ds.Rows, ds.Columns))
    assert sorted(map(len, series.values())) == [4, 4] and any(len(set(s)) > 1 for s in series.values())  # mixed
    assert sorted(by_source.values()) == sorted(f.relative_to(mixed).as_posix() for f in mixed.rglob("*.jpg"))
    runner = CliRunner()
    from_dicom = runner.invoke(cli, ["predict", str(sartaj_small_run), "--data", str(folder), "-R", "slices=all",
                                     "--json"])
    assert from_dicom.exit_code == 0, from_dicom.output
    jpegs = [arg for f in sorted(mixed.rglob("*.jpg")) for arg in ("--data", str(f))]
    from_jpeg = runner.invoke(cli, ["predict", str(sartaj_small_run), *jpegs, "--json"])
    assert from_jpeg.exit_code == 0, from_jpeg.output
    expected = {Path(r["path"]).relative_to(mixed).as_posix(): r["probabilities"] for r in json.loads(from_jpeg.stdout)}
    got = {by_source[r["dicom"]["sop"]]: r["probabilities"] for r in json.loads(from_dicom.stdout)
           if r.get("aggregated_over") is None}
    assert got.keys() == expected.keys() and len(got) == 8
    for source, probs in got.items():
        assert max(abs(probs[c] - expected[source][c]) for c in probs) < 1e-6, source


def test_a_volume_is_one_grid_of_unchanged_images(mixed, tmp_path):
    import nibabel as nib

    result = CliRunner().invoke(cli, ["convert", "--data", str(mixed), "--to", "nifti", "--out", str(tmp_path),
                                      "--per-patient", "4", "--json"])
    assert result.exit_code == 0, result.output
    volumes = [np.asarray(nib.load(p).dataobj) for p in Path(json.loads(result.stdout)["folder"]).rglob("*.nii.gz")]
    assert len(volumes) > 2  # four images of a class, of several sizes: several volumes
    slices = sorted(np.flipud(v[..., z].T).tobytes() for v in volumes for z in range(v.shape[-1]))
    jpegs = sorted(cv2.imread(str(f), cv2.IMREAD_GRAYSCALE).tobytes() for f in mixed.rglob("*.jpg"))
    assert slices == jpegs


def test_patients_and_uids_are_the_contents_own(mixed, tmp_path):
    """The same folder twice: the same patient IDs and UIDs. A folder of the same names but other
    pixels (the next batch of an export): no patient ID, study or instance UID in common."""
    first = _instances(_convert(mixed, tmp_path / "a"))
    again = _instances(_convert(mixed, tmp_path / "b"))
    other = tmp_path / "other"
    for f in mixed.rglob("*.jpg"):  # the same names, other images
        (other / f.parent.name).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(other / f.relative_to(mixed)), 255 - cv2.imread(str(f), cv2.IMREAD_GRAYSCALE))
    third = _instances(_convert(other, tmp_path / "c"))
    ids = lambda dss, key: {str(ds.get(key)) for ds in dss}  # noqa: E731
    for key in ("PatientID", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
        assert ids(first, key) == ids(again, key)
        assert not ids(first, key) & ids(third, key), key
    assert len(ids(first, "PatientID")) == len(first)  # --per-patient 1: a patient per image
    assert all(pid.startswith("SYN") and len(pid) == 19 for pid in ids(first, "PatientID"))


def test_a_colour_image_is_kept_in_colour(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "data" / "a").mkdir(parents=True)
    colour = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "data" / "a" / "c.png"), colour)
    (ds,) = _instances(_convert(tmp_path / "data", tmp_path / "out"))
    assert ds.PhotometricInterpretation == "RGB" and np.array_equal(ds.pixel_array, colour[..., ::-1])


@pytest.mark.skipif(shutil.which("dciodvfy") is None,
                    reason="dciodvfy is not installed (apt-get install dicom3tools; .ci/run does)")
def test_converted_instances_pass_dciodvfy(mixed, tmp_path):
    rng = np.random.default_rng(1)
    shutil.copytree(mixed / "no_tumor", tmp_path / "data" / "no_tumor")
    cv2.imwrite(str(tmp_path / "data" / "no_tumor" / "colour.png"), rng.integers(0, 256, (24, 32, 3), np.uint8))
    paths = sorted(_convert(tmp_path / "data", tmp_path / "out").rglob("*.dcm"))
    grey = next(p for p in paths if pydicom.dcmread(p).PhotometricInterpretation == "MONOCHROME2")
    rgb = next(p for p in paths if pydicom.dcmread(p).PhotometricInterpretation == "RGB")
    for path in (grey, rgb):
        out = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True)
        errors = [line for line in (out.stdout + out.stderr).splitlines() if line.startswith("Error")]
        assert errors == [] and "SCImage" in out.stdout + out.stderr, (path.name, errors)
