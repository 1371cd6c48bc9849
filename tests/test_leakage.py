"""Leakage-aware runs: test images with a copy in training are counted and reported apart,
and validation splits keep copies on one side."""

from __future__ import annotations

import csv

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from btk.cli import cli
from btk.phantoms import CLASSES, make_phantom
from btk.runs import load_run


def _write(path, image):
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), image)


@pytest.mark.slow
def test_run_reports_metrics_without_test_copies_and_groups_copies(tmp_path):
    root = tmp_path / "data"
    train = {}
    for c in CLASSES[:2]:
        for i in range(12):
            image = make_phantom(c, np.random.default_rng([CLASSES.index(c), i]), 64)
            train[(c, i)] = image
            _write(root / "Training" / c / f"{i}.png", image)
            if i < 3:  # duplicates inside Training: must stay on one side of the validation split
                _write(root / "Training" / c / f"{i}_dup.png", image)
        for i in range(4):
            image = make_phantom(c, np.random.default_rng([9, CLASSES.index(c), i]), 64)
            _write(root / "Testing" / c / f"new{i}.png", image)
    _write(root / "Testing" / CLASSES[0] / "copy.png", train[(CLASSES[0], 5)])
    _write(root / "Testing" / CLASSES[1] / "brighter.png",
           np.clip(train[(CLASSES[1], 7)].astype(int) + 30, 0, 255).astype(np.uint8))
    out = tmp_path / "runs"
    result = CliRunner().invoke(cli, ["run", "--data", str(root), "--model", "small-cnn", "--image-size", "32",
                                      "--set", "channels=1", "--epochs", "1", "--set", "val_fraction=0.25",
                                      "--out", str(out)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    run = load_run(next(out.iterdir()))
    leakage = run.metrics["leakage"]
    assert leakage["test_images"] == 10 and leakage["test_with_copy_in_train"] == 2
    assert run.metrics["conditions"]["clean"]["n"] == 10
    assert leakage["conditions_without_copies"]["clean"]["n"] == 8
    rows = list(csv.DictReader((run.path / "split.csv").read_text().splitlines()))
    flagged = {r["source"] for r in rows if r["copy_in_train"] == "1"}
    assert flagged == {f"Testing/{CLASSES[0]}/copy.png", f"Testing/{CLASSES[1]}/brighter.png"}
    side = {r["source"]: r["subset"] for r in rows}
    for c in CLASSES[:2]:
        for i in range(3):
            assert side[f"Training/{c}/{i}.png"] == side[f"Training/{c}/{i}_dup.png"]
    assert "no copy in train" in result.output
    assert "2 of 10 test images have an exact or near copy" in result.output


@pytest.mark.slow
def test_duplicate_check_can_be_turned_off(image_folder, tmp_path):
    result = CliRunner().invoke(cli, ["run", "--data", str(image_folder), "--model", "small-cnn", "--image-size", "32",
                                      "--epochs", "1", "--duplicate-threshold", "0", "--out", str(tmp_path / "runs")])
    assert result.exit_code == 0, result.output
    run = load_run(next((tmp_path / "runs").iterdir()))
    assert run.metrics["leakage"]["test_with_copy_in_train"] == 0
    assert run.config.duplicate_threshold == 0
