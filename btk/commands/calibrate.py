"""``btk calibrate``: a run's temperature and prediction sets fitted again on a new site's labelled sample."""

from __future__ import annotations

from pathlib import Path

import click

from btk.commands.options import (
    Output,
    check_reporters,
    json_option,
    name_option,
    out_option,
    pairs,
    reader_options,
    reporter_option,
)
from btk.commands.run import finish_run
from btk.urls import refuse_credentials


@click.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--data", type=click.Path(path_type=Path), callback=refuse_credentials,
              help="The new site's labelled scans (class folders, as btk evaluate reads them) [the run's own "
                   "calibration images, where they did not train it].")
@reader_options
@click.option("--split", help="Split of --data: Testing, Training or all [Testing if the data has one, else all].")
@click.option("--map", "class_map", multiple=True, metavar="SRC=DST",
              help="Rename the data's class SRC to the run's class DST; repeatable.")
@click.option("--sample", type=float, default=0.5, show_default=True, metavar="SHARE",
              help="Share of the labelled scans to calibrate on (whole patients and near-copy clusters, stratified "
                   "by class as far as they allow); the rest are scored as the new run's test images.")
@click.option("--coverage", type=float, default=0.95, show_default=True, metavar="C",
              help="The coverage the sample must support: a set can leave a class out only with more than "
                   "1/(1-C) - 1 of its scans in the sample (20 at 0.95, 10 at 0.9).")
@click.option("--pac-delta", type=float, metavar="DELTA",
              help="Training-conditional sets: each class's coverage is at least the promise with probability "
                   "1 - DELTA over the draw of the sample (e.g. 0.1; needs more scans: 22 a class at 0.9, 45 at "
                   "0.95), instead of on average over draws [the run's].")
@click.option("--thin-classes", type=click.Choice(["error", "keep"]), default="error", show_default=True,
              help="A class with too few scans in the sample: refuse, or keep the run's calibration for it (a "
                   "class with none in the sample always keeps it).")
@click.option("--seed", type=int, help="Seed of the sample [the run's seed].")
@out_option("the calibrated run", shown="the run's folder")
@name_option("Name in the new run directory's name [the run's name + -calibrated].")
@reporter_option
@json_option
def calibrate(run_dir: Path, data: Path | None, reader: str | None, reader_option: tuple[str, ...],
              split: str | None, class_map: tuple[str, ...], sample: float, coverage: float,
              pac_delta: float | None, thin_classes: str, seed: int | None, out: Path | None, name: str,
              reporter: tuple[str, ...], as_json: bool) -> None:
    """Fit a run's temperature and prediction sets again on a labelled sample of a new site.

    The promise of `btk predict --coverage` holds for scans like the run's calibration images.
    For a new hospital or scanner, label a few of its scans: this draws a sample of them (whole
    patients and near-copy clusters, stratified by class), fits the temperature and the sets'
    calibration on it, scores the rest, and writes a new run (the same network) that records the
    sample (its paths in split.csv, counts, SHA-256). Predict with the new run at that site.

    With n calibration scans of a class the guarantee moves in steps of 1/(n+1): a 95% set can
    leave a class out only with at least 20 of its scans. A class with none in the sample keeps
    the run's own calibration. The promise is an average over samples; the coverage of this one
    sample is printed per class as the interval it lies in with 90% probability (Beta law), and
    --pac-delta makes it hold for this sample with probability 1 - DELTA.

    Without --data the run's own calibration images are used: this gives a run made before
    prediction sets its sets. A fold ensemble's are its calibration part, which no fold trained
    or selected on, scored by the whole ensemble. A run whose calibration images trained it (a
    fold ensemble made before it had a calibration part: each of its validation images trained
    K-1 of its members) is refused: give it --data.

    \b
    Examples:
      btk calibrate runs/20261127-101500-fast --data site-b/ --split all --sample 0.5
      btk calibrate runs/20261127-101500-fast
    """
    from btk.classmap import parse_class_map
    from btk.conformal import guarantee_lines
    from btk.recalibrate import calibrate_run
    from btk.render import line
    from btk.runs import load_run

    check_reporters(reporter)
    output = Output(as_json)
    result = calibrate_run(load_run(run_dir), data, None, output.feedback, reader,
                           pairs(reader_option, "reader option"), split, parse_class_map(class_map), sample, coverage,
                           thin_classes, seed, out, name, pac_delta=pac_delta)
    finish_run(output, result, reporter, "calibrated run written to")
    info = (result.metrics.get("recalibration") or {})
    if not as_json:
        counts = info["calibration_per_class"]
        line(output.console, f"temperature {info['temperature_before']:.3f} -> {info['temperature_after']:.3f}; "
                             "sets calibrated on " + ", ".join(f"{c} {n}" for c, n in counts.items()))
        if "terminal" not in reporter:  # the terminal report shows them beside the sets
            for text in guarantee_lines(counts, [float(c) for c in info["conditional_coverage"]], info["pac_delta"]):
                line(output.console, text)
