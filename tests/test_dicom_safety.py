"""What an input says never decides where btk writes: a UID of ``../../x`` (pydicom reads it with
only a warning) names a file inside its folder, two UIDs make two files; and a URL with a user
name or password in it is refused by every command before anything is done or written."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from click.testing import CliRunner

from btk.cli import cli

EVIL = "../../x"


def _series(folder: Path, image: np.ndarray, series: str, sop: str | None = None, slices: int = 1) -> list[Path]:
    """A converted series in ``folder`` whose SeriesInstanceUID (and SOP Instance UID of its first
    instance) is replaced by ``series`` (``sop``), as a crafted file or server would have it."""
    from btk.default_plugins.convert import write_dicom_series

    paths = write_dicom_series([image] * slices, folder, "P1")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # pydicom: "Invalid value for VR UI"
        for k, path in enumerate(paths):
            ds = pydicom.dcmread(path)
            ds.SeriesInstanceUID = series
            if sop and k == 0:
                ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = sop
            ds.save_as(path)
    return paths


def _files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


@pytest.fixture
def brain(sartaj_small) -> np.ndarray:
    import cv2

    return cv2.imread(str(sorted((sartaj_small / "Testing" / "glioma_tumor").glob("*.jpg"))[0]), cv2.IMREAD_GRAYSCALE)


def test_uids_that_climb_out_name_files_inside_the_sr_folder(sartaj_small_run, brain, tmp_path):
    data = tmp_path / "data" / "glioma_tumor" / "P1"
    sources = _series(data, brain, EVIL, EVIL)
    assert str(pydicom.dcmread(sources[0]).SeriesInstanceUID) == EVIL
    parent = tmp_path / "a" / "b" / "sr"  # ../../x.dcm from its result folder would land in a/
    before = _files(tmp_path)
    result = CliRunner().invoke(cli, ["predict", str(sartaj_small_run), "--data", str(data), "--sr", str(parent),
                                      "--maps", "--json"])
    assert result.exit_code == 0, result.output
    rows = [r for r in json.loads(result.stdout) if "dicom" in r]
    assert rows and rows[0]["dicom"]["series"] == EVIL and rows[0]["dicom"]["sop"] == EVIL  # read and predicted
    (folder,) = parent.iterdir()
    written = _files(tmp_path) - before
    assert written and all(p.resolve().is_relative_to(folder.resolve()) for p in written), sorted(written)
    from btk.file_names import uid_name

    assert (folder / f"{uid_name(EVIL)}.dcm").is_file()  # the SR
    assert (folder / "maps" / f"{uid_name(EVIL)}-gradcam.dcm").is_file()  # the Grad-CAM SEG
    assert uid_name(EVIL).startswith("uid-") and uid_name("1.2.840.10008.5.1.4.1.1.7") == "1.2.840.10008.5.1.4.1.1.7"
    sr = pydicom.dcmread(folder / f"{uid_name(EVIL)}.dcm")
    evidence = sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
    assert evidence.SeriesInstanceUID == EVIL  # the report still refers to the series as it is


def test_one_series_uid_in_two_studies_gets_two_reports(sartaj_small_run, brain, tmp_path):
    uid = "1.2.826.0.1.3680043.8.498.7"
    studies = {str(pydicom.dcmread(_series(tmp_path / "data" / "glioma_tumor" / f"P{k}", brain, uid)[0])
                   .StudyInstanceUID) for k in range(2)}
    result = CliRunner().invoke(cli, ["predict", str(sartaj_small_run), "--data", str(tmp_path / "data"), "--sr",
                                      str(tmp_path / "sr")])
    assert result.exit_code == 0, result.output
    reports = sorted((tmp_path / "sr").glob("*/*.dcm"))
    assert len(reports) == 2 and {str(pydicom.dcmread(p).StudyInstanceUID) for p in reports} == studies


def test_degrade_writes_one_copy_per_series_with_the_whole_uid_and_nothing_outside(brain, tmp_path):
    data = tmp_path / "data" / "glioma_tumor"
    uids = ["1.2.826.0.1.3680043.8.498.11", "1.2.826.0.1.3680043.8.498.12", EVIL]
    for k, uid in enumerate(uids):
        _series(data / f"S{k}", brain, uid, slices=2)
    out = tmp_path / "a" / "b" / "degraded"
    before = _files(tmp_path)
    result = CliRunner().invoke(cli, ["degrade", "--data", str(data.parent), "--reader", "dicom", "-R", "slices=all",
                                      "--degrader", "blur", "--severity", "1", "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    written = _files(tmp_path) - before
    (folder,) = out.iterdir()
    assert len(written) == 6 and all(p.resolve().is_relative_to(folder.resolve()) for p in written), sorted(written)
    names = sorted(p.relative_to(folder).as_posix() for p in written)
    assert names[:4] == [f"glioma_tumor/S{k}#{uids[k]}_{i}.png" for k in (0, 1) for i in (0, 1)]
    assert all(n.startswith("glioma_tumor/S2#uid-") for n in names[4:])


def test_degrade_keeps_two_inputs_of_one_name_apart(tmp_path):
    from btk.degraded_copies import copy_path

    used: set[Path] = set()
    first = copy_path(tmp_path, "c/a.jpg", None, "", used)
    second = copy_path(tmp_path, "c/a.png", None, "", used)
    assert (first.name, second.name) == ("a.png", "a-2.png")
    assert copy_path(tmp_path, "studies/1.2/series/1.2.3.4", None, "", used).name == "1.2.3.4.png"
    assert copy_path(tmp_path, "../../up.jpg", None, "", used).resolve().is_relative_to(tmp_path.resolve())


URL = "http://alice:s3cret-pw-42@127.0.0.1:9/dicom-web"

COMMANDS = {
    "run": ["run", "--data", URL, "--out", "OUT"],
    "run --set": ["run", "--set", f"data={URL}", "--out", "OUT"],
    "plan": ["plan", "--seeds", "1,2", "--data", URL, "--out", "OUT"],
    "ensemble": ["ensemble", "--train", "2", "--data", URL, "--out", "OUT"],
    "evaluate": ["evaluate", "RUN", "--data", URL],
    "predict": ["predict", "RUN", "--data", URL],
    "predict --store": ["predict", "RUN", "--data", "DATA", "--sr", "OUT", "--store", URL],
    "explain": ["explain", "RUN", "--data", URL, "--out", "OUT"],
    "adapt": ["adapt", "RUN", "--data", URL, "--out", "OUT"],
    "calibrate": ["calibrate", "RUN", "--data", URL, "--out", "OUT"],
    "audit": ["audit", "--data", URL],
    "audit --against": ["audit", "--data", "DATA", "--against", URL],
    "degrade": ["degrade", "--data", URL, "--degrader", "blur", "--severity", "1", "--out", "OUT"],
    "convert": ["convert", "--data", URL, "--to", "dicom", "--out", "OUT"],
}


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_a_url_with_credentials_is_refused_in_one_line_before_anything_is_written(name, old_run, tmp_path):
    """Every command that takes --data (and --store, --against): exit 1, one line naming the
    environment variables, the password nowhere, nothing written (the run included)."""
    data = tmp_path / "images"
    data.mkdir()
    args = [{"RUN": str(old_run), "OUT": str(tmp_path / "out"), "DATA": str(data)}.get(a, a) for a in COMMANDS[name]]
    before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")}
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1, result.output
    assert "s3cret-pw-42" not in result.stdout + result.stderr and "alice" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: --"), result.output
    assert "BTK_DICOMWEB_USER" in lines[0] and "BTK_DICOMWEB_TOKEN" in lines[0] and "127.0.0.1:9/dicom-web" in lines[0]
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")} == before  # nothing new, nothing touched
