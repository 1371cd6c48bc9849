"""Shared fixtures: no third-party entry-point plugins, a quiet TensorFlow, small data."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

# the contract kit's fixtures (btk_host, btk_sample_images, btk_sample_run): opt-in, as for any plugin's tests
pytest_plugins = ["btk.testing"]

os.environ["BTK_LOAD_PLUGINS"] = ""  # tests see only the built-in plugins and their own
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
if "BTK_CACHE_DIR" not in os.environ:  # the decode cache of the test session, not the user's
    import tempfile

    os.environ["BTK_CACHE_DIR"] = tempfile.mkdtemp(prefix="btk-test-cache-")

ROOT = Path(__file__).resolve().parents[1]
# the shared data beside the checkout (../shared), or beside a folder of checkouts (../../shared)
SARTAJ = next((p / "shared" / "data" / "sartaj" for p in ROOT.parents if (p / "shared" / "data" / "sartaj").is_dir()),
              ROOT.parent / "shared" / "data" / "sartaj")
OLD_RUN = Path(__file__).parent / "fixtures" / "run-ad61e95"
"""A run and its evaluation written by btk at commit ad61e95 (one epoch of small-cnn on 48 SARTAJ
Training images). Its recorded paths are relative (data ``fixdata``, runs in ``fixture-runs``) and it
records no working folder: nothing in it names a place on one machine (``test_fixtures.py``)."""


@pytest.fixture(autouse=True)
def fresh_plugins():
    """Each test starts from a freshly built plugin host."""
    from btk import plugins

    plugins.reset()
    yield
    plugins._EXTRA.clear()
    plugins.reset()


@pytest.fixture
def sartaj() -> Path:
    """The real dataset beside the project (CI has it)."""
    if not SARTAJ.exists():
        pytest.skip(f"dataset not found at {SARTAJ}")
    return SARTAJ


@pytest.fixture
def old_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of :data:`OLD_RUN` in ``tmp_path``, which becomes the current folder (commands write
    into a run: its card), so the run's relative data path ``fixdata`` is looked for there."""
    import shutil

    path = tmp_path / "fixture-runs" / OLD_RUN.name
    shutil.copytree(OLD_RUN, path)
    monkeypatch.chdir(tmp_path)
    return path


@pytest.fixture
def old_run_data(old_run: Path, sartaj: Path) -> Path:
    """The data of :func:`old_run`, rebuilt beside it as ``fixdata`` from the SARTAJ Training images
    its ``split.csv`` names: the same files (the file list's SHA-256 is the one the run recorded)."""
    import csv
    import json
    import shutil

    from btk.cache import file_listing_digest
    from btk.plugins import get_host
    from btk.types import ReadOptions

    data = Path("fixdata").resolve()
    with open(old_run / "split.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            (data / row["source"]).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(sartaj / "Training" / row["source"], data / row["source"])
    recorded = json.loads((old_run / "config.json").read_text())["provenance"]["data"]["sha256"]
    entries = get_host().readers.get("folder").scan(data, ReadOptions(16, 1))
    assert file_listing_digest(data, entries)["sha256"] == recorded, "not the run's files"
    return data


@pytest.fixture
def tiny_sartaj_run(tmp_path: Path, sartaj: Path):
    """``make(*flags) -> (run_dir, data)``: a one-epoch small-cnn run at 32 px on 6 real meningioma
    and 6 no-tumour images copied into ``tmp_path / "data"``, with extra ``btk run`` flags."""
    import shutil

    from click.testing import CliRunner

    from btk.cli import cli

    data = tmp_path / "data"
    for c in ("meningioma_tumor", "no_tumor"):
        (data / c).mkdir(parents=True)
        for f in sorted((sartaj / "Training" / c).glob("*.jpg"))[:6]:
            shutil.copy(f, data / c / f.name)

    def make(*flags: str) -> tuple[Path, Path]:
        out = tmp_path / "runs"
        result = CliRunner().invoke(cli, ["run", "--data", str(data), "--model", "small-cnn", "--image-size", "32",
                                          "--epochs", "1", *flags, "--out", str(out), "--reporter", "none"])
        assert result.exit_code == 0, result.output
        return next(out.iterdir()), data

    return make


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    """A tiny class-folder dataset of real PNG files: 3 classes x 4 images, 40x40."""
    import cv2

    rng = np.random.default_rng(0)
    for cls in ["a", "b", "c"]:
        (tmp_path / "data" / cls).mkdir(parents=True)
        for i in range(4):
            img = rng.integers(0, 255, (40, 40), dtype=np.uint8)
            cv2.imwrite(str(tmp_path / "data" / cls / f"{i}.png"), img)
    return tmp_path / "data"


@pytest.fixture(scope="session")
def sartaj_small(tmp_path_factory) -> Path:
    """Real SARTAJ images in its Training/Testing layout, 8 training and 3 test images per class
    (44 in all), copied once per test session."""
    import shutil

    if not SARTAJ.exists():
        pytest.skip(f"dataset not found at {SARTAJ}")
    root = tmp_path_factory.mktemp("sartaj-small") / "data"
    for split, take in (("Training", slice(0, 8)), ("Testing", slice(0, 3))):
        for c in ("glioma_tumor", "meningioma_tumor", "no_tumor", "pituitary_tumor"):
            (root / split / c).mkdir(parents=True)
            for f in sorted((SARTAJ / split / c).glob("*.jpg"))[take]:
                shutil.copy(f, root / split / c / f.name)
    return root


@pytest.fixture(scope="session")
def sartaj_small_run(tmp_path_factory, sartaj_small) -> Path:
    """A one-epoch small-cnn run at 32 px (the fast preset: grey, head crop) on
    :func:`sartaj_small`, trained once per test session."""
    from click.testing import CliRunner

    from btk.cli import cli

    out = tmp_path_factory.mktemp("sartaj-small-runs")
    result = CliRunner().invoke(cli, ["run", "--data", str(sartaj_small), "--model", "small-cnn", "--image-size", "32",
                                      "--epochs", "1", "--out", str(out), "--reporter", "none"])
    assert result.exit_code == 0, result.output
    return next(out.iterdir())


def one_line_refusal(args: list[str]) -> str:
    """The single line a refused ``btk`` command prints (exit 1, no traceback)."""
    from click.testing import CliRunner

    from btk.cli import cli

    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    return lines[0]


CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars")
"""Headless Chromium reading a local file: nothing fetched, nothing synced, no sandbox (CI containers)."""


def chromium(page: Path, profile: Path, width: int, height: int, *args: str) -> subprocess.CompletedProcess[str]:
    """Headless Chromium (Debian's ``chromium``) on the local file ``page`` at ``width`` x ``height``
    with ``args`` (``--dump-dom``, ``--screenshot=FILE``); the test is skipped where it is not installed."""
    import shutil

    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        pytest.skip("headless Chromium not installed (apt-get install chromium): no browser to lay the page out")
    return subprocess.run([binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}",
                           *args, page.as_uri()], capture_output=True, text=True, timeout=120)
