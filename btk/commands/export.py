"""``btk export``: a run's network as an ONNX graph or a TensorFlow SavedModel, with the sidecar
that says what to do before and after it."""

from __future__ import annotations

from pathlib import Path

import click

from btk.commands.options import Output, json_option


@click.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--to", "to", type=click.Choice(["onnx", "savedmodel"]), default="onnx", show_default=True,
              help="The format: onnx (opset chosen by tf2onnx, float32, input NHWC) or savedmodel (TensorFlow).")
@click.option("--out", type=click.Path(path_type=Path), metavar="DIR",
              help="Folder in which a directory <time>-export-RUN is made with the graph and its sidecar "
                   "[ONNX: the run's own folder, model.onnx and model.onnx.json, which --runtime uses].")
@click.option("--tta/--no-tta", default=None,
              help="Test-time augmentation (the image and its mirror image averaged) inside the graph "
                   "[the run's own choice].")
@click.option("--int8", is_flag=True,
              help="Also an int8 graph (ONNX Runtime's static quantisation, calibrated on the run's training "
                   "images), kept only where its validation accuracy is within 0.3 points of the float32 graph's, "
                   "with its own temperature and prediction sets fitted on its own outputs; used only with "
                   "--runtime int8, and the run's card says what it measured.")
@json_option
def export(run_dir: Path, to: str, out: Path | None, tta: bool | None, int8: bool, as_json: bool) -> None:
    """Export a run's network for another runtime: ONNX (ONNX Runtime, OpenVINO, Triton, TensorRT)
    or a TensorFlow SavedModel (TensorFlow Serving, TensorFlow Lite's converter).

    The graph takes the prepared image (N x H x W x C float32) and gives the network's
    probabilities over its trained classes (before the temperature) and its features. The
    sidecar (model.onnx.json) states every step before the graph (decoding, the head crop, the
    resize, the intensity normalisation, the scale) and after it (the temperature, the classes,
    the folding of a binary task); examples/onnx_predict.py follows it with onnxruntime, NumPy
    and OpenCV alone. An ensemble is one graph (its members averaged inside).

    The ONNX graph is measured at once against the Keras network on the run's own test images
    (up to 256): the largest difference of probabilities, in float32 and against the run's
    scorer as it is, and each one's time per batch here. `btk predict --runtime auto` uses the
    graph left in the run only where that difference is at most 1e-5 and the graph was faster.
    A run trained in mixed_bfloat16 computes differently from any float32 graph: its graph is
    used only when asked for (--runtime onnx).

    \b
    Examples:
      btk export runs/20261127-101500-multiclass
      btk export runs/20261127-101500-multiclass --out exported/
      btk export runs/20261127-101500-multiclass --int8
      btk export runs/20261127-101500-multiclass --to savedmodel --out exported/
    """
    from btk.onnx_export import export_run
    from btk.render import line
    from btk.runs import load_run

    output = Output(as_json)
    run = load_run(run_dir)
    exported = export_run(run, out, to, tta, output.feedback, int8=int8)
    if int8 and out is None:  # the card tells of the run's int8 graph
        from btk.model_card import write_card

        write_card(load_run(run.path))
    if as_json:
        output.json({"folder": str(exported.folder), "files": exported.files, "sidecar": exported.sidecar})
        return
    measured = exported.sidecar.get("measured") or {}
    if measured.get("images"):
        seconds = measured["seconds_per_batch"]
        line(output.console, f"measured on {measured['images']} test images: largest difference of probabilities "
                             f"{measured['against_keras_float32']:.1e} against Keras in float32, "
                             f"{measured['against_keras_scorer']:.1e} against the run's scorer "
                             f"({measured['keras_precision']})")
        line(output.console, f"network alone, a batch of {measured['batch']}: ONNX Runtime "
                             f"{seconds['onnx'] * 1000:.1f} ms, Keras {seconds['keras'] * 1000:.1f} ms "
                             f"({seconds['keras'] / seconds['onnx']:.2f}x)")
    elif measured:
        line(output.console, measured.get("note", "not measured"))
    quantised = exported.sidecar.get("int8")
    if quantised:
        val, test = quantised["validation_accuracy"], quantised["test_accuracy"]
        line(output.console, f"int8: validation accuracy {100 * val['float32']:.2f} -> {100 * val['int8']:.2f} "
                             f"({val['move_points']:+.2f} points, {val['images']} images; kept: within 0.3), test "
                             f"{100 * test['float32']:.2f} -> {100 * test['int8']:.2f}; its own temperature "
                             f"{quantised['temperature']:.3f}")
    for name in exported.files:
        output.written(name, exported.folder / name)
