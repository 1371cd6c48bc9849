"""btk's answers as DICOM: one Structured Report per series (highdicom), stored back by STOW-RS.

Each series ``btk predict`` read from DICOM (files or DICOMweb) gets one Comprehensive 3D SR
holding a TID 1500 Measurement Report:

- **Equipment and observer**: a device, btk, identified by its version and the run (the model
  file's SHA-256 as its serial number), in the General Equipment module (Manufacturer,
  Manufacturer's Model Name, Software Versions, Device Serial Number) and as the document's
  observer; the algorithm identification, once, in the answer's group, with the run, the
  model's SHA-256, the temperature and the aggregation as its parameters (the IHE AI Results
  profile's ModelInfo).
- **Imaging Measurements**: a first group whose finding is the series' answer (the class of the
  highest mean probability, or *Indeterminate* below ``--min-confidence``). A confident answer
  carries a qualitative evaluation per class: *Present* for the answer, *Absent* for the others.
  An indeterminate one carries none: btk does not know, so it asserts neither the presence nor
  the absence of any class. Then a group per class whose finding is the class, holding its
  calibrated probability as a numeric measurement (DCM 122157 *Probability*, unit UCUM ``1``),
  whatever the answer.
- Every group references every source SOP instance (and frame) of the series; the patient and
  study attributes are copied from the source by highdicom. The Current Requested Procedure
  Evidence lists the sources and the series' Grad-CAM Segmentations (``--maps``: one result
  series per source series).
- **The same result, the same UIDs**: the SR's and the maps' Series and SOP Instance UIDs are
  derived (:func:`result_uid`) from the source series and instances, the model's SHA-256 and the
  run's calibration (:func:`calibration_key`), so ``--store`` sends only what the server does not
  hold yet (:func:`store_reports`).
- How the slices became one answer is said in the series description and the algorithm
  parameters: the mean of the slices' calibrated probabilities.

Class codes (:data:`CLASS_CODES`): SNOMED CT 393564001 *Glioma*, 302820008 *Intracranial
meningioma*, 254956000 *Pituitary adenoma* (the concepts of the MR-RATE brain MRI finding
ontology; 254956000 is also the Human Phenotype Ontology's SNOMED CT cross-reference for
pituitary adenoma, HP:0002893). "No tumour" has no SNOMED CT concept that says what the class
means: not "normal" (SCT 17621005 would claim more than a classifier of three tumour types
knows), only "none of these tumours". It is a local code, ``99BTK no_tumor``. Present, Absent,
Indeterminate, Finding, Probability, Imaging procedure and Device come from DICOM PS3.16 (as
``pydicom.sr.codedict`` lists them).
"""

from __future__ import annotations

import hashlib
import warnings
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from btk.api import BtkError, __version__
from btk.default_plugins.dicom import OWN_MANUFACTURER
from btk.file_names import inside, uid_name

LOCAL_SCHEME = "99BTK"
"""The coding scheme of btk's own concepts (a private scheme: DICOM reserves ``99`` prefixes)."""

CLASS_CODES: dict[str, tuple[str, str, str]] = {
    "glioma_tumor": ("393564001", "SCT", "Glioma"),
    "glioma": ("393564001", "SCT", "Glioma"),
    "meningioma_tumor": ("302820008", "SCT", "Intracranial meningioma"),
    "meningioma": ("302820008", "SCT", "Intracranial meningioma"),
    "pituitary_tumor": ("254956000", "SCT", "Pituitary adenoma"),
    "pituitary": ("254956000", "SCT", "Pituitary adenoma"),
    "no_tumor": ("no_tumor", LOCAL_SCHEME, "No tumour of the classified types"),
    "notumor": ("no_tumor", LOCAL_SCHEME, "No tumour of the classified types"),
    "tumor": ("tumor", LOCAL_SCHEME, "Tumour of a classified type"),
}
"""A run's class name -> (code value, coding scheme, meaning)."""


def class_code(name: str) -> Any:
    """The coded concept of a run's class: :data:`CLASS_CODES`, else a local ``99BTK`` code named
    after the class."""
    from highdicom.sr import CodedConcept

    value, scheme, meaning = CLASS_CODES.get(name, (name[:16], LOCAL_SCHEME, name.replace("_", " ")))
    return CodedConcept(value, scheme, meaning)


