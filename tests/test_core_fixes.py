"""Behaviours the one core fixed, one test each: names checked everywhere, the reader of an
evaluation, evaluations as records of their own, ensembles made and made again from their
members, reports that say what they show, data fingerprints, paths that move, folders that cannot
be written, and nothing half-written left behind by an interruption."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from btk.cli import cli
from btk.runs import load_run

TINY = ["--model", "small-cnn", "--image-size", "32", "--epochs", "1"]


def _ok(*args: str, env: dict | None = None) -> str:
    result = CliRunner().invoke(cli, list(args), env=env)
    assert result.exit_code == 0, result.output
    return result.stdout


def _one_line_error(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 1, result.output
    lines = [x for x in result.output.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    return lines[0]


def _run(out: Path, *flags: str) -> Path:
    return Path(json.loads(_ok("run", *TINY, *flags, "--out", str(out), "--json"))["run"])


@pytest.fixture(scope="module")
def runs(sartaj_small, tmp_path_factory) -> dict[str, Path]:
    """Two small runs on the same data with different seeds (so different validation splits),
    and a demo run on the synthetic phantoms."""
    out = tmp_path_factory.mktemp("runs")
    return {"a": _run(out, "--data", str(sartaj_small), "--seed", "3"),
            "b": _run(out, "--data", str(sartaj_small), "--seed", "5"),
            "demo": _run(out, "-R", "per_class=12", "-R", "test_per_class=2")}


# --- names ------------------------------------------------------------------------------------------

def test_every_command_that_takes_a_name_checks_it(tmp_path):
    """--name becomes part of a directory's name: a path in it is refused by every command."""
    from btk.cli import _add_plugin_commands

    _add_plugin_commands()
    required = {"evaluate": ["RUN", "--data", "D"], "adapt": ["RUN", "--data", "D"], "ensemble": ["A", "B"]}
    named = sorted(n for n, c in cli.commands.items() if any(p.name == "name" for p in c.params))
    assert {"run", "plan", "ensemble", "evaluate", "adapt"} <= set(named)
    for command in named:
        args = [command, *required.get(command, []), "--name", "/../../../../elsewhere/x"]
        if command == "plan":
            args += ["--seeds", "1-2"]
        line = _one_line_error(*args, "--out", str(tmp_path / command))
        assert line.startswith("Error: --name: '/../../../../elsewhere/x' must be a plain name"), line
        assert not (tmp_path / command).exists()


# --- evaluations ------------------------------------------------------------------------------------

def test_a_run_on_generated_data_is_evaluated_on_the_folder_given(runs, sartaj_small, tmp_path):
    """The demo run read phantoms (no data path): --data FOLDER is read by the reader that
    recognises it, not silently replaced by phantoms."""
    evaluation = load_run(json.loads(_ok("evaluate", str(runs["demo"]), "--data", str(sartaj_small), "--out",
                                         str(tmp_path), "--json"))["run"])
    assert evaluation.config.reader == "folder" and evaluation.config.data == str(sartaj_small)
    assert evaluation.metrics["conditions"]["clean"]["n"] == 12  # the folder's 12 Testing images
    assert {r["source"].split("/")[0] for r in evaluation.split_rows()} == {"Testing"}


def test_an_evaluation_is_a_record_of_its_own(runs, sartaj_small, tmp_path):
    """It keeps its run's temperature (its report does not claim there is none), records the
    images it scored (robustness sweeps them), and is refused, in one line, as an ensemble member."""
    run = load_run(runs["a"])
    path = Path(json.loads(_ok("evaluate", str(run.path), "--data", str(sartaj_small), "--out", str(tmp_path),
                               "--reporter", "none", "--json"))["run"])
    evaluation = load_run(path)
    assert run.calibration is not None and evaluation.temperature == run.temperature
    shown = CliRunner().invoke(cli, ["report", str(path)], env={"COLUMNS": "200"})
    assert shown.exit_code == 0 and "no temperature fitted" not in shown.output
    assert f"temperature {run.temperature:.3f}" in shown.output
    sweep = json.loads(_ok("robustness", str(path), "--degraders", "blur", "--json"))
    assert sweep[0]["sweep"]["n"] == 12 and len(sweep[0]["sweep"]["degraders"]["blur"]) == 5
    line = _one_line_error("ensemble", str(run.path), str(path), "--out", str(tmp_path / "e"))
    assert line == f"Error: {path} is an evaluation, not a run: give the run it evaluated"


# --- ensembles ------------------------------------------------------------------------------------

