"""One answer per image: the run's own predictions.csv, btk predict, btk evaluate, btk explain and
btk robustness give every test image the same class and the same probability (to 1e-6), for a
multiclass run and a binary run learned through the classes, each with and without test-time
augmentation. All of them score through the run's one scorer (btk.scoring)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from btk.cli import cli

pytestmark = pytest.mark.slow

CLASSES = ("glioma_tumor", "meningioma_tumor", "no_tumor", "pituitary_tumor")
TOLERANCE = 1e-6


@pytest.fixture(scope="module")
def data(sartaj_small) -> Path:
    """Real SARTAJ images in a Training/Testing layout: 8 training and 3 test images per class."""
    return sartaj_small


def _invoke(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 0, result.output
    return result.stdout


def _csv(path: Path, condition: str = "clean") -> dict[str, tuple[str, dict[str, float]]]:
    """source -> (predicted class, probabilities) of one condition of a predictions file."""
    with open(path, newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["condition"] == condition]
    return {r["source"]: (r["predicted"], {k[2:]: float(v) for k, v in r.items() if k.startswith("p_")})
            for r in rows}


def _same(reference: dict[str, tuple[str, dict[str, float]]], other: dict[str, tuple[str, dict[str, float]]],
          what: str) -> None:
    assert set(other) == set(reference), what
    for source, (cls, probs) in reference.items():
        other_cls, other_probs = other[source]
        assert other_cls == cls, f"{what}: {source}: {other_cls} against the run's {cls}"
        assert set(other_probs) == set(probs), what
        worst = max(abs(other_probs[c] - p) for c, p in probs.items())
        assert worst <= TOLERANCE, f"{what}: {source}: probabilities differ by {worst:.2e}"


@pytest.mark.parametrize(("task", "tta"), [("multiclass", False), ("multiclass", True), ("binary", False),
                                            ("binary", True)])
def test_every_command_gives_one_answer_per_image(data, tmp_path, task, tta):
    flags = ["--task", task] + (["--set", "binary_via_classes=on"] if task == "binary" else []) + \
        (["--tta"] if tta else [])
    summary = json.loads(_invoke("run", "--data", str(data), "--model", "small-cnn", "--image-size", "32",
                                 "--epochs", "1", "--seed", "3", *flags, "--out", str(tmp_path / "runs"), "--json"))
    run = Path(summary["run"])
    if task == "binary":  # learned through the classes: four outputs folded into tumour vs none
        assert json.loads((run / "config.json").read_text())["trained_classes"] == list(CLASSES)
    assert summary["temperature"] != 1.0  # the answers below are calibrated ones, so the temperature counts
    own = _csv(run / "predictions.csv")
    assert len(own) == 12

    # btk predict, over the test folder, as JSON
    rows = json.loads(_invoke("predict", str(run), "--data", str(data / "Testing"), "--json"))
    predicted = {str(Path(r["path"]).relative_to(data)): (r["predicted"], r["probabilities"]) for r in rows}
    _same(own, predicted, "btk predict")

    # btk evaluate on the same data (its Testing split): the evaluation's predictions.csv
    evaluation = json.loads(_invoke("evaluate", str(run), "--data", str(data), "--out", str(tmp_path / "ev"),
                                    "--json"))
    _same(own, _csv(Path(evaluation["run"]) / "predictions.csv"), "btk evaluate")

    # btk explain: the class and probability behind each heat map
    explained = json.loads(_invoke("explain", str(run), "--data", str(data / "Testing"), "--out",
                                   str(tmp_path / "ex"), "--json"))
    answers = {str(Path(r["path"]).relative_to(data)): (r["predicted"], r["probability"]) for r in explained["images"]}
    assert set(answers) == set(own)
    for source, (cls, probs) in own.items():
        assert answers[source][0] == cls, f"btk explain: {source}"
        assert abs(answers[source][1] - probs[cls]) <= TOLERANCE, f"btk explain: {source}"

    # btk robustness: every image's clean answer in robustness-predictions.csv
    _invoke("robustness", str(run), "--degraders", "blur", "--json")
    _same(own, _csv(run / "robustness-predictions.csv"), "btk robustness (clean)")
