"""btk report's HTML and tables: one model card per run, evaluations on the run's own images
named so, a best named only among runs on the same test images, figures whose text does not
overlap, tables that fit, and (in headless Chromium) a page whose text neither overlaps nor
breaks inside a word."""

from __future__ import annotations

import html as html_lib
import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from btk.cli import cli
from btk.testing import make_run

CLASSES = ["glioma_tumor", "meningioma_tumor", "no_tumor", "pituitary_tumor"]


def _probs(n: int, seed: int, strength: float = 0.4) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % len(CLASSES)
    p = rng.dirichlet(np.ones(len(CLASSES)), n)
    p[np.arange(n), y] += strength
    return y, p / p.sum(1, keepdims=True)


def run_with_two_evaluations(parent: Path) -> Path:
    """A run (a model card written) with an evaluation on its own test images and one on other data."""
    from btk.model_card import write_card
    from btk.runs import load_run

    y, p = _probs(40, 1)
    run = make_run(parent, "run-a", y, {"clean": p, "blur": np.roll(p, 1, axis=0)}, CLASSES)
    make_run(run / "evaluations", "eval-same", y, p, CLASSES, evaluates=run)
    y2, p2 = _probs(24, 2)
    make_run(run / "evaluations", "eval-site-b", y2, p2, CLASSES, evaluates=run, data="SITE-B",
             sources=[f"site-b/scan{i:03d}.png" for i in range(24)])
    write_card(load_run(run))
    return run


def three_runs(parent: Path) -> list[Path]:
    """Two runs on the same test images, one on other data (as the synthetic demo against real data)."""
    y, p = _probs(40, 3)
    _, q = _probs(40, 4, 0.2)
    y3, p3 = _probs(32, 5, 1.5)
    return [make_run(parent, "real-a", y, p, CLASSES), make_run(parent, "real-b", y, q, CLASSES),
            make_run(parent, "demo-phantoms", y3, p3, CLASSES, data="PHANTOMS")]


def _report(paths: list[Path], html: Path, *extra: str) -> str:
    out = CliRunner().invoke(cli, ["report", *map(str, paths), "--html", str(html), *extra], env={"COLUMNS": "200"})
    assert out.exit_code == 0, out.output
    return out.output


@pytest.fixture
def no_figures(monkeypatch):
    """The HTML report without its figures and example images (matplotlib's time), for tests of the rest."""
    from btk.default_plugins import html_report

    monkeypatch.setattr(html_report, "_figures", lambda run: "")
    monkeypatch.setattr(html_report, "_examples", lambda run: "")


def test_one_model_card_per_run(tmp_path, no_figures):
    run = run_with_two_evaluations(tmp_path)
    evaluations = sorted((run / "evaluations").iterdir())
    for paths in (evaluations, [run, *evaluations]):
        html = tmp_path / "r.html"
        _report(paths, html, "--reporter", "none")
        page = html.read_text()
        assert page.count('<div class="card">') == 1, paths
        assert page.count("<h1>Model card: run-a</h1>".replace("h1", "h2")) == 1  # the card's title, one level down


def test_an_evaluation_on_the_runs_own_test_images_says_so(tmp_path, no_figures):
    from btk.compare import run_rows
    from btk.image_sets import own_images
    from btk.runs import load_run

    run = run_with_two_evaluations(tmp_path)
    card = (run / "MODEL_CARD.md").read_text()
    same = next(line for line in card.splitlines() if line.startswith("- eval-same"))
    other = next(line for line in card.splitlines() if line.startswith("- eval-site-b"))
    assert "the run's own 40 test images, the same images: not an external evaluation" in same
    assert "own" not in other and "not an external" not in other
    assert "No external evaluation" not in card  # site B is one
    words, external = own_images(load_run(run), load_run(run / "evaluations" / "eval-same"))
    assert not external and "same images" in words
    html = tmp_path / "r.html"
    output = _report([run], html, "--reporter", "none")
    page = html.read_text()
    assert "Its images: the run&#x27;s own 40 test images" in page  # the evaluation's own section
    # the run and the evaluation on its images share a letter; site B has its own
    rows = {r["run"]: r["images"] for r in run_rows([load_run(run), load_run(run / "evaluations" / "eval-same"),
                                                     load_run(run / "evaluations" / "eval-site-b")])}
    assert rows["run-a"] == rows["eval-same"] != rows["eval-site-b"]
    assert "test images A: 40 images of DATA" in output and "only eval-site-b: not compared" in output


def test_a_partial_overlap_is_counted(tmp_path):
    from btk.image_sets import own_images
    from btk.runs import load_run

    y, p = _probs(40, 1)
    run = make_run(tmp_path, "run-a", y, p, CLASSES)
    make_run(run / "evaluations", "eval-half", y[:20], p[:20], CLASSES, evaluates=run,
             sources=[f"img{i:05d}.png" for i in range(10)] + [f"new{i}.png" for i in range(10)])
    words, external = own_images(load_run(run), load_run(run / "evaluations" / "eval-half"))
    assert not external
    assert words == "10 of them the run's test images: 10 of its 20 images are the run's own"


