"""Commands about data rather than runs: ``btk audit``, ``btk degrade`` and ``btk cache``."""

from __future__ import annotations

from pathlib import Path

import click

from btk.commands.options import Output, json_option, out_option, pairs
from btk.errors import BtkError
from btk.urls import refuse_credentials


@click.command()
@click.option("--data", type=click.Path(path_type=Path), callback=refuse_credentials, help="The dataset to audit.")
@click.option("--reader", default="folder", show_default=True, help="Reader plugin for --data.")
@click.option("--reader-option", "-R", "reader_option", multiple=True, metavar="KEY=VALUE",
              help="Reader-specific option; repeatable.")
@click.option("--against", type=click.Path(path_type=Path), callback=refuse_credentials,
              help="Another dataset to look for copies in.")
@click.option("--against-reader", help="Reader for --against [same as --reader].")
@click.option("--map", "class_map", multiple=True, metavar="SRC=DST",
              help="Rename --against's class SRC to --data's class DST before labels are compared; repeatable.")
@click.option("--threshold", type=click.FloatRange(0.5, 1.0), default=0.95, show_default=True,
              help="Near-duplicate score (shift-tolerant normalised correlation of 64 px thumbnails).")
@click.option("--pairs", "pairs_out", type=click.Path(path_type=Path), metavar="FILE",
              help="Write every pair to this .csv or .json file.")
@click.option("--issues", "issues_run", type=click.Path(path_type=Path), metavar="RUN",
              help="Instead of a dataset: the label issues a fold ensemble found (btk ensemble --folds K).")
@click.option("--labels-out", type=click.Path(path_type=Path), metavar="FILE",
              help="With --issues: write them as a corrections file (path, likely label) to review, then train "
                   "with --labels FILE.")
@click.option("--top", type=click.IntRange(0), default=0, show_default=True,
              help="With --labels-out: only the N least self-confident (0: all).")
@json_option
def audit(data: Path | None, reader: str, reader_option: tuple[str, ...], against: Path | None,
          against_reader: str | None, class_map: tuple[str, ...], threshold: float, pairs_out: Path | None,
          issues_run: Path | None, labels_out: Path | None, top: int, as_json: bool) -> None:
    """Audit a dataset: class counts, image sizes, unreadable files, and exact and
    near-duplicate images within splits, between Testing and Training, and against another
    dataset, with copies whose labels disagree. Labels are compared across datasets only when
    their class names match (after --map); otherwise the copies are still found and reported.

    \b
    Examples:
      btk audit --data DATA/sartaj --pairs pairs.csv
      btk audit --data DATA/sartaj --against DATA/other --map notumor=no_tumor --map glioma=glioma_tumor
      btk audit --issues runs/<id>-folds5 --labels-out fixes.csv --top 50
    """
    if issues_run is not None:
        _label_issues(issues_run, labels_out, top, as_json)
        return
    if labels_out is not None:
        raise BtkError("--labels-out writes the label issues of --issues RUN: give --issues too")
    if data is None:
        raise BtkError("give --data DATASET to audit, or --issues RUN for a fold ensemble's label issues")
    from btk.audit import audit_paths, write_pairs
    from btk.classmap import parse_class_map
    from btk.plugins import get_host
    from btk.render.tables import render_audit
    from btk.run_files import check_file_writable

    mapping = parse_class_map(class_map)
    if mapping and not against:
        raise BtkError("--map renames --against's classes: give --against too")
    if pairs_out:
        check_file_writable(pairs_out, "--pairs")
    host = get_host()
    main_reader = host.readers.get(reader)
    other_reader = host.readers.get(against_reader or reader) if against else None
    output = Output(as_json)
    result = audit_paths(data, main_reader, pairs(reader_option, "reader option"), against, other_reader, threshold,
                         output.feedback, mapping)
    if pairs_out:
        write_pairs(result, pairs_out)
    if as_json:
        output.json(result.summary())
        return
    render_audit(result.summary(), output.console)
    if pairs_out:
        output.written(f"{len(result.pairs)} pairs written to", pairs_out)


def _label_issues(run_dir: Path, labels_out: Path | None, top: int, as_json: bool) -> None:
    """``btk audit --issues RUN``: a fold ensemble's label issues, counted per class and shown
    (the 20 least self-confident), or written as a corrections file."""
    from btk.label_corrections import write_corrections
    from btk.render.tables import render_label_issues
    from btk.runs import load_run

    run = load_run(run_dir)
    output = Output(as_json)
    rows = run.label_issues()
    if labels_out is not None:
        n = write_corrections(run, labels_out, top)
        output.written(f"{n} correction(s) to review written to", labels_out)
    if as_json:
        output.json({"run": str(run.path), "issues": rows})
    elif labels_out is None:
        render_label_issues(run.name, rows, output.console)


