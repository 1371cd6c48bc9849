"""``MODEL_CARD.md``: what a run's model is for, what it was trained on and how well it did, on
one page (after Mitchell et al. 2019, "Model Cards for Model Reporting"). Every number comes
from the run's own files: its configuration, split, predictions, metrics and, where they were
made, its robustness sweep, explanations, calibration and external evaluations. ``btk run``
writes the card; ``btk card RUN`` writes it again after later measurements.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path
from typing import Any

from btk.runs import Run

CARD = "MODEL_CARD.md"

SECTIONS = ("Model details", "Intended use", "Out of scope", "Data", "Training", "Metrics", "Calibration",
            "Robustness", "Explanations", "External evaluations", "Known limitations")


def _ensemble_lines(run: Run) -> list[str]:
    """An ensemble's members and the test-time augmentation, if any, as card lines."""
    lines = []
    info = run.config.get("ensemble")
    if info:
        members = ", ".join(f"{m['run']} (seed {m['seed']})" for m in info["members"])
        lines.append(f"- An ensemble: the mean of the probabilities of {len(info['members'])} runs: {members}; "
                     + ("they held out the same validation images." if info.get("shared_validation") else
                        "they held out different validation images, so no temperature was fitted."))
    if run.config["config"].get("tta"):
        lines.append("- Test-time augmentation: each image's probabilities are averaged with its mirror image's.")
    return lines


def _augment_text(recipe: dict[str, Any], cfg: dict[str, Any]) -> str:
    """The run's degradation augmentation in words (old runs kept it beside the recipe)."""
    names = recipe.get("augment_degraders") or ",".join(cfg.get("augment") or [])
    if not names or names == "none":
        return "none"
    share = recipe.get("augment_probability", cfg.get("augment_probability", 0.5))
    return f"{names.replace(',', ', ')} (share {share}, levels 1-{recipe.get('augment_max_level', 5)})"


def _pct(x: float | None) -> str:
    return "-" if x is None or x != x else f"{100 * x:.1f}%"  # None or NaN: not defined


def _split_counts(run: Run) -> dict[str, Counter]:
    counts: dict[str, Counter] = {}
    path = run.path / "split.csv"
    if path.exists():
        with open(path, newline="") as fh:
            for row in csv.DictReader(fh):
                counts.setdefault(row["subset"], Counter())[row["label"]] += 1
    return counts


def _json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _metrics_rows(run: Run) -> list[str]:
    from btk.stats import metric_cis, reliability

    rows = ["| test images | n | accuracy (95% CI) | balanced accuracy | macro F1 | macro ROC AUC | ECE |",
            "| --- | --- | --- | --- | --- | --- | --- |"]
    for condition, m in run.metrics["conditions"].items():
        _, y, probs = run.condition_arrays(condition)
        low, high = metric_cis(y, probs)["accuracy"]
        flag = " (collapsed: one class for every image)" if m["collapsed"] else ""
        rows.append(f"| {condition}{flag} | {m['n']} | {_pct(m['accuracy'])} ({_pct(low)}-{_pct(high)}) | "
                    f"{_pct(m['balanced_accuracy'])} | {_pct(m['f1_macro'])} | {_pct(m['auc_macro'])} | "
                    f"{reliability(y, probs)['ece']:.3f} |")
    leakage = run.metrics.get("leakage") or {}
    for condition, m in (leakage.get("conditions_without_copies") or {}).items():
        rows.append(f"| {condition}, no copy in training | {m['n']} | {_pct(m['accuracy'])} | "
                    f"{_pct(m['balanced_accuracy'])} | {_pct(m['f1_macro'])} | {_pct(m['auc_macro'])} | |")
    return rows


