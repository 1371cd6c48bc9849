"""``MODEL_CARD.md``: what a run's model is for, what it was trained on and how well it did, on
one page (after Mitchell et al. 2019, "Model Cards for Model Reporting"). Every number comes
from the run's record (:class:`btk.runs.Run`): its configuration, split, predictions, metrics
and, where they were made, its robustness sweep, explanations, calibration and external
evaluations (their degraded conditions too). ``btk run`` writes the card; every command that adds
to a run (``evaluate``, ``robustness``, ``explain``) writes it again, and ``btk card RUN`` does.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from btk.runs import Run

CARD = "MODEL_CARD.md"
DISTRIBUTION = "DISTRIBUTION.md"
"""A run's terms of distribution, written by whoever packages it; the card ends with them."""

SECTIONS = ("Model details", "Intended use", "Out of scope", "Data", "Training", "Metrics", "Calibration",
            "Robustness", "Explanations", "External evaluations", "Known limitations")


def _set_lines(run: Run, evaluations: list[Run]) -> list[str]:
    """The prediction sets: what they were calibrated on, and their coverage on the run's test
    images and on each evaluation's (clean), with the warnings a reader must see."""
    from btk.conformal import guarantee_lines, set_rows, set_warnings

    summary = run.calibration.conformal if run.calibration is not None else None
    if not summary:
        return ["No prediction sets: the run was made before them (`btk calibrate RUN` fits them)."]
    per_class = summary.get("per_class") or {}
    counts = ", ".join(f"{c} {n}" for c, n in per_class.items())
    lines = [f"Prediction sets (`btk predict --coverage C`): {summary.get('method', 'conformal')}, calibrated on "
             f"{summary.get('images')} {summary.get('origin', 'validation')} images ({counts}). The true class is in "
             "the set at least C of the time for each class, on scans exchangeable with those. "
             "A * marks a class that every set holds (too few calibration images to leave it out).", "",
             "| cohort | promise | coverage | " + " | ".join(run.classes) + " | mean size | single | single acc. |",
             "| --- " * (6 + len(run.classes)) + "|"]
    promises: set[float] = set()
    for who in [run, *evaluations]:
        conditions = who.metrics.get("conditions", {})
        label = "test images" if who is run else who.name
        for r in set_rows({"clean": conditions.get("clean") or {}}, summary):
            promises.add(r["promise"])
            held = r["in_every_set"]
            lines.append(f"| {label} | {100 * r['promise']:g}{' *' if held else ''} | {_pct(r['coverage'])} | "
                         + " | ".join(_pct(r["per_class"].get(c)) + (" *" if c in held else "") for c in run.classes)
                         + f" | {r['mean_size']:.2f} | {_pct(r['single'])} | {_pct(r['single_accuracy'])} |")
    if per_class and promises:
        first, *rest = guarantee_lines(per_class, sorted(promises), summary.get("pac_delta"))
        lines += ["", first[0].upper() + first[1:], "", *[f"- {t.strip()}" for t in rest]]
    for who in [run, *evaluations]:
        for warning in set_warnings(who.metrics.get("conditions", {}), "clean", summary):
            lines += ["", f"**{'test images' if who is run else who.name}**: {warning}."]
    return lines


def _pct(x: float | None) -> str:
    return "-" if x is None or x != x else f"{100 * x:.1f}%"  # None or NaN: not defined


def _split_counts(run: Run) -> dict[str, Counter]:
    counts: dict[str, Counter] = {}
    try:
        rows = run.split_rows()
    except Exception:  # a card never fails over a missing split
        rows = []
    for row in rows:
        counts.setdefault(row["subset"], Counter())[row["label"]] += 1
    return counts


def _augment_text(run: Run) -> str:
    """The run's degradation augmentation in words."""
    recipe = run.recipe
    names = recipe.augment_degraders
    if not names or names == "none":
        return "none"
    return f"{names.replace(',', ', ')} (share {recipe.augment_probability}, levels 1-{recipe.augment_max_level})"