def test_the_same_run_twice_is_not_an_ensemble(runs, tmp_path):
    line = _one_line_error("ensemble", str(runs["a"]), str(runs["a"]), "--out", str(tmp_path))
    assert "the same run is given twice" in line
    assert not any(tmp_path.iterdir())


def test_an_ensemble_is_made_again_from_its_members_records(runs, sartaj_small, tmp_path):
    """btk rerun of an ensemble trains each member again with its own seed on its own split
    (not consecutive seeds on the first member's split), then combines them; its model card
    describes an ensemble, not a run of zero epochs."""
    out = tmp_path / "out"
    ensemble = Path(json.loads(_ok("ensemble", str(runs["a"]), str(runs["b"]), "--name", "pair", "--out", str(out),
                                   "--json"))["run"])
    card = (ensemble / "MODEL_CARD.md").read_text()
    assert "An ensemble: the mean of the probabilities of 2 runs" in card and " epochs (best epoch" not in card
    assert "2 seeds averaged" in card and "One seed" not in card
    _ok("evaluate", str(ensemble), "--data", str(sartaj_small), "--degrade", "blur@2", "--reporter", "none")
    card = (ensemble / "MODEL_CARD.md").read_text()
    robustness = card.split("## Robustness")[1].split("##")[0]
    assert "Not measured" not in robustness and "blur@2" in robustness
    done = json.loads(_ok("rerun", str(ensemble), "--out", str(tmp_path / "again"), "--json"))
    again = load_run(done["run"]["run"])
    assert again.ensemble is not None
    originals = {m.seed: load_run(m.path) for m in load_run(ensemble).ensemble.members}
    remade = {m.seed: load_run(m.path) for m in again.ensemble.members}
    assert sorted(remade) == sorted(originals) == [3, 5]
    for seed, member in remade.items():
        assert member.split_rows() == originals[seed].split_rows()  # each on its own split
    assert all(r["same_class"] == r["n"] for r in done["agreement"])  # made again: the same answers


# --- reports ------------------------------------------------------------------------------------------

def test_the_demo_report_names_its_preset_and_shows_ece_in_percent(runs):
    run = load_run(runs["demo"])
    assert run.recipe.name == "demo" and run.config.reader == "synthetic"
    shown = CliRunner().invoke(cli, ["report", str(run.path)], env={"COLUMNS": "250"})
    assert shown.exit_code == 0, shown.output
    assert "preset demo" in shown.output and "preset btk" not in shown.output
    m = run.condition_metrics("clean")
    row = next(x for x in shown.output.splitlines() if x.startswith("│ clean"))
    cells = [c.strip() for c in row.strip("│").split("│")]
    assert cells[8] == f"{100 * m['ece']:.1f}" and cells[9] == f"{100 * m['ece_uncalibrated']:.1f}"


def test_the_html_report_has_what_the_terminal_shows(runs, sartaj_small, tmp_path):
    """The run's evaluation with its degraded condition, the model card as HTML, the
    configuration as tables with each recipe field once."""
    run = runs["b"]
    _ok("evaluate", str(run), "--data", str(sartaj_small), "--degrade", "blur@2", "--name", "external",
        "--reporter", "none")
    page = tmp_path / "r.html"
    _ok("report", str(run), "--reporter", "none", "--html", str(page))
    html = page.read_text()
    assert "eval-external" in html and "blur@2" in html and "its own test images and" in html
    assert '<div class="card">' in html and "<pre" not in html.split("model card")[-1]
    assert "<th>class</th><th>precision</th>" in html  # the card's Markdown table, rendered
    sections = {part.split('"')[0]: part for part in html.split('<h2 id="')[1:]}
    assert sections[run.name].count(">augment_probability<") == 1  # the recipe once, not twice
    assert "temperature" in html.lower() and "min confidence" in html  # calibration, as in the terminal
    # laid out at 1200 px by a real browser, nothing runs off the page or hides in a box that scrolls
    # sideways (the card's long lines wrap)
    probe = tmp_path / "probe.html"
    probe.write_text(html.replace("</body>", "<script>document.body.setAttribute('data-overflow', String("
                                              "document.documentElement.scrollWidth > window.innerWidth || "
                                              "Array.from(document.querySelectorAll('*')).some(e => "
                                              "e.scrollWidth > e.clientWidth + 1 && "
                                              "getComputedStyle(e).overflowX !== 'visible')))</script></body>"))
    from conftest import chromium

    dom = chromium(probe, tmp_path / "profile", 1200, 1600, "--dump-dom").stdout
    assert 'data-overflow="false"' in dom, dom[-500:]


