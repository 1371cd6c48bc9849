"""``btk select``: a budget of a new site's scans to label, one per series or patient, a share of
them drawn at random, the rest the most uncertain spread out; the list a person fills in does not
say which were random."""

from __future__ import annotations

import csv
import json

import numpy as np
from click.testing import CliRunner

from btk.cli import cli


def _select(run, data, out, *extra):
    result = CliRunner().invoke(cli, ["select", str(run), "--data", str(data), "--out", str(out), "--json", *extra])
    assert result.exit_code == 0, result.output
    [folder] = list(out.iterdir())
    with open(folder / "to_label.csv") as fh:
        rows = list(csv.DictReader(fh))
    return rows, json.loads((folder / "selection.json").read_text())


def test_uncertainty_chooses_among_the_most_uncertain_and_keeps_a_random_share(sartaj_small_run, sartaj_small,
                                                                               tmp_path):
    site = sartaj_small / "Testing"  # 12 files, each its own patient
    rows, record = _select(sartaj_small_run, site, tmp_path / "a", "--budget", "6", "--method", "uncertainty",
                           "--random-share", "0.5", "--seed", "3")
    assert len(rows) == 6 and len({r["path"] for r in rows}) == 6 and all(r["label"] == "" for r in rows)
    assert list(rows[0]) == ["path", "slice", "label"]  # nothing tells the labeller which were random
    ways = [c["chosen_by"] for c in record["chosen"]]
    assert ways.count("random") == 3 and ways.count("uncertainty") == 3 and record["scans"] == 12
    # the chosen ones come from the 2 x 3 most uncertain of the 9 scans the random draw left
    random_paths = {c["path"] for c in record["chosen"] if c["chosen_by"] == "random"}
    _, everything = _select(sartaj_small_run, site, tmp_path / "all", "--budget", "12", "--method", "uncertainty",
                            "--random-share", "0")
    entropy = {c["path"]: c["entropy"] for c in everything["chosen"]}
    left = sorted((entropy[p] for p in entropy if p not in random_paths), reverse=True)
    chosen = [c["entropy"] for c in record["chosen"] if c["chosen_by"] == "uncertainty"]
    assert min(chosen) >= left[5] - 1e-12
    assert {r["path"] for r in rows} == {c["path"] for c in record["chosen"]}
    again, _ = _select(sartaj_small_run, site, tmp_path / "b", "--budget", "6", "--method", "uncertainty",
                       "--random-share", "0.5", "--seed", "3")
    assert again == rows  # the same seed, the same list in the same order


def test_random_selection_draws_every_scan_at_random(sartaj_small_run, sartaj_small, tmp_path):
    picks = []
    for seed in range(4):
        rows, record = _select(sartaj_small_run, sartaj_small / "Testing", tmp_path / str(seed), "--budget", "4",
                               "--seed", str(seed))
        assert record["method"] == "random" and {c["chosen_by"] for c in record["chosen"]} == {"random"}
        picks.append(frozenset(r["path"] for r in rows))
    assert len(set(picks)) > 1  # other seeds, other draws
    counts = np.array([len(p) for p in picks])
    assert (counts == 4).all()


def test_bad_budgets_are_one_line_and_write_nothing(sartaj_small_run, sartaj_small, tmp_path):
    from conftest import one_line_refusal

    site = str(sartaj_small / "Testing")
    assert "larger than the site" in one_line_refusal(["select", str(sartaj_small_run), "--data", site,
                                                       "--budget", "13", "--out", str(tmp_path / "x")])
    assert "at least 1" in one_line_refusal(["select", str(sartaj_small_run), "--data", site, "--budget", "0",
                                             "--out", str(tmp_path / "x")])
    assert "--random-share" in one_line_refusal(["select", str(sartaj_small_run), "--data", site, "--budget", "2",
                                                 "--method", "uncertainty", "--random-share", "1.5",
                                                 "--out", str(tmp_path / "x")])
    assert not (tmp_path / "x").exists()


