"""Slices per second of the dicom and nifti readers on uncompressed files (2D slices of 256 px).

Writes 60 DICOM series of 10 slices (one file per slice, 8-bit, uncompressed) and 20 NIfTI
volumes of 30 slices (uncompressed .nii, 16-bit) into a temporary folder, then times
``load_dataset`` reading every slice at 256 px, grayscale, with the default thread pool.
Usage: python benchmarks/reader_speed.py
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np

from btk.dataset import load_dataset
from btk.plugins import get_host
from btk.types import ReadOptions


def main() -> None:
    import nibabel as nib

    from btk.default_plugins.convert import write_dicom_series

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for p in range(60):
            images = [rng.integers(0, 256, (256, 256), dtype=np.uint8) for _ in range(10)]
            write_dicom_series(images, root / "dicom" / ("a" if p % 2 else "b") / f"P{p}", f"P{p}")
        for v in range(20):
            (root / "nifti" / "a").mkdir(parents=True, exist_ok=True)
            data = rng.integers(0, 4000, (256, 256, 30)).astype(np.int16)
            nib.save(nib.Nifti1Image(data, np.eye(4)), str(root / "nifti" / "a" / f"V{v}.nii"))
        host = get_host()
        print(f"cores: {os.cpu_count()}")
        for name, n in (("dicom", 600), ("nifti", 600)):
            reader = host.readers.get(name)
            t0 = time.perf_counter()
            data = load_dataset(reader, root / name, ReadOptions(256, 1, {"slices": "all"}), cache=False)
            seconds = time.perf_counter() - t0
            assert len(data) == n, len(data)
            print(f"{name}: {n} slices in {seconds:.2f} s = {n / seconds:,.0f} slices/s (target >= 500)")


if __name__ == "__main__":
    main()
