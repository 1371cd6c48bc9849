"""``btk run`` (one run) and ``btk resume`` (an interrupted run continued)."""

from __future__ import annotations

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

EPILOG = """\b
Examples:
  btk run                                    # built-in synthetic phantoms and small-cnn: a minute on a laptop
  btk run --data DATA/sartaj                 # 4 classes, the fast recipe (res-cnn, 128 px, minutes)
  btk run --data DATA/sartaj --preset btk    # the report's CNN at 256 px, made safe (a GPU's job)
  btk run --data DATA/sartaj --task binary   # tumour vs no tumour
  btk run --data DATA/sartaj --degrade blur --degrade resolution   # train clean, test degraded too
  btk run --data DATA/sartaj --train-degrade blur                  # train on blurred images
  btk run --data DATA/sartaj --preset report # the report's exact recipe (raw pixels: collapses)
  btk run --data DATA/sartaj --set warmup_epochs=2 --set class_weight=off   # any recipe field
  btk run --config runs/<run-id>/config.json --seed 7   # a run's configuration, changed

Settings apply in this order, each overriding the ones before: the preset, --config's file,
the flags, --set. Degradations are NAME, NAME@LEVEL or NAME:KEY=VALUE,... (blur@3,
blur:ksize=9,sigma=2). In [brackets]: each preset's value (docs/cli.md lists every field).
Plans over seeds and suites: btk plan. Ensembles: btk ensemble --train N. Several hosts:
set JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and JAX_PROCESS_ID (docs/scale-out.md).
"""


@click.command(epilog=EPILOG)
@config_options
@out_option("the run directory", "runs")
@name_option("Name in the run directory's name (a plain name: no '/').")
@reporter_option
@json_option
@click.pass_context
def run(ctx: click.Context, /, out: Any, name: str, reporter: tuple[str, ...], as_json: bool, **opts: Any) -> None:
    """Train and evaluate one model; write a run directory (config, split, history, model,
    predictions, metrics, model card) and report it."""
    from btk.pipeline import train_run

    check_reporters(reporter)
    config = configuration(ctx, opts, name=name)
    output = Output(as_json)
    result = train_run(config, out, output.feedback)
    if result is None:  # a process other than 0 of several: trained with the others, wrote nothing
        return
    finish_run(output, result, reporter)


def finish_run(output: Output, result: Any, reporter: tuple[str, ...], what: str = "run written to") -> None:
    """Report a new run and say where it went (and loudly if it collapsed)."""
    from btk.render import collapsed_warning

    output.report(result, reporter)
    output.written(what, result.path)
    if result.metrics["collapsed"]:
        collapsed_warning(output.console)


def _resume_help() -> str:
    from btk.determinism import PROMISES, UNCHECKED

    return ("Continue an interrupted run from its last epoch, with its own configuration: PARTIAL is its hidden "
            ".ID.partial folder (btk run names it when it stops, interrupted or on an error after an epoch), or the "
            "run path it would have had. Training goes on as the uninterrupted run would have: the same order of "
            "images and augmentation, dropout seeds, optimizer state and learning rate. On TensorFlow "
            f"{PROMISES['tensorflow']}; on JAX {PROMISES['jax']}; on PyTorch the {UNCHECKED}. The run's "
            "MODEL_CARD.md says that it was resumed, and which of these holds."
            "\n\n\b\nExample:\n  btk resume runs/.20261127-101500-multiclass.partial")


@click.command(help=_resume_help())
@click.argument("partial", type=click.Path())
@reporter_option
@json_option
def resume(partial: str, reporter: tuple[str, ...], as_json: bool) -> None:
    from btk.resume import resume_run

    check_reporters(reporter)
    output = Output(as_json)
    finish_run(output, resume_run(partial, output.feedback), reporter)
