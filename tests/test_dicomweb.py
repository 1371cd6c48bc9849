"""The hospital's language: DICOMweb in, DICOM SR out, against a real Orthanc; what btk writes as
DICOM checked by a real validator (dciodvfy)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
from click.testing import CliRunner

from btk.cli import cli
from btk.testing import orthanc_missing, orthanc_server

pytestmark = pytest.mark.slow

NEEDS_ORTHANC = pytest.mark.skipif(orthanc_missing() is not None,
                                   reason=f"no local PACS: {orthanc_missing()} (.ci/run installs it)")
NEEDS_DCIODVFY = pytest.mark.skipif(shutil.which("dciodvfy") is None,
                                    reason="dciodvfy is not installed (apt-get install dicom3tools; .ci/run does)")


def _ok(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 0, result.output
    return result.stdout


def _error(*args: str, env: dict[str, str] | None = None) -> str:
    result = CliRunner().invoke(cli, list(args), env=env)
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1, result.output
    return lines[0]


@pytest.fixture(scope="module")
def converted(tmp_path_factory, sartaj_small) -> Path:
    """SARTAJ Testing images (3 per class) written by ``btk convert`` as four 3-slice series."""
    out = tmp_path_factory.mktemp("converted")
    _ok("convert", "--data", str(sartaj_small / "Testing"), "--to", "dicom", "--out", str(out), "--per-patient", "3")
    return next(out.iterdir())


@pytest.fixture(scope="module")
def run_dir(sartaj_small_run) -> Path:
    return sartaj_small_run


@pytest.fixture(scope="module")
def pacs(tmp_path_factory, converted):
    """Orthanc with its DICOMweb plugin on a free loopback port, holding the converted series."""
    with orthanc_server(tmp_path_factory.mktemp("orthanc")) as server:
        server.upload(sorted(converted.rglob("*.dcm")))
        yield server


@NEEDS_ORTHANC
def test_predict_through_dicomweb_stores_an_sr_that_says_what_the_csv_says(pacs, converted, run_dir, tmp_path):
    from dicomweb_client.api import DICOMwebClient

    glioma = next((converted / "glioma_tumor").iterdir())  # one patient's series
    study = pydicom.dcmread(next(glioma.glob("*.dcm"))).StudyInstanceUID
    # the same series from files and through DICOMweb: the same probabilities, slice by slice
    local = json.loads(_ok("predict", str(run_dir), "--data", str(glioma), "--json"))
    remote = json.loads(_ok("predict", str(run_dir), "--data", pacs.dicomweb, "-R", f"study={study}", "--json",
                            "--sr", str(tmp_path / "sr"), "--maps", "--store", pacs.dicomweb))
    by_sop = {r["dicom"]["sop"]: r["probabilities"] for r in local if "dicom" in r}
    slices = [r for r in remote if "dicom" in r]
    assert len(slices) == 3 and {r["dicom"]["sop"] for r in slices} == set(by_sop)
    for r in slices:
        assert all(abs(r["probabilities"][c] - by_sop[r["dicom"]["sop"]][c]) < 1e-6 for c in r["probabilities"])
    # the SR, read back from the server through DICOMweb
    client = DICOMwebClient(pacs.dicomweb)
    found = client.search_for_instances(study_instance_uid=study, search_filters={"Modality": "SR"})
    assert len(found) == 1
    record = pydicom.Dataset.from_json(found[0])
    sr = client.retrieve_instance(study, record.SeriesInstanceUID, record.SOPInstanceUID)
    assert sr.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.34"  # Comprehensive 3D SR
    source = pydicom.dcmread(next(glioma.glob("*.dcm")))
    assert (sr.PatientID, sr.StudyInstanceUID) == (source.PatientID, source.StudyInstanceUID)
    evidence = sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0].ReferencedSOPSequence
    assert {e.ReferencedSOPInstanceUID for e in evidence} == set(by_sop)  # every source instance
    groups = _groups(sr)
    classes = list(slices[0]["probabilities"])
    mean = {c: float(np.mean([r["probabilities"][c] for r in slices])) for c in classes}
    answer = max(mean, key=mean.get)
    codes = {"glioma_tumor": ("393564001", "SCT"), "meningioma_tumor": ("302820008", "SCT"),
             "no_tumor": ("no_tumor", "99BTK"), "pituitary_tumor": ("254956000", "SCT")}
    assert groups["btk answer"]["finding"] == codes[answer]
    assert groups["btk answer"]["references"] == set(by_sop)
    for c in classes:  # each class's probability is the mean of the CSV's slice probabilities
        group = groups[f"btk probability {c}"]
        assert group["finding"] == codes[c] and abs(group["probability"] - mean[c]) < 1e-6
        assert group["unit"] == ("1", "UCUM")
    device = _device(sr)
    model_sha = __import__("hashlib").sha256((run_dir / "model.keras").read_bytes()).hexdigest()
    assert device["name"] == "btk" and device["serial"] == model_sha
    # each slice's heat map: a fractional SEG of its source instance, on the source's pixel grid
    segs = client.search_for_instances(study_instance_uid=study, search_filters={"Modality": "SEG"})
    assert len(segs) == 3
    for found_seg in segs:
        ref = pydicom.Dataset.from_json(found_seg)
        seg = client.retrieve_instance(study, ref.SeriesInstanceUID, ref.SOPInstanceUID)
        assert seg.SegmentationType == "FRACTIONAL" and seg.SegmentationFractionalType == "PROBABILITY"
        source_uid = seg.SourceImageSequence[0].ReferencedSOPInstanceUID
        assert source_uid in by_sop
        sources = [pydicom.dcmread(f) for f in glioma.glob("*.dcm")]
        source = next(d for d in sources if d.SOPInstanceUID == source_uid)
        assert (seg.Rows, seg.Columns) == (source.Rows, source.Columns) and seg.pixel_array.max() > 0


def test_a_map_of_the_framed_view_goes_back_where_the_view_was_cut_from():
    """A head off centre in a wide image: the network sees the square around it, resized; the
    map of that view put back (unframe) lies on the head, and nothing falls outside the square."""
    import cv2

    from btk.framing import frame_with_box, unframe

    image = np.zeros((300, 420), np.uint8)
    cv2.ellipse(image, (300, 120), (70, 90), 0, 0, 360, 200, -1)  # the head, right of centre
    view, box = frame_with_box(image, 64, "head")
    assert box is not None
    back = unframe(view.astype(np.float32) / 255, image.shape, box)
    assert back.shape == image.shape
    assert np.corrcoef(back.ravel(), image.ravel() / 255)[0, 1] > 0.95
    top, left, side = box
    outside = np.ones(image.shape, bool)
    outside[max(top, 0):top + side, max(left, 0):left + side] = False
    assert outside.any() and back[outside].max() == 0
    whole = unframe(np.ones((64, 64), np.float32), image.shape, None)  # no crop: the whole image
    assert whole.shape == image.shape and whole.min() == 1.0


def _content(items) -> list:
    return list(items or [])


def _groups(sr) -> dict[str, dict]:
    """The measurement groups of a TID 1500 report by tracking identifier: finding code,
    probability value and unit, and the SOP instances referenced."""
    out = {}
    for container in _content(sr.ContentSequence):
        if container.ConceptNameCodeSequence[0].CodeValue != "126010":  # Imaging Measurements
            continue
        for group in _content(container.ContentSequence):
            info: dict = {"references": set()}
            for item in _content(group.ContentSequence):
                name = item.ConceptNameCodeSequence[0].CodeValue
                if name == "112039":  # Tracking Identifier
                    info["id"] = item.TextValue
                elif name == "121071":  # Finding
                    code = item.ConceptCodeSequence[0]
                    info["finding"] = (code.CodeValue, code.CodingSchemeDesignator)
                elif name == "122157":  # Probability
                    value = item.MeasuredValueSequence[0]
                    info["probability"] = float(value.NumericValue)
                    unit = value.MeasurementUnitsCodeSequence[0]
                    info["unit"] = (unit.CodeValue, unit.CodingSchemeDesignator)
                elif item.ValueType == "IMAGE":
                    info["references"].add(item.ReferencedSOPSequence[0].ReferencedSOPInstanceUID)
            out[info["id"]] = info
    return out


def _device(sr) -> dict[str, str]:
    names = {"121012": "uid", "121013": "name", "121014": "manufacturer", "121015": "model", "121016": "serial"}
    out = {}
    for item in _content(sr.ContentSequence):
        key = names.get(item.ConceptNameCodeSequence[0].CodeValue)
        if key:
            out[key] = getattr(item, "TextValue", None) or getattr(item, "UID", "")
    return out


@NEEDS_ORTHANC
def test_bad_servers_and_stores_are_one_line_and_keep_nothing_secret(pacs, run_dir, tmp_path):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        down = f"http://127.0.0.1:{s.getsockname()[1]}/dicom-web"
    line = _error("predict", str(run_dir), "--data", down, "-R", "all=yes")
    assert line.startswith("Error: cannot reach the DICOMweb server at http://127.0.0.1:") and "is it running?" in line
    line = _error("predict", str(run_dir), "--data", pacs.dicomweb, "-R", "study=1.2.3.4.5")
    assert line.endswith("for study=1.2.3.4.5") and "no instances at" in line
    kept_here = tmp_path / "kept"
    with orthanc_server(tmp_path / "locked", auth=("alice", "s3cret-pw")) as locked:
        secret = {"BTK_DICOMWEB_USER": "alice", "BTK_DICOMWEB_PASSWORD": "wrong-pw-123"}
        line = _error("predict", str(run_dir), "--data", locked.dicomweb, "-R", "all=yes", env=secret)
        assert "401" in line and "BTK_DICOMWEB_USER" in line and "wrong-pw-123" not in line
        # a store refused: one line, the local SRs kept
        result = CliRunner().invoke(cli, ["predict", str(run_dir), "--data", pacs.dicomweb, "-R", "all=yes",
                                          "--sr", str(kept_here), "--store", locked.dicomweb], env=secret)
        assert result.exit_code == 1 and "Traceback" not in result.output
        errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
        assert len(errors) == 1 and "401" in errors[0] and "they are kept in" in errors[0]
        assert "wrong-pw-123" not in result.output
        assert list(kept_here.glob("*/*.dcm")) and not list(kept_here.glob(".*"))


@NEEDS_ORTHANC
def test_a_series_of_reports_is_not_an_image(pacs, run_dir, tmp_path):
    from btk.default_plugins.convert import write_dicom_series

    # a study holding only an SR: store one made from a converted series elsewhere
    image = np.full((32, 32), 100, np.uint8)
    files = write_dicom_series([image], tmp_path / "one", "LONE")
    with orthanc_server(tmp_path / "pacs2") as other:
        other.upload(files)
        _ok("predict", str(run_dir), "--data", other.dicomweb, "-R", "all=yes", "--sr", str(tmp_path / "sr"),
            "--store", other.dicomweb)
        for orthanc_id in other.get("/instances"):
            tags = other.get(f"/instances/{orthanc_id}/simplified-tags")
            if tags.get("Modality") != "SR":
                import requests

                requests.delete(f"{other.url}/instances/{orthanc_id}", timeout=30).raise_for_status()
        result = CliRunner().invoke(cli, ["predict", str(run_dir), "--data", other.dicomweb, "-R", "all=yes"])
        assert result.exit_code == 1 and "Traceback" not in result.output
        assert "not images: 1 Comprehensive 3D SR Storage (all btk's own results)" in result.output
        assert "1 input(s) of non-image objects skipped" in result.output
        assert "Error: nothing could be read to predict" in result.output


@NEEDS_DCIODVFY
def test_what_btk_writes_as_dicom_passes_dciodvfy(converted, run_dir, tmp_path):
    files = sorted(converted.rglob("*.dcm"))[:2]
    _ok("predict", str(run_dir), "--data", str(files[0].parent), "--sr", str(tmp_path / "confident"))
    # a 1-epoch network is never 99.9% sure: the answer is uncertain, and its SR asserts no class
    _ok("predict", str(run_dir), "--data", str(files[0].parent), "--sr", str(tmp_path / "uncertain"),
        "--min-confidence", "0.999")
    reports = list(tmp_path.glob("*/*/*.dcm"))
    assert len(reports) == 2
    uncertain = pydicom.dcmread(next((tmp_path / "uncertain").glob("*/*.dcm")))
    assert uncertain.SeriesDescription.startswith("btk uncertain")
    codes, todo = set(), _content(uncertain.ContentSequence)
    while todo:  # every content item of the tree
        item = todo.pop()
        todo += _content(getattr(item, "ContentSequence", None))
        if item.ValueType == "CODE":
            codes.add(item.ConceptCodeSequence[0].CodeValue)
    assert "82334004" in codes and not codes & {"52101004", "272519000"}  # Indeterminate; no Present, no Absent
    for path in [*files, *reports]:
        out = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True)
        errors = [line for line in (out.stdout + out.stderr).splitlines() if line.startswith("Error")]
        assert errors == [], (path.name, errors)


def _patient(converted: Path, kind: str) -> tuple[Path, str, str]:
    """One converted patient of class ``kind``: its folder, study and series UIDs."""
    folder = next((converted / kind).iterdir())
    ds = pydicom.dcmread(next(folder.glob("*.dcm")))
    return folder, str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID)


def _flat(text: str) -> str:
    return " ".join(text.split())  # the terminal wraps long lines


@NEEDS_ORTHANC
def test_a_search_without_a_scope_or_with_an_unknown_key_is_one_line_and_reads_nothing(pacs, converted, run_dir):
    _, study, _ = _patient(converted, "meningioma_tumor")
    for args, words in ((["-R", f"stduy={study}"], ["unknown option(s) stduy", "study, series", "all", "StudyDate"]),
                        ([], ["no scope", "-R study=UID", "-R all=yes"]),
                        (["-R", "Modality=MR"], ["no scope"])):  # a filter is no scope
        result = CliRunner().invoke(cli, ["predict", str(run_dir), "--data", pacs.dicomweb, "--json", *args])
        assert result.exit_code == 1 and "Traceback" not in result.output, result.output
        errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
        assert len(errors) == 1 and all(w in errors[0] for w in words), (args, errors)
        assert json.loads(result.stdout.strip() or "[]") == []  # not one row


@NEEDS_ORTHANC
def test_a_printed_study_or_series_url_reads_that_study_or_series(pacs, converted, run_dir):
    _, study, series = _patient(converted, "pituitary_tumor")
    rows = json.loads(_ok("predict", str(run_dir), "--data", pacs.dicomweb, "-R", f"study={study}", "--json"))
    printed = {r["path"] for r in rows}
    assert printed == {f"{pacs.dicomweb.rstrip('/')}/studies/{study}/series/{series}"}
    url = printed.pop()
    for data in (url, url.rsplit("/series/", 1)[0], url + "/"):  # the series, its study
        again = json.loads(_ok("predict", str(run_dir), "--data", data, "--json"))
        assert [(r["path"], r["slice"], r["probabilities"]) for r in again] == \
            [(r["path"], r["slice"], r["probabilities"]) for r in rows]
    line = _error("predict", str(run_dir), "--data", url, "-R", "study=1.2.3")
    assert "study=1.2.3 contradicts the study of --data" in line
    # one instance's URL (as the JSON names each slice): that slice alone, retrieved alone
    middle = rows[1]
    sop = middle["dicom"]["sop"]
    [one] = json.loads(_ok("predict", str(run_dir), "--data", f"{url}/instances/{sop}", "--json"))
    assert one["path"] == f"{url}/instances/{sop}" and one["dicom"]["sop"] == sop
    assert one["probabilities"] == middle["probabilities"]
    assert "no instances at" in _error("predict", str(run_dir), "--data", f"{url}/instances/1.2.3")


@NEEDS_ORTHANC
def test_a_rerun_predicts_the_images_only_stores_nothing_twice_and_the_sr_references_its_maps(
        pacs, converted, run_dir, tmp_path):
    from dicomweb_client.api import DICOMwebClient

    folder, study, _ = _patient(converted, "meningioma_tumor")
    sources = {pydicom.dcmread(f).SOPInstanceUID for f in folder.glob("*.dcm")}
    url = f"{pacs.dicomweb.rstrip('/')}/studies/{study}"
    first = CliRunner().invoke(cli, ["predict", str(run_dir), "--data", url, "--sr", str(tmp_path / "a"), "--maps",
                                     "--store", pacs.dicomweb])
    assert first.exit_code == 0, first.output
    assert "4 object(s) stored (already stored: 0)" in _flat(first.output)  # the SR and 3 maps
    # again, on the study that now holds btk's SR and maps: the images only, and nothing new stored
    second = CliRunner().invoke(cli, ["predict", str(run_dir), "--data", url, "--json", "--sr", str(tmp_path / "b"),
                                      "--maps", "--store", pacs.dicomweb])
    assert second.exit_code == 0, second.output
    rows = json.loads(second.stdout)
    assert {r["dicom"]["sop"] for r in rows if "dicom" in r} == sources and len([r for r in rows if "dicom" in r]) == 3
    said = _flat(second.output)
    assert "not images: 3 Segmentation Storage (all btk's own results)" in said
    assert "not images: 1 Comprehensive 3D SR Storage (all btk's own results)" in said
    assert "2 input(s) of non-image objects skipped" in said
    assert "0 object(s) stored (already stored: 4)" in said
    client = DICOMwebClient(pacs.dicomweb)
    segs = [pydicom.Dataset.from_json(r) for r in
            client.search_for_instances(study_instance_uid=study, search_filters={"Modality": "SEG"})]
    srs = [pydicom.Dataset.from_json(r) for r in
           client.search_for_instances(study_instance_uid=study, search_filters={"Modality": "SR"})]
    assert len(segs) == 3 and len({s.SeriesInstanceUID for s in segs}) == 1 and len(srs) == 1  # one map series
    # the SR: a full equipment module, and its maps referenced as evidence of the same procedure
    sr = client.retrieve_instance(study, srs[0].SeriesInstanceUID, srs[0].SOPInstanceUID)
    model_sha = __import__("hashlib").sha256((run_dir / "model.keras").read_bytes()).hexdigest()
    assert (sr.Manufacturer, sr.DeviceSerialNumber) == ("btk", model_sha)
    assert sr.ManufacturerModelName.startswith("btk ") and sr.SoftwareVersions
    evidence = {ref.ReferencedSOPInstanceUID: item.SeriesInstanceUID
                for study_item in sr.CurrentRequestedProcedureEvidenceSequence
                for item in study_item.ReferencedSeriesSequence for ref in item.ReferencedSOPSequence}
    assert {s.SOPInstanceUID for s in segs} | sources == set(evidence)
    assert {evidence[s.SOPInstanceUID] for s in segs} == {segs[0].SeriesInstanceUID}
    # the same from files: the source slices with btk's SR and maps beside them, the images only read
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for f in [*folder.glob("*.dcm"), *(tmp_path / "b").glob("*/*.dcm"), *(tmp_path / "b").glob("*/maps/*.dcm")]:
        shutil.copy(f, mixed / f"{len(list(mixed.iterdir()))}.dcm")
    result = CliRunner().invoke(cli, ["predict", str(run_dir), "--data", str(mixed), "--json"])
    assert result.exit_code == 0, result.output
    assert {r["dicom"]["sop"] for r in json.loads(result.stdout) if "dicom" in r} == sources
    assert "not images: 3 Segmentation Storage (all btk's own results)" in _flat(result.output)
    if shutil.which("dciodvfy"):
        for path in [*(tmp_path / "b").glob("*/*.dcm"), next((tmp_path / "b").glob("*/maps/*.dcm"))]:
            out = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True)
            errors = [line for line in (out.stdout + out.stderr).splitlines() if line.startswith("Error")]
            assert errors == [], (path.name, errors)
