"""``btk plan``: a plan of runs (a suite's experiments and/or seeds), run here, as parallel
processes, or written out for a job array."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from btk.commands.options import Output, config_options, configuration, json_option, name_option, out_option
from btk.errors import BtkError


def _seeds(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[int, ...] | None:
    if value is None:
        return None
    from btk.plan import parse_seeds

    try:
        return parse_seeds(value)
    except ValueError as exc:
        raise BtkError(f"--seeds {value}: {exc}") from None


def _jobs(ctx: click.Context, param: click.Parameter, value: int) -> int:
    if value < 1:
        raise BtkError(f"--jobs {value}: give at least 1")
    return value


@click.command()
@config_options
@click.option("--suite", metavar="NAME", help="Run a suite's experiments (report: the report's four) [one run].")
@click.option("--seeds", callback=_seeds, metavar="LIST",
              help="Run the plan once per seed: e.g. 101-105, 101,103,107 or 101-103,110; the runs' names carry the "
                   "seed and the table shows the mean and range over seeds. Replaces --seed.")
@click.option("--jobs", type=int, default=1, show_default=True, callback=_jobs, metavar="N",
              help="Run the plan's runs as separate processes, N at a time, each with cpu_count/N CPU threads (and, "
                   "with GPUs, one of them in turn); 1: one after another in this process.")
@click.option("--write", "write_dir", type=click.Path(path_type=Path), metavar="DIR",
              help="Train nothing: write the plan's runs as DIR/members/NAME.json, one `btk run --config FILE` "
                   "each, for a job array or any scheduler, and DIR/plan.sbatch, a Slurm job array with one task "
                   "per file, each run made in the --out folder (logs: DIR/logs); `btk report` puts the finished "
                   "runs together.")
@click.option("--sbatch", "sbatch_options", multiple=True, metavar="OPTION=VALUE",
              help="With --write: an #SBATCH line of plan.sbatch, e.g. time=02:00:00, gres=gpu:1, mem=16G; "
                   "repeatable [cpus-per-task=2].")
@out_option("the plan's directory (its runs inside)", "runs")
@name_option("Name of a one-run plan (the runs' names carry it).")
@json_option
@click.pass_context
def plan(ctx: click.Context, /, suite: str | None, seeds: tuple[int, ...] | None, jobs: int, write_dir: Path | None,
         sbatch_options: tuple[str, ...], out: Path, name: str, as_json: bool, **opts: Any) -> None:
    """Run a plan of runs: a suite's experiments, one configuration over several seeds, or both;
    one table at the end (the mean and range over seeds). The configuration options are
    btk run's; --suite's experiments change only what they are about.

    \b
    Examples:
      btk plan --data DATA/sartaj --suite report                  # the report's four experiments
      btk plan --data DATA/sartaj --seeds 101-105 --jobs 2        # five seeds, two processes at a time
      btk plan --data DATA/sartaj --suite report --seeds 101-103 --write plan/   # a Slurm job array
    """
    import shlex

    from btk.render.tables import failed_lines, render_suite_aggregate, render_suite_table
    from btk.slurm import parse_sbatch_options, plan_script
    from btk.suite import read_suite, run_suite, write_plan

    if seeds is not None and ctx.get_parameter_source("seed") is click.core.ParameterSource.COMMANDLINE:
        raise BtkError("--seeds runs each seed it lists: leave out --seed")
    if suite is None and seeds is None:
        raise BtkError("a plan needs --suite NAME, --seeds LIST or both (one run: btk run)")
    if write_dir is not None and jobs > 1:
        raise BtkError("--write trains nothing: leave out --jobs (the scheduler runs the files)")
    if sbatch_options and write_dir is None:
        raise BtkError("--sbatch goes with --write DIR (a Slurm job array's script)")
    sbatch = parse_sbatch_options(sbatch_options)
    config = configuration(ctx, opts, default_preset="btk" if suite else None, name=name)
    output = Output(as_json)
    if write_dir is not None:
        files = write_plan(suite, config, write_dir, seeds=seeds)
        script = plan_script(write_dir, files, out, sbatch)
        submit, then = f"sbatch {shlex.quote(str(script))}", f"btk report {shlex.quote(str(out.absolute()))}/*"
        if as_json:
            output.json({"files": [str(f) for f in files], "script": str(script), "submit": submit, "report": then})
            return
        output.written(f"{len(files)} run configuration(s) written to", files[0].parent)
        output.written(f"Slurm job array of {len(files)} task(s) (one run each) written to", script)
        click.echo("submit it, then, once every task has finished, put the runs together:")
        click.echo(submit)
        click.echo(then)
        return
    folder = run_suite(suite, config, out, output.feedback, seeds=seeds, jobs=jobs)
    info = read_suite(folder) or {}
    failed = info.get("failed") or []
    if as_json:
        output.json({"folder": str(folder), **info})
    else:
        title = f"suite '{info.get('suite', suite)}' ({folder})"
        render_suite_table(info.get("table", []), output.console, title)
        if info.get("aggregate"):
            render_suite_aggregate(info["aggregate"], output.console, f"{title}: mean (range) over seeds")
        output.written("plan written to", folder)
        for text in failed_lines(failed, folder):
            output.console.print(text, markup=False, highlight=False)
    if failed:
        raise BtkError(f"{len(failed)} of {len(failed) + len(info.get('runs', {}))} runs failed "
                       "(suite.json lists them; the table holds the others)")