def test_best_is_named_only_among_runs_on_the_same_images(tmp_path, no_figures):
    from btk.compare import best_by_column, is_best, run_rows
    from btk.runs import load_run

    paths = three_runs(tmp_path)
    rows = run_rows([load_run(p) for p in paths])
    assert [r["images"] for r in rows] == ["A", "A", "B"]
    best = best_by_column(rows)
    assert set(best) == {"A"}  # the demo, alone on its images, is never "best"
    assert rows[2]["accuracy"] > rows[0]["accuracy"]  # though its accuracy is the highest
    assert not any(is_best(rows[2], c, best) for c in ("accuracy", "f1_macro", "auc_macro", "ece"))
    assert is_best(rows[0], "accuracy", best)
    html = tmp_path / "r.html"
    output = _report(paths, html, "--reporter", "none")
    assert "only demo-phantoms: not compared with the others" in output
    assert "a best is named only among runs tested on the same images" in output
    page = html.read_text()
    comparison = page[page.index("<h2>comparison</h2>"):page.index("</table>", page.index("<h2>comparison</h2>"))]
    demo_row = next(r for r in comparison.split("<tr>") if "demo-phantoms" in r)
    assert 'class="best"' not in demo_row and 'class="best"' in comparison
    assert "test images B: 32 images of PHANTOMS" in page
    # no two runs on the same images: nothing is best, and the table says so
    alone = [paths[0], paths[2]]
    assert "no two runs on the same test images" in _report(alone, html, "--reporter", "none")
    assert 'class="best"' not in html.read_text() and "no best is named" in html.read_text()


def test_the_prediction_table_piped_to_a_file_keeps_a_sane_width(monkeypatch):
    """Not on a terminal, btk predict's table is 120 columns (or COLUMNS) wide, not the 250 of
    the other tables: a long path wraps in its cell and is printed in full."""
    import io

    from btk.predict import Prediction
    from btk.render import out_console
    from btk.render.tables import PredictionTable

    long_path = "/".join(f"a_very_long_folder_name_number_{k}" for k in range(12)) + "/image.jpg"
    for columns, width in (("", 120), ("90", 90)):
        monkeypatch.setenv("COLUMNS", columns)
        buffer = io.StringIO()
        console = out_console(file=buffer)
        assert not console.is_terminal and console.width >= 250  # what the other tables get
        table = PredictionTable("predictions of run", CLASSES, console, slices=False)
        for path in ("short.jpg", long_path):
            table.write(Prediction(path, None, "no_tumor", dict.fromkeys(CLASSES, 0.25)))
        table.close()
        lines = buffer.getvalue().splitlines()
        assert max(len(line) for line in lines) <= width, (columns, max(map(len, lines)))
        assert long_path in "".join(line.split(" ")[0] for line in lines)  # wrapped, not cut


def _texts(fig):
    """Every text matplotlib draws in ``fig``: titles, axis labels, tick labels in view, the
    numbers in the axes, legend entries; after a draw, with their window extents."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    texts = list(fig.texts)
    for ax in fig.axes:
        texts += [ax.title, ax._left_title, ax._right_title, ax.xaxis.label, ax.yaxis.label, *ax.texts,
                  *ax.get_xticklabels(), *ax.get_yticklabels()]
        legend = ax.get_legend()
        if legend is not None:
            texts += list(legend.get_texts())
    shown = [t for t in texts if t.get_visible() and t.get_text().strip()]
    return [(t, t.get_window_extent(renderer)) for t in shown]


def _overlaps(fig) -> list[tuple[str, str]]:
    texts = _texts(fig)
    out = []
    for i, (a, box_a) in enumerate(texts):
        for b, box_b in texts[i + 1:]:
            if box_a.overlaps(box_b):
                out.append((a.get_text(), b.get_text()))
    return out


@pytest.mark.parametrize("classes", [CLASSES[:2], CLASSES, [f"long_class_name_{k}" for k in range(7)]])
def test_figures_text_does_not_overlap_and_is_readable(tmp_path, classes):
    """The report's figures, drawn: no two texts overlap (the row-normalised matrix's class names
    clear of the counts), none is below 8 pt, the figure is no wider than the page shows at its
    own size, and the training curves of 3 epochs have ticks at whole epochs only."""
    import json

    import matplotlib.pyplot as plt

    from btk.default_plugins import html_report
    from btk.runs import load_run

    n_classes = len(classes)
    rng = np.random.default_rng(n_classes)
    y = np.arange(60) % n_classes
    p = rng.dirichlet(np.ones(n_classes), 60)
    p[np.arange(60), y] += 0.6
    run_dir = make_run(tmp_path, "run", y, p / p.sum(1, keepdims=True), classes)
    (run_dir / "history.json").write_text(json.dumps(
        {"loss": [1.2, 0.8, 0.6], "accuracy": [0.4, 0.6, 0.7], "val_loss": [1.3, 0.9, 0.8],
         "val_accuracy": [0.35, 0.55, 0.6], "best_epoch": [3]}))
    run = load_run(run_dir)
    for make in (html_report.summary_figure, html_report.history_figure):
        fig = make(run)
        try:
            texts = _texts(fig)
            assert len(texts) > 10
            assert not _overlaps(fig), (make.__name__, _overlaps(fig))
            small = [(t.get_text(), t.get_fontsize()) for t, _ in texts if t.get_fontsize() < 8]
            assert not small, small
            assert fig.get_figwidth() * html_report.FIGURE_DPI <= 1000  # the page's column: shown at its own size
            if make is html_report.history_figure:
                for ax in fig.axes:
                    ticks = [float(t.get_text().replace("\u2212", "-")) for t in ax.get_xticklabels()]
                    assert ticks and all(t == int(t) for t in ticks), ticks
        finally:
            plt.close(fig)


def test_the_overlap_check_sees_overlapping_text():
    """The check above fails on the old layout's fault: two panels' texts drawn on each other."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(4, 2))
    axes[1].set_yticks([0, 1], ["a_very_long_class_name", "another_long_class_name"])
    try:
        assert _overlaps(fig)
    finally:
        plt.close(fig)


