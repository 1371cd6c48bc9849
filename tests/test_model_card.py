"""Every run gets a model card with its own numbers."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from btk.cli import cli
from btk.model_card import SECTIONS


@pytest.mark.slow
def test_a_runs_model_card_holds_every_section_with_its_own_numbers(tiny_sartaj_run):
    run_dir, data = tiny_sartaj_run("--degrade", "blur@2")
    card = (run_dir / "MODEL_CARD.md").read_text()
    for section in SECTIONS:
        assert f"## {section}\n" in card
    assert card.startswith(f"# Model card: {run_dir.name}\n")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    rows = [line for line in card.splitlines() if line.startswith("| ")]
    for condition, m in metrics["conditions"].items():
        (row,) = [r for r in rows if r.startswith(f"| {condition} ")]
        assert f" | {m['n']} | {100 * m['accuracy']:.1f}% (" in row
    clean = metrics["conditions"]["clean"]
    assert f"| meningioma_tumor | {100 * clean['per_class']['meningioma_tumor']['precision']:.1f}% |" in card
    counts = metrics["counts"]
    assert f"test {counts['test']} (" in card and f"train {counts['train']} (" in card
    assert f"{metrics['leakage']['test_with_copy_in_train']} of {counts['test']} test images have" in card
    assert "Not measured: `btk robustness RUN`" in card and "None: `btk evaluate RUN" in card

    # measured later: a sweep, explanations and an evaluation, then btk card
    (run_dir / "robustness.json").write_text(json.dumps({"run": run_dir.name, "n": 4, "clean": 0.75,
                                                         "degraders": {"blur": [0.75, 0.5, 0.25]}}))
    (run_dir / "explain.json").write_text(json.dumps({"method": "gradcam", "images": [
        {"outside_head_share": 0.1}, {"outside_head_share": 0.3}]}))
    evaluated = CliRunner().invoke(cli, ["evaluate", str(run_dir), "--data", str(data), "--degrade", "blur@2",
                                         "--reporter", "none"])
    assert evaluated.exit_code == 0, evaluated.output
    result = CliRunner().invoke(cli, ["card", str(run_dir)])
    assert result.exit_code == 0, result.output
    card = (run_dir / "MODEL_CARD.md").read_text()
    assert "- blur: 75.0%, 50.0%, 25.0%" in card
    assert "outside the head: mean 0.20, max 0.30" in card
    (evaluation,) = (run_dir / "evaluations").iterdir()
    assert f"- {evaluation.name}: {data} (all), {clean['n'] + counts['train'] + counts['val']} images" in card

    html = CliRunner().invoke(cli, ["report", str(run_dir), "--html", str(run_dir.parent / "r.html")])
    assert html.exit_code == 0, html.output
    page = (run_dir.parent / "r.html").read_text()
    # the card rendered as HTML (its headings one level down), not as preformatted text
    assert f"<h2>Model card: {run_dir.name}</h2>" in page and "<pre>" not in page
    assert "<h3>configuration</h3>" in page  # the run's fields and the recipe's as table rows
    assert "<tr><td>task</td><td>multiclass</td></tr>" in page and "<tr><td>epochs</td><td>1</td></tr>" in page
    # the run's evaluation beside it, with its degraded condition
    assert f">{evaluation.name}</a></td><td>blur@2</td>" in page