PLAYER = r"""
<script>
// A radiologist, by keyboard and mouse: the first scan class 2, then "not a brain MRI", undo it,
// class 1, skip, the model's answer shown, the rest by clicking the first class's button; window
// and level moved; then Save. The saved file's text and what was seen go into pre#played.
window.addEventListener("load", () => setTimeout(async () => {
  const seen = {};
  const key = k => document.dispatchEvent(new KeyboardEvent("keydown", {key: k, bubbles: true}));
  const pause = () => new Promise(r => setTimeout(r, 50));
  await pause();
  const canvas = document.getElementById("view"), ctx = canvas.getContext("2d");
  const centre = () => Array.from(ctx.getImageData(canvas.width / 2, canvas.height / 2, 1, 1).data).join(",");
  seen.before_window = centre();
  const level = document.getElementById("level");
  level.value = 10; level.dispatchEvent(new Event("input"));
  seen.after_window = centre();
  seen.progress0 = document.getElementById("progress").textContent;
  key("2"); await pause();
  key("n"); await pause();
  key("u"); await pause();
  seen.after_undo = document.getElementById("progress").textContent;
  key("1"); await pause();
  key("s"); await pause();
  seen.answer_hidden = document.getElementById("answer").textContent;
  key("h"); await pause();
  seen.answer_shown = document.getElementById("answer").textContent;
  while (!document.getElementById("done").textContent) { document.getElementById("class-0").click(); await pause(); }
  seen.progress_end = document.getElementById("progress").textContent;
  let saved = null;
  const original = URL.createObjectURL;
  URL.createObjectURL = blob => { saved = blob; return original.call(URL, blob); };
  document.getElementById("save").click();
  seen.saved = saved ? await saved.text() : null;
  const pre = document.createElement("pre"); pre.id = "played"; pre.textContent = JSON.stringify(seen);
  document.body.appendChild(pre);
}, 100));
</script>
"""


def test_the_labelling_page_is_played_in_chromium_and_saves_the_list_filled_in(sartaj_small_run, sartaj_small,
                                                                               tmp_path):
    import html as html_lib
    import re

    from conftest import chromium

    _select(sartaj_small_run, sartaj_small / "Testing", tmp_path / "sel", "--budget", "5", "--seed", "1")
    [folder] = list((tmp_path / "sel").iterdir())
    with open(folder / "to_label.csv") as fh:
        listed = list(csv.reader(fh))
    page = (folder / "label.html").read_text()
    assert "<img" not in page and "http" not in page.split("<script>")[0]  # self-contained: nothing fetched
    played = tmp_path / "played.html"
    played.write_text(page.replace("</body>", PLAYER + "</body>"))
    proc = chromium(played, tmp_path / "profile", 1200, 900, "--dump-dom", "--virtual-time-budget=20000")
    found = re.search(r'<pre id="played">(.*?)</pre>', proc.stdout, re.S)
    assert found, (proc.stdout[-500:], proc.stderr[-2000:])
    seen = json.loads(html_lib.unescape(found.group(1)))
    classes = ["glioma_tumor", "meningioma_tumor", "no_tumor", "pituitary_tumor"]
    assert seen["progress0"] == "0 of 5 labelled" and seen["after_undo"] == "1 of 5 labelled"
    assert seen["progress_end"] == "5 of 5 labelled"
    assert seen["answer_hidden"] == "" and seen["answer_shown"].startswith("model: ")
    assert seen["before_window"] != seen["after_window"]  # the level moved what the centre pixel shows
    saved = list(csv.reader(seen["saved"].splitlines()))
    assert [r[:2] for r in saved] == [r[:2] for r in listed]  # the same scans, in the same order
    assert [r[2] for r in saved[1:]] == [classes[1], classes[0], "", classes[0], classes[0]]


def test_an_unreadable_scan_is_a_reported_skip(sartaj_small_run, sartaj_small, tmp_path):
    import shutil

    site = tmp_path / "site"
    shutil.copytree(sartaj_small / "Testing", site)
    (site / "glioma_tumor" / "broken.jpg").write_bytes(b"\xff\xd8 not a JPEG")
    result = CliRunner().invoke(cli, ["select", str(sartaj_small_run), "--data", str(site), "--budget", "3",
                                      "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "btk: skipped" in result.stderr and "broken.jpg" in result.stderr
    [folder] = list((tmp_path / "out").iterdir())
    record = json.loads((folder / "selection.json").read_text())
    assert len(record["skipped"]) == 1 and record["scans"] == 12