def _metrics_rows(run: Run) -> list[str]:
    from btk.stats import metric_cis

    rows = ["| test images | n | accuracy (95% CI) | balanced accuracy | macro F1 | macro ROC AUC | ECE |",
            "| --- | --- | --- | --- | --- | --- | --- |"]
    for condition in run.metrics["conditions"]:
        m = run.condition_metrics(condition)
        _, y, probs = run.condition_arrays(condition)
        low, high = metric_cis(y, probs)["accuracy"]
        flag = " (collapsed: one class for every image)" if m["collapsed"] else ""
        rows.append(f"| {condition}{flag} | {m['n']} | {_pct(m['accuracy'])} ({_pct(low)}-{_pct(high)}) | "
                    f"{_pct(m['balanced_accuracy'])} | {_pct(m['f1_macro'])} | {_pct(m['auc_macro'])} | "
                    f"{_pct(m['ece'])} |")
    leakage = run.metrics.get("leakage") or {}
    for condition, m in (leakage.get("conditions_without_copies") or {}).items():
        rows.append(f"| {condition}, no copy in training | {m['n']} | {_pct(m['accuracy'])} | "
                    f"{_pct(m['balanced_accuracy'])} | {_pct(m['f1_macro'])} | {_pct(m['auc_macro'])} | |")
    return rows


def _training_lines(run: Run) -> list[str]:
    recipe, cfg = run.recipe, run.config
    train_degrade = ", ".join(d.label for d in run.train_degrade) or "none"
    lines = []
    if run.ensemble is not None:
        members = ", ".join(f"{m.run} (seed {m.seed})" for m in run.ensemble.members)
        lines.append(f"- An ensemble: the mean of the probabilities of {len(run.ensemble.members)} runs, each "
                     f"trained for up to {recipe.epochs} epochs: {members}; "
                     + ("they are the folds of one split: each answers its own fold out of fold, and the "
                        "temperature and sets were fitted on the ensemble's own scores of a calibration part none "
                        "of them trained or selected on." if "cv" in run.metrics else
                        "they held out the same validation images." if run.ensemble.shared_validation else
                        "they held out different validation images, so no temperature was fitted."))
    else:
        best = run.best_epoch
        lines.append(f"- {run.epochs_run} of {recipe.epochs} epochs (best epoch {best if best else '-'}), batch "
                     f"{recipe.batch_size}, learning rate {recipe.learning_rate}, schedule {recipe.schedule}, seed "
                     f"{cfg.seed}.")
    resumed = run.history.get("resumed_after_epoch")
    if resumed and run.ensemble is None:
        from btk.determinism import resume_promise

        backend = run.provenance.backend if run.provenance and run.provenance.backend else "an unrecorded backend"
        lines.append(f"- Interrupted and resumed (`btk resume`) after epoch {', '.join(map(str, resumed))}, on "
                     f"{backend}: {resume_promise(backend)}.")
    if run.adaptation:
        a = run.adaptation
        lines.append(f"- Adapted to a new site (`btk adapt`, {a.get('method', 'AdaBN')}) from {a.get('from_run')}: "
                     f"{a.get('batch_norm_layers')} of {a.get('batch_norm_layers_in_model')} batch-norm layers on "
                     f"{a.get('images')} images.")
    augment = "on" if recipe.augment_images else "off"
    lines.append(f"- Images {recipe.image_size} px, {recipe.channels} channel(s), crop {recipe.crop}, intensity "
                 f"{recipe.intensity}, scale {recipe.scale:.4g}; augmentation {augment}; trained on degraded images: "
                 f"{train_degrade}; degraders applied on the fly: {_augment_text(run)}.")
    if cfg.tta:
        lines.append("- Test-time augmentation: each image's probabilities are averaged with its mirror image's.")
    return lines


def _robustness_lines(run: Run, evaluations: list[Run]) -> list[str]:
    lines = []
    sweep = run.sweep()
    if sweep:
        lines.append(f"Accuracy on the {sweep['n']} test images, clean {_pct(sweep['clean'])}, under each degrader "
                     "by severity level (`btk robustness`):")
        lines.append("")
        for name, accs in sweep["degraders"].items():
            lines.append(f"- {name}: " + ", ".join(_pct(a) for a in accs))
        for label, acc in (sweep.get("extra") or {}).items():
            lines.append(f"- {label}: {_pct(acc)}")
        scores = run.sweep_scores() or {}
        if scores.get("mce") is not None:
            lines.append(f"- mCE against {scores.get('baseline')}: {scores['mce']:.3f}")
    degraded = [e for e in evaluations if len(e.metrics.get("conditions", {})) > 1]
    if degraded:
        if lines:
            lines.append("")
        lines.append("Accuracy under the degradations of external evaluations (`btk evaluate --degrade`):")
        lines.append("")
        for e in degraded:
            conditions = e.metrics["conditions"]
            lines.append(f"- {e.name} ({e.evaluation.data if e.evaluation else '?'}): "
                         + ", ".join(f"{c} {_pct(m['accuracy'])}" for c, m in conditions.items()))
    if not lines:
        lines.append("Not measured: `btk robustness RUN` sweeps every degrader and level.")
    return lines


