"""``btk rerun``: a finished run made again from its record, and whether the two agree."""

from __future__ import annotations

from pathlib import Path

import click

from btk.commands.options import Output, check_reporters, json_option, out_option, reporter_option


@click.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--seed", type=int, help="Make it with another seed [the run's own: the same run again]; an "
                                       "ensemble's member seeds, and a calibrated or adapted run's origin's, all "
                                       "move by the same amount.")
@out_option("the new run", shown="the run's folder")
@reporter_option
@json_option
def rerun(run_dir: Path, seed: int | None, out: Path | None, reporter: tuple[str, ...], as_json: bool) -> None:
    """Make a finished run again from its recorded configuration and say whether the predictions
    agree: per test condition, how many test images get the same class, the largest probability
    difference, and McNemar's exact test of the two runs' correctness. With the same seed on the
    same machine a run repeats exactly; --seed shows how much it moves with the seed.

    A run is made again as it was made, from the roles of its images: an ensemble trains each
    member again from its own record, then averages them; a fold ensemble trains each fold run
    again and combines them again as a fold ensemble (out-of-fold calibration and label issues);
    a calibrated run (btk calibrate) is calibrated again on the site sample it recorded (the same
    scans, not a new draw); an adapted run (btk adapt) is adapted again on the images it
    recorded. A calibrated or adapted run reuses its origin run (the run it was calibrated or
    adapted from: neither changes a weight of its network) where that is still at its recorded
    path, and is refused where it is not; with --seed the origin is trained again with that
    seed first.

    \b
    Examples:
      btk rerun runs/20261127-101500-multiclass
      btk rerun runs/20261127-101500-multiclass --seed 102
    """
    from btk.render.tables import render_agreement
    from btk.rerun import rerun as make_again

    check_reporters(reporter)
    output = Output(as_json)
    done = make_again(run_dir, seed, out, feedback=output.feedback)
    if as_json:
        output.json({"original": done.original.summary(), "run": done.run.summary(), "how": done.how,
                     "agreement": done.agreement})
        return
    output.report(done.run, reporter)
    output.console.print(f"{done.original.name}: {done.how}", highlight=False)
    render_agreement(done.original.name, done.run.name, done.agreement, output.console)
    output.written("run written to", done.run.path)
