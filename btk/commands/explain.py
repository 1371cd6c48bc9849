"""``btk explain``: what drove each prediction, as heat maps."""

from __future__ import annotations

from pathlib import Path

import click

from btk.commands.options import (
    Output,
    data_paths,
    json_option,
    out_option,
    pairs,
    reader_options,
    scoring_options,
)


@click.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@data_paths("Images to explain: files or folders, DICOM, NIfTI (a series or volume by its middle slice)")
@reader_options
@click.option("--method", type=click.Choice(["gradcam", "occlusion"]), default="gradcam", show_default=True,
              help="Grad-CAM (last convolutional layer) or occlusion (a black square moved over the image).")
@scoring_options
@out_option("the explanation directory (PNGs, grid.png, explain.json, explain.csv)", shown="RUN_DIR/explanations")
@json_option
def explain(run_dir: Path, paths: tuple[str, ...], reader: str | None, reader_option: tuple[str, ...], method: str,
            tta: bool | None, devices: str, out: Path | None, as_json: bool) -> None:
    """Show what drove each prediction: a heat map over the image as the network saw it (after
    the run's crop and resize), one PNG per image and a grid of all, and the share of each map
    outside the head (a high share: the model looks at the background, not the anatomy). The
    class and probability are the run's scorer's (what btk predict says of the image); the map
    is of the class behind that answer.

    Grad-CAM needs a convolutional layer and the TensorFlow or JAX backend; otherwise occlusion
    is used, with a note. A series or volume is explained by its middle slice.

    \b
    Examples:
      btk explain runs/20261127-101500-multiclass --data scan1.jpg --data scan2.jpg
      btk explain runs/20261127-101500-multiclass --data new-scans/ --method occlusion --out explain/
    """
    from btk.explain import explain_run
    from btk.render import warn_lines
    from btk.render.tables import render_explanations
    from btk.runs import load_run

    run_ = load_run(run_dir)
    output = Output(as_json)
    result = explain_run(run_, paths, out, method, reader, pairs(reader_option, "reader option"), tta=tta,
                         devices=devices)
    warn_lines([f"{source}: {reason}" for source, reason in result.skipped], prefix="btk: skipped ")
    records = [e.record() for e in result.explanations]
    if as_json:
        output.json({"run": str(run_.path), "folder": str(result.folder), "images": records})
        return
    render_explanations(records, output.console, f"what drove the predictions of {run_.name}")
    output.written(f"{len(records)} heat map(s), grid.png and explain.json written to", result.folder)