def sha256_of(path: Path) -> str:
    """The SHA-256 of a file, hex."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def calibration_key(run: Any, model_sha256: str, tta: bool = False) -> str:
    """What makes btk's results of a source what they are, hashed: the model file's SHA-256, the
    run's temperature, its prediction-set calibration (``conformal.csv``, where there is one) and
    whether the images were scored with test-time augmentation (``tta``). The same sources with
    the same key give the same results, and the same UIDs."""
    from btk.conformal import CONFORMAL_FILE

    conformal = Path(str(getattr(run, "path", ""))) / CONFORMAL_FILE
    sets = sha256_of(conformal) if getattr(run, "path", None) and conformal.is_file() else ""
    return hashlib.sha256(f"{model_sha256}|{float(run.temperature)!r}|{sets}|tta={bool(tta)}".encode()).hexdigest()


def result_uid(*parts: Any) -> str:
    """A UID derived from ``parts`` alone (pydicom's ``generate_uid`` with them as its entropy):
    storing the same result again gives the same Study, Series and SOP Instance UIDs."""
    from pydicom.uid import generate_uid

    return str(generate_uid(entropy_srcs=["btk", *(str(p) for p in parts)]))


@dataclass
class SeriesReport:
    """One series' SR as written: the series, its answer, the file, and what was referenced."""

    study: str
    series: str
    answer: str
    probabilities: dict[str, float]
    instances: int
    path: Path
    dataset: Any


def source_headers(identities: Sequence[dict[str, Any]]) -> list[Any]:
    """The header (no pixels) of every distinct source instance of ``identities`` (the
    ``meta["dicom"]`` of slices), read again from its file or its DICOMweb server.

    Raises:
        BtkError: a source that can no longer be read.
    """
    import pydicom

    headers: dict[str, Any] = {}
    by_series: dict[tuple[str, str, str], list[str]] = defaultdict(list)  # server, study, series -> SOPs
    for ident in identities:
        where, sop = str(ident.get("where", "")), ident["sop"]
        if sop in headers:
            continue
        if where.startswith(("http://", "https://")):
            root = where.split("/studies/")[0]
            by_series[(root, ident["study"], ident["series"])].append(sop)
            headers[sop] = None
        else:
            try:
                headers[sop] = pydicom.dcmread(where, stop_before_pixels=True)
            except Exception as exc:
                raise BtkError(f"cannot read the source {where} again for its SR: {exc}") from None
    for root, study, series in by_series:
        from btk.default_plugins.dicomweb import client, explain

        try:
            metadata = client(root).retrieve_series_metadata(study, series)
        except Exception as exc:
            raise explain(exc, root, "retrieving the series' metadata for its SR") from None
        for record in metadata:
            with warnings.catch_warnings():  # the metadata carry no pixels, by design: no bulk data to fetch
                warnings.simplefilter("ignore", UserWarning)
                ds = pydicom.Dataset.from_json(record)
            if str(ds.get("SOPInstanceUID", "")) in headers:
                headers[str(ds.SOPInstanceUID)] = ds
    missing = [sop for sop, ds in headers.items() if ds is None]
    if missing:
        raise BtkError(f"the server no longer has {len(missing)} source instance(s), e.g. {missing[0]}")
    return list(headers.values())


def build_series_report(run: Any, identities: Sequence[dict[str, Any]], probabilities: dict[str, float],
                        answer: str, headers: Sequence[Any], model_sha256: str, slices: int,
                        min_confidence: float = 0.0, maps: Sequence[Any] = (), tta: bool = False,
                        previous: Sequence[Any] = ()) -> Any:
    """The Comprehensive 3D SR of one series' answer (see the module's description).

    Args:
        identities: the DICOM identity of each slice that was predicted.
        probabilities: the series' calibrated probabilities (the mean over its slices).
        answer: the class answered, or ``uncertain`` (then no class is said present or absent).
        headers: the source instances' headers (evidence; patient and study are copied from them).
        maps: the series' heat-map Segmentations, referenced as evidence of the same procedure.
        tta: whether the probabilities came with test-time augmentation (:mod:`btk.tta`).
        previous: earlier SRs btk wrote; those of this series (the same result series: the same
            source series, model and calibration) are referenced as the documents this one
            amends (Predecessor Documents Sequence).

    Its Series and SOP Instance UIDs are derived from the source series and instances, the
    :func:`calibration_key`, ``min_confidence`` and the maps it references (:func:`result_uid`).
    """
    import highdicom as hd
    from highdicom.sr import CodedConcept
    from pydicom import Dataset
    from pydicom.sr.codedict import codes

    classes = list(probabilities)
    first = headers[0]
    calibration = calibration_key(run, model_sha256, tta)
    source_series = str(identities[0].get("series", "")) if identities else ""
    refs = sorted({f"{i['sop']}#{i.get('frame') or ''}" for i in identities})
    series_uid = result_uid("sr-series", calibration, first.get("StudyInstanceUID", ""), source_series, min_confidence)
    earlier = [p for p in previous if str(p.SeriesInstanceUID) == series_uid]
    sop_uid = result_uid("sr", series_uid, *refs, *sorted(str(m.SOPInstanceUID) for m in maps))  # with its maps
    parameters = [f"run {run.name}", f"model sha256 {model_sha256}", f"temperature {run.temperature:.4f}",
                  f"test-time augmentation {'on' if tta else 'off'}",
                  f"answer: the class of the highest mean of {slices} slice probabilities (calibrated)"]
    if min_confidence:
        parameters.append(f"indeterminate below a top probability of {min_confidence:g}: then no class is said "
                          "present or absent")
    algorithm = hd.sr.AlgorithmIdentification(name="btk", version=__version__, parameters=parameters,
                                              manufacturer="btk")
    device = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=result_uid("device", model_sha256), name="btk", manufacturer_name="btk",
            model_name=f"btk {__version__} run {run.name}"[:64],
            serial_number=model_sha256[:64]))
    sources = []
    seen = set()
    for ident in identities:
        key = (ident["sop"], ident.get("frame"))
        if key in seen:
            continue
        seen.add(key)
        frames = [int(ident["frame"])] if ident.get("frame") else None
        sources.append(hd.sr.SourceImageForMeasurementGroup(ident["sop_class"], ident["sop"], frames))
    present, absent = codes.SCT.Present, CodedConcept("272519000", "SCT", "Absent")
    confident = answer in classes  # else "uncertain": below --min-confidence
    answer_code = class_code(answer) if confident else codes.SCT.Indeterminate
    groups = [hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=result_uid("tracking", sop_uid, "answer"),
                                                     identifier="btk answer"),
        finding_type=answer_code, algorithm_id=algorithm, source_images=sources,
        qualitative_evaluations=[hd.sr.QualitativeEvaluation(class_code(c), present if c == answer else absent)
                                 for c in classes] if confident else None)]
    one = CodedConcept("1", "UCUM", "no units")
    for c in classes:
        groups.append(hd.sr.MeasurementsAndQualitativeEvaluations(
            tracking_identifier=hd.sr.TrackingIdentifier(uid=result_uid("tracking", sop_uid, c),
                                                         identifier=f"btk probability {c}"[:64]),
            finding_type=class_code(c), source_images=sources,  # the algorithm: the answer group's, the device's
            measurements=[hd.sr.Measurement(name=codes.DCM.Probability, value=float(probabilities[c]), unit=one)]))
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=device),
        procedure_reported=codes.SCT.ImagingProcedure, imaging_measurements=groups)
    sr = hd.sr.Comprehensive3DSR(
        evidence=[*headers, *maps], content=report[0], series_instance_uid=series_uid, series_number=9001,
        sop_instance_uid=sop_uid, instance_number=1 + len(earlier), is_complete=True,
        previous_versions=earlier or None,
        series_description=f"btk {answer}: mean of {slices} slices"[:64], **equipment(model_sha256))
    if "StudyInstanceUID" in first and sr.StudyInstanceUID != first.StudyInstanceUID:
        raise BtkError("the SR's study is not its source's")
    scheme = Dataset()  # the private coding scheme, declared as DICOM asks (PS3.3 C.12.1.1.2)
    scheme.CodingSchemeDesignator, scheme.CodingSchemeName = LOCAL_SCHEME, "btk classes"
    scheme.CodingSchemeResponsibleOrganization = "btk"
    sr.CodingSchemeIdentificationSequence = [scheme]
    return sr


