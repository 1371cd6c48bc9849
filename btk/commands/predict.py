"""``btk predict``: new scans classified with a trained run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from btk.commands.options import (
    STORE_HELP,
    Output,
    check_store,
    data_paths,
    json_option,
    out_option,
    pairs,
    reader_options,
    runtime_option,
    scoring_options,
)


@click.command()
@click.argument("run_dir", type=click.Path(path_type=Path), required=False)
@data_paths("Scans to classify: JPEG/PNG files or folders of them (searched at any depth), DICOM files or "
            "series folders (images only: SEG, SR and other non-image objects are skipped and counted), NIfTI "
            "volumes, or a DICOMweb URL: a server root with a scope (-R study=UID, series=UID, PatientID=..., "
            "StudyDate=...; -R all=yes for every series on the server), or a study or series URL as btk prints them")
@reader_options
@click.option("--slices", default="all", show_default=True, help="Slices of a series or volume: middle, all, every:N.")
@click.option("--min-confidence", type=click.FloatRange(0.0, 1.0), default=0.0, show_default=True, metavar="P",
              help="Answer 'uncertain' (probabilities still given) where the top calibrated probability is "
                   "below P; the run's report shows accuracy against coverage for such thresholds.")
@click.option("--coverage", type=float, metavar="C",
              help="Give each row its prediction set at coverage C (e.g. 0.95): every class that cannot be "
                   "ruled out. The true class is in the set at least C of the time, for each class, on scans like "
                   "the run's calibration images (on average over calibration draws; the run's report gives the "
                   "range for its own calibration). One class: a confident answer; several: 'one of these'; empty: no "
                   "class fits (flagged). Adds the columns set and set_size.")
@click.option("--check-shift", is_flag=True,
              help="Test whether these scans are exchangeable with the run's calibration images (no labels "
                   "needed; the network's features; the slices of a series counted once; no verdict below 20): "
                   "when they differ, the coverage promise does not hold for them (docs/shift.md).")
@click.option("--sr", "sr_dir", type=click.Path(path_type=Path), metavar="DIR",
              help="Folder in which a directory of DICOM Structured Reports is made: one per DICOM series "
                   "(files or DICOMweb), with the answer, each class's probability, the algorithm and references "
                   "to every source instance (docs/dicom.md). Present/Absent per class only for a confident "
                   "answer: an 'uncertain' one (--min-confidence) asserts neither for any class.")
@click.option("--maps", is_flag=True,
              help="With --sr: also each slice's Grad-CAM map of its answer, as a DICOM Segmentation (fractional, "
                   "on the source slice's own pixel grid; a source series' maps in one series, referenced by its SR), "
                   "in the same directory and stored with --store.")
@click.option("--store", metavar="URL", callback=check_store,
              help="Send the --sr reports (and maps) there, e.g. to the PACS the series came from; what it held "
                   "already is counted ('already stored: N'). " + STORE_HELP)
@click.option("--shard", metavar="K/N",
              help="Predict only the K-th of N contiguous shares of the inputs (series, volumes, files, in order), "
                   "e.g. one task of a cluster's job array; with --out, btk merge puts the N shares' tables back "
                   "together, row for row the table without --shard.")
@scoring_options
@runtime_option
@click.option("--write", "write_dir", type=click.Path(path_type=Path), metavar="DIR",
              help="Predict nothing: write DIR/predict.sbatch, a Slurm job array of --shards N tasks (task K: this "
                   "command with --shard K/N --out OUT/shares, paths made absolute, this Python), and "
                   "DIR/merge.sbatch (btk merge of the shares into OUT, the --out folder [DIR]); prints how to "
                   "submit both. Logs: DIR/logs.")
@click.option("--shards", type=int, metavar="N", help="With --write: the number of shares, one array task each.")
@click.option("--sbatch", "sbatch_options", multiple=True, metavar="OPTION=VALUE",
              help="With --write: an #SBATCH line of both scripts, e.g. time=02:00:00, mem=8G, partition=gpu, "
                   "gres=gpu:1 (not the merge's); repeatable [cpus-per-task=2].")
@out_option("the predictions directory (predictions.csv, predict.json)", shown="none: the terminal only")
@json_option
def predict(run_dir: Path, paths: tuple[str, ...], reader: str | None, reader_option: tuple[str, ...], slices: str,
            min_confidence: float, coverage: float | None, check_shift: bool, sr_dir: Path | None,
            maps: bool, store: str | None, shard: str | None, tta: bool | None, devices: str, runtime: str,
            write_dir: Path | None, shards: int | None, sbatch_options: tuple[str, ...], out: Path | None,
            as_json: bool) -> None:
    """Classify new scans with a trained run. Uses the run's model, the image size, channels,
    framing, intensity normalisation and scaling it recorded, and its scorer: the same
    calibrated probabilities as the run's own predictions.csv, btk evaluate and btk explain.

    RUN_DIR: a run directory, or the name of a packaged run (btk plugins lists them). Not
    given: the packaged run BTK_RUN names, else btk's own, phantom-demo, which was trained on
    synthetic phantoms and is near chance on real scans (no model trained on real scans ships
    with btk: README); the command says which it uses.

    Each row names its input by the path given (a file inside a given folder: the folder's path
    joined with the file's). A series or volume gets a row per slice and one aggregated answer
    (mean probability). Files that cannot be read are listed at the end and the rest predicted.

    With --coverage each row also gets its conformal prediction set (the guarantee is per image
    or slice; a series' mean row gets the set of its mean probabilities, which carries none).

    \b
    Examples:
      btk predict runs/20261127-101500-multiclass --data scan.dcm --data brain.nii.gz --data photo.jpg
      btk predict runs/20261127-101500-multiclass --data new-scans/ --out predictions/
      btk predict runs/20261127-101500-multiclass --data new-scans/ --json > rows.json
      btk predict runs/20261127-101500-multiclass --data new-scans/ --coverage 0.95 --check-shift
      btk predict runs/20261127-101500-multiclass --data http://pacs:8042/dicom-web -R study=1.2.3 \
          --sr reports/ --store http://pacs:8042/dicom-web
      btk predict runs/20261127-101500-multiclass --data http://pacs:8042/dicom-web/studies/1.2.3/series/1.2.4
      btk predict runs/20261127-101500-multiclass --data archive/ --write slurm/ --shards 8 --out predictions/
    """
    from btk.conformal import check_coverage
    from btk.distribute import check_devices
    from btk.errors import BtkError
    from btk.plugins import get_host
    from btk.predict import PredictionTally
    from btk.predict_inputs import parse_shard
    from btk.predict_output import JsonList, predict_run
    from btk.render import line, warn_lines
    from btk.render.progress import stderr_feedback
    from btk.render.tables import PredictionTable, render_prediction_summary
    from btk.run_files import check_writable
    from btk.runs import load_run

    check_devices(devices)  # refused in one line before the run or any image is read
    if run_dir is None:
        run_dir = _default_run()
    share = parse_shard(shard)
    _check_write(write_dir, shards, sbatch_options, share)
    if coverage is not None:
        check_coverage(coverage)
    if (store or maps) and sr_dir is None:
        raise BtkError(f"{'--store sends' if store else '--maps go with'} the --sr reports: give --sr DIR too")
    if sr_dir is not None:
        check_writable(sr_dir, "--sr")
    run_ = load_run(run_dir)
    if coverage is not None or check_shift:
        run_.require_conformal()
    if write_dir is not None and shards is not None:
        _write_array(run_.name, paths, write_dir, shards, sbatch_options, out, as_json)
        return
    output = Output(as_json)
    sink: Any = None
    if as_json:
        sink = JsonList(lambda text: click.echo(text, nl=False))
    elif out is None:
        host = get_host()
        wanted = [host.readers.get(reader)] if reader else list(host.readers)
        series = any("slices" in getattr(r, "options", ()) for r in wanted)
        sink = PredictionTable(f"predictions of {run_.name}", list(run_.classes), output.console, series,
                               sets=coverage is not None)
    tally = PredictionTally()
    kept: list[Any] = []  # the DICOM rows, for --sr

    def on_row(row: Any) -> None:
        if sink is not None:
            sink.write(row)
        if sr_dir is not None and row.identity:
            kept.append(row)

    def list_skipped() -> None:
        from btk.default_plugins.dicom import NOT_IMAGES

        warn_lines([f"{source}: {reason}" for source, reason in tally.skipped], prefix="btk: skipped ")
        others = sum(1 for _, reason in tally.skipped if reason.startswith(NOT_IMAGES))
        if others:
            warn_lines([f"{others} input(s) of non-image objects skipped (not predicted)"], prefix="btk: ")
        if len(tally.skipped) > others:
            warn_lines([f"{len(tally.skipped) - others} input(s) could not be read"], prefix="btk: ")
        warn_lines([f"{source}: {note}" for source, note in tally.notes], prefix="btk: read in part: ")
        if tally.notes:
            warn_lines([f"{len(tally.notes)} input(s) read in part"], prefix="btk: ")

    failed = True
    try:
        result = predict_run(run_, paths, out, on_row, feedback=stderr_feedback(),
                             reader_name=reader, reader_options=pairs(reader_option, "reader option"), slices=slices,
                             min_confidence=min_confidence, tta=tta, devices=devices, tally=tally,
                             coverage=coverage, check_shift=check_shift, heat=maps, shard=share, runtime=runtime)
        failed = False
    except BtkError:
        list_skipped()  # what could not be read, before the error (nothing readable at all)
        raise
    finally:
        if isinstance(sink, JsonList):
            sink.close(failed)  # nothing when it failed before a row; else the list ends: what was printed parses
        elif sink is not None:
            sink.close()
    list_skipped()
    if not as_json:
        render_prediction_summary(tally.answers, tally.images, output.console, tally.set_sizes, coverage)
        if isinstance(sink, PredictionTable) and sink.printed > sink.chunk:
            line(output.console, "(--out DIR keeps the rows in DIR/<time>-predict-RUN/predictions.csv)")
    warn_lines(result.warnings)
    if result.shift is not None:
        warn_lines([result.shift.sentence()], prefix="btk: ")
    if sr_dir is not None:
        from btk.default_plugins.dicom_sr import report_predictions
        from btk.default_plugins.dicomweb import public_url

        reports = report_predictions(run_, kept, sr_dir, store, min_confidence, tta)
        written = f"{len(reports.reports)} DICOM SR(s)" + (f" and {len(reports.maps)} heat map(s)" if maps else "")
        output.written(f"{written} written to", reports.folder)
        if store:
            output.written(f"{reports.stored} object(s) stored (already stored: {reports.already}) at",
                           public_url(store))
    if result.folder is not None:
        output.written(f"{result.rows:,} rows written to", result.folder / "predictions.csv")


def _check_write(write_dir: Path | None, shards: int | None, sbatch_options: tuple[str, ...],
                 share: tuple[int, int] | None) -> None:
    """--write, --shards and --sbatch: together or not at all, in one line."""
    from btk.errors import BtkError
    from btk.slurm import parse_sbatch_options

    if write_dir is None:
        if shards is not None or sbatch_options:
            raise BtkError(f"{'--shards' if shards is not None else '--sbatch'} goes with --write DIR "
                           "(a Slurm job array's scripts)")
        return
    if shards is None:
        raise BtkError("--write DIR needs --shards N: the job array's number of tasks")
    if shards < 1:
        raise BtkError(f"--shards {shards}: give at least 1")
    if share is not None:
        raise BtkError("--write gives each task its own --shard K/N: leave out --shard")
    parse_sbatch_options(sbatch_options)


def _write_array(run_name: str, paths: tuple[str, ...], write_dir: Path, shards: int,
                 sbatch_options: tuple[str, ...], out: Path | None, as_json: bool) -> None:
    """btk predict --write: the job array's scripts, and how to submit them."""
    from btk.errors import BtkError
    from btk.slurm import command_arguments, parse_sbatch_options, predict_scripts, submit_predict

    for path in paths:  # the tasks would fail one by one on a missing input: say so now
        if "://" not in path and not Path(path).exists():
            raise BtkError(f"--data {path}: no such file or folder")
    args = command_arguments(click.get_current_context(),
                             leave_out=("write_dir", "shards", "sbatch_options", "shard", "out", "as_json"))
    out = (out or write_dir).absolute()
    script, merge = predict_scripts(write_dir, out, shards, run_name, args, parse_sbatch_options(sbatch_options))
    submit = submit_predict(write_dir)
    output = Output(as_json)
    if as_json:
        output.json({"script": str(script), "merge": str(merge), "tasks": shards, "shares": str(out / "shares"),
                     "out": str(out), "submit": submit})
        return
    output.written(f"Slurm job array of {shards} task(s) written to", script)
    output.written("its merge job written to", merge)
    click.echo("submit both (the merge starts once every task has succeeded):")
    click.echo(submit)


def _default_run() -> Path:
    """The run ``btk predict`` uses when given none: ``BTK_RUN`` (a packaged run's name or a run
    directory), else btk's own packaged run; said in one line."""
    import os

    from btk.default_plugins.packaged import DEFAULT_RUN
    from btk.plugins import get_host
    from btk.render import warn_lines

    name = os.environ.get("BTK_RUN") or DEFAULT_RUN
    if Path(name).is_dir():
        warn_lines([f"no run given: using BTK_RUN, {name}"], prefix="btk: ")
        return Path(name)
    packaged = get_host().runs.get(name)
    warn_lines([f"no run given: using the packaged run '{name}': {packaged.description}"], prefix="btk: ")
    return Path(packaged.path)