@click.command()
@click.option("--data", type=click.Path(path_type=Path), callback=refuse_credentials,
              help="Images to degrade (read with --reader).")
@click.option("--reader", default="folder", show_default=True, help="Reader for --data.")
@click.option("--reader-option", "-R", "reader_option", multiple=True, metavar="KEY=VALUE",
              help="Reader-specific option; repeatable.")
@click.option("--degrader", "degrader_name", help="Degrader name.")
@click.option("--severity", type=click.IntRange(1), help="Severity level (1..the degrader's number of levels).")
@click.option("--params", "param_text", metavar="KEY=VALUE,...", help="Explicit parameters instead of a level.")
@out_option("the folder of degraded copies (PNG, the data's layout)")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the random degraders.")
@click.option("--preview", type=click.Path(path_type=Path), metavar="FILE.png",
              help="Draw one image under every degrader and level into this file.")
@json_option
def degrade(data: Path | None, reader: str, reader_option: tuple[str, ...], degrader_name: str | None,
            severity: int | None, param_text: str | None, out: Path | None, seed: int, preview: Path | None,
            as_json: bool) -> None:
    """Write degraded copies of a dataset, or a preview grid of every degrader and level.

    \b
    Examples:
      btk degrade --data DATA/sartaj --degrader blur --severity 3 --out degraded/
      btk degrade --data DATA/sartaj --degrader blur --params ksize=9,sigma=2 --out degraded/
      btk degrade --data DATA/sartaj --preview degraders.png
    """
    import cv2

    from btk.degraded_copies import degrade_dataset, first_image
    from btk.degraders import resolve_degradations
    from btk.plugins import get_host
    from btk.render import warn_lines
    from btk.render.images import degrader_preview
    from btk.run_files import check_file_writable, partial_file

    host = get_host()
    if not preview and not (degrader_name and out):
        raise BtkError("give --degrader NAME (with --severity or --params) and --out, or --preview FILE.png")
    if severity is not None and param_text:
        raise BtkError("give --severity LEVEL or --params KEY=VALUE,..., not both")
    deg = None
    if degrader_name:
        spec = f"{degrader_name}@{severity}" if severity else degrader_name + (f":{param_text}" if param_text else "")
        (deg,) = resolve_degradations(host, [spec])
    if preview:
        check_file_writable(preview, "--preview")
        if not cv2.haveImageWriter(str(preview)):
            raise BtkError(f"--preview {preview}: OpenCV writes no image of that kind: name a .png (or .jpg) file")
    options = pairs(reader_option, "reader option")
    reader_ = host.readers.get(reader)
    output = Output(as_json)
    result: dict[str, object] = {}
    if preview:
        degraders = [d for d in host.degraders if d.levels]
        tmp = partial_file(preview)
        try:
            if not cv2.imwrite(str(tmp), degrader_preview(first_image(reader_, data, options), degraders, seed)):
                raise BtkError(f"--preview {preview}: OpenCV could not write it")
            tmp.replace(preview)
        finally:
            tmp.unlink(missing_ok=True)
        result["preview"] = str(preview)
        if not as_json:
            output.written(f"preview of {len(degraders)} degraders written to", preview)
    if deg is not None and out is not None:
        done, folder = degrade_dataset(reader_, data, options, deg, out, seed)
        warn_lines([f"{source}: {reason}" for source, reason in done.skipped], prefix="btk: skipped ")
        result.update(folder=str(folder), written=done.written, skipped=len(done.skipped))
        if not as_json:
            output.written(f"{done.written} images degraded by {deg.label} written to", folder)
    if as_json:
        output.json(result)


@click.command()
@click.option("--clear", is_flag=True, help="Remove every cached dataset (and unfinished ones left by killed "
                                            "processes).")
@json_option
def cache(clear: bool, as_json: bool) -> None:
    """List (or clear) the decode cache: datasets already read and resized, which the next
    run with the same files and image options maps instead of decoding again. The folder is
    $BTK_CACHE_DIR (default ~/.cache/btk); BTK_CACHE_DIR=off turns the cache off."""
    from btk import cache as decode_cache
    from btk.render import line
    from btk.render.tables import render_cache

    output = Output(as_json)
    root = decode_cache.cache_root()
    if root is None:
        if as_json:
            output.json({"cache": None})
        else:
            line(output.console, "the decode cache is off (BTK_CACHE_DIR=off)")
        return
    if clear:
        removed = decode_cache.clear()
        if as_json:
            output.json({"cache": str(root), "removed": removed})
        else:
            line(output.console, f"removed {removed} cached dataset(s) from {root}")
        return
    entries = decode_cache.entries()
    if as_json:
        output.json({"cache": str(root), "entries": [{"key": k, "bytes": b, "used": t} for k, b, t in entries]})
        return
    render_cache(root, entries, output.console)