def _explanation_lines(run: Run) -> list[str]:
    lines = []
    own = run.metrics.get("explanations") or {}
    if own.get("n") and own.get("median") is not None:
        lines.append(f"Heat maps ({own.get('method', '?')}) of {own['n']} of the {own.get('n_test', own['n'])} clean "
                     f"test images, each for its predicted class: share of the heat map outside the head mean "
                     f"{own['mean']:.2f}, median {own['median']:.2f}; {own['n_over_half']} image(s) "
                     f"({_pct(own['share_over_half'])}) above 0.5.")
        if own.get("mostly_outside"):
            lines += ["", "**Warning: the model mostly looks outside the head** (median share above 0.5): it may "
                      "have learnt the background, the border or burnt-in labels rather than the anatomy."]
    explained = run.explained() or {}
    shares = [r.get("outside_head_share") for r in explained.get("images", [])
              if r.get("outside_head_share") is not None]
    if shares:
        method = explained.get("method") or explained["images"][0].get("method", "?")
        if lines:
            lines.append("")
        lines.append(f"{len(shares)} images explained ({method}); share of the heat map "
                     f"outside the head: mean {sum(shares) / len(shares):.2f}, max {max(shares):.2f}.")
    if not lines:
        lines.append("Not measured with this run: `btk explain` shows where the network looked.")
    return lines