# --- data and paths -----------------------------------------------------------------------------------

def test_a_fingerprint_counts_each_file_once(tmp_path, image_folder):
    """Data read through a symbolic link: each file once in the provenance's fingerprint."""
    from btk.dataset import load_dataset
    from btk.plugins import get_host
    from btk.types import ReadOptions

    (tmp_path / "link").symlink_to(image_folder.parent)
    data = load_dataset(get_host().readers.get("folder"), tmp_path / "link" / "data", ReadOptions(32, 1))
    files = sorted(image_folder.rglob("*.png"))
    assert data.fingerprint["files"] == len(files) == 12
    assert data.fingerprint["bytes"] == sum(f.stat().st_size for f in files)


def test_a_relative_data_path_is_found_from_another_folder(sartaj_small, tmp_path, monkeypatch):
    """A run recorded its data path as typed; evaluated from elsewhere it still finds its training
    images (relative to the folder it was made in), so the copy check runs."""
    made_in = sartaj_small.parent
    monkeypatch.chdir(made_in)
    run = _run(tmp_path / "runs", "--data", "data", "--limit-train", "16")
    assert load_run(run).config.data == "data"
    monkeypatch.chdir(tmp_path)
    evaluation = load_run(json.loads(_ok("evaluate", str(run), "--data", str(sartaj_small), "--json"))["run"])
    assert evaluation.metrics["leakage"]["checked"] is True


def test_an_output_folder_that_cannot_be_written_is_one_line_before_any_work(runs, sartaj_small):
    start = time.perf_counter()
    line = _one_line_error("run", *TINY, "--out", "/proc/btk/runs")
    assert line.startswith("Error: --out /proc/btk/runs: cannot write")
    line = _one_line_error("evaluate", str(runs["a"]), "--data", str(sartaj_small), "--out", "/proc/btk")
    assert line.startswith("Error: --out /proc/btk: cannot write")
    assert time.perf_counter() - start < 5  # refused before reading or training anything


# --- interruptions ------------------------------------------------------------------------------------

def test_training_unsets_its_device_layout_when_it_fails(monkeypatch, image_folder):
    """The distribution a run sets for training is unset even when training raises."""
    from btk import distribute, pipeline
    from btk.config import make_run_config

    ended = []
    monkeypatch.setattr(distribute, "end", lambda: ended.append(True))

    def broken(*args, **kwargs):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(pipeline, "train", broken)
    prep = pipeline.prepare(make_run_config(data=str(image_folder), recipe={"image_size": 32, "model": "small-cnn"},
                                            test_fraction=0.25, duplicate_threshold=0))
    with pytest.raises(RuntimeError):
        pipeline.fit(prep)
    assert ended


def test_predict_json_prints_nothing_when_the_stream_fails(tmp_path, image_folder, runs):
    """A reader that breaks mid-stream, before a row is printed: the error is one line on standard
    error, and nothing is on standard output; a list begun before a failure is ended, so what was
    printed still parses."""
    from btk.api import Entry, Sample, hookimpl
    from btk.plugins import register_plugin
    from btk.predict_output import JsonList

    class Breaking:
        name, description = "breaking", "every image after the fourth has the wrong size"

        def scan(self, path, options):
            return [Entry(f"{k}.png", None, f"{k}.png", payload=k) for k in range(8)]

        def load(self, entry, options):
            side = options.image_size if entry.payload < 4 else 7
            return [Sample(np.zeros((side, side, 3), np.uint8), None, entry.group, entry.source)]

    class Plugin:
        @hookimpl
        def btk_register_readers(self, register):
            register(Breaking())

    register_plugin(Plugin())
    result = CliRunner().invoke(cli, ["predict", str(runs["demo"]), "--data", str(image_folder), "--reader",
                                      "breaking", "--json"])
    assert result.exit_code == 1 and result.stdout == ""
    assert "expected (32, 32, 3)" in result.stderr

    class Row:
        def record(self):
            return {"path": "a.png"}

    printed: list[str] = []
    begun = JsonList(printed.append)
    begun.write(Row())
    begun.close(failed=True)
    assert json.loads("".join(printed)) == [{"path": "a.png"}]


def test_cache_clear_removes_what_a_killed_process_left(tmp_path, monkeypatch):
    from btk import cache

    monkeypatch.setenv("BTK_CACHE_DIR", str(tmp_path))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / f".abc.{dead.pid}.tmp").mkdir()
    (tmp_path / f".def.{os.getpid()}.tmp").mkdir()  # a live process's entry is left alone
    assert cache.stale_partials() == [tmp_path / f".abc.{dead.pid}.tmp"]
    shown = CliRunner().invoke(cli, ["cache", "--clear", "--json"])
    assert json.loads(shown.stdout)["removed"] == 1
    assert [p.name for p in tmp_path.iterdir()] == [f".def.{os.getpid()}.tmp"]