def equipment(model_sha256: str) -> dict[str, Any]:
    """The General Equipment module of everything btk writes: btk, its version, and the model
    file's SHA-256 as the device's serial number."""
    return {"manufacturer": OWN_MANUFACTURER, "manufacturer_model_name": f"btk {__version__}"[:64],
            "software_versions": __version__, "device_serial_number": model_sha256[:64] or "unknown"}


def write_series_reports(run: Any, rows: Sequence[Any], folder: Path, min_confidence: float = 0.0,
                         maps: Sequence[Any] = (), tta: bool = False,
                         previous: Sequence[Any] = ()) -> list[SeriesReport]:
    """One SR per DICOM series among ``btk predict``'s rows (:class:`btk.predict.Prediction`,
    slices and series means) in ``folder`` (created), named ``<SeriesInstanceUID>.dcm`` (a UID
    that is not one, digits and dots, is named by its hash: :func:`btk.file_names.uid_name`;
    ``<SeriesInstanceUID>-<StudyInstanceUID>.dcm`` for a series UID another study also uses).
    Each SR references the heat maps (``maps``, Segmentations) of its series.

    Rows without a DICOM identity (JPEG, NIfTI) are left out; a series predicted in several
    inputs is reported once per input.

    Raises:
        BtkError: no row came from DICOM, or a source cannot be read again.
    """
    slices: dict[tuple[str, str], list[Any]] = defaultdict(list)
    for row in rows:
        ident = row.identity
        if ident and "sop" in ident and row.aggregated_over is None:
            slices[(ident["study"], ident["series"])].append(row)
    if not slices:
        raise BtkError("--sr: none of the inputs is DICOM (files or DICOMweb): there is nothing to refer to")
    import numpy as np

    model_sha256 = sha256_of(Path(run.path) / "model.keras") if (Path(run.path) / "model.keras").exists() else ""
    folder.mkdir(parents=True, exist_ok=True)
    reports = []
    classes = list(run.classes)
    for (study, series), members in slices.items():
        identities = [m.identity for m in members]
        probs = np.mean([[m.probabilities[c] for c in classes] for m in members], axis=0)
        mean = {c: float(v) for c, v in zip(classes, probs)}
        answer = classes[int(np.argmax(probs))] if float(np.max(probs)) >= min_confidence else "uncertain"
        headers = source_headers(identities)
        mine = [seg for seg in maps if (str(seg.StudyInstanceUID), map_source_series(seg)) == (study, series)]
        sr = build_series_report(run, identities, mean, answer, headers, model_sha256, len(members), min_confidence,
                                 mine, tta, previous)
        path = inside(folder, f"{uid_name(series)}.dcm")
        if path.exists():  # the same series UID in another study: a report each
            path = inside(folder, f"{uid_name(series)}-{uid_name(study)}.dcm")
        sr.save_as(path, enforce_file_format=True)
        reports.append(SeriesReport(study, series, answer, mean, len(headers), path, sr))
    return reports


