"""``btk convert``: write an image dataset as DICOM series or NIfTI volumes, keeping its
class-folder (and Training/Testing) layout, so the dicom and nifti readers can be tested round
trip on real images.

- Every image keeps its pixels exactly, never resized. A DICOM series of ``--per-patient N``
  images may mix sizes: each instance has its own Rows and Columns, as the Secondary Capture IOD
  allows. A NIfTI volume is one grid, so its images are grouped by size first.
- DICOM: Secondary Capture Image Storage written by highdicom (a JPEG is not an MR acquisition),
  8-bit MONOCHROME2 (RGB where a source image's channels differ), explicit VR little endian, no
  window: the reader returns the stored pixels unchanged. No geometry is invented: no Pixel
  Spacing, an empty Patient Orientation (Type 2). Each instance names its source image (relative
  to ``--data``) in its Derivation Description.
- Patients and UIDs come from a hash of the content converted (every image's source and pixels)
  and the patient's place in it: the same input gives the same IDs and UIDs again, different
  inputs never the same ones (:func:`patient_key`).
- NIfTI: one volume per synthetic patient (.nii.gz, 1 mm pixels, 5 mm slices, RAS+ affine),
  written so that the nifti reader's axial slices are the original images.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from pathlib import Path

import click
import numpy as np

from btk.api import BtkError, ReadOptions, ResultDir, check_writable, get_host, hookimpl, iter_entries, parse_pairs
from btk.file_names import inside, safe_part, safe_relative
from btk.urls import refuse_credentials

SPLIT_DIRS = {"train": "Training", "test": "Testing", "": ""}


def stored_pixels(image: np.ndarray) -> np.ndarray:
    """A reader's image (grey, or BGR as ``cv2.imread`` gives) as DICOM stores it: 2-D grey when
    its channels are equal, else H x W x 3 RGB."""
    if image.ndim == 2:
        return image
    if image.shape[-1] == 1 or all(np.array_equal(image[..., 0], image[..., c]) for c in range(1, image.shape[-1])):
        return image[..., 0]
    return np.ascontiguousarray(image[..., 2::-1])


def write_dicom_series(images: list[np.ndarray], folder: Path, patient: str, study: str | None = None,
                       file_names: list[str] | None = None, sources: list[str] | None = None,
                       uid_seed: str | None = None) -> list[Path]:
    """Write 8-bit ``images`` (2-D grey, or H x W x 3 RGB) as one DICOM series (one file per
    slice) in ``folder``.

    The objects are Secondary Capture images (highdicom): a JPEG holds no MR acquisition, so an
    MR Image object would have to invent its sequence, echo time and geometry. Every Type 1 and
    Type 2 attribute of the Secondary Capture IOD is written (Type 2 empty where unknown, as the
    Patient Orientation), which ``dciodvfy`` checks in the tests; nothing unknown is invented
    (no Pixel Spacing). Each instance keeps its image's own Rows and Columns. Slices keep their
    order through InstanceNumber.

    Args:
        sources: each image's source (e.g. its file, relative to the data), written as the
            instance's Derivation Description.
        uid_seed: text the study (unless ``study`` is given), series and instance UIDs are
            derived from (the same seed, the same UIDs); ``None``: fresh random UIDs.
    """
    import highdicom as hd
    from pydicom.uid import generate_uid

    def uid(*what: object) -> str:
        return generate_uid(entropy_srcs=[uid_seed, *map(str, what)]) if uid_seed else generate_uid()

    folder.mkdir(parents=True, exist_ok=True)
    study = study or uid("study")
    series = uid("series")
    paths = []
    for k, image in enumerate(images):
        path = inside(folder, file_names[k] if file_names else f"slice_{k:03d}.dcm")
        pixels = np.ascontiguousarray(image, dtype=np.uint8)
        sc = hd.sc.SCImage(
            pixel_array=pixels, photometric_interpretation="RGB" if pixels.ndim == 3 else "MONOCHROME2",
            bits_allocated=8, coordinate_system="PATIENT", study_instance_uid=study, series_instance_uid=series,
            series_number=1, sop_instance_uid=uid("instance", k), instance_number=k + 1, manufacturer="btk",
            patient_id=patient, patient_name=f"Synthetic^{patient}", patient_orientation=("L", "P"),
            study_id="1", accession_number="", series_description="btk convert")
        # highdicom asks an orientation of the PATIENT coordinate system; a JPEG says none, so the
        # attribute is emptied, as its Type 2 allows (no Image Plane module: no other geometry)
        sc["PatientOrientation"].value = None
        sc.Modality = "MR"  # what the images show; the conversion is stated by the SC module (ConversionType)
        sc.BodyPartExamined = "BRAIN"  # an unpaired part: no Laterality
        if sources:
            sc.DerivationDescription = f"btk convert of {sources[k]}"[:1024]
        sc.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def write_nifti_volume(images: list[np.ndarray], path: Path) -> Path:
    """Stack 8-bit ``images`` (same size) as the axial slices of a RAS+ volume in ``path``."""
    import nibabel as nib

    path.parent.mkdir(parents=True, exist_ok=True)
    data = np.stack([np.flipud(im).T for im in images], axis=-1)  # (x, y, z), inverse of the reader's view
    affine = np.diag([1.0, 1.0, 5.0, 1.0])
    nib.save(nib.Nifti1Image(data.astype(np.uint8), affine), str(path))
    return path


def patient_key(content: str, per_patient: int, split: str, label: str, shape: tuple[int, ...], start: int) -> str:
    """What names one synthetic patient: the digest of the whole content converted, the grouping
    and the patient's place in it. Its hash gives the patient ID (``SYN`` and 16 hex digits) and
    seeds the UIDs: deterministic for the same input, and two inputs that differ in any image or
    name share no patient (a 64-bit hash: a collision is as likely as two random 64-bit numbers
    being equal)."""
    return f"{content}|{per_patient}|{split}|{label}|{'x'.join(map(str, shape))}|{start}"


def convert(data: Path, reader_name: str, to: str, out: Path, per_patient: int, options: dict[str, str]) -> int:
    """Convert everything ``reader_name`` reads at ``data``; returns the number of images written."""
    reader = get_host().readers.get(reader_name)
    if out.exists() and any(out.iterdir()):
        raise BtkError(f"output folder is not empty: {out}")
    groups: dict[tuple[str, str, tuple[int, ...]], list[tuple[str, np.ndarray]]] = defaultdict(list)
    content = hashlib.sha256()
    for entry, samples in iter_entries(reader, data, ReadOptions(None, 3 if to == "dicom" else 1, options)):
        if isinstance(samples, str):
            click.echo(f"skipped {entry.source}: {samples}", err=True)
            continue
        for s in samples:
            image = stored_pixels(s.image)
            grid = image.shape if to == "nifti" else ()  # a volume is one grid; a DICOM series need not be
            groups[(s.split, str(s.label), grid)].append((s.source, image))
            content.update(f"{s.split}|{s.label}|{s.source}|{image.shape}|".encode())
            content.update(image.tobytes())
    digest, written = content.hexdigest(), 0
    for (split, label, shape), items in sorted(groups.items()):
        for start in range(0, len(items), per_patient):
            chunk = items[start:start + per_patient]
            key = patient_key(digest, per_patient, split, label, shape, start)
            pid = "SYN" + hashlib.sha256(key.encode()).hexdigest()[:16].upper()
            folder = inside(out, *safe_relative(SPLIT_DIRS.get(split, split)), safe_part(label))
            if to == "dicom":
                write_dicom_series([im for _, im in chunk], folder / pid, pid, sources=[src for src, _ in chunk],
                                   uid_seed=key)
            else:
                write_nifti_volume([im for _, im in chunk], folder / f"{pid}.nii.gz")
            written += len(chunk)
    return written


@click.command(name="convert")
@click.option("--data", type=click.Path(path_type=Path), required=True, callback=refuse_credentials,
              help="The dataset to convert.")
@click.option("--reader", default="folder", show_default=True, help="Reader for --data.")
@click.option("--reader-option", "-R", multiple=True, metavar="KEY=VALUE", help="Reader-specific option.")
@click.option("--to", "to", type=click.Choice(["dicom", "nifti"]), required=True, help="Output format.")
@click.option("--out", type=click.Path(path_type=Path), required=True, metavar="DIR",
              help="Folder in which the converted dataset is made: a new directory, nothing else there is touched.")
@click.option("--per-patient", type=click.IntRange(1), default=1, show_default=True,
              help="Images of one class per synthetic patient (slices of one series, or of one volume: "
                   "then also of one size).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on standard output.")
def convert_command(data, reader, reader_option, to, out, per_patient, as_json):
    """Write an image dataset as DICOM series or NIfTI volumes, keeping its class folders.

    \b
    Example:
      btk convert --data DATA/sartaj --to dicom --out converted/
    """
    try:
        options = parse_pairs(list(reader_option))
    except ValueError as exc:
        raise BtkError(f"bad reader option {exc}") from None
    with ResultDir(check_writable(out), f"convert-{to}") as folder:
        n = convert(data, reader, to, folder.tmp, per_patient, options)
    if as_json:
        click.echo(json.dumps({"folder": str(folder.final), "images": n, "format": to}))
    else:
        click.echo(f"wrote {n} images as {to} to {folder.final}")


@hookimpl
def btk_register_commands(cli):
    cli.add_command(convert_command)
