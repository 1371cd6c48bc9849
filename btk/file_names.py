"""File names that btk derives from input text: DICOM UIDs, sources, class names.

A name made from what a file or a server says must not lead out of the folder it is written to
(a SeriesInstanceUID of ``../../x``: pydicom reads it with only a warning), and two inputs must
not become one file. Every such name goes through :func:`uid_name` or :func:`safe_part`, and
every path made of them through :func:`inside`.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from btk.errors import BtkError

UID = re.compile(r"[0-9]+(\.[0-9]+)*")
"""A DICOM UID's form (PS3.5 9.1): digits and dots, at most 64 characters."""

UNSAFE = re.compile(r'[\x00-\x1f\x7f/\\:*?"<>|]')
"""Characters a file name made from input text may not hold: separators, controls, and those
Windows forbids."""


def _digest(text: str, n: int) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:n]


def uid_name(uid: str) -> str:
    """The file name stem of a UID: the UID itself when it is a valid one, else ``uid-`` and the
    first 32 hex digits of its SHA-256 (distinct texts, distinct names)."""
    text = str(uid)
    if len(text) <= 64 and UID.fullmatch(text):
        return text
    return f"uid-{_digest(text, 32)}"


def safe_part(text: str) -> str:
    """One path component from input text: the text itself when it is a plain name (not empty,
    not ``.`` or ``..``, no separator, control or Windows-forbidden character, at most 120
    characters, not starting with a dot or a space), else its plain characters and a hash of
    the text (``name-<12 hex>``)."""
    text = str(text)
    if (text not in ("", ".", "..") and len(text) <= 120 and not UNSAFE.search(text)
            and not text.startswith((".", " ")) and not text.endswith((" ", "."))):
        return text
    stem = re.sub(r"_+", "_", UNSAFE.sub("_", text)).strip(" ._")[:60]
    return f"{stem or 'name'}-{_digest(text, 12)}"


def safe_relative(text: str) -> list[str]:
    """The components of a relative path given as text (``/`` or ``\\`` separated), each made
    safe by :func:`safe_part`; ``.`` and empty components are dropped."""
    return [safe_part(p) for p in re.split(r"[/\\]", str(text)) if p not in ("", ".")]


def inside(folder: Path, *parts: str) -> Path:
    """``folder / parts``, checked to stay inside ``folder`` once both are resolved (``..`` and
    links followed).

    Raises:
        BtkError: the path would be ``folder`` itself or outside it.
    """
    path = Path(folder).joinpath(*parts)
    root, resolved = Path(folder).resolve(), path.resolve()
    if resolved == root or not resolved.is_relative_to(root):
        raise BtkError(f"refusing to write {path}: it is not inside {folder}")
    return path