def map_source_series(seg: Any) -> str:
    """The source series of a heat-map Segmentation (its Referenced Series Sequence)."""
    return str(seg.ReferencedSeriesSequence[0].SeriesInstanceUID)


def store_reports(url: str, reports: Sequence[SeriesReport], maps: Sequence[Any] = ()) -> tuple[int, set[str]]:
    """Send the SRs (and the heat maps) to a DICOMweb server (STOW-RS), each object only when the
    server does not hold its SOP instance yet (QIDO-RS, per result series): the same results of
    the same sources, model and calibration have the same UIDs, so storing them again adds
    nothing. Returns how many objects were stored and the SOP Instance UIDs of those that were
    there already. A ``dicom://HOST:PORT/AE_TITLE`` ``url`` is a DICOM node instead, sent to by
    C-STORE after a C-FIND (:mod:`btk.default_plugins.dimse`).

    Raises:
        BtkError: the server cannot be reached or refuses them (the local files stay).
    """
    from btk.default_plugins.dicomweb import client, explain
    from btk.default_plugins.dimse import is_dicom_url, store_by_c_store

    objects = [r.dataset for r in reports] + list(maps)
    where = reports[0].path.parent if reports else "the --sr folder"
    if is_dicom_url(url):
        return store_by_c_store(url, objects, str(where))
    web = client(url)
    there: set[str] = set()
    try:
        for study, series in sorted({(str(o.StudyInstanceUID), str(o.SeriesInstanceUID)) for o in objects}):
            found = web.search_for_instances(study_instance_uid=study, series_instance_uid=series,
                                             fields=["SOPInstanceUID"], get_remaining=True)
            there |= {str((f.get("00080018") or {}).get("Value", [""])[0]) for f in found}
    except Exception as exc:
        raise explain(exc, url, f"looking for {len(objects)} object(s) already stored (QIDO-RS); they are kept "
                                f"in {where}") from None
    new = [o for o in objects if str(o.SOPInstanceUID) not in there]
    if new:
        try:
            web.store_instances(new)
        except Exception as exc:
            raise explain(exc, url, f"storing {len(new)} object(s) (STOW-RS); they are kept in {where}") from None
    return len(new), {str(o.SOPInstanceUID) for o in objects} & there