def model_card(run: Run, name: str | None = None) -> str:
    """The model card of ``run`` as Markdown (``name``: the run's name, if not its folder's)."""
    cfg, recipe = run.config["config"], run.config["recipe"]
    made = run.config.get("provenance") or {}
    versions = run.config.get("versions") or {}
    metrics = run.metrics
    leakage = metrics.get("leakage") or {}
    counts = _split_counts(run)
    clean = metrics["conditions"].get("clean") or next(iter(metrics["conditions"].values()))
    task = "tumour vs none" if cfg["task"] == "binary" else f"{len(run.classes)} classes"
    lines = [f"# Model card: {name or run.name}", ""]

    lines += ["## Model details", "",
              f"- Classifies 2D brain MRI images ({task}: {', '.join(run.classes)}).",
              f"- Network: `{cfg.get('model') or recipe.get('model')}` (recipe `{recipe['name']}`), input "
              f"{' x '.join(str(v) for v in run.config.get('input_shape') or [])}, trained with btk "
              f"{versions.get('btk', '?')}, Keras {versions.get('keras', '?')} on {versions.get('backend', '?')}.",
              f"- Made {made.get('started', '?')} to {made.get('ended', '?')} on "
              f"{made.get('device', 'an unrecorded device')}, precision {made.get('precision', '?')}; "
              f"command: `{made.get('command', '?')}`.", ""]

    lines += ["## Intended use", "",
              "Research and teaching: studying how a CNN classifies brain-tumour MRI slices and how image quality "
              "(blur, resolution, noise, MRI artefacts) changes its answers; comparing recipes and models under "
              "the same evaluation.", ""]
    lines += ["## Out of scope", "",
              "- Diagnosis, triage or any decision about a patient: the model has not been validated clinically.",
              "- Images unlike the training data (other modalities, body parts, 3D volumes read as one image, "
              "other hospitals' scanners) without an external evaluation (`btk evaluate`) on such images first.",
              "- Reading its probabilities as risks without checking calibration on the population at hand.", ""]

    data = made.get("data") or {}
    lines += ["## Data", "",
              f"- Reader `{cfg['reader']}`" + (f", data `{cfg['data']}`" if cfg.get("data") else "")
              + (f": {data.get('files')} files, SHA-256 of the file list {str(data.get('sha256', ''))[:16]}"
                 if data.get("sha256") else "") + ".",
              "- Images per split: " + "; ".join(f"{subset} {sum(c.values())} ("
                                                 + ", ".join(f"{k} {v}" for k, v in sorted(c.items())) + ")"
                                                 for subset, c in counts.items()) + "."]
    if leakage:
        lines.append(f"- Copies between splits: {leakage.get('test_with_copy_in_train', 0)} of "
                     f"{leakage.get('test_images', clean['n'])} test images have an exact or near copy (score >= "
                     f"{leakage.get('threshold')}) among the training images; btk's own splits keep copies on one "
                     "side.")
    if metrics.get("skipped"):
        lines.append(f"- {len(metrics['skipped'])} unreadable input(s) skipped.")
    lines.append("")

    train_degrade = ", ".join(d["label"] for d in run.config.get("train_degrade", [])) or "none"
    epochs_run = len(run.history.get("loss", []))
    lines += ["## Training", "",
              f"- {epochs_run} of {recipe['epochs']} epochs (best epoch {run.history.get('best_epoch', ['-'])[0]}), "
              f"batch {recipe['batch_size']}, learning rate {recipe['learning_rate']}, schedule "
              f"{recipe.get('schedule', 'constant')}, seed {cfg.get('seed')}.",
              f"- Images {recipe['image_size']} px, {recipe['channels']} channel(s), crop {recipe.get('crop', 'none')}"
              f", intensity {recipe.get('intensity', 'none')}, scale {recipe['scale']:.4g}; augmentation "
              f"{'on' if recipe.get('augment_images') else 'off'}; trained on degraded images: {train_degrade}; "
              f"degraders applied on the fly: {_augment_text(recipe, cfg)}.",
              *_ensemble_lines(run), ""]

    lines += ["## Metrics", "",
              f"On the run's {clean['n']} test images; intervals: 95% percentile bootstrap, 1,000 resamples. "
              "ECE: expected calibration error, 15 bins.", "", *_metrics_rows(run), "",
              "| class | precision | recall | F1 | ROC AUC | support |", "| --- | --- | --- | --- | --- | --- |"]
    for c in run.classes:
        pc = clean["per_class"][c]
        lines.append(f"| {c} | {_pct(pc['precision'])} | {_pct(pc['recall'])} | {_pct(pc['f1'])} | "
                     f"{_pct(pc['auc'])} | {pc['support']} |")
    lines.append("")

    calibration = run.config.get("calibration")
    lines += ["## Calibration", ""]
    if calibration:
        lines.append(f"Temperature {calibration.get('temperature', 1.0):.3f}, fitted on the validation images: "
                     + ", ".join(f"{k.replace('_', ' ')} {v:.3f}" for k, v in calibration.items()
                                 if k != "temperature" and isinstance(v, (int, float))) + ".")
    else:
        lines.append("No temperature was fitted: the probabilities are the network's own (ECE in the table "
                     "above).")
    lines.append("")

    lines += ["## Robustness", ""]
    sweep = _json(run.path / "robustness.json")
    if sweep:
        lines.append(f"Accuracy on the {sweep['n']} test images, clean {_pct(sweep['clean'])}, under each degrader "
                     "by severity level (`btk robustness`):")
        lines.append("")
        for name, accs in sweep["degraders"].items():
            lines.append(f"- {name}: " + ", ".join(_pct(a) for a in accs))
        scores = _json(run.path / "robustness-scores.json") or {}
        if scores.get("mce") is not None:
            lines.append(f"- mCE against {scores.get('baseline')}: {scores['mce']:.3f}")
    else:
        lines.append("Not measured: `btk robustness RUN` sweeps every degrader and level, then `btk card RUN`.")
    lines.append("")

    lines += ["## Explanations", ""]
    own = metrics.get("explanations") or {}
    if own.get("n") and own.get("median") is not None:
        lines.append(f"Heat maps ({own.get('method', '?')}) of {own['n']} of the {own.get('n_test', own['n'])} clean "
                     f"test images, each for its predicted class: share of the heat map outside the head mean "
                     f"{own['mean']:.2f}, median {own['median']:.2f}; {own['n_over_half']} image(s) "
                     f"({_pct(own['share_over_half'])}) above 0.5.")
        if own.get("mostly_outside"):
            lines.append("")
            lines.append("**Warning: the model mostly looks outside the head** (median share above 0.5): it may "
                         "have learnt the background, the border or burnt-in labels rather than the anatomy.")
    explained = _json(run.path / "explain.json") or {}
    shares = [r.get("outside_head_share") for r in explained.get("images", [])
              if r.get("outside_head_share") is not None]
    if shares:
        method = explained.get("method") or explained["images"][0].get("method", "?")
        if own.get("n"):
            lines.append("")
        lines.append(f"{len(shares)} images explained ({method}); share of the heat map "
                     f"outside the head: mean {sum(shares) / len(shares):.2f}, max {max(shares):.2f}.")
    elif not own.get("n"):
        lines.append("Not measured with this run: `btk explain` shows where the network looked.")
    lines.append("")

    lines += ["## External evaluations", ""]
    evaluations = run.evaluations()
    for path in evaluations:
        info, m = _json(path / "config.json") or {}, _json(path / "metrics.json") or {}
        ev, cond = info.get("evaluation", {}), (m.get("conditions") or {}).get("clean")
        if cond:
            lines.append(f"- {path.name}: {ev.get('data')} ({ev.get('split')}), {cond['n']} images, accuracy "
                         f"{_pct(cond['accuracy'])}, macro F1 {_pct(cond['f1_macro'])}.")
    if not evaluations:
        lines.append("None: `btk evaluate RUN --data OTHER` scores the model on another labelled dataset.")
    lines.append("")

    limits = ["2D slices only: a volume's slices are classified one by one.",
              "One seed: `btk rerun RUN --seed N` shows how much the figures move with the seed."]
    if leakage.get("test_with_copy_in_train"):
        share = leakage["test_with_copy_in_train"] / max(leakage.get("test_images", 1), 1)
        limits.append(f"{share:.0%} of the test images have a copy in the training data: the 'no copy' rows are "
                      "the fairer estimate.")
    if metrics.get("collapsed"):
        limits.append("Training collapsed: the model predicts one class for every image.")
    if not evaluations:
        limits.append("No external evaluation: performance on other hospitals' images is unknown.")
    lines += ["## Known limitations", "", *[f"- {x}" for x in limits], ""]
    return "\n".join(lines)


def write_card(run: Run, name: str | None = None) -> Path:
    """Write ``MODEL_CARD.md`` into the run directory (``name``: the run's name, if not its folder's)."""
    path = run.path / CARD
    path.write_text(model_card(run, name))
    return path
