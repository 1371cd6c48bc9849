"""The ``nifti`` reader: NIfTI volumes (.nii, .nii.gz) sliced into 2D samples (nibabel).

- Each volume is reoriented to the closest canonical orientation (RAS+: x increases toward the
  patient's Right, y toward Anterior, z toward Superior) before slicing, so the slice axis means
  the same for every file.
- ``axis=axial`` (default, slices along z), ``coronal`` (y) or ``sagittal`` (x). A 2D slice is
  shown with the anterior (axial, sagittal) or superior (coronal) side at the top.
- 4D volumes: ``volume=N`` picks the N-th 3D volume (default 0; the volumes left out are then
  noted, and counted and named by the command).
- Intensity: clipped to the volume's 1st and 99th percentiles (``clip=LOW/HIGH``; the full range
  when they are equal; estimated from at most 262,144 evenly strided voxels) and scaled to 0..255,
  the same mapping for every slice of a volume;
  ``clip=none`` keeps the values as they are (for 8-bit volumes such as ``btk convert`` writes).
- Slices: ``slices=middle`` (default), ``all``, ``every:N``, or ``content:F`` (slices where at
  least a share F of the pixels is above the volume's background).
- Group: the volume file. Labels: ``manifest=labels.csv`` (``path``, ``label``) or class folders.

Reader options (``-R KEY=VALUE``): ``axis``, ``volume``, ``clip``, ``slices``, ``manifest``.
"""

from __future__ import annotations

from pathlib import Path

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

AXES = {"sagittal": 0, "coronal": 1, "axial": 2}
PERCENTILE_SAMPLE = 1 << 18  # percentiles come from at most this many evenly strided voxels
OPTIONS = ("axis", "volume", "clip", "slices", "manifest")


def _is_nifti(p: Path) -> bool:
    return p.name.endswith(".nii") or p.name.endswith(".nii.gz")


def slice_stack(data: np.ndarray, axis: int) -> np.ndarray:
    """The slices of a RAS+ volume along ``axis`` as one C-ordered stack (n, rows, cols), each
    with anterior (axial, sagittal) or superior (coronal) at the top."""
    planes = np.moveaxis(data, axis, 0)  # axial: (z, x, y); coronal: (y, x, z); sagittal: (x, y, z)
    return np.ascontiguousarray(np.flip(planes.transpose(0, 2, 1), axis=1))


