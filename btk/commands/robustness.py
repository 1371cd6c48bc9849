"""``btk robustness``: every degrader at every severity, scored as the corruption benchmarks do."""

from __future__ import annotations

from pathlib import Path

import click

from btk.commands.options import Output, json_option, runtime_option, scoring_options


@click.command()
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--baseline", type=click.Path(path_type=Path),
              help="Run to score CE and mCE against [the first RUN_DIR].")
@click.option("--degraders", help="Comma-separated degraders [every degrader with severity levels].")
@click.option("--plot", "plot_path", type=click.Path(path_type=Path),
              help="Accuracy-against-severity plot [RUN/robustness.png].")
@click.option("--also", multiple=True, metavar="SPEC",
              help="Also evaluate this degradation; repeatable. blur@report and resolution@report: the report's "
                   "settings at the report's scale (its 256 px images); blur, resolution: its settings as written, "
                   "at the run's image size.")
@click.option("--subset", type=click.Choice(["test", "validation"]), default="test", show_default=True,
              help="Sweep the run's test images, or its validation images (held out from training, never "
                   "Testing: for choosing a recipe; refused for a run they trained, a fold ensemble); "
                   "validation results go to robustness-validation.json.")
@scoring_options
@runtime_option
@json_option
def robustness(run_dirs: tuple[Path, ...], baseline: Path | None, degraders: str | None, plot_path: Path | None,
               also: tuple[str, ...], subset: str, tta: bool | None, devices: str, runtime: str,
               as_json: bool) -> None:
    """Evaluate trained runs (or evaluations: the images they scored) under every degrader at
    every severity level, with the run's own scorer, and score them as the corruption benchmarks
    do: corruption error (CE), mean CE and relative mCE against a baseline run. Results go to
    each run's robustness.json, every image's answer to robustness-predictions.csv, and the
    run's model card.

    \b
    Example:
      btk robustness runs/seed-cnn runs/augmented --baseline runs/seed-cnn
      btk robustness runs/A runs/B --also blur@report --also resolution@report
      btk robustness runs/A --subset validation       # choose recipes without Testing
    """
    from btk.degraders import resolve_degradations
    from btk.distribute import check_devices
    from btk.onnx_runtime import check_runtime
    from btk.plugins import get_host
    from btk.render import line
    from btk.render.plots import robustness_plot
    from btk.render.tables import render_robustness, render_robustness_extra
    from btk.robustness import compare_runs
    from btk.runs import load_run

    check_devices(devices)  # refused in one line before the runs or any image is read
    check_runtime(runtime, devices)
    host = get_host()
    names = [n.strip() for n in degraders.split(",")] if degraders else None
    extra = resolve_degradations(host, list(also))
    runs = [load_run(p) for p in run_dirs]
    base_run = load_run(baseline) if baseline else runs[0]
    output = Output(as_json)
    compared = compare_runs(runs, base_run, host, names, extra, output.feedback, subset=subset, tta=tta,
                            devices=devices, runtime=runtime)
    if as_json:
        output.json([{"run": str(item.run.path), "sweep": item.result, "scores": item.scores,
                      "extra_losses": item.extra_losses} for item in compared])
        return
    for item in compared:
        render_robustness(item.run.name, item.result, item.scores, output.console)
        if item.extra_losses:
            render_robustness_extra(item.run.name, base_run.name, item.extra_losses, output.console, subset)
        mce, rel = item.scores["mce"], item.scores["relative_mce"]
        line(output.console, f"mCE {'-' if mce is None else format(mce, '.3f')}, relative mCE "
                             f"{'-' if rel is None else format(rel, '.3f')} against {base_run.name}")
    out = plot_path or runs[0].path / ("robustness.png" if subset == "test" else f"robustness-{subset}.png")
    robustness_plot([item.result for item in compared], out)
    output.written("plot:", out)
