"""``btk select``: which scans of a new site to label."""

from __future__ import annotations

from pathlib import Path

import click

from btk.commands.options import Output, data_paths, json_option, out_option, pairs, reader_options


@click.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@data_paths("The new site's scans, unlabelled: files or folders of them (any depth), DICOM series, NIfTI volumes.")
@reader_options
@click.option("--slices", default="all", show_default=True, help="Slices of a series or volume: middle, all, every:N.")
@click.option("--budget", type=int, required=True, metavar="N", help="How many scans a person will label.")
@click.option("--method", type=click.Choice(["random", "uncertainty"]), default="random", show_default=True,
              help="random: every scan drawn at random; uncertainty: the rest after the random share are the most "
                   "uncertain scans (entropy of the calibrated probabilities), spread over the network's features "
                   "(k-center). random stays the default until docs/site.md's rule says otherwise.")
@click.option("--random-share", type=float, default=0.25, show_default=True, metavar="S",
              help="With --method uncertainty: this share of the budget drawn at random all the same: the scans "
                   "an estimate of accuracy at the site may use (the chosen ones are not a random sample).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the random draws.")
@out_option("the selection directory (to_label.csv, label.html, selection.json)", default="selections")
@json_option
def select(run_dir: Path, paths: tuple[str, ...], reader: str | None, reader_option: tuple[str, ...], slices: str,
           budget: int, method: str, random_share: float, seed: int, out: Path, as_json: bool) -> None:
    """Choose which scans of a new site a person should label: N of them, at most one per series
    or patient, written as to_label.csv (path,label: fill in the labels, the format of --labels)
    in a random order that does not tell which scans were drawn at random; selection.json keeps
    how each was chosen.

    \b
    Examples:
      btk select runs/20261127-101500-multiclass --data new-site/ --budget 40
      btk select runs/20261127-101500-multiclass --data new-site/ --budget 40 --method uncertainty
    """
    from btk.render import line, warn_lines
    from btk.render.progress import stderr_feedback
    from btk.runs import load_run
    from btk.site_select import check_selection, select_site

    check_selection(budget, method, random_share)  # before the run or any image is read
    run = load_run(run_dir)
    result = select_site(run, paths, budget, out, method, random_share, seed, stderr_feedback(), None, reader,
                         pairs(reader_option, "reader option"), slices)
    output = Output(as_json)
    warn_lines([f"{source}: {reason}" for source, reason in result.skipped], prefix="btk: skipped ")
    if result.skipped:
        warn_lines([f"{len(result.skipped)} input(s) could not be read (not among the scans to choose from)"],
                   prefix="btk: ")
    kinds = {how: sum(1 for _, h in result.chosen if h == how) for how in ("random", "uncertainty")}
    if as_json:
        output.json({"folder": str(result.folder), "scans": result.scans, "groups": result.groups,
                     "chosen": kinds, "method": result.method})
        return
    line(output.console, f"{len(result.chosen)} of {result.scans} scans ({result.groups} series or patients) to "
                         f"label: {kinds['random']} drawn at random" +
         (f", {kinds['uncertainty']} chosen as the most uncertain, spread out" if kinds["uncertainty"] else ""))
    output.written("the list to fill in", result.folder / "to_label.csv")