@dataclass
class ReportResult:
    """What :func:`report_predictions` wrote: the folder, each series' report, the heat maps,
    how many objects were stored and how many the server held already."""

    folder: Path
    reports: list[SeriesReport]
    maps: list[Path]
    stored: int = 0
    already: int = 0
    present: set[str] = field(default_factory=set)  # the SOP Instance UIDs the server held already


def heat_map_segmentation(header: Any, heat: Any, framing: dict[str, Any] | None, answer: str, run: Any,
                          model_sha256: str, frame: int | None = None, instance_number: int = 1,
                          tta: bool = False) -> Any:
    """A slice's Grad-CAM map as a fractional Segmentation (probability type, highdicom) of its
    source instance ``header``, on the source's own pixel grid: the map of the network's view is
    put back where that view was cut from (:func:`btk.framing.unframe`).

    A Segmentation rather than a Parametric Map: highdicom's Parametric Map needs a frame of
    reference, which Secondary Capture sources lack, and viewers show SEG overlays widely.

    Every map of one source series goes in one result series (``instance_number`` is its place
    there); the Series and SOP Instance UIDs are derived from the source series and instance
    (and ``frame``) and the :func:`calibration_key` (:func:`result_uid`).
    """
    import highdicom as hd
    import numpy as np
    from pydicom import Dataset
    from pydicom.sr.codedict import codes

    from btk.framing import unframe

    shape = (int(header.Rows), int(header.Columns))
    box = tuple(framing["box"]) if framing and framing.get("box") else None
    if framing and tuple(framing.get("shape") or shape)[:2] != shape:
        box = None  # a reader that resized before framing: the view is of the whole image
    values = np.clip(unframe(heat, shape, box), 0.0, 1.0)
    series_uid = result_uid("seg-series", calibration_key(run, model_sha256, tta), header.StudyInstanceUID,
                            header.SeriesInstanceUID)
    segment = hd.seg.SegmentDescription(
        segment_number=1, segment_label=f"Grad-CAM of {answer}"[:64],
        segmented_property_category=hd.sr.CodedConcept("explanation", LOCAL_SCHEME, "Model explanation"),
        segmented_property_type=hd.sr.CodedConcept("gradcam", LOCAL_SCHEME, "Grad-CAM attention"),
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=hd.AlgorithmIdentificationSequence(
            name="btk Grad-CAM", version=__version__, family=codes.DCM.ArtificialIntelligence,
            parameters={"run": run.name, "model_sha256": model_sha256, "class": answer}))
    seg = hd.seg.Segmentation(
        source_images=[header], pixel_array=values[None].astype(np.float32),
        segmentation_type=hd.seg.SegmentationTypeValues.FRACTIONAL,
        fractional_type=hd.seg.SegmentationFractionalTypeValues.PROBABILITY, max_fractional_value=255,
        segment_descriptions=[segment], series_instance_uid=series_uid, series_number=9002,
        sop_instance_uid=result_uid("seg", series_uid, header.SOPInstanceUID, frame or ""),
        instance_number=instance_number, series_description="btk Grad-CAM", **equipment(model_sha256))
    if "FrameOfReferenceUID" not in header and "PatientOrientation" in header:
        seg.PatientOrientation = header.PatientOrientation  # Type 2C without a frame of reference
    scheme = Dataset()
    scheme.CodingSchemeDesignator, scheme.CodingSchemeName = LOCAL_SCHEME, "btk classes"
    scheme.CodingSchemeResponsibleOrganization = "btk"
    seg.CodingSchemeIdentificationSequence = [scheme]
    return seg


