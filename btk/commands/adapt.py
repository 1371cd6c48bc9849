"""``btk adapt``: a run adapted to a new site's unlabelled scans (AdaBN)."""

from __future__ import annotations

from pathlib import Path

import click

from btk.commands.options import (
    Output,
    check_reporters,
    data_paths,
    json_option,
    name_option,
    out_option,
    pairs,
    reader_options,
    reporter_option,
)
from btk.commands.run import finish_run
from btk.errors import BtkError


@click.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@data_paths("The new site's unlabelled images: files or folders (searched at any depth), DICOM, NIfTI, every "
            "slice of a series or volume")
@reader_options
@out_option("the adapted run", shown="the run's folder")
@name_option("Name in the new run directory's name [the run's name + -adapted].")
@click.option("--strength", type=click.FloatRange(0, 1, min_open=True), default=1.0, show_default=True,
              help="Share of the new site in the statistics: 1 replaces the training images' statistics, 0.5 "
                   "describes both sites alike.")
@click.option("--depth", default="auto", show_default=True, metavar="auto|N|all",
              help="Batch-norm layers to adapt, in order: auto (as many as keep the accuracy on the run's own "
                   "validation images within a point of the unadapted model's), N (the first N) or all.")
@reporter_option
@json_option
def adapt(run_dir: Path, paths: tuple[str, ...], reader: str | None, reader_option: tuple[str, ...],
          out: Path | None, name: str, strength: float, depth: str, reporter: tuple[str, ...], as_json: bool) -> None:
    """Adapt a trained run to a new site's scans without labels: re-estimate its batch-norm
    statistics on them (AdaBN; nothing else is trained) and write a new run that records what it
    was adapted on, scored again on the run's own validation and test images.

    It needs a whole cohort of the new site (hundreds of images; fewer than 32 is refused), and a
    model with batch normalisation (res-cnn, the fast default's, has it). Check the new run with
    btk evaluate on labelled images of that site before trusting it (docs/adapt.md). The check
    before and after runs on the run's selection images (its validation images, held out from
    training): a fold ensemble has none (it selected each fold's epoch on images that trained
    its other folds; its calibration part is kept for its temperature and sets) and is refused;
    adapt one of its fold runs instead.

    \b
    Example:
      btk adapt runs/20261128-161834-fast101 --data new-hospital/ --name hospital-b
    """
    from btk.adapt import adapt_run
    from btk.render import line
    from btk.runs import load_run

    if depth not in ("auto", "all") and not (depth.isdigit() and int(depth) > 0):
        raise BtkError(f"--depth {depth!r}: give auto, all or a number of layers")
    check_reporters(reporter)
    layers = None if depth == "auto" else 0 if depth == "all" else int(depth)
    output = Output(as_json)
    result = adapt_run(load_run(run_dir), list(paths), out, None, output.feedback, reader, name, strength=strength,
                       depth=layers, reader_options=pairs(reader_option, "reader option"))
    finish_run(output, result, reporter, "adapted run written to")
    info = result.adaptation or {}
    if not as_json:
        line(output.console, f"adapted {info['batch_norm_layers']} of {info['batch_norm_layers_in_model']} batch-norm "
                             f"layers on {info['images']} images: accuracy on the run's validation images "
                             f"{100 * info['val_accuracy_before']:.1f} -> {100 * info['val_accuracy_after']:.1f}")