def model_card(run: Run, name: str | None = None) -> str:
    """The model card of ``run`` as Markdown (``name``: the run's name, if not its folder's)."""
    from btk import conformal
    from btk.image_sets import own_images

    cfg, recipe = run.config, run.recipe
    made = run.provenance
    versions = run.versions
    metrics = run.metrics
    leakage = metrics.get("leakage") or {}
    counts = _split_counts(run)
    clean = run.condition_metrics("clean" if "clean" in metrics["conditions"] else next(iter(metrics["conditions"])))
    evaluations = [] if run.is_evaluation else run.evaluations()
    task = "tumour vs none" if cfg.task == "binary" else f"{len(run.classes)} classes"
    lines = [f"# Model card: {name or run.name}", ""]

    kind = "an ensemble" if run.ensemble is not None else "a network"
    lines += ["## Model details", "",
              f"- Classifies 2D brain MRI images ({task}: {', '.join(run.classes)}).",
              f"- {kind.capitalize()}: `{cfg.model_name}` (recipe `{recipe.name}`), input "
              f"{' x '.join(str(v) for v in run.input_shape)}, trained with btk "
              f"{versions.get('btk', '?')}, Keras {versions.get('keras', '?')} on {versions.get('backend', '?')}."]
    if made is not None:
        lines.append(f"- Made {made.started or '?'} to {made.ended or '?'} on {made.device or 'an unrecorded device'}, "
                     f"precision {made.precision or '?'}; command: `{made.command or '?'}`.")
    lines.append("")

    lines += ["## Intended use", "",
              "Research and teaching: studying how a CNN classifies brain-tumour MRI slices and how image quality "
              "(blur, resolution, noise, MRI artefacts) changes its answers; comparing recipes and models under "
              "the same evaluation.", ""]
    lines += ["## Out of scope", "",
              "- Diagnosis, triage or any decision about a patient: the model has not been validated clinically.",
              "- Images unlike the training data (other modalities, body parts, 3D volumes read as one image, "
              "other hospitals' scanners) without an external evaluation (`btk evaluate`) on such images first.",
              "- Reading its probabilities as risks without checking calibration on the population at hand.", ""]

    data = dict(made.data) if made is not None else {}
    lines += ["## Data", "",
              f"- Reader `{cfg.reader}`" + (f", data `{cfg.data}`" if cfg.data else "")
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
    if metrics.get("read_in_part"):
        first = metrics["read_in_part"][0]
        lines.append(f"- {len(metrics['read_in_part'])} input(s) read in part, e.g. {first['source']}: "
                     f"{first['left_out']}.")
    lines.append("")

    lines += ["## Training", "", *_training_lines(run), ""]

    lines += ["## Metrics", "",
              f"On the run's {clean['n']} test images; intervals: 95% percentile bootstrap, 1,000 resamples. "
              "ECE: expected calibration error of the reported (calibrated) probabilities, 15 bins.", "",
              *_metrics_rows(run), "",
              "| class | precision | recall | F1 | ROC AUC | support |", "| --- | --- | --- | --- | --- | --- |"]
    for c in run.classes:
        pc = clean["per_class"][c]
        lines.append(f"| {c} | {_pct(pc['precision'])} | {_pct(pc['recall'])} | {_pct(pc['f1'])} | "
                     f"{_pct(pc['auc'])} | {pc['support']} |")
    lines.append("")

    lines += ["## Calibration", ""]
    calibration = run.calibration
    if calibration is not None:
        where = "the calibration part" if run.config.fold or "cv" in run.metrics else "the validation images"
        lines.append(f"Temperature {calibration.temperature:.3f}, fitted on {where}: ECE "
                     f"{_pct(calibration.val_ece_raw)} before, {_pct(calibration.val_ece_calibrated)} after; NLL "
                     f"{calibration.val_nll_raw or 0:.3f} before, {calibration.val_nll_calibrated or 0:.3f} after. "
                     "Every probability btk reports for this model has it applied.")
    else:
        lines.append("No temperature was fitted: the probabilities are the network's own (ECE in the table "
                     "above).")
    lines += ["", *_set_lines(run, evaluations), ""]
    lines += _int8_lines(run)

    lines += ["## Robustness", "", *_robustness_lines(run, evaluations), ""]
    lines += ["## Explanations", "", *_explanation_lines(run), ""]

    lines += ["## External evaluations", ""]
    sets_calibration = run.calibration.conformal if run.calibration is not None else None
    for e in evaluations:
        cond = e.metrics.get("conditions", {}).get("clean")
        if cond and e.evaluation is not None:
            own, _ = own_images(run, e)
            lines.append(f"- {e.name}: {e.evaluation.data} ({e.evaluation.split}), {cond['n']} images"
                         + (f" ({own})" if own else "") + f", accuracy {_pct(cond['accuracy'])}, macro F1 "
                         f"{_pct(cond['f1_macro'])}.")
            lines += [f"  - {w}" for w in conformal.set_warnings(e.metrics.get("conditions", {}), "clean",
                                                                 sets_calibration)]
    if not evaluations:
        lines.append("None: `btk evaluate RUN --data OTHER` scores the model on another labelled dataset.")
    lines.append("")

    limits = ["2D slices only: a volume's slices are classified one by one."]
    if run.ensemble is not None:
        limits.append(f"{len(run.ensemble.members)} seeds averaged: `btk rerun RUN --seed N` makes the members again "
                      "with other seeds, to see how much the figures move.")
    else:
        limits.append("One seed: `btk rerun RUN --seed N` shows how much the figures move with the seed.")
    if leakage.get("test_with_copy_in_train"):
        share = leakage["test_with_copy_in_train"] / max(leakage.get("test_images", 1), 1)
        limits.append(f"{share:.0%} of the test images have a copy in the training data: the 'no copy' rows are "
                      "the fairer estimate.")
    if metrics.get("collapsed"):
        limits.append("Training collapsed: the model predicts one class for every image.")
    if not any(own_images(run, e)[1] for e in evaluations):
        limits.append("No external evaluation: performance on other hospitals' images is unknown.")
    lines += ["## Known limitations", "", *[f"- {x}" for x in limits], ""]
    terms = run.path / DISTRIBUTION
    if terms.is_file():  # who may use and pass on this model: its packager's words
        lines += ["## Distribution", "", terms.read_text().strip(), ""]
    return "\n".join(lines)


def _int8_lines(run: Run) -> list[str]:
    """What the run's int8 graph (``btk export --int8``) measured, where it has one."""
    from btk.onnx_int8 import read_int8

    int8 = None if run.is_evaluation else read_int8(run.path)
    if not int8:
        return []
    val, test, cal = int8["validation_accuracy"], int8["test_accuracy"], int8["calibration"]
    return [f"An int8 graph (`model.int8.onnx`, ONNX Runtime's static quantisation; used only with `--runtime int8`, "
            f"never by default): validation accuracy {_pct(val['float32'])} -> {_pct(val['int8'])} "
            f"({val['move_points']:+.2f} points on {val['images']} images; kept because within 0.3), test accuracy "
            f"{_pct(test['float32'])} -> {_pct(test['int8'])} ({test['images']} images). Its own temperature "
            f"{int8['temperature']:.3f} and prediction sets, fitted on its own outputs for the {cal['images']} "
            f"{cal['origin']} images (ECE {_pct(cal['ece_before'])} before, {_pct(cal['ece_after'])} after): the "
            "figures above are the run's own network's.", ""]


def write_card(run: Run, name: str | None = None) -> Path:
    """Write ``MODEL_CARD.md`` into the run directory (``name``: the run's name, if not its folder's)."""
    path = run.path / CARD
    tmp = path.with_name(f".{CARD}.partial")
    tmp.write_text(model_card(run, name))
    tmp.replace(path)  # a reader never sees half a card
    return path
