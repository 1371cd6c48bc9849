"""The ``folder`` reader: class sub-folders of JPEG/PNG images, read the report's way.

Layouts:
    ROOT/Training/<class>/*.jpg and ROOT/Testing/<class>/*.jpg  (the Kaggle layout; also
    ``train``/``test``, any case), or ROOT/<class>/*.jpg (one split).

Images are read with ``cv2.imread`` (three equal BGR channels for a grayscale JPEG, as the
report did; ``--channels 1`` reads grayscale) and resized with ``cv2.resize`` to the run's
image size. Each file is its own group (the dataset has no patient ids). With the reader option
``inspect=1`` (``btk audit`` sets it) each sample's metadata also holds the file's own channel
count and bit depth.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from btk.api import BtkError, Entry, ReadOptions, RegisterReader, Sample, UnreadableInputError, hookimpl

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff"}
SPLIT_NAMES = {"training": "train", "train": "train", "testing": "test", "test": "test"}


def _class_dirs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


class FolderReader:
    """Reads ``ROOT/[Training|Testing]/<class>/<image>`` folders."""

    name = "folder"
    description = "class sub-folders of JPEG/PNG images (Kaggle layout with Training/Testing, or one split)"
    options = ("inspect",)

    def can_read(self, path: Path) -> bool:
        """An image file, or a folder (of class folders)."""
        return path.is_dir() or path.suffix.lower() in IMAGE_SUFFIXES

    def scan(self, path: Path | None, options: ReadOptions) -> list[Entry]:
        """List every image file with its class and split.

        Raises:
            BtkError: the folder is missing, has no class folders, or a class folder has no images.
        """
        if path is None:
            raise BtkError("the folder reader needs --data PATH")
        root = Path(path)
        if not root.exists():
            raise BtkError(f"data folder not found: {root}")
        if root.is_file():  # one image, unlabelled (btk predict)
            if root.suffix.lower() not in IMAGE_SUFFIXES:
                raise BtkError(f"not an image file ({', '.join(sorted(IMAGE_SUFFIXES))}): {root}")
            return [Entry(root.name, None, root.name, "", payload=root)]
        subdirs = _class_dirs(root)
        if not subdirs:
            raise BtkError(f"data folder {root} is empty: expected class sub-folders of images")
        splits = {d: SPLIT_NAMES[d.name.lower()] for d in subdirs if d.name.lower() in SPLIT_NAMES}
        if splits and len(splits) != len(subdirs):
            extra = ", ".join(d.name for d in subdirs if d not in splits)
            raise BtkError(f"data folder {root} mixes split folders with other folders: {extra}")
        layout = list(splits.items()) if splits else [(root, "")]
        entries: list[Entry] = []
        for split_dir, split in layout:
            class_dirs = _class_dirs(split_dir)
            if not class_dirs:
                raise BtkError(f"no class folders in {split_dir}")
            for class_dir in class_dirs:
                with os.scandir(class_dir) as listing:  # file types without a stat per file
                    names = sorted(e.name for e in listing
                                   if e.is_file() and os.path.splitext(e.name)[1].lower() in IMAGE_SUFFIXES)
                if not names:
                    raise BtkError(f"class folder has no images: {class_dir}")
                prefix = class_dir.relative_to(root).as_posix() + "/"
                for name in names:
                    rel = prefix + name
                    entries.append(Entry(source=rel, label=class_dir.name, group=rel, split=split,
                                         payload=class_dir / name))
        return entries

    def load(self, entry: Entry, options: ReadOptions) -> list[Sample]:
        """Decode and resize one image file."""
        import cv2

        flag = cv2.IMREAD_GRAYSCALE if options.channels == 1 else cv2.IMREAD_COLOR
        try:
            data = np.fromfile(entry.payload, np.uint8)
        except OSError as exc:
            raise UnreadableInputError(f"cannot read image {entry.payload}: {exc.strerror or exc}") from None
        problem = truncated_jpeg(data.tobytes())
        if problem:
            raise UnreadableInputError(f"damaged image {entry.payload}: {problem}")
        image = cv2.imdecode(data, flag) if data.size else None
        if image is None:
            raise UnreadableInputError(f"cannot decode image {entry.payload}")
        meta: dict[str, Any] = {"original_size": [int(image.shape[0]), int(image.shape[1])]}
        if options.extra.get("inspect"):  # btk audit: what the file itself holds
            raw = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
            if raw is not None:
                meta["file_channels"] = 1 if raw.ndim == 2 else int(raw.shape[2])
                meta["bit_depth"] = int(raw.dtype.itemsize * 8)
        if options.image_size:
            image = cv2.resize(image, (options.image_size, options.image_size))
        return [Sample(image, entry.label, entry.group, entry.source, entry.split, meta)]


def truncated_jpeg(data: bytes) -> str | None:
    """What is wrong with JPEG file contents ``data`` cut short, or ``None`` (also for other
    formats). libjpeg decodes a truncated file with a grey or smeared bottom and one warning on
    standard error; here it is damaged: its end-of-image marker must follow its last scan (in the
    scans' coded data a 0xFF byte is never followed by a marker's code, so neither marker hides there)."""
    if data[:2] != b"\xff\xd8":
        return None
    if data.rfind(b"\xff\xd9") < data.rfind(b"\xff\xda"):
        return f"truncated JPEG: its {len(data):,} bytes end before its end-of-image marker"
    return None


@hookimpl
def btk_register_readers(register: RegisterReader) -> None:
    register(FolderReader())