def write_heat_maps(run: Any, rows: Sequence[Any], folder: Path, tta: bool = False) -> list[tuple[Path, Any]]:
    """One Segmentation per DICOM slice among ``rows`` that carries a heat map
    (``btk predict --maps``), in ``folder`` (created), named ``<SOPInstanceUID>-gradcam.dcm`` (as
    :func:`btk.file_names.uid_name` names a UID); the maps of a source series share one series."""
    maps = [r for r in rows if r.identity and r.identity.get("heat") is not None and r.aggregated_over is None]
    if not maps:
        return []
    headers = {str(h.SOPInstanceUID): h for h in source_headers([r.identity for r in maps])}
    model = Path(run.path) / "model.keras"
    model_sha256 = sha256_of(model) if model.exists() else ""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    numbers: dict[tuple[str, str], int] = defaultdict(int)  # each source series' maps: one series
    for r in maps:
        ident = r.identity
        numbers[(ident["study"], ident["series"])] += 1
        seg = heat_map_segmentation(headers[ident["sop"]], ident["heat"], ident.get("framing"), r.predicted, run,
                                    model_sha256, ident.get("frame"), numbers[(ident["study"], ident["series"])], tta)
        frame = f"-{int(ident['frame'])}" if ident.get("frame") else ""
        path = inside(folder, f"{uid_name(ident['sop'])}{frame}-gradcam.dcm")
        seg.save_as(path, enforce_file_format=True)
        out.append((path, seg))
    return out


def report_predictions(run: Any, rows: Sequence[Any], parent: Path | str, store: str | None = None,
                       min_confidence: float = 0.0, tta: bool | None = None,
                       previous: Sequence[Any] = ()) -> ReportResult:
    """``btk predict --sr DIR [--maps] [--store URL]``: the SRs of every DICOM series among
    ``rows`` and, where the rows carry them, their slices' heat maps (``maps/``), written into a
    new directory in ``parent`` (complete or absent), then, with ``store``, sent to that DICOMweb
    server. ``tta``: whether the rows were scored with test-time augmentation (default: the run's
    own choice); it is part of every result UID, as the model and the calibration are.
    ``previous``: earlier SRs of these series that the new ones amend (:func:`build_series_report`).

    Raises:
        BtkError: no DICOM input, a folder that cannot be written, a source that cannot be read
            again, a store that fails (after the files are written: they stay).
    """
    from btk.api import ResultDir, check_writable

    with ResultDir(check_writable(parent, "--sr"), f"sr-{run.name}") as folder:
        scored_with_tta = run.tta if tta is None else tta
        maps = write_heat_maps(run, rows, folder.path("maps"), scored_with_tta)
        reports = write_series_reports(run, rows, folder.path(""), min_confidence, [seg for _, seg in maps],
                                       scored_with_tta, previous)
    done = ReportResult(folder.final, [replace_path(r, folder.final) for r in reports],
                        [folder.final / "maps" / p.name for p, _ in maps])
    if store:
        done.stored, done.present = store_reports(store, done.reports, [seg for _, seg in maps])
        done.already = len(done.present)
    return done


def replace_path(report: SeriesReport, folder: Path) -> SeriesReport:
    """``report`` with its file in ``folder`` (where a result directory put it on completion)."""
    from dataclasses import replace

    return replace(report, path=folder / report.path.name)
