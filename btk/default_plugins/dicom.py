"""The ``dicom`` reader: DICOM files in any folder layout, one entry per series (pydicom).

- Files are grouped into series by SeriesInstanceUID; slices are ordered by
  ImagePositionPatient along the slice normal (from ImageOrientationPatient), else by
  InstanceNumber, else by file name. A multi-frame file is one series of its frames.
- Pixels: RescaleSlope / RescaleIntercept (modality LUT), then the VOI LUT or the file's first
  WindowCenter / WindowWidth (DICOM's linear window), or ``window=C/W``; without any window, 8-bit
  data are kept as stored and deeper data are scaled from the series' minimum to maximum.
  MONOCHROME1 is inverted. Colour images become BGR (or grey with ``--channels 1``).
- Compressed transfer syntaxes (JPEG, JPEG-LS, JPEG 2000, RLE) decode through pydicom's pixel
  handlers with the pylibjpeg decoders.
- Slices: ``slices=middle`` (default), ``all``, ``every:N``.
- Group: PatientID, else StudyInstanceUID. Labels: ``manifest=labels.csv`` (columns ``path`` or
  ``series``, and ``label``), else the class folder (``ROOT/[Training|Testing]/<class>/...``).

- Only images are read: an object whose SOP class is not an image storage class
  (:func:`is_image_class`: a Segmentation, a Structured Report, a Key Object Selection, a
  Presentation State, an RT Structure Set or Plan...) is skipped by its SOP class, whether it
  holds pixels or not, and the skip is reported (``not images: ...``), naming btk's own results
  (Manufacturer ``btk``: its SRs and Grad-CAM Segmentations) as such.

Reader options (``-R KEY=VALUE``): ``slices``, ``window``, ``manifest``.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from functools import cache
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np

from btk.api import (
    BtkError,
    Entry,
    ReadOptions,
    RegisterReader,
    Sample,
    UnreadableInputError,
    choose_slices,
    find_files,
    folder_label,
    hookimpl,
    read_manifest,
    to_uint8,
)

OPTIONS = ("slices", "window", "manifest")
NOT_IMAGES = "not images"
"""How the reason of a skipped series of non-image objects begins (``btk predict`` counts them apart)."""
OWN_MANUFACTURER = "btk"
"""The Manufacturer of everything btk writes as DICOM (its SRs and Segmentations)."""


@cache
def image_sop_classes() -> frozenset[str]:
    """The allow-list of image storage SOP classes: every SOP class of pydicom's UID dictionary
    named "... Image Storage" (CT, MR, Enhanced MR, Secondary Capture, X-ray, ultrasound,
    nuclear medicine, PET, visible light, ophthalmic, whole-slide...). A Segmentation, an SR, a
    Key Object Selection, a Presentation State, an RT Structure Set, Plan or Dose, a Parametric
    Map or an encapsulated document is not on it."""
    from pydicom.uid import UID_dictionary

    return frozenset(uid for uid, (name, kind, *_) in UID_dictionary.items()
                     if kind == "SOP Class" and "Image Storage" in name and "Presentation State" not in name)


def is_image_class(sop_class: Any) -> bool:
    """Whether an object of SOP class ``sop_class`` is an image (:func:`image_sop_classes`); an
    object that names no SOP class (an old or bare file) is taken for one."""
    return not sop_class or str(sop_class) in image_sop_classes()


def not_images(objects: list[tuple[str, str]]) -> str:
    """The reason a series of non-image ``objects`` ((SOP class UID, Manufacturer) pairs) is
    skipped: how many of each SOP class, and how many are btk's own results."""
    from pydicom.uid import UID

    kinds = Counter(str(getattr(UID(c), "name", c) or c or "no SOP class") for c, _ in objects)
    own = sum(1 for _, maker in objects if maker == OWN_MANUFACTURER)
    what = ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items()))
    mine = (" (all btk's own results)" if own == len(objects) else f" ({own} of them btk's own results)") if own else ""
    return f"{NOT_IMAGES}: {what}{mine}, skipped by SOP class"


def _window_option(text: str | None) -> tuple[float, float] | None:
    if not text:
        return None
    try:
        center, width = (float(v) for v in text.split("/"))
    except ValueError:
        raise BtkError(f"dicom reader: window must be CENTER/WIDTH, e.g. 40/400, got {text!r}") from None
    if width <= 0:
        raise BtkError(f"dicom reader: window width must be positive, got {width}")
    return center, width


def _first(value) -> float:
    try:
        return float(value[0])
    except TypeError:
        return float(value)


def slice_position(ds) -> float | None:
    """Position of a slice along its normal, or None without geometry."""
    if "ImagePositionPatient" not in ds or "ImageOrientationPatient" not in ds:
        return None
    o = np.array([float(v) for v in ds.ImageOrientationPatient])
    normal = np.cross(o[:3], o[3:])
    return float(np.dot(normal, [float(v) for v in ds.ImagePositionPatient]))