PROBE = Path(__file__).parent / "layout_probe.js"


def _layout(page: Path, tmp_path: Path, width: int) -> dict:
    """What headless Chromium finds laying ``page`` out at ``width`` px (``layout_probe.js``)."""
    import json

    from conftest import chromium

    probe = tmp_path / f"probe-{width}.html"
    probe.write_text(page.read_text().replace("</body>", f"<script>{PROBE.read_text()}</script></body>"))
    proc = chromium(probe, tmp_path / "profile", width, 900, "--dump-dom", "--virtual-time-budget=10000")
    found = re.search(r'<pre id="layout-probe">(.*?)</pre>', proc.stdout, re.S)
    assert found, (proc.stdout[-500:], proc.stderr[-2000:])
    return json.loads(html_lib.unescape(found.group(1)))


def _check_layout(layout: dict, width: int) -> None:
    assert layout["texts"] > 200 and layout["images"] > 4, layout  # the probe saw the page
    assert layout["n_overlaps"] == 0, layout["overlaps"]
    assert layout["n_broken"] == 0, layout["broken"]
    assert layout["scroll_width"] <= width, layout  # nothing runs off the side
    # figures at their own size where the window has room, never shrunk below 3/4 of it
    assert all(s > 0.99 if width >= 1400 else s >= 0.75 for s in layout["figure_scales"]), layout["figure_scales"]


@pytest.mark.parametrize("what", ["run with two evaluations", "three runs"])
def test_the_html_report_lays_out_cleanly_in_chromium(tmp_path, what):
    """The report of a run with two evaluations, and of three runs, laid out by headless Chromium
    at 1400 and 800 px: no text over other text or over a figure, no word broken inside, nothing
    wider than the window, figures not shrunk; one model card per run; the comparison says on
    which images it compared what."""
    paths = [run_with_two_evaluations(tmp_path)] if what.startswith("run") else three_runs(tmp_path)
    page = tmp_path / "report.html"
    _report(paths, page, "--reporter", "none")
    text = page.read_text()
    assert text.count('<div class="card">') == (1 if what.startswith("run") else 0)
    assert "test images A:" in text and "test images B:" in text
    for width in (1400, 800):
        _check_layout(_layout(page, tmp_path, width), width)


def test_the_layout_probe_finds_overlaps_and_broken_words(tmp_path):
    """The probe itself: text pulled over other text, and a word forced to break inside, are found."""
    page = tmp_path / "bad.html"
    page.write_text('<!DOCTYPE html><html><body><p>first line of text</p>'
                    '<p style="margin-top:-1.2em">second line of text</p>'
                    '<div style="width:60px;overflow-wrap:anywhere">glioma_tumor meningioma_tumor</div></body></html>')
    layout = _layout(page, tmp_path, 800)
    assert layout["n_overlaps"] >= 1 and "glioma_tumor" in layout["broken"], layout


def test_an_evaluation_on_all_the_runs_images_is_counted_by_split(old_run):
    """A run evaluated on all of its own data (training images too): the card counts them by
    split, and the run still has no external evaluation."""
    from btk.model_card import write_card
    from btk.runs import load_run

    card = write_card(load_run(old_run)).read_text()
    line = next(x for x in card.splitlines() if x.startswith("- 20261204-202207-eval-old-eval"))
    assert ("48 images (34 of them the run's training images, 10 of them the run's test images, 4 of them the "
            "run's selection") in line and line.endswith("not an external evaluation), accuracy 25.0%, macro F1 10.0%.")
    assert "No external evaluation: performance on other hospitals' images is unknown." in card