class NiftiReader:
    """Reads NIfTI volumes and yields chosen 2D slices."""

    name = "nifti"
    description = "NIfTI volumes (.nii, .nii.gz), reoriented to RAS+ and sliced (nibabel)"
    options = OPTIONS

    def can_read(self, path: Path) -> bool:
        """A .nii or .nii.gz file, or a folder holding some."""
        return _is_nifti(path) or (path.is_dir() and any(_is_nifti(p) for p in path.rglob("*.nii*")))

    def _options(self, options: ReadOptions) -> dict:
        extra = options.extra
        unknown = set(extra) - set(OPTIONS) - {"inspect"}
        if unknown:
            raise BtkError(f"nifti reader: unknown option(s) {', '.join(sorted(unknown))} "
                           f"(options: {', '.join(OPTIONS)})")
        axis = extra.get("axis", "axial")
        if axis not in AXES:
            raise BtkError(f"nifti reader: unknown axis {axis!r} (axes: {', '.join(AXES)})")
        try:
            volume = int(extra.get("volume", 0))
            clip = extra.get("clip", "1/99")
            low, high = (0.0, 100.0) if clip == "none" else (float(v) for v in clip.split("/"))
        except ValueError:
            raise BtkError("nifti reader: volume must be an integer and clip LOW/HIGH percentiles or none") from None
        if not 0 <= low < high <= 100:
            raise BtkError(f"nifti reader: clip percentiles must satisfy 0 <= LOW < HIGH <= 100, got {low}/{high}")
        rule = extra.get("slices", "middle")
        choose_slices(3, rule, [1, 1, 1])
        return {"axis": AXES[axis], "volume": volume, "clip": None if clip == "none" else (low, high), "slices": rule}

    def scan(self, path: Path | None, options: ReadOptions) -> list[Entry]:
        """One entry per NIfTI file under ``path`` (or ``path`` itself)."""
        self._options(options)
        base, files = find_files(path, "nifti", _is_nifti, "NIfTI files (.nii, .nii.gz)")
        manifest = read_manifest(options.extra["manifest"]) if "manifest" in options.extra else None
        entries = []
        for f in files:
            rel = f.relative_to(base).as_posix()
            label, split = folder_label(base, f) if base != f else (None, "")
            if manifest is not None:
                label = manifest.get(rel, manifest.get(f.name))
            entries.append(Entry(rel, label, rel, split, payload=f))
        return entries

    def load(self, entry: Entry, options: ReadOptions) -> list[Sample]:
        """Load, reorient, scale and slice one volume."""
        import cv2
        import nibabel as nib

        opts = self._options(options)
        try:
            img = nib.as_closest_canonical(nib.load(str(entry.payload)))
            data = np.asarray(img.dataobj, dtype=np.float32)
        except Exception as exc:
            raise UnreadableInputError(f"cannot read NIfTI file {entry.source}: {type(exc).__name__}: {exc}") from None
        note = None
        if data.ndim == 4:
            count = data.shape[3]
            if not 0 <= opts["volume"] < count:
                raise UnreadableInputError(f"{entry.source} has {count} volumes; volume={opts['volume']}")
            data = data[..., opts["volume"]]
            if count > 1 and "volume" not in options.extra:  # chosen by default, not by the user: say so
                note = (f"a 4-D file: volume {opts['volume']} of {count} read, the other {count - 1} left out "
                        "(-R volume=N reads another)")
        elif data.ndim == 2:
            data = data[..., None]
        if data.ndim != 3:
            raise UnreadableInputError(f"{entry.source}: expected a 3D or 4D volume, got shape {data.shape}")
        integer = (img.get_data_dtype().kind in "iu" and getattr(img.dataobj, "slope", 1) in (None, 1)
                   and getattr(img.dataobj, "inter", 0) in (None, 0))
        flat = data.ravel(order="K")
        finite = flat if integer else flat[np.isfinite(flat)]
        finite = finite[:: max(1, finite.size // PERCENTILE_SAMPLE)]
        if opts["clip"] is None:  # values are display values already (e.g. 8-bit data)
            volume = np.clip(np.rint(np.nan_to_num(data)), 0, 255).astype(np.uint8)
        else:
            low, high = np.percentile(finite, opts["clip"], method="nearest") if finite.size else (0.0, 1.0)
            if high <= low and finite.size:  # mostly constant: fall back to the full range
                low, high = float(finite.min()), float(finite.max())
            volume = to_uint8(np.nan_to_num(data), float(low), float(high))
        stack = slice_stack(volume, opts["axis"])
        n = len(stack)
        content = None
        if opts["slices"].startswith("content"):
            background = np.percentile(volume, 5)
            content = [float((plane > background).mean()) for plane in stack]
        zooms = [float(z) for z in img.header.get_zooms()[:3]]
        samples = []
        for k in choose_slices(n, opts["slices"], content):
            image = stack[k]
            if options.image_size:
                image = cv2.resize(image, (options.image_size, options.image_size))
            if options.channels == 3:
                image = np.repeat(image[..., None], 3, axis=-1)
            meta = {"slice": k, "slices": n, "axis": options.extra.get("axis", "axial"), "zooms": zooms,
                    **({"note": note} if note else {})}
            samples.append(Sample(image, entry.label, entry.group, f"{entry.source}[{k}]", entry.split, meta))
        return samples


@hookimpl
def btk_register_readers(register: RegisterReader) -> None:
    register(NiftiReader())