def to_display(ds, frames: np.ndarray, window: tuple[float, float] | None) -> np.ndarray:
    """Stored pixel values of ``ds`` (frames x H x W [x 3]) to uint8 display values."""
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2"))
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):  # colour: decoded as RGB already
        if frames.dtype != np.uint8:
            frames = to_uint8(frames, float(frames.min()), float(frames.max()))
        return frames[..., ::-1].copy() if frames.shape[-1] == 3 else frames
    values = apply_modality_lut(frames, ds)
    if window is None and "WindowCenter" in ds and "WindowWidth" in ds:
        window = (_first(ds.WindowCenter), _first(ds.WindowWidth))
    if window is not None:
        center, width = window
        low, high = center - 0.5 - (width - 1) / 2, center - 0.5 + (width - 1) / 2  # DICOM linear window
        out = to_uint8(values, low, high)
    elif "VOILUTSequence" in ds:
        out = apply_voi_lut(values, ds, index=0)
        out = to_uint8(out, float(out.min()), float(out.max()))
    elif int(ds.get("BitsStored", 16)) <= 8 and values.min() >= 0 and values.max() <= 255:
        out = values.astype(np.uint8)
    else:
        out = to_uint8(values, float(values.min()), float(values.max()))
    return 255 - out if photometric == "MONOCHROME1" else out


class DicomReader:
    """Reads DICOM series from a folder tree."""

    name = "dicom"
    description = "DICOM files in any layout, a series per entry (pydicom; JPEG, JPEG-LS, JPEG 2000, RLE)"
    options = OPTIONS

    def can_read(self, path: Path) -> bool:
        """A .dcm file, a file with the DICOM preamble, or a folder holding such files."""
        if path.is_dir():  # the first 50 files found tell
            return any(self.can_read(p) for p in islice((p for p in path.rglob("*") if p.is_file()), 50))
        if path.suffix.lower() == ".dcm":
            return True
        try:
            with open(path, "rb") as fh:
                return fh.read(132)[128:] == b"DICM"
        except OSError:
            return False

    def _check(self, options: ReadOptions) -> None:
        unknown = set(options.extra) - set(OPTIONS) - {"inspect"}
        if unknown:
            raise BtkError(f"dicom reader: unknown option(s) {', '.join(sorted(unknown))} "
                           f"(options: {', '.join(OPTIONS)})")
        choose_slices(3, options.extra.get("slices", "middle"), [1, 1, 1])
        _window_option(options.extra.get("window"))

    def scan(self, path: Path | None, options: ReadOptions) -> list[Entry]:
        """Group every DICOM file under ``path`` (or ``path`` itself) into series."""
        import pydicom
        from pydicom.errors import InvalidDicomError

        self._check(options)
        base, files = find_files(path, "dicom", lambda p: True, "files")
        manifest = read_manifest(options.extra["manifest"]) if "manifest" in options.extra else None
        series: dict[str, list[tuple[Path, Any]]] = defaultdict(list)
        others: dict[str, list[tuple[Path, Any]]] = defaultdict(list)  # non-image objects, by series
        entries: list[Entry] = []
        for f in files:
            try:
                ds = pydicom.dcmread(f, stop_before_pixels=True)
            except (InvalidDicomError, OSError, ValueError, AttributeError) as exc:
                entries.append(Entry(f.relative_to(base).as_posix(), None, str(f), payload=("bad", str(exc))))
                continue
            if "PixelData" not in ds and "SeriesInstanceUID" not in ds:
                continue
            uid = str(ds.get("SeriesInstanceUID", f))
            (series if is_image_class(ds.get("SOPClassUID")) else others)[uid].append((f, ds))
        for uid, members in series.items():
            first_file, first = members[0]
            rel = first_file.relative_to(base).as_posix()
            label, split = folder_label(base, first_file) if base != first_file else (None, "")
            if manifest is not None:
                label = manifest.get(uid, manifest.get(rel, manifest.get(str(first_file.relative_to(base).parent))))
            group = str(first.get("PatientID") or first.get("StudyInstanceUID") or uid)
            source = rel if len(members) == 1 else first_file.relative_to(base).parent.as_posix() + f"#{uid}"
            entries.append(Entry(source, label, group, split, payload=("series", uid, [m[0] for m in members])))
        for uid, members in others.items():
            first_file, first = members[0]
            source = first_file.relative_to(base).as_posix() if len(members) == 1 else \
                first_file.relative_to(base).parent.as_posix() + f"#{uid}"
            kinds = [(str(ds.get("SOPClassUID", "")), str(ds.get("Manufacturer", ""))) for _, ds in members]
            entries.append(Entry(source, None, str(first.get("PatientID") or uid), "",
                                 payload=(NOT_IMAGES, not_images(kinds))))
        return entries

    def load(self, entry: Entry, options: ReadOptions) -> list[Sample]:
        """Read one series, order its slices, window them and keep the chosen ones."""
        import pydicom

        if entry.payload[0] == "bad":
            raise UnreadableInputError(f"not a readable DICOM file: {entry.source} ({entry.payload[1]})")
        if entry.payload[0] == NOT_IMAGES:
            raise UnreadableInputError(entry.payload[1])
        files = entry.payload[2]
        try:
            datasets = [(str(f), pydicom.dcmread(f)) for f in files]
        except Exception as exc:  # a file that does not parse makes this series unreadable, not btk
            raise UnreadableInputError(
                f"cannot decode DICOM series {entry.source}: {type(exc).__name__}: {exc}") from None
        return series_samples(entry, datasets, options)


