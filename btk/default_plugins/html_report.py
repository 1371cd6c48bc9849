"""The ``html`` reporter: one self-contained HTML file (figures embedded, no network).

Per run: the configuration; metrics per test condition with 95% bootstrap intervals (1,000
resamples, percentile); the leakage-aware rows; per-class precision, recall, F1, support and
AUC; the confusion matrix (counts and row-normalised); one-vs-rest ROC curves; a reliability
diagram with ECE (15 equal-width confidence bins), before and after the run's temperature
scaling; training curves; example images, right and wrong, under every test condition; the
model card, once per run. For several runs: a comparison table with each row's set of test
images named and the best of each column marked among runs on the same images only, and
McNemar's exact test for every pair of runs on the same test images.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

import numpy as np

from btk.api import RegisterReporter, Reporter, Run, hookimpl

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1100px;
color:#1d232a;padding:0 1em}
h1{font-size:1.6em}h2{margin-top:2em;border-bottom:2px solid #d0d7de;padding-bottom:.2em}h3{margin-top:1.4em}
table{border-collapse:collapse;margin:.6em 0;font-size:.92em;display:block;max-width:100%;overflow-x:auto}
td,th{border:1px solid #d0d7de;padding:.25em .6em;text-align:right}th{background:#f3f5f7}
td:first-child,th:first-child{text-align:left}
.best{font-weight:bold;background:#e3f4e3}.bad{color:#b3261e;font-weight:bold}.ci{color:#57606a;font-size:.85em}
img{max-width:100%}pre{background:#f6f8fa;padding:.8em;overflow:auto;font-size:.8em}
.card{border:1px solid #d0d7de;border-radius:6px;padding:0 1.2em;overflow-wrap:break-word}
.card code{white-space:pre-wrap;overflow-wrap:break-word}.cols{display:flex;gap:2em;flex-wrap:wrap}
.note{color:#57606a;font-size:.9em}.warn{color:#9a6700}.examples td{text-align:center;font-size:.75em}
"""


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=FIGURE_DPI)
    plt.close(fig)
    return f'<img alt="figure" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


def _pct(x: float | None) -> str:
    return "-" if x is None or not np.isfinite(x) else f"{100 * x:.1f}"


def _esc(x: Any) -> str:
    return html.escape(str(x))


FIGURE_WIDTH = 10.5
"""Inches: at :data:`FIGURE_DPI` a figure is 840 px wide, shown at its own size in the page (no
text shrunk below its points), and scaled down only on a narrower window."""
FIGURE_DPI = 80
FONT = 9
"""Points of the smallest figure text (ticks, legends, the numbers in the confusion matrices)."""


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def summary_figure(run: Run) -> Any:
    """The clean test images' confusion matrices (counts and row-normalised), one-vs-rest ROC
    curves and reliability diagram, a 2 x 2 grid laid out so that no text overlaps."""
    from sklearn.metrics import roc_curve

    from btk.stats import reliability

    plt = _pyplot()
    classes = run.classes
    _, y, probs = run.condition_arrays("clean")
    cm = np.array(run.metrics["conditions"]["clean"]["confusion"], dtype=float)
    fig, axes = plt.subplots(2, 2, figsize=(FIGURE_WIDTH, 9.4), layout="constrained")
    # the predicted classes' names under the columns, at their words, upright where they fit the
    # columns (about 48 characters across a panel) and turned upright-on-end otherwise: slanted
    # names would reach under their neighbours
    names = [c.replace("_", "\n") for c in classes]
    longest = max(len(w) for c in classes for w in c.split("_"))
    rotation = 0 if longest * len(classes) <= 48 else 90
    for ax, matrix, title, fmt in ((axes[0, 0], cm, "confusion (counts)", "{:.0f}"),
                                   (axes[0, 1], cm / np.maximum(cm.sum(1, keepdims=True), 1), "row-normalised",
                                    "{:.2f}")):
        ax.imshow(matrix, cmap="Blues")
        for (i, j), v in np.ndenumerate(matrix):
            ax.text(j, i, fmt.format(v), ha="center", va="center",
                    color="white" if v > matrix.max() * 0.6 else "black", fontsize=FONT)
        ax.set_xticks(range(len(classes)), names, rotation=rotation, fontsize=FONT)
        ax.set_yticks(range(len(classes)), classes, fontsize=FONT)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(title)
    ax = axes[1, 0]
    for k, c in enumerate(classes):
        if 0 < (y == k).sum() < len(y):
            fpr, tpr, _ = roc_curve(y == k, probs[:, k])
            auc = run.metrics["conditions"]["clean"]["per_class"][c]["auc"]
            ax.plot(fpr, tpr, label=f"{c} (AUC {auc:.2f})")
    ax.plot([0, 1], [0, 1], ":", color="grey")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title("ROC, one vs rest (clean)")
    ax.legend(fontsize=FONT, loc="lower right")
    ax = axes[1, 1]
    rel = reliability(y, probs)
    centers = (np.array(rel["edges"][:-1]) + np.array(rel["edges"][1:])) / 2
    acc = np.array([np.nan if a is None else a for a in rel["accuracy"]])
    kind = f"calibrated, T = {run.temperature:.2f}" if run.calibrated_predictions and run.calibration else "raw"
    ax.bar(centers, np.nan_to_num(acc), width=1 / rel["bins"], edgecolor="black", alpha=0.7,
           label=f"accuracy ({kind})")
    title = f"reliability (clean): ECE {100 * rel['ece']:.1f}%"
    before = run.condition_metrics("clean").get("ece_uncalibrated")
    if before is not None and run.calibration is not None:
        title += f"\n(before the temperature {100 * before:.1f}%)"
    ax.plot([0, 1], [0, 1], ":", color="grey", label="perfect calibration")
    ax.set_xlabel(f"confidence ({rel['bins']} equal-width bins)")
    ax.set_ylabel("accuracy in bin")
    ax.set_title(title)
    ax.legend(fontsize=FONT, loc="upper left")
    return fig


