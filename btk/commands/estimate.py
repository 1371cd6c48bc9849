"""``btk estimate``: how accurate runs are at a new site, from the scans drawn there at random."""

from __future__ import annotations

from pathlib import Path

import click

from btk.commands.options import Output, json_option


@click.command()
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--selection", type=click.Path(path_type=Path), required=True, metavar="DIR",
              help="The folder btk select made (selection.json says which scans were drawn at random).")
@click.option("--labels", type=click.Path(path_type=Path), metavar="FILE",
              help="The list filled in (path,slice,label), e.g. the file label.html saved [DIR/to_label.csv].")
@click.option("--map", "class_map", multiple=True, metavar="LABEL=CLASS",
              help="Read the site's label LABEL as CLASS, e.g. yes=tumor no=no_tumor (tumor: any tumour); "
                   "repeatable.")
@json_option
def estimate(run_dirs: tuple[Path, ...], selection: Path, labels: Path | None, class_map: tuple[str, ...],
             as_json: bool) -> None:
    """Say how accurate each run is at a new site, side by side (the run before and after it was
    fitted to the site, say), with an exact 95% interval, from the scans btk select drew at
    random there and a person labelled. The scans chosen as uncertain never count: they are not
    a random sample. Labels of tumour or none only (--map yes=tumor) vouch for the tumour-vs-none
    answer, not for the tumour type. Writes DIR/estimate.json.

    The interval (Clopper-Pearson, exact binomial) assumes the labelled random scans are a simple
    random sample of the site's series and patients, their labels right, and the site unchanged.

    \b
    Examples:
      btk estimate runs/20261127-101500-multiclass --selection selections/20261208-101500-select-run/ \
          --labels ~/Downloads/to_label.csv
      btk estimate runs/before runs/after --selection selections/<id>/ --map yes=tumor --map no=no_tumor
    """
    from btk.classmap import parse_class_map
    from btk.render import line
    from btk.render.progress import stderr_feedback
    from btk.runs import load_run
    from btk.site_estimate import estimate_site

    mapping = parse_class_map(class_map)
    runs = [load_run(p) for p in run_dirs]
    estimates = estimate_site(runs, selection, labels, mapping, stderr_feedback())
    output = Output(as_json)
    if as_json:
        output.json([e.to_json() for e in estimates])
        return

    def shown(p) -> str:
        if not p.n:
            return "no scan labelled with a class of the run"
        low, high = p.interval()
        return f"{100 * p.value:.1f}% ({p.right}/{p.n}) [95% {100 * low:.1f}-{100 * high:.1f}]"

    for e in estimates:
        line(output.console, f"{e.run}: accuracy {shown(e.classes)}; tumour vs none {shown(e.tumour_vs_none)}")
        for c, p in e.per_class_recall.items():
            line(output.console, f"  recall {c}: {shown(p)}")
    left = estimates[0].left_out
    line(output.console, "not counted: " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in left.items() if v))
    output.written("estimate written to", Path(selection) / "estimate.json")
