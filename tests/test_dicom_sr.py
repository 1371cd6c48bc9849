"""What a btk SR asserts: Present and Absent only for a confident answer; an uncertain one (below
--min-confidence) says Indeterminate, asserts nothing about any class and still gives each
class's probability. Read back with pydicom, and checked by dciodvfy where it is installed."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pydicom
import pytest

import btk

PRESENT, ABSENT, INDETERMINATE = "52101004", "272519000", "82334004"
CLASSES = ("glioma_tumor", "meningioma_tumor", "no_tumor", "pituitary_tumor")
CODES = {"glioma_tumor": "393564001", "meningioma_tumor": "302820008", "no_tumor": "no_tumor",
         "pituitary_tumor": "254956000"}


def _items(sequence):
    for item in sequence or []:
        yield item
        yield from _items(getattr(item, "ContentSequence", None))


def _answer_group(sr) -> dict:
    """The "btk answer" measurement group: its finding and its qualitative evaluations
    (class code -> evaluation code)."""
    for group in _items(sr.ContentSequence):
        children = list(getattr(group, "ContentSequence", []))
        ids = [c.TextValue for c in children if c.ConceptNameCodeSequence[0].CodeValue == "112039"]
        if ids == ["btk answer"]:
            finding = next(c.ConceptCodeSequence[0].CodeValue for c in children
                           if c.ConceptNameCodeSequence[0].CodeValue == "121071")
            evaluations = {c.ConceptNameCodeSequence[0].CodeValue: c.ConceptCodeSequence[0].CodeValue
                           for c in children if c.ValueType == "CODE"
                           and c.ConceptNameCodeSequence[0].CodeValue in CODES.values()}
            return {"finding": finding, "evaluations": evaluations}
    raise AssertionError("no btk answer group")


def _probabilities(sr) -> dict[str, float]:
    """Each class's probability (finding code -> value) from the per-class groups."""
    out = {}
    for group in _items(sr.ContentSequence):
        children = list(getattr(group, "ContentSequence", []))
        finding = [c.ConceptCodeSequence[0].CodeValue for c in children
                   if c.ConceptNameCodeSequence[0].CodeValue == "121071"]
        values = [float(c.MeasuredValueSequence[0].NumericValue) for c in children
                  if c.ConceptNameCodeSequence[0].CodeValue == "122157"]
        if finding and values:
            out[finding[0]] = values[0]
    return out


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    from btk.default_plugins.convert import write_dicom_series

    rng = np.random.default_rng(0)
    folder = tmp_path_factory.mktemp("series")
    paths = write_dicom_series([rng.integers(0, 255, (16, 16), dtype=np.uint8) for _ in range(2)], folder, "P1")
    headers = [pydicom.dcmread(p, stop_before_pixels=True) for p in paths]
    identities = [{"sop": str(h.SOPInstanceUID), "sop_class": str(h.SOPClassUID), "study": str(h.StudyInstanceUID),
                   "series": str(h.SeriesInstanceUID)} for h in headers]
    return headers, identities


def _report(source, answer: str, probabilities: dict[str, float], tmp_path: Path) -> tuple[Path, pydicom.Dataset]:
    from btk.default_plugins.dicom_sr import build_series_report

    headers, identities = source
    run = SimpleNamespace(name="20261207-000000-test", temperature=1.25)
    sr = build_series_report(run, identities, probabilities, answer, headers, "ab" * 32, len(headers),
                             min_confidence=0.6)
    path = tmp_path / f"{answer}.dcm"
    sr.save_as(path, enforce_file_format=True)
    return path, pydicom.dcmread(path)


def test_an_uncertain_answer_asserts_no_presence_or_absence_and_keeps_every_probability(source, tmp_path):
    probs = {"glioma_tumor": 0.41, "meningioma_tumor": 0.38, "no_tumor": 0.12, "pituitary_tumor": 0.09}
    _, sr = _report(source, "uncertain", probs, tmp_path)
    answer = _answer_group(sr)
    assert answer["finding"] == INDETERMINATE and answer["evaluations"] == {}
    codes = {item.ConceptCodeSequence[0].CodeValue for item in _items(sr.ContentSequence)
             if item.ValueType == "CODE"}
    assert PRESENT not in codes and ABSENT not in codes  # nowhere in the report
    found = _probabilities(sr)
    assert {c: round(found[CODES[c]], 6) for c in CLASSES} == probs
    assert sr.SeriesDescription.startswith("btk uncertain")


def test_a_confident_answer_says_present_for_it_and_absent_for_the_others(source, tmp_path):
    probs = {"glioma_tumor": 0.05, "meningioma_tumor": 0.85, "no_tumor": 0.06, "pituitary_tumor": 0.04}
    _, sr = _report(source, "meningioma_tumor", probs, tmp_path)
    answer = _answer_group(sr)
    assert answer["finding"] == CODES["meningioma_tumor"]
    assert answer["evaluations"] == {CODES[c]: PRESENT if c == "meningioma_tumor" else ABSENT for c in CLASSES}
    assert {c: round(v, 6) for c, v in _probabilities(sr).items()} == {CODES[c]: p for c, p in probs.items()}


@pytest.mark.skipif(shutil.which("dciodvfy") is None,
                    reason="dciodvfy is not installed (apt-get install dicom3tools; .ci/run does)")
def test_both_kinds_of_report_pass_dciodvfy(source, tmp_path):
    probs = {"glioma_tumor": 0.41, "meningioma_tumor": 0.38, "no_tumor": 0.12, "pituitary_tumor": 0.09}
    for answer in ("uncertain", "glioma_tumor"):
        path, _ = _report(source, answer, probs, tmp_path)
        out = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True)
        errors = [line for line in (out.stdout + out.stderr).splitlines() if line.startswith("Error")]
        assert errors == [], (answer, errors)
        assert "Comprehensive3DSR" in out.stdout + out.stderr


def test_the_same_sources_model_and_calibration_give_the_same_uids_and_another_calibration_others(source):
    from btk.default_plugins.dicom_sr import build_series_report

    headers, identities = source
    probs = {"glioma_tumor": 0.7, "meningioma_tumor": 0.1, "no_tumor": 0.1, "pituitary_tumor": 0.1}

    def uids(temperature: float, model: str = "ab" * 32, slices: int = 2, tta: bool = False) -> tuple[str, str]:
        run = SimpleNamespace(name="20261207-000000-test", temperature=temperature)
        sr = build_series_report(run, identities[:slices], probs, "glioma_tumor", headers[:slices], model, slices,
                                 tta=tta)
        assert (sr.Manufacturer, sr.DeviceSerialNumber, sr.SoftwareVersions) == ("btk", model, btk.__version__)
        return str(sr.SeriesInstanceUID), str(sr.SOPInstanceUID)

    first = uids(1.25)
    assert uids(1.25) == first  # again: the same
    assert uids(1.5)[0] != first[0] and uids(1.5)[1] != first[1]  # another temperature
    assert uids(1.25, "cd" * 32)[1] != first[1]  # another model
    assert uids(1.25, slices=1)[0] == first[0] and uids(1.25, slices=1)[1] != first[1]  # other sources, same series
    with_tta = uids(1.25, tta=True)  # the same model scored with test-time augmentation: other results
    assert with_tta[0] != first[0] and with_tta[1] != first[1]