def history_figure(run: Run) -> Any:
    """Loss and accuracy by epoch (training and validation), the kept epoch marked, the epochs
    on integer ticks; ``None`` for a run without a history."""
    from matplotlib.ticker import MaxNLocator

    hist = {k: v for k, v in run.history.items() if k != "best_epoch"}
    if not hist.get("loss"):
        return None
    plt = _pyplot()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(FIGURE_WIDTH, 3.8), layout="constrained")
    epochs = np.arange(1, len(hist["loss"]) + 1)
    for key, ax in (("loss", a1), ("accuracy", a2)):
        for prefix, style in (("", "-"), ("val_", "--")):
            if prefix + key in hist:
                ax.plot(epochs, hist[prefix + key], style, marker="o", ms=3, label=(prefix or "train_") + key)
        if run.history.get("best_epoch"):
            ax.axvline(run.history["best_epoch"][0], color="grey", ls=":", label="best epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.tick_params(labelsize=FONT)
        ax.set_xlabel("epoch")
        ax.set_title(key)
        ax.legend(fontsize=FONT)
    return fig


def _figures(run: Run) -> str:
    """The summary figure (:func:`summary_figure`) and the training curves (:func:`history_figure`)."""
    figures = [summary_figure(run), history_figure(run)]
    return "\n".join(_png(fig) for fig in figures if fig is not None)


def _examples(run: Run) -> str:
    """Example test images under every condition, as a table of small embedded PNGs."""
    import cv2

    ex = run.examples()
    if not ex or "sources" not in ex or not len(ex["sources"]):
        return '<p class="note">no example images kept with this run</p>'
    rows = []
    for key in [k for k in ex if k.startswith("images/")]:
        cond = key.split("/", 1)[1]
        sources, y, probs = run.condition_arrays(cond)
        lookup = {s: i for i, s in enumerate(sources)}
        cells = []
        for image, source in zip(ex[key], ex["sources"]):
            i = lookup.get(str(source))
            truth, pred = (run.classes[y[i]], run.classes[int(probs[i].argmax())]) if i is not None else ("?", "?")
            data = base64.b64encode(cv2.imencode(".png", image)[1].tobytes()).decode()
            css = "" if truth == pred else ' class="bad"'
            cells.append(f'<td><img alt="{_esc(source)}" src="data:image/png;base64,{data}"><br>'
                         f'<span{css}>true {_esc(truth)}<br>pred {_esc(pred)}</span></td>')
        rows.append(f"<tr><th>{_esc(cond)}</th>{''.join(cells)}</tr>")
        if cond == "clean" and "heat/clean" in ex and len(ex["heat/clean"]) == len(ex[key]):
            rows.append(f"<tr><th>heat map (clean)</th>{_heat_cells(ex[key], ex['heat/clean'])}</tr>")
    note = "Red: predicted wrong."
    if "heat/clean" in ex:
        note += (" Heat map: what drove the predicted class (red: most), over the clean image, with the head's "
                 "outline in white.")
    return f'<table class="examples">{"".join(rows)}</table><p class="note">{note}</p>'


def _label_issues(run: Run) -> str:
    """A fold ensemble's most doubtful training labels: each image, its given and likely label,
    and the heat map of the likely class, for a person to review (``btk audit --issues``)."""
    import cv2

    ex = run.examples()
    if "issues/images" not in ex or not len(ex["issues/images"]):
        return ""
    cells = []
    for image, source, (given, likely) in zip(ex["issues/images"], ex["issues/sources"], ex["issues/labels"]):
        data = base64.b64encode(cv2.imencode(".png", image)[1].tobytes()).decode()
        cells.append(f'<td><img alt="{_esc(source)}" src="data:image/png;base64,{data}"><br>'
                     f'given {_esc(given)}<br><span class="bad">likely {_esc(likely)}</span></td>')
    heat = _heat_cells(ex["issues/images"], ex["issues/heat"])
    rows = "".join(f"<tr>{''.join(cells[k:k + 8])}</tr>" for k in range(0, len(cells), 8))
    heat_cells = heat.split("</td>")[:-1]
    heat_rows = "".join(f"<tr>{'</td>'.join(heat_cells[k:k + 8])}</td></tr>" for k in range(0, len(heat_cells), 8))
    return (f"<h3>label issues (the {len(cells)} least self-confident)</h3>"
            f'<table class="examples">{rows}</table><table class="examples">{heat_rows}</table>'
            '<p class="note">Training images whose given label confident learning doubts, from the out-of-fold '
            "probabilities, with the heat map of the likely class below, in the same order. "
            "<code>btk audit --issues RUN --labels-out FILE</code> writes them as corrections to review.</p>")


def _heat_cells(images: np.ndarray, heats: np.ndarray) -> str:
    """One table cell per example: its heat map in OpenCV's jet colours over the thumbnail."""
    import cv2

    from btk.explain import head_mask, outside_share, overlay

    cells = []
    for image, heat in zip(images, heats):
        heat = np.asarray(heat, np.float32)
        tile = overlay(image, heat, side=image.shape[0])
        data = base64.b64encode(cv2.imencode(".png", tile)[1].tobytes()).decode()
        share = outside_share(heat, head_mask(image))
        cells.append(f'<td><img alt="heat map" src="data:image/png;base64,{data}"><br>'
                     f"outside the head {_pct(share)}%</td>")
    return "".join(cells)


def _explanations(run: Run) -> str:
    """What drove the predictions: the outside-the-head share of the clean test images' heat
    maps (mean, median, share above one half, a histogram), with a warning when most lies
    outside the head; empty for a run without them."""
    info = run.metrics.get("explanations")
    if not info or not info.get("n"):
        return ""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    text = (f"<p>Heat maps ({_esc(info['method'])}) of {info['n']} of the {info.get('n_test', info['n'])} clean test "
            f"images, each for its predicted class: on average {_pct(info['mean'])}% of a map's mass lies outside "
            f"the head (median {_pct(info['median'])}%); {info['n_over_half']} image(s) "
            f"({_pct(info['share_over_half'])}%) have more than half of it outside.</p>")
    if info.get("mostly_outside"):
        text += ('<p class="bad">Warning: for most test images the model looks mainly outside the head (background, '
                 "border, burnt-in labels), not at the anatomy: its accuracy may not carry over to other "
                 "scanners or sites.</p>")
    edges, counts = info.get("bin_edges"), info.get("histogram")
    if edges and counts:
        fig, ax = plt.subplots(figsize=(4, 2.2))
        ax.bar([100 * e for e in edges[:-1]], counts, width=100 * (edges[1] - edges[0]), align="edge",
               color="#4a78c2", edgecolor="white")
        ax.axvline(50, color="#b3261e", lw=1, ls="--")
        ax.set_xlabel("heat outside the head (%)")
        ax.set_ylabel("test images")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        text += _png(fig)
    return f"<h3>what drove the predictions</h3>{text}"


def _metrics_table(run: Run) -> str:
    from btk.stats import metric_cis

    head = ("<tr><th>test images</th><th>n</th><th>accuracy</th><th>balanced acc</th><th>macro P</th>"
            "<th>macro R</th><th>macro F1</th><th>macro AUC</th><th>ECE</th><th>ECE before T</th><th>correct</th></tr>")
    body = []
    leak = run.metrics.get("leakage") or {}
    copies = leak.get("conditions_without_copies") or {}
    entries = [(c, run.condition_metrics(c), c) for c in run.metrics["conditions"]]
    entries += [(f"{c}, no copy in train", m, None) for c, m in copies.items()]
    for label, m, cond in entries:
        cis = {}
        if cond is not None:
            _, y, probs = run.condition_arrays(cond)
            cis = metric_cis(y, probs)

        def cell(key: str) -> str:
            ci = cis.get(key)
            extra = f'<br><span class="ci">[{_pct(ci[0])}, {_pct(ci[1])}]</span>' if ci else ""
            return f"<td>{_pct(m[key])}{extra}</td>"

        flag = ' <span class="bad">COLLAPSED</span>' if m["collapsed"] else ""
        body.append(f"<tr><td>{_esc(label)}{flag}</td><td>{m['n']}</td>{cell('accuracy')}{cell('balanced_accuracy')}"
                    f"<td>{_pct(m['precision_macro'])}</td><td>{_pct(m['recall_macro'])}</td>{cell('f1_macro')}"
                    f"{cell('auc_macro')}<td>{_pct(m.get('ece'))}</td><td>{_pct(m.get('ece_uncalibrated'))}</td>"
                    f"<td>{m['correct']}/{m['n']}</td></tr>")
    note = ('<p class="note">Intervals: 95% percentile bootstrap over the test images, 1,000 resamples.')
    if leak.get("test_with_copy_in_train"):
        note += (f" {leak['test_with_copy_in_train']} of {leak['test_images']} test images have an exact or near "
                 f"copy (score &ge; {leak['threshold']}) in the training data; the 'no copy' rows leave them out.")
    return f"<table>{head}{''.join(body)}</table>{note}</p>"


def _per_class(run: Run) -> str:
    m = run.metrics["conditions"]["clean"]
    rows = "".join(f"<tr><td>{_esc(c)}</td><td>{_pct(v['precision'])}</td><td>{_pct(v['recall'])}</td>"
                   f"<td>{_pct(v['f1'])}</td><td>{v['support']}</td><td>{_pct(v['auc'])}</td></tr>"
                   for c, v in m["per_class"].items())
    return ("<table><tr><th>class</th><th>precision</th><th>recall</th><th>F1</th><th>support</th>"
            f"<th>ROC AUC</th></tr>{rows}</table>")


def _robustness(run: Run) -> str:
    """The run's robustness sweep (``btk robustness``), if it has one: table and plot."""
    res = run.sweep()
    if not res:
        return ""
    import tempfile

    from btk.render.plots import robustness_plot
    from btk.robustness import level_count

    scores = run.sweep_scores() or {}
    levels = level_count(res)  # degraders may have any number of levels: blank cells pad the shorter rows
    rows = "".join(f"<tr><td>{_esc(name)}</td>" + "".join(f"<td>{_pct(a)}</td>" for a in accs)
                   + "<td></td>" * (levels - len(accs))
                   + f"<td>{scores.get('ce', {}).get(name, float('nan')):.3f}</td></tr>"
                   for name, accs in res["degraders"].items())
    extra = "".join(f'<tr><td>{_esc(label)}</td><td colspan="{levels + 1}">{_pct(acc)}</td></tr>'
                    for label, acc in (res.get("extra") or {}).items())
    with tempfile.TemporaryDirectory() as tmp:
        png = Path(tmp) / "r.png"
        robustness_plot([res], png)
        img = base64.b64encode(png.read_bytes()).decode()
    mce = (f"<p>mCE {scores['mce']:.3f} against {_esc(scores['baseline'])}</p>"
           if scores.get("mce") is not None else "")
    return (f"<h3>robustness (accuracy %, clean {_pct(res['clean'])})</h3><table><tr><th>degrader</th>"
            + "".join(f"<th>{k}</th>" for k in range(1, levels + 1))
            + f"<th>CE</th></tr>{rows}{extra}</table>{mce}"
            f'<img alt="accuracy against severity" src="data:image/png;base64,{img}">')


def _markdown(text: str) -> str:
    """Markdown (a model card) as HTML: CommonMark with tables (markdown-it-py), raw HTML in the
    text escaped."""
    from markdown_it import MarkdownIt

    return str(MarkdownIt("commonmark", {"html": False}).enable("table").render(text))


def _card(run: Run, cards: dict[Path, str] | None = None) -> str:
    """The run's model card (``MODEL_CARD.md``) rendered as HTML, its headings one level down;
    an evaluation's is its run's. ``cards``: the runs whose card the page already has, and the
    section that has it (updated): a card already there is linked to, not printed again."""
    owner = run.evaluated_run() if run.is_evaluation else run
    path = owner.path / "MODEL_CARD.md"
    if not path.exists():
        return ""
    key = owner.path.resolve()
    if cards is not None and key in cards:
        return (f'<p class="note">Model card: that of {_esc(owner.name)}, shown once, under '
                f'<a href="#{_esc(cards[key])}">{_esc(cards[key])}</a>.</p>')
    if cards is not None:
        cards[key] = run.name
    text = "\n".join(("#" + line) if line.startswith("#") else line for line in path.read_text().splitlines())
    title = "model card" + (f" of {_esc(owner.name)}" if owner is not run else "")
    return f'<h3>{title}</h3><div class="card">{_markdown(text)}</div>'


def _provenance(run: Run) -> str:
    made = run.made_by()
    if made is None:
        return ""
    return f'<p class="note">{_esc(made[0][0].upper() + made[0][1:])}. Command: <code>{_esc(made[1])}</code></p>'


def _calibration(run: Run) -> str:
    """The temperature and the accuracy-against-coverage table (as the terminal report has them)."""
    from btk.calibration import coverage_curve

    fitted = run.calibration
    if fitted is not None:
        text = (f"<p>Temperature {fitted.temperature:.3f}, fitted on the validation split: validation ECE "
                f"{_pct(fitted.val_ece_raw)}% &rarr; {_pct(fitted.val_ece_calibrated)}%, NLL "
                f"{fitted.val_nll_raw or 0:.3f} &rarr; {fitted.val_nll_calibrated or 0:.3f}.</p>")
    else:
        text = "<p>No temperature fitted: probabilities as the network gives them.</p>"
    condition = "clean" if "clean" in run.metrics["conditions"] else next(iter(run.metrics["conditions"]))
    _, y, probs = run.condition_arrays(condition)
    rows = "".join(f"<tr><td>{p['threshold']:.2f}</td><td>{p['answered']}/{len(y)}</td><td>{_pct(p['coverage'])}</td>"
                   f"<td>{_pct(p['accuracy'])}</td></tr>" for p in coverage_curve(y, probs))
    return (f"<h3>calibration</h3>{text}<table><tr><th>min confidence</th><th>answered</th><th>coverage %</th>"
            f'<th>accuracy %</th></tr>{rows}</table><p class="note">Accuracy against coverage on the {condition} '
            "test images when answers below the confidence are withheld (<code>btk predict --min-confidence</code>)."
            "</p>")


def _sets(run: Run) -> str:
    """The prediction sets' coverage per condition and promise, and the warnings (as the
    terminal report has them)."""
    from btk.conformal import guarantee_lines, set_rows, set_warnings
    from btk.shift import shift_sentence

    conditions = run.metrics["conditions"]
    calibration = run.calibration.conformal if run.calibration is not None else None
    rows = set_rows(conditions, calibration)
    if not rows:
        return ""
    clean_shift = (conditions.get("clean") or {}).get("shift")
    quiet = (f'<p>clean: {_esc(shift_sentence(clean_shift))}</p>'  # one that says "differs" is a warning
             if clean_shift and not clean_shift.get("differs") else "")
    head = "".join(f"<th>{_esc(h.replace('_', ' '))}</th>"  # class names wrap at their words
                   for h in ("condition", "promise %", "coverage %", *run.classes, "mean size", "single %",
                             "single acc. %", "empty %", "shift p"))
    held_mark = '<span title="every set holds this class">&nbsp;*</span>'
    body = "".join(
        ('<tr class="warn in-every-set">' if r["in_every_set"] else "<tr>") + "".join(
            f"<td>{v}</td>" for v in (
                _esc(r["condition"]), f"{100 * r['promise']:g}" + (held_mark if r["in_every_set"] else ""),
                _pct(r["coverage"]),
                *[_pct(r["per_class"].get(c)) + (held_mark if c in r["in_every_set"] else "") for c in run.classes],
                f"{r['mean_size']:.2f}", _pct(r["single"]), _pct(r["single_accuracy"]), _pct(r["empty"]),
                "-" if r["shift_p"] is None else f"{r['shift_p']:.2g}"))
        + "</tr>" for r in rows)
    warnings = "".join(f"<li>{_esc(c)}: {_esc(w)}</li>" for c in conditions
                       for w in set_warnings(conditions, c, calibration))
    guarantee = ""
    if calibration and calibration.get("per_class"):
        first, *per_promise = guarantee_lines(calibration["per_class"], sorted({r["promise"] for r in rows}),
                                              calibration.get("pac_delta"))
        guarantee = (f'<p class="note">{_esc(first)}</p><ul class="note">'
                     + "".join(f"<li>{_esc(t.strip())}</li>" for t in per_promise) + "</ul>")
    return (f"<h3>prediction sets</h3><table><tr>{head}</tr>{body}</table>"
            + (f'<ul class="warn">{warnings}</ul>' if warnings else "") + quiet + guarantee
            + '<p class="note">Conformal sets, class by class: the true class is in the set at least the promised '
              "share of the time for each class, on scans exchangeable with the run's calibration images. Coverage "
              "per class column; * every set holds the class (too few calibration images to leave it out); shift "
              "p: the p-value of the label-free check that the images are exchangeable with those (a series "
              "counted once; it fires below 0.01; <code>btk predict --check-shift</code>), whose verdict is the "
              "line above.</p>")


def _confusion(run: Run) -> str:
    clean = run.metrics["conditions"].get("clean") or next(iter(run.metrics["conditions"].values()))
    head = "".join(f"<th>{_esc(c)}</th>" for c in run.classes)
    rows = "".join(f"<tr><td>{_esc(c)}</td>" + "".join(f"<td>{v}</td>" for v in row) + "</tr>"
                   for c, row in zip(run.classes, clean["confusion"]))
    return (f"<h3>confusion matrix, clean (rows: true, columns: predicted)</h3><table><tr><th></th>{head}</tr>"
            f"{rows}</table>")


def _timing(run: Run) -> str:
    timing = run.metrics.get("timing", {})
    if "train_seconds" in timing:
        text = (f"loading {timing['load_seconds']:.1f} s, training {timing['train_seconds']:.1f} s "
                f"({timing['train_images_per_second']:.1f} images/s), total {timing['total_seconds']:.1f} s")
    elif "predict_seconds" in timing:
        text = (f"loading {timing['load_seconds']:.1f} s, predicting {timing['predict_seconds']:.1f} s "
                f"({timing['predicted_images_per_second']:.1f} images/s), total {timing['total_seconds']:.1f} s")
    else:
        return ""
    skipped = run.metrics.get("skipped") or []
    if skipped:
        text += f"; {len(skipped)} unreadable input(s) skipped"
    if run.metrics.get("read_in_part"):
        text += f"; {len(run.metrics['read_in_part'])} input(s) read in part"
    return f'<p class="note">{_esc(text)}</p>'


def _configuration(run: Run) -> str:
    """The run's configuration as two tables: the run's fields and the recipe's, each once."""
    from btk.config import show_value

    cfg = run.config.to_json()
    run_rows = "".join(f"<tr><td>{_esc(k)}</td><td>{_esc(show_value(v))}</td></tr>"
                       for k, v in cfg.items() if k != "recipe")
    recipe_rows = "".join(f"<tr><td>{_esc(k)}</td><td>{_esc(show_value(v))}</td></tr>"
                          for k, v in run.recipe.__dict__.items())
    extra = ""
    if run.train_degrade or run.test_degrade:
        extra = ("<tr><td>degradations (resolved)</td><td>"
                 + _esc(", ".join(d.label + (f" {dict(d.params)}" if d.params else "")
                                  for d in (*run.train_degrade, *run.test_degrade))) + "</td></tr>")
    return (f'<h3>configuration</h3><div class="cols"><table><tr><th>run field</th><th>value</th></tr>{run_rows}'
            f"{extra}</table><table><tr><th>recipe field ({_esc(run.recipe.name)})</th><th>value</th></tr>"
            f"{recipe_rows}</table></div>")


def evaluations_section(group: Any) -> str:
    """A run beside its evaluations (``btk evaluate``), every condition (degraded ones too), which
    test images each was measured on, with McNemar's test where the images are the same: what
    ``btk report`` prints for the group."""
    from btk.compare import image_set_lines

    rows = "".join(f'<tr><td><a href="#{_esc(r["run"])}">{_esc(r["run"])}</a></td><td>{_esc(r["test_condition"])}'
                   f"</td><td>{_esc(r['images'])}</td><td>{r['n']}</td><td>{_pct(r['accuracy'])}</td>"
                   f"<td>{_pct(r['balanced_accuracy'])}</td><td>{_pct(r['f1_macro'])}</td><td>{_pct(r['auc_macro'])}"
                   f"</td><td>{_pct(r['ece'])}</td></tr>" for r in group.rows)
    tests = "".join(f"<li>{_esc(t['b'])}: McNemar p = {t['p_value']:.4g} ({t['n']} images)</li>" for t in group.tests)
    sets = "".join(f"<li>{_esc(line)}</li>" for line in image_set_lines(group.rows))
    return (f"<h3>{_esc(group.run.name)}: its own test images and {len(group.evaluations)} evaluation(s)</h3>"
            "<table><tr><th>run or evaluation</th><th>condition</th><th>test images</th><th>n</th><th>accuracy</th>"
            "<th>balanced acc</th><th>macro F1</th><th>macro AUC</th><th>ECE</th></tr>"
            f'{rows}</table><ul class="note sets">{sets}</ul>' + (f"<ul>{tests}</ul>" if tests else ""))


def _own_images(evaluation: Run) -> str:
    """A warning where an evaluation's images are its run's own (:func:`btk.image_sets.own_images`)."""
    from btk.api import BtkError
    from btk.image_sets import own_images

    try:
        words, _ = own_images(evaluation.evaluated_run(), evaluation)
    except BtkError:
        return ""
    return f'<p class="warn">Its images: {_esc(words)}.</p>' if words else ""


def run_section(run: Run, groups: list[Any] | None = None, cards: dict[Path, str] | None = None) -> str:
    """The HTML of one run (or evaluation): everything the terminal report shows, the run's
    evaluations beside it, its figures, examples, configuration and model card (``cards``: the
    runs whose card the page already has, :func:`_card`)."""
    about = ""
    ev = run.evaluation
    if ev is not None:
        about = (f"<p>Evaluation of run {_esc(ev.run_id)} on {_esc(ev.data)} ({_esc(ev.split)}, reader "
                 f"{_esc(ev.reader)}): the run's model and preprocessing, nothing re-trained.</p>"
                 + _own_images(run))
    mine = "".join(evaluations_section(g) for g in (groups or []) if g.run.path == run.path)
    return (f'<h2 id="{_esc(run.name)}">{_esc(run.name)}</h2>{about}{_provenance(run)}'
            f"<h3>metrics</h3>{_metrics_table(run)}{mine}<h3>per class (clean)</h3>{_per_class(run)}"
            f"{_confusion(run)}{_calibration(run)}{_sets(run)}{_timing(run)}"
            f"<h3>figures</h3>{_figures(run)}{_robustness(run)}{_explanations(run)}<h3>examples</h3>{_examples(run)}"
            f"{_label_issues(run)}"
            f"{_configuration(run)}{_card(run, cards)}")


def comparison_section(runs: list[Run]) -> str:
    """The table of all runs with the best of each column marked among the runs on the same
    test images, a line per set of test images, and the paired tests."""
    from btk.compare import COLUMNS, best_by_column, image_set_lines, is_best, paired_tests, run_rows

    rows = run_rows(runs)
    best = best_by_column(rows)
    head = ("<tr><th>run</th><th>task</th><th>reader</th><th>train degradation</th><th>test</th>"
            "<th>test images</th><th>accuracy</th><th>balanced acc</th><th>macro F1</th><th>macro AUC</th>"
            "<th>ECE</th></tr>")
    body = []
    for r in rows:
        cells = "".join(f'<td class="best">{_pct(r[c])}</td>' if is_best(r, c, best) else f"<td>{_pct(r[c])}</td>"
                        for c in COLUMNS)
        body.append(f'<tr><td><a href="#{_esc(r["run"])}">{_esc(r["run"])}</a></td><td>{_esc(r["task"])}</td>'
                    f"<td>{_esc(r['reader'])}</td><td>{_esc(r['train_degrade'])}</td><td>{_esc(r['test_condition'])}"
                    f"</td><td>{_esc(r['images'])}</td>{cells}</tr>")
    sets = "".join(f"<li>{_esc(line)}</li>" for line in image_set_lines(rows))
    tests = paired_tests(runs)
    paired = ""
    if tests:
        trows = "".join(f"<tr><td>{_esc(t['a'])}</td><td>{_esc(t['b'])}</td><td>{t['n']}</td>"
                        f"<td>{_pct(t['accuracy_a'])}"
                        f"</td><td>{_pct(t['accuracy_b'])}</td><td>{t['a_only']}</td><td>{t['b_only']}</td>"
                        f"<td>{t['p_value']:.4g}</td></tr>" for t in tests)
        paired = ("<h3>paired tests (clean test images)</h3><table><tr><th>run A</th><th>run B</th><th>n</th>"
                  "<th>acc A</th><th>acc B</th><th>only A right</th><th>only B right</th><th>McNemar p (exact)</th>"
                  f"</tr>{trows}</table>")
    marked = ("Best of each column in bold (lowest ECE), among the runs on the same test images only."
              if best else "No two runs were tested on the same images: no best is named.")
    return (f"<h2>comparison</h2><table>{head}{''.join(body)}</table><ul class=\"note sets\">{sets}</ul>"
            f'<p class="note">{marked} ECE: 15 equal-width confidence bins.</p>' + paired)


def _no_copy(entry: dict[str, Any] | None) -> str:
    return f"{entry['accuracy']:.1f} ({entry['correct']})" if entry else ""


def suite_section(info: dict[str, Any]) -> str:
    """A suite's table, measured beside published numbers."""
    keys = ("accuracy", "precision_macro", "recall_macro", "f1_macro")
    head = ("<tr><th>experiment</th><th>acc</th><th>P</th><th>R</th><th>F1</th><th>correct</th>"
            "<th>acc, no copy in train</th><th>report acc</th><th>report P</th><th>report R</th><th>report F1</th>"
            "<th>report correct</th></tr>")
    rows = []
    for r in info["table"]:
        pub = r.get("published") or {}
        nc = r.get("no_copy")
        rows.append(f"<tr><td>{_esc(r['label'])}</td>" + "".join(f"<td>{r['measured'][k]:.1f}</td>" for k in keys)
                    + f"<td>{r['correct']}</td><td>{_no_copy(nc)}</td>"
                    + "".join(f"<td>{pub[k]:.1f}</td>" if k in pub else "<td></td>" for k in keys)
                    + f"<td>{pub.get('correct', '')}</td></tr>")
    html = (f"<h2>suite '{_esc(info['suite'])}'</h2><p>{_esc(info.get('description', ''))}</p>"
            f"<table>{head}{''.join(rows)}</table>")
    if info.get("aggregate"):
        seeds = ", ".join(map(str, info.get("seeds", [])))
        lines = [f"<tr><td>{_esc(r['label'])}</td><td>{r['n']}</td>"
                 + "".join(f"<td>{r['mean'][k]:.1f} ({r['min'][k]:.1f}-{r['max'][k]:.1f})</td>" for k in keys)
                 + "</tr>" for r in info["aggregate"]]
        html += (f"<h3>over seeds {_esc(seeds)}: mean (lowest-highest)</h3><table><tr><th>experiment</th>"
                 "<th>seeds</th><th>acc</th><th>P</th><th>R</th><th>F1</th></tr>" + "".join(lines) + "</table>")
    if info.get("failed"):
        html += "<p>Failed: " + ", ".join(_esc(str(f.get("member"))) for f in info["failed"]) + "</p>"
    return html


def write_html(report: Any, path: Path) -> None:
    """Write ``report`` (:class:`btk.compare.Report`: runs, suites, evaluation groups) to ``path``
    as one self-contained file."""
    runs = report.runs
    body = [suite_section(s) for s in report.suites]
    if len(runs) > 1:
        body.append(comparison_section(runs))
    shown = {r.path for r in runs}
    cards: dict[Path, str] = {}  # one model card per run: a run's evaluations link to it
    body += [run_section(r, report.groups, cards) for r in runs if not r.is_evaluation]
    body += [run_section(r, report.groups, cards) for r in runs if r.is_evaluation]
    body += [run_section(e, cards=cards) for g in report.groups for e in g.evaluations if e.path not in shown]
    title = "btk report" + (f": {runs[0].name}" if len(runs) == 1 else f": {len(runs)} runs")
    page = (f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{_esc(title)}</title>"
            f"<style>{CSS}</style></head><body><h1>{_esc(title)}</h1>{''.join(body)}</body></html>\n")
    tmp = Path(path).with_name(Path(path).name + ".partial")
    tmp.write_text(page)
    tmp.replace(path)


def html_report(run: Run, console) -> None:
    """Write ``report.html`` into the run directory."""
    from btk.compare import build_report

    out = run.path / "report.html"
    write_html(build_report([run]), out)
    console.print(f"HTML report: {out}")


@hookimpl
def btk_register_reporters(register: RegisterReporter) -> None:
    register(Reporter("html", html_report, "a self-contained HTML report (report.html in the run directory)",
                      write=write_html))
