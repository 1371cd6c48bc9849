"""Shared fixtures: no third-party entry-point plugins, a quiet TensorFlow, small data."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ["BTK_LOAD_PLUGINS"] = ""  # tests see only the built-in plugins and their own
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
if "BTK_CACHE_DIR" not in os.environ:  # the decode cache of the test session, not the user's
    import tempfile

    os.environ["BTK_CACHE_DIR"] = tempfile.mkdtemp(prefix="btk-test-cache-")

SARTAJ = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "sartaj"


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
