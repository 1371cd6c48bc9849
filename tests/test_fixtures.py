"""The committed test fixtures name no place on one machine: a fixture holding an absolute path
passes where it was made and fails everywhere else."""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

FIXTURES = Path(__file__).parent / "fixtures"
TEXT = (".json", ".csv", ".md", ".txt", ".toml", ".yaml", ".yml", ".xml", ".html")
# a POSIX absolute path (two components at least: /tmp/x, /home/me) or a Windows one (C:\\ or C:/),
# not inside a word, a relative path or a URL (https://host/a)
ABSOLUTE = re.compile(r"(?<![\w.~/:-])/[\w.-]+/[\w.-]|(?<![\w])[A-Za-z]:[\\/]{1,2}[\w.-]")


def _texts(path: Path) -> list[tuple[str, str]]:
    """(name, text) of a fixture file, and of each text member of a zip archive (.keras, .npz)."""
    if path.suffix in TEXT:
        return [(str(path), path.read_text(errors="replace"))]
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            return [(f"{path}:{name}", zf.read(name).decode(errors="replace"))
                    for name in zf.namelist() if name.endswith(TEXT)]
    return []


def test_the_pattern_finds_absolute_paths_and_only_them():
    for bad in ('"data": "/tmp/fixdata"', "--out /home/me/runs", "cwd C:\\Users\\me", "at D:/data"):
        assert ABSOLUTE.search(bad), bad
    for fine in ('"data": "fixdata"', "glioma_tumor/gg (1).jpg", "fixture-runs/2026-old", "https://x.org/a/b",
                 "3/4 classes", "tumour/none", "a ratio 1:2"):
        assert not ABSOLUTE.search(fine), fine


def test_no_fixture_holds_an_absolute_path():
    files = [p for p in FIXTURES.rglob("*") if p.is_file()]
    assert files, "no fixtures found"
    found = [f"{name}: {match.group(0)}..." for path in files for name, text in _texts(path)
             for match in [ABSOLUTE.search(text)] if match]
    assert not found, "absolute paths in fixtures (write them relative, or rewrite them in a test):\n" + "\n".join(
        found)