def test_sigterm_at_any_moment_of_a_cache_write_leaves_no_unfinished_entry(tmp_path, monkeypatch, image_folder):
    """The race behind a member's leftover ``.KEY.PID.tmp``, made deterministic: a dataset is decoded
    into the cache again and again, and SIGTERM arrives at the 1st, 2nd, ... last function call made
    in btk/cache.py or btk/dataset.py (where Python itself runs a signal's handler: on entering a
    function). After every load no unfinished entry is left (a signal between the entry's creation
    and the caller's ``try`` used to leave it)."""
    from btk import cache, dataset
    from btk.interrupt import Terminated, terminate_raises
    from btk.plugins import get_host
    from btk.types import ReadOptions

    reader = get_host().readers.get("folder")
    watched = {cache.__file__, dataset.__file__}
    before = signal.getsignal(signal.SIGTERM)
    terminate_raises()
    interrupted, in_writer, total = 0, 0, None
    try:
        moment = 0  # 0: a load that counts the calls; then one load per call, SIGTERM at that one
        while total is None or moment <= total:
            folder = tmp_path / f"cache{moment}"
            monkeypatch.setenv("BTK_CACHE_DIR", str(folder))
            calls, where = 0, ""

            def trace(frame, event, arg):
                nonlocal calls, where
                caller = frame.f_back
                if event == "call" and (frame.f_code.co_filename in watched
                                        or (caller is not None and caller.f_code.co_filename in watched)):
                    calls += 1
                    if calls == moment:
                        where = f"{caller.f_code.co_qualname if caller else '?'} -> {frame.f_code.co_qualname}"
                        signal.raise_signal(signal.SIGTERM)  # the handler raises Terminated here
                return None

            sys.settrace(trace)
            try:
                dataset.load_dataset(reader, image_folder, ReadOptions(16, 1), workers=1)
            except Terminated:
                interrupted += 1
                in_writer += where.startswith("Writer.")
            finally:
                sys.settrace(None)
            # interrupted or not (a signal inside a callback whose errors Python ignores), nothing unfinished
            assert not list(folder.glob(".*.tmp")), f"SIGTERM at call {moment} ({where}) left an unfinished entry"
            if total is None:
                total = calls
                assert len(cache.entries()) == 1  # the counting load went through
            moment += 1
    finally:
        signal.signal(signal.SIGTERM, before)
    assert interrupted > 50 and in_writer >= 5, (interrupted, in_writer, total)


def test_sigterm_to_a_plan_leaves_nothing_half_written(tmp_path):
    """SIGTERM to `btk plan --jobs 2` while its members decode their data: each member removes its
    unfinished cache entry, the plan waits for them, and nothing half-written is left."""
    import cv2

    data = tmp_path / "data"
    gradient = np.add.outer(np.arange(4000), np.arange(4000)) / 8000 * 255
    for c in ("a", "b"):
        (data / c).mkdir(parents=True)
        for k in range(16):  # large images: decoding and framing them takes seconds
            cv2.imwrite(str(data / c / f"{k}.jpg"), np.clip(gradient + k, 0, 255).astype(np.uint8))
    cache_dir, out = tmp_path / "cache", tmp_path / "out"
    env = {**os.environ, "BTK_CACHE_DIR": str(cache_dir), "BTK_LOAD_PLUGINS": ""}
    plan = subprocess.Popen([sys.executable, "-m", "btk", "plan", "--data", str(data), *TINY, "--seeds", "1-2",
                             "--jobs", "2", "--out", str(out)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 120
    while not list(cache_dir.glob(".*.tmp")) and time.time() < deadline and plan.poll() is None:
        time.sleep(0.02)
    assert list(cache_dir.glob(".*.tmp")), "the members never started decoding"
    plan.send_signal(signal.SIGTERM)
    output = plan.communicate(timeout=60)[0]
    assert plan.returncode == 143, output
    assert "interrupted" in output
    assert not list(cache_dir.glob(".*.tmp")), "a member left its unfinished cache entry"
    assert not [p for p in out.rglob("*") if p.name.endswith(".partial")]
    members = subprocess.run(["pgrep", "-f", str(out)], capture_output=True, text=True).stdout.split()
    assert not members, "member processes outlived the plan"
