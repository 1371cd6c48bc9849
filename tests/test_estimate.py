"""``btk estimate``: accuracy at a site from the scans ``btk select`` drew at random and a person
labelled (never the chosen ones), with Clopper-Pearson's exact interval; coarse labels through
``--map`` count for tumour vs none only; bad labels are one line."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from click.testing import CliRunner
from scipy.stats import binomtest

from btk.cli import cli


def _ok(*args):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.stdout


def _selection(run, site, out):
    _ok("select", run, "--data", site, "--budget", "8", "--method", "uncertainty", "--random-share", "0.5",
        "--seed", "2", "--out", out)
    [folder] = list(Path(out).iterdir())
    return folder


def _fill(folder, label_of, name="filled.csv"):
    with open(folder / "to_label.csv") as fh:
        rows = list(csv.DictReader(fh))
    with open(folder / name, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "slice", "label"])
        for r in rows:
            writer.writerow([r["path"], r["slice"], label_of(Path(r["path"]).parent.name)])
    return folder / name


def test_only_the_random_scans_count_with_an_exact_interval(sartaj_small_run, sartaj_small, tmp_path):
    folder = _selection(sartaj_small_run, sartaj_small / "Testing", tmp_path / "sel")
    labels = _fill(folder, lambda truth: truth)
    [estimate] = json.loads(_ok("estimate", sartaj_small_run, "--selection", folder, "--labels", labels, "--json"))
    record = json.loads((folder / "selection.json").read_text())
    random_paths = [c["path"] for c in record["chosen"] if c["chosen_by"] == "random"]
    assert len(random_paths) == 4 and estimate["accuracy"]["n"] == 4
    assert estimate["left_out"]["chosen_not_random"] == 4
    # the run's own answers on those four, from btk predict
    rows = json.loads(_ok("predict", sartaj_small_run, *[a for p in random_paths for a in ("--data", p)], "--json"))
    right = sum(r["predicted"] == Path(r["path"]).parent.name for r in rows)
    assert estimate["accuracy"]["right"] == right
    ci = binomtest(right, 4).proportion_ci(0.95, method="exact")
    assert estimate["accuracy"]["ci95"] == [ci.low, ci.high]
    assert json.loads((folder / "estimate.json").read_text())["estimates"][0]["accuracy"]["n"] == 4


def test_coarse_labels_vouch_for_tumour_vs_none_only(sartaj_small_run, sartaj_small, tmp_path):
    folder = _selection(sartaj_small_run, sartaj_small / "Testing", tmp_path / "sel")
    labels = _fill(folder, lambda truth: "no" if truth == "no_tumor" else "yes")
    [estimate] = json.loads(_ok("estimate", sartaj_small_run, "--selection", folder, "--labels", labels,
                                "--map", "yes=tumor", "--map", "no=no_tumor", "--json"))
    assert estimate["tumour_vs_none"]["n"] == 4
    no_tumour = sum(1 for c in json.loads((folder / "selection.json").read_text())["chosen"]
                    if c["chosen_by"] == "random" and Path(c["path"]).parent.name == "no_tumor")
    assert estimate["accuracy"]["n"] == no_tumour  # only "no" is one of the run's own classes


def test_bad_labels_are_one_line(sartaj_small_run, sartaj_small, tmp_path):
    from conftest import one_line_refusal

    folder = _selection(sartaj_small_run, sartaj_small / "Testing", tmp_path / "sel")
    base = ["estimate", str(sartaj_small_run), "--selection", str(folder), "--labels"]
    unmapped = _fill(folder, lambda truth: "yes", "unmapped.csv")
    assert "--map" in one_line_refusal([*base, str(unmapped)])
    stranger = folder / "stranger.csv"
    stranger.write_text("path,slice,label\n/elsewhere/scan.jpg,,glioma_tumor\n")
    assert "not in the selection's list" in one_line_refusal([*base, str(stranger)])
    assert "nothing to estimate from" in one_line_refusal([*base, str(folder / "to_label.csv")])  # nothing filled in
    assert "not a btk select folder" in one_line_refusal(["estimate", str(sartaj_small_run), "--selection",
                                                          str(tmp_path)])
