"""``btk ensemble``: finished runs averaged into one model, or N members trained and averaged."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from btk.commands.options import (
    Output,
    check_reporters,
    config_options,
    configuration,
    json_option,
    name_option,
    out_option,
    reporter_option,
)
from btk.commands.run import finish_run
from btk.errors import BtkError


def _members(ctx: click.Context, param: click.Parameter, value: int | None) -> int | None:
    if value is not None and value < 2:
        raise BtkError(f"--train {value}: an ensemble needs at least 2 members")
    return value


@click.command()
@click.argument("run_dirs", nargs=-1, type=click.Path(path_type=Path))
@click.option("--train", "members", type=int, callback=_members, metavar="N",
              help="Train N members (seeds SEED..SEED+N-1) on one split, each written as a run, then average them; "
                   "the configuration options are btk run's.")
@click.option("--folds", type=int, metavar="K",
              help="Hold back a calibration part of the training images, cut the rest into K folds (grouped by "
                   "patient and near-copy, stratified by class) and train one run per fold (each stops early on "
                   "an inner part of its own training images and answers its fold out of fold: oof.csv), then "
                   "average them; the ensemble's temperature and prediction sets are fitted on its own scores "
                   "of the calibration part.")
@config_options
@out_option("the ensemble run (and, with --train or --folds, its members)", shown="runs; the first run's folder")
@name_option("Name in the new run directory's name [ensembleN].")
@reporter_option
@json_option
@click.pass_context
def ensemble(ctx: click.Context, /, run_dirs: tuple[Path, ...], members: int | None, folds: int | None,
             out: Path | None, name: str, reporter: tuple[str, ...], as_json: bool, **opts: Any) -> None:
    """Average the models of finished runs into one model, written as a new run and scored on
    their test images; or, with --train N, train the members first.

    The runs must be different runs of the same data, task, classes and image preparation,
    tested on the same images. The ensemble's model.keras is plain Keras (one input, each member
    a layer, the mean of their probabilities); predict, evaluate, explain, robustness and report
    treat it as one model. A temperature is fitted only when every run held out the same
    validation images (members of one --train do; runs with different seeds do not). Fold runs
    (--set fold=K/N) are combined as a fold ensemble only when they are the N folds of one split
    (one split seed, label corrections file, near-copy threshold and calibration part; held-out
    parts that together cover the pool); anything else is refused in one line.

    \b
    Examples:
      btk ensemble runs/*-seed101 runs/*-seed102 runs/*-seed103 --name three-seeds
      btk ensemble --train 5 --data DATA/sartaj                  # five seeds on one split, then their mean
      btk ensemble --folds 5 --data DATA/sartaj                  # five folds of Training, answers out of fold
    """
    from btk.ensemble import combine_paths, train_ensemble, train_folds
    from btk.render.tables import render_ensemble

    check_reporters(reporter)
    output = Output(as_json)
    if folds is not None:
        if run_dirs or members is not None:
            raise BtkError("--folds K trains its own members: give no runs and no --train")
        config = configuration(ctx, opts, name=name)
        result = train_folds(config, folds, out or Path("runs"), output.feedback)[1]
    elif members is not None:
        if run_dirs:
            raise BtkError("give finished runs to combine, or --train N to train members, not both")
        config = configuration(ctx, opts, name=name)
        result = train_ensemble(config, members, out or Path("runs"), output.feedback)[1]
    else:
        given = [n for n in opts if n not in ("config_file", "settings", "tta") and opts[n] not in (None, (), False)]
        if not run_dirs:
            raise BtkError("give the finished runs to combine (or --train N)")
        if given or opts.get("config_file") or opts.get("settings"):
            raise BtkError("the configuration options go with --train; finished runs keep their own")
        result = combine_paths(run_dirs, out, feedback=output.feedback, name=name, tta=opts.get("tta"))
    finish_run(output, result, reporter, "ensemble written to")
    if not as_json:
        render_ensemble(result, output.console)
