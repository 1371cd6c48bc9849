"""``btk convert``: write an image dataset as DICOM series or NIfTI volumes, keeping its
class-folder (and Training/Testing) layout, so the dicom and nifti readers can be tested round
trip on real images.

- DICOM: one series per synthetic patient (``--per-patient N`` images of one class as N slices,
  in InstanceNumber order), Secondary Capture Image Storage written by highdicom (a JPEG is not
  an MR acquisition), 8-bit MONOCHROME2, explicit VR little endian, fresh UIDs, no window: the
  reader returns the stored pixels unchanged.
- NIfTI: one volume per synthetic patient (.nii.gz, 1 mm pixels, 5 mm slices, RAS+ affine),
  written so that the nifti reader's axial slices are the original images.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import click
import numpy as np

from btk.api import BtkError, ReadOptions, ResultDir, check_writable, get_host, hookimpl, iter_entries, parse_pairs

SPLIT_DIRS = {"train": "Training", "test": "Testing", "": ""}


def write_dicom_series(images: list[np.ndarray], folder: Path, patient: str, study: str | None = None,
                       file_names: list[str] | None = None) -> list[Path]:
    """Write 8-bit grayscale ``images`` as one DICOM series (one file per slice) in ``folder``.

    The objects are Secondary Capture images (highdicom): a JPEG holds no MR acquisition, so an
    MR Image object would have to invent its sequence, echo time and geometry. Every Type 1 and
    Type 2 attribute of the Secondary Capture IOD is written (Type 2 empty where unknown), which
    ``dciodvfy`` checks in the tests. Slices keep their order through InstanceNumber.
    """
    import highdicom as hd
    from pydicom.uid import generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    study = study or generate_uid()
    series = generate_uid()
    paths = []
    for k, image in enumerate(images):
        path = folder / (file_names[k] if file_names else f"slice_{k:03d}.dcm")
        sc = hd.sc.SCImage(
            pixel_array=np.ascontiguousarray(image, dtype=np.uint8), photometric_interpretation="MONOCHROME2",
            bits_allocated=8, coordinate_system="PATIENT", study_instance_uid=study, series_instance_uid=series,
            series_number=1, sop_instance_uid=generate_uid(), instance_number=k + 1, manufacturer="btk",
            patient_id=patient, patient_name=f"Synthetic^{patient}", patient_orientation=("L", "P"),
            pixel_spacing=(1.0, 1.0), study_id="1", accession_number="", series_description="btk convert")
        sc.Modality = "MR"  # what the images show; the conversion is stated by the SC module (ConversionType)
        sc.BodyPartExamined = "BRAIN"  # an unpaired part: no Laterality
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


def convert(data: Path, reader_name: str, to: str, out: Path, per_patient: int, options: dict[str, str]) -> int:
    """Convert everything ``reader_name`` reads at ``data``; returns the number of images written."""
    reader = get_host().readers.get(reader_name)
    if out.exists() and any(out.iterdir()):
        raise BtkError(f"output folder is not empty: {out}")
    groups: dict[tuple[str, str], list[np.ndarray]] = defaultdict(list)
    for entry, samples in iter_entries(reader, data, ReadOptions(None, 1, options)):
        if isinstance(samples, str):
            click.echo(f"skipped {entry.source}: {samples}", err=True)
            continue
        for s in samples:
            groups[(s.split, str(s.label))].append(s.image[..., 0] if s.image.ndim == 3 else s.image)
    written, patient = 0, 0
    for (split, label), images in sorted(groups.items()):
        for start in range(0, len(images), per_patient):
            chunk = images[start:start + per_patient]
            if len({im.shape for im in chunk}) > 1:
                import cv2

                chunk = [cv2.resize(im, chunk[0].shape[::-1]) for im in chunk]
            patient += 1
            pid = f"SYN{patient:05d}"
            folder = out / SPLIT_DIRS.get(split, split) / label
            if to == "dicom":
                write_dicom_series(chunk, folder / pid, pid)
            else:
                write_nifti_volume(chunk, folder / f"{pid}.nii.gz")
            written += len(chunk)
    return written


@click.command(name="convert")
@click.option("--data", type=click.Path(path_type=Path), required=True, help="The dataset to convert.")
@click.option("--reader", default="folder", show_default=True, help="Reader for --data.")
@click.option("--reader-option", "-R", multiple=True, metavar="KEY=VALUE", help="Reader-specific option.")
@click.option("--to", "to", type=click.Choice(["dicom", "nifti"]), required=True, help="Output format.")
@click.option("--out", type=click.Path(path_type=Path), required=True, metavar="DIR",
              help="Folder in which the converted dataset is made: a new directory, nothing else there is touched.")
@click.option("--per-patient", type=click.IntRange(1), default=1, show_default=True,
              help="Images of one class per synthetic patient (slices of one series or volume).")
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