def identity(ds: Any, frame: int | None, where: str) -> dict[str, Any]:
    """What a slice is in DICOM terms, kept in its sample's ``meta["dicom"]`` for results that
    refer back to it (a DICOM SR): study, series and SOP instance, SOP class, the frame number
    (1-based) of a multi-frame instance, and where it was read (a file or a DICOMweb URL)."""
    return {"study": str(ds.get("StudyInstanceUID", "")), "series": str(ds.get("SeriesInstanceUID", "")),
            "sop": str(ds.get("SOPInstanceUID", "")), "sop_class": str(ds.get("SOPClassUID", "")),
            "frame": frame, "where": where}


def series_samples(entry: Entry, datasets: list[tuple[str, Any]], options: ReadOptions) -> list[Sample]:
    """The samples of one series from its instances ``datasets`` (``(where, dataset)`` pairs, a
    file's path or an instance's URL): slices ordered along the normal (else by InstanceNumber,
    else by ``where``), each frame of a multi-frame instance a slice, windowed to uint8
    (:func:`to_display`), the chosen slices (``slices``) resized. Shared by the ``dicom`` and
    ``dicomweb`` readers.

    Raises:
        UnreadableInputError: no instance holds an image, or the pixels cannot be decoded.
    """
    import cv2

    window = _window_option(options.extra.get("window"))
    images = [(where, ds) for where, ds in datasets if "PixelData" in ds and is_image_class(ds.get("SOPClassUID"))]
    if not images:
        kinds = sorted({str(getattr(ds.get("SOPClassUID"), "name", ds.get("SOPClassUID", "?"))) for _, ds in datasets})
        raise UnreadableInputError(f"{entry.source} holds no images ({len(datasets)} object(s): {', '.join(kinds)})")
    try:
        keyed = []
        for where, ds in images:
            pos = slice_position(ds)
            order = (0, pos) if pos is not None else (1, float(ds.get("InstanceNumber", 0) or 0))
            keyed.append((order, where, ds))
        keyed.sort(key=lambda t: (t[0], t[1]))
    except Exception as exc:  # a geometry that cannot be read makes this series unreadable, not btk
        raise UnreadableInputError(
            f"cannot decode DICOM series {entry.source}: {type(exc).__name__}: {exc}") from None
    slices, metas, damaged = [], [], []
    for _, where, ds in keyed:
        try:  # an instance whose pixels cannot be decoded is left out, and said so; the rest are read
            frames = ds.pixel_array
            n_frames = int(ds.get("NumberOfFrames", 1) or 1)
            if n_frames == 1:
                frames = frames[None]
            display = to_display(ds, frames, window)
        except Exception as exc:
            damaged.append(f"{Path(where).name if '://' not in where else where}: {type(exc).__name__}: {exc}")
            continue
        for k in range(len(display)):
            slices.append(display[k])
            metas.append({"file": where, "frame": k, "series": str(ds.get("SeriesInstanceUID", "")),
                          "spacing": [float(v) for v in ds.get("PixelSpacing", [1, 1])],
                          "dicom": identity(ds, k + 1 if n_frames > 1 else None, where)})
    if not slices:
        raise UnreadableInputError(f"cannot decode DICOM series {entry.source}: {damaged[0]}")
    note = (f"{len(damaged)} of {len(keyed)} instance(s) could not be decoded and were left out "
            f"({'; '.join(damaged[:3])}{'; ...' if len(damaged) > 3 else ''})") if damaged else None
    samples = []
    for k in choose_slices(len(slices), options.extra.get("slices", "middle")):
        image = slices[k]
        if image.ndim == 3 and options.channels == 1:
            image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        elif image.ndim == 2 and options.channels == 3:
            image = np.repeat(image[..., None], 3, axis=-1)
        if options.image_size:
            image = cv2.resize(image, (options.image_size, options.image_size)).reshape(
                options.image_size, options.image_size, *image.shape[2:])
        meta = {**metas[k], "slice": k, "slices": len(slices), **({"note": note} if note else {})}
        src = entry.source if len(slices) == 1 else f"{entry.source}[{k}]"
        samples.append(Sample(image, entry.label, entry.group, src, entry.split, meta))
    return samples


@hookimpl
def btk_register_readers(register: RegisterReader) -> None:
    register(DicomReader())
