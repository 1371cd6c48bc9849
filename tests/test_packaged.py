"""The run btk ships (``phantom-demo``) and packaged runs in general: ``btk predict`` without a
run uses it and says so; its answers on SARTAJ Testing give the accuracy its card states; the
package stays lean. A plugin's packaged run used by its name: tests/test_plugins.py."""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGED = Path(__file__).resolve().parents[1] / "btk" / "packaged" / "phantom-demo"


def test_the_packaged_run_is_complete_small_and_says_why_no_real_data_model_ships():
    from btk.runs import load_run

    run = load_run("phantom-demo")
    assert run.path.resolve() == PACKAGED.resolve()
    size = sum(p.stat().st_size for p in PACKAGED.rglob("*") if p.is_file())
    assert size < 6 * 2**20, f"{size:,} bytes: the package must stay lean"
    card = (PACKAGED / "MODEL_CARD.md").read_text()
    assert "## Distribution" in card and "SARTAJ" in card and "no licence" in card
    assert "btk run" in card and "phantoms" in card
    sidecar = json.loads((PACKAGED / "model.onnx.json").read_text())
    assert sidecar["measured"]["against_keras_scorer"] <= 1e-5  # float32: the graph stands in for Keras


def test_predict_without_a_run_answers_with_the_packaged_run_as_its_card_says(tmp_path):
    """On all of SARTAJ Testing, as a stranger would type it; the accuracy of its rows is the one
    its card gives for SARTAJ Testing."""
    from conftest import SARTAJ

    if not SARTAJ.exists():
        pytest.skip(f"dataset not found at {SARTAJ}")
    done = subprocess.run([sys.executable, "-m", "btk", "predict", "--data", str(SARTAJ / "Testing"),
                           "--out", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "no run given: using the packaged run 'phantom-demo'" in done.stderr
    [folder] = list(tmp_path.iterdir())
    with open(folder / "predictions.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 394
    right = sum(Path(r["path"]).parent.name == r["predicted"] for r in rows)
    card = (PACKAGED / "MODEL_CARD.md").read_text()
    stated = re.search(r"sartaj \(Testing\), 394 images.*?accuracy ([0-9.]+)%", card)
    assert stated is not None, card
    assert f"{100 * right / len(rows):.1f}" == stated.group(1)
