"""``btk evaluate``: a finished run scored on another labelled dataset."""

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
    runtime_option,
    scoring_options,
)
from btk.urls import refuse_credentials


@click.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--data", type=click.Path(path_type=Path), required=True, callback=refuse_credentials,
              help="The labelled dataset to evaluate on.")
@reader_options
@click.option("--split", help="Split of --data: Testing, Training or all [Testing if the data has one, else all].")
@click.option("--map", "class_map", multiple=True, metavar="SRC=DST",
              help="Rename the data's class SRC to the run's class DST; repeatable.")
@click.option("--degrade", multiple=True, metavar="SPEC",
              help="Also evaluate on images degraded by SPEC (e.g. blur@3); repeatable.")
@click.option("--duplicate-threshold", type=click.FloatRange(0, 1),
              help="Near-duplicate score for the copy check against the run's training images; 0 turns it off "
                   "[the run's].")
@click.option("--strict", is_flag=True, help="Stop at the first unreadable image instead of skipping it.")
@click.option("--coverage", "coverages", multiple=True, type=float, metavar="C",
              help="Measure the run's prediction sets at coverage C (e.g. 0.95): coverage overall and per class, "
                   "mean set size, single answers and their accuracy; repeatable [0.9 and 0.95 where the run has "
                   "sets]. One shift verdict per condition says whether the cohort is exchangeable with the run's "
                   "calibration images, from the labels and from the network's features (docs/shift.md).")
@scoring_options
@runtime_option
@out_option("the evaluation directory", shown="RUN_DIR/evaluations")
@name_option("Name in the evaluation directory's name [the data folder and split].")
@reporter_option
@json_option
def evaluate(run_dir: Path, data: Path, reader: str | None, reader_option: tuple[str, ...], split: str | None,
             class_map: tuple[str, ...], degrade: tuple[str, ...], duplicate_threshold: float | None, strict: bool,
             coverages: tuple[float, ...], tta: bool | None, devices: str, runtime: str, out: Path | None, name: str,
             reporter: tuple[str, ...], as_json: bool) -> None:
    """Evaluate a finished run on another labelled dataset (external validation).

    The images are read as the run read its own (image size, channels, crop, intensity,
    scaling; tumour vs none for a binary run) and scored by the run's own scorer, with every
    metric a run has, clean and under each --degrade. Images with an exact or near copy among
    the run's training images are found and scored apart. The evaluation directory (run format,
    written atomically) goes into the run's evaluations/ folder; `btk report` shows it beside
    the run's own test metrics, with McNemar's test where the images are the same, and the
    run's model card lists it.

    \b
    Examples:
      btk evaluate runs/20261127-101500-multiclass --data DATA/sartaj
      btk evaluate runs/20261127-101500-multiclass --data DATA/other --split all \\
          --map glioma=glioma_tumor --map meningioma=meningioma_tumor \\
          --map notumor=no_tumor --map pituitary=pituitary_tumor --degrade blur@3
      btk evaluate runs/20261127-101500-multiclass --data DATA/site-b --split all --coverage 0.95
    """
    from btk.classmap import parse_class_map
    from btk.compare import best_by_column, paired_tests, run_rows
    from btk.evaluate import evaluate as evaluate_on
    from btk.render.tables import render_comparison

    check_reporters(reporter)
    output = Output(as_json)
    result = evaluate_on(run_dir, data, feedback=output.feedback, reader=reader,
                         reader_options=pairs(reader_option, "reader option"), split=split,
                         class_map=parse_class_map(class_map), degrade=degrade,
                         duplicate_threshold=duplicate_threshold, strict=strict, tta=tta, devices=devices, out=out,
                         name=name, coverages=coverages, runtime=runtime)
    output.report(result, reporter)
    if not as_json:
        both = [result.evaluated_run(), result]
        rows = run_rows(both)
        render_comparison(rows, best_by_column(rows), paired_tests(both), output.console,
                          title=f"{both[0].name}: its own test images and this evaluation")
    output.written("evaluation written to", result.path)
