"""``btk report`` (finished runs shown and compared) and ``btk card`` (model cards written again)."""

from __future__ import annotations

from pathlib import Path

import click

from btk.commands.options import Output, check_reporters, json_option
from btk.errors import BtkError


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--reporter", multiple=True, default=("terminal",), show_default=True,
              help="Reporter plugin(s) for each run; repeatable; none: only the tables that put runs together.")
@click.option("--html", "html_path", type=click.Path(path_type=Path), metavar="FILE",
              help="Also write everything into one self-contained HTML file.")
@json_option
def report(paths: tuple[Path, ...], reporter: tuple[str, ...], html_path: Path | None, as_json: bool) -> None:
    """Report finished runs without re-running them.

    PATHS are run directories, suite or plan directories (their runs are included) or
    evaluation directories (`btk evaluate`). Each run is shown by the reporters; several get one
    comparison table (a row per run and test condition, a letter for its set of test images,
    the best of each column in bold among runs on the same images only) and McNemar's test for
    runs on the same test images. A run's evaluations are shown beside its
    own test metrics. Runs that differ only in their seed (a plan over seeds, or separate runs
    such as a job array's) also get the mean and range of each metric over the seeds. A
    directory that is not a complete run is named in one line and skipped. --html writes all of
    it, each run's model card once, into one file.

    \b
    Examples:
      btk report runs/20261127-101500-multiclass
      btk report runs/20261127-101500-multiclass/evaluations/*
      btk report runs/* --html report.html --reporter none
      btk report OUT/*-multiclass-seed*       # separate runs over seeds: mean and range
    """
    from btk.compare import gather_report
    from btk.plugins import get_host
    from btk.render import warn_lines
    from btk.render.tables import failed_lines, render_comparison, render_suite_aggregate, render_suite_table

    check_reporters(reporter)
    html_writer = get_host().reporters.get("html").write if html_path else None
    result = gather_report(list(paths))
    warn_lines(result.skipped, prefix="btk: skipped: ")
    output = Output(as_json)
    if as_json:
        output.json(result.summary())
    else:
        console = output.console
        for info in result.suites:
            seeds = ", ".join(map(str, info.get("seeds", [])))
            title = (f"suite '{info['suite']}'" if info["suite"] != "over seeds" else
                     f"runs that differ only in their seed (seeds {seeds})")
            if info.get("table") and info["suite"] != "over seeds":
                render_suite_table(info["table"], console, title)
            if info.get("aggregate"):
                render_suite_aggregate(info["aggregate"], console, f"{title}: mean (lowest-highest)" if
                                       info["suite"] == "over seeds" else
                                       f"{title} over seeds {seeds}: mean (lowest-highest)")
            warn_lines(failed_lines(info.get("failed", [])), prefix=f"btk: suite '{info['suite']}': ")
        for run in result.runs:
            output.report(run, reporter)
        if result.rows:
            render_comparison(result.rows, result.best, result.tests, console)
        for group in result.groups:
            render_comparison(group.rows, group.best, group.tests, console,
                              title=f"{group.run.name}: its own test images and {len(group.evaluations)} evaluation(s)")
    if html_writer and html_path is not None:
        html_writer(result, html_path)
        output.written("HTML report written to", html_path)


@click.command()
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(path_type=Path))
@json_option
def card(run_dirs: tuple[Path, ...], as_json: bool) -> None:
    """Write each run's MODEL_CARD.md again: what the model is for and not for, its data,
    training, metrics with intervals, calibration, robustness, explanations, external
    evaluations and known limitations, from the run's record. Every command that adds to a run
    (evaluate, robustness, explain) writes its card again itself; this is for runs made by an
    older btk.

    \b
    Example:
      btk card runs/20261127-101500-multiclass
    """
    from btk.model_card import write_card
    from btk.runs import load_run

    output = Output(as_json)
    written = []
    for path in run_dirs:
        run_ = load_run(path)
        if run_.is_evaluation:
            raise BtkError(f"{run_.path} is an evaluation: its run has the model card")
        written.append(write_card(run_))
        if not as_json:
            output.written("model card written to", written[-1])
    if as_json:
        output.json([str(p) for p in written])
