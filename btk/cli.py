"""The ``btk`` command line: each command parses its options, calls the library and hands the
result to :mod:`btk.render` (or to the reporter plugins) to show.

Heavy libraries (keras, the ML backend, OpenCV, rich) are imported only inside commands, so
``btk --help`` answers at once.
"""

from __future__ import annotations

import os
import sys
import traceback
from pathlib import Path
from typing import Any, ClassVar

import click
from click.core import ParameterSource

from btk import __version__
from btk.config import preset_hint
from btk.errors import BtkError

EPILOG_RUN = """\b
Examples:
  btk run                                    # built-in synthetic phantoms and small-cnn: minutes on a laptop
  btk run --data DATA/sartaj                 # 4 classes, the fast recipe (res-cnn, 128 px, minutes)
  btk run --data DATA/sartaj --preset btk    # the report's CNN at 256 px, made safe (a GPU's job)
  btk run --data DATA/sartaj --task binary   # tumour vs no tumour
  btk run --data DATA/sartaj --degrade blur --degrade resolution   # train clean, test degraded too
  btk run --data DATA/sartaj --train-degrade blur                  # train on blurred images
  btk run --data DATA/sartaj --suite report  # the report's four experiments, one table
  btk run --data DATA/sartaj --preset report # the report's exact recipe (raw pixels: collapses)
  btk run --data DATA/sartaj --set warmup_epochs=2 --set class_weight=off   # any recipe field

Degradations are NAME or NAME:KEY=VALUE,...; e.g. blur:ksize=9,sigma=2 or resolution:factor=3.
In [brackets]: each preset's value (docs/cli.md lists every recipe field).
`btk plugins` lists readers, degraders, models and reporters.
"""


def _debug() -> bool:
    return os.environ.get("BTK_DEBUG", "") not in ("", "0")


def _pairs(values: tuple[str, ...], what: str) -> dict[str, str]:
    out = {}
    for item in values:
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise BtkError(f"bad {what} {item!r}: write KEY=VALUE")
        out[key.strip()] = value.strip()
    return out


def _settings(values: tuple[str, ...]) -> dict[str, Any]:
    from btk.config import parse_field

    return {key: parse_field(key, value) for key, value in _pairs(values, "--set value").items()}


def _show_problems() -> None:
    from btk.plugins import get_host
    from btk.render import warn_lines

    warn_lines(get_host().problems)


def _scoring_options():
    """``--tta/--no-tta`` and ``--devices`` of the commands that score images with a finished run
    (evaluate, predict, robustness)."""
    tta = click.option("--tta/--no-tta", default=None,
                       help="Test-time augmentation: average the probabilities of each image and its mirror image "
                            "[the run's own choice].")
    devices = click.option("--devices", default="", metavar="auto|N|LIST",
                           help="Split every batch of images over these devices (Keras' DataParallel): auto (every "
                                "device), N (the first N) or indices (0,1); batches stream through them as on one. "
                                "JAX backend only (KERAS_BACKEND=jax); on TensorFlow and PyTorch auto and 1 use one "
                                "device, more are refused. Not given: one device.")
    return lambda command: tta(devices(command))


def _recipe_option(field: str, *decls: str, extra: str = "", **kwargs: Any):
    """An option of ``btk run`` that sets recipe field ``field``: its help is the field's, and the
    presets' values come from the recipe table (written once, in :mod:`btk.config`)."""
    from btk.config import field_help

    hint = preset_hint(field) + (f"; {extra}" if extra else "")
    return click.option(*decls, help=f"{kwargs.pop('help', field_help(field))} [{hint}]", **kwargs)


class BtkGroup(click.Group):
    """Turns :class:`BtkError` into one line and a non-zero exit; other errors too, unless debugging.
    Adds the plugins' commands when commands are looked up, again whenever the plugin host is
    rebuilt (:func:`btk.plugins.reset`, :func:`btk.plugins.register_plugin`)."""

    _plugin_commands_host: Any = None  # the plugin host whose plugins' commands the group holds
    _displaced: ClassVar[dict[str, click.Command]] = {}  # core commands a plugin command replaced, by name

    def _ensure_plugin_commands(self) -> None:
        try:
            _add_plugin_commands()
        except Exception as exc:  # never let plugin loading stop the CLI
            print(f"btk: warning: plugin commands could not be loaded: {exc}", file=sys.stderr)

    def get_command(self, ctx: click.Context, cmd_name: str):
        self._ensure_plugin_commands()
        return super().get_command(ctx, cmd_name)

    def list_commands(self, ctx: click.Context):
        self._ensure_plugin_commands()
        return super().list_commands(ctx)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BtkError as exc:
            if _debug():
                traceback.print_exc()
            raise click.ClickException(str(exc)) from None
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except KeyboardInterrupt:
            click.echo("btk: interrupted; no run directory was completed", err=True)
            ctx.exit(130)
        except Exception as exc:
            if _debug():
                raise
            first = (str(exc).strip().splitlines() or [""])[0]
            raise click.ClickException(
                f"internal error: {type(exc).__name__}: {first} (set BTK_DEBUG=1 for the traceback)"
            ) from None


@click.group(cls=BtkGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="btk")
@click.option("--debug", is_flag=True,
              help="Show tracebacks, the ML backend's start-up lines and other libraries' warnings "
                   "(same as BTK_DEBUG=1).")
def cli(debug: bool) -> None:
    """btk: classify medical images (brain MRI first) with plugins for readers, degraders,
    models and reporters.

    Start with `btk run` (a built-in synthetic dataset) or `btk run --data FOLDER`.
    """
    if debug:
        os.environ["BTK_DEBUG"] = "1"
    _show_problems()


def _seeds_option(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[int, ...] | None:
    """``--seeds``: the seeds of :func:`btk.plan.parse_seeds`, a usage error when malformed."""
    if value is None:
        return None
    from btk.plan import parse_seeds

    try:
        return parse_seeds(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


# options of `btk run` that --resume may be given with (they do not change what is trained)
RESUME_COMPATIBLE = ("resume_dir", "reporter")


@cli.command()
@click.option("--data", type=click.Path(path_type=Path),
              help="Data path for the reader. Without it: the built-in synthetic dataset.")
@click.option("--reader", help="Reader plugin (default: folder with --data, synthetic without).")
@click.option("--reader-option", "-R", multiple=True, metavar="KEY=VALUE", help="Reader-specific option; repeatable.")
@click.option("--task", type=click.Choice(["multiclass", "binary"]), default="multiclass", show_default=True,
              help="All classes, or tumour vs the negative class.")
@click.option("--negative-class", default="no_tumor", show_default=True,
              help="The 'no finding' class for --task binary.")
@_recipe_option("binary_via_classes", "--binary-via-classes/--binary-direct", "binary_via_classes", default=None,
                help="--task binary: train on every class and read P(tumour) = 1 - P(no tumour), so each tumour "
                     "type stays its own target; or train on the two labels.")
@click.option("--preset",
              help="Training recipe: fast (res-cnn at 128 px: minutes on a laptop), btk (the report's CNN made "
                   "safe) or report (the report exactly: raw pixels) [fast; btk for --suite and the demo].")
@_recipe_option("model", "--model", extra="small-cnn on the synthetic data")
@click.option("--model-option", "-M", multiple=True, metavar="KEY=VALUE", help="Model-specific option; repeatable.")
@click.option("--degrade", "test_degrade", multiple=True, metavar="SPEC",
              help="Also evaluate on test images degraded by SPEC; repeatable.")
@click.option("--train-degrade", multiple=True, metavar="SPEC", help="Train on images degraded by SPEC.")
@_recipe_option("augment_degraders", "--augment-degraders", metavar="NAMES",
                help="Augment training on the fly: comma-separated degraders, 'all' or 'none'; a random one at a "
                     "random level for a share of the images (--set augment_probability=P, augment_max_level=L).")
@_recipe_option("augment_images", "--augment/--no-augment", "augment_images", default=None)
@_recipe_option("schedule", "--schedule", type=click.Choice(["constant", "cosine"]))
@_recipe_option("patience", "--patience", type=click.IntRange(0))
@_recipe_option("monitor_after", "--monitor-after", type=click.FloatRange(0, 1, max_open=True), metavar="SHARE")
@_recipe_option("crop", "--crop", type=click.Choice(["none", "head"]))
@_recipe_option("intensity", "--intensity", type=click.Choice(["none", "stretch", "equalize", "nyul"]))
@_recipe_option("micro_batch", "--micro-batch", type=click.IntRange(1),
                help="Compute each batch in micro-batches of N (gradients accumulated): the same updates, less "
                     "memory. N = the batch size: whole batches. Not given: automatic (on a CPU, small enough to "
                     "keep a step's activations under 512 MiB, for networks without batch norm).")
@_recipe_option("precision", "--precision", type=click.Choice(["auto", "float32", "mixed_bfloat16", "mixed_float16"]))
@click.option("--set", "settings", multiple=True, metavar="FIELD=VALUE",
              help="Set any recipe field (docs/cli.md lists them), e.g. --set warmup_epochs=2; repeatable.")
@click.option("--config", "config_file", type=click.Path(path_type=Path),
              help="Read the configuration from a TOML or JSON file (a run directory's config.json works as it "
                   "is); options given on the command line override it.")
@click.option("--resume", "resume_dir", type=click.Path(path_type=Path),
              help="Continue an interrupted run from its last epoch: its .ID.partial folder under --out. "
                   "The run keeps its own configuration: no other option but --reporter goes with it.")
@click.option("--suite", help="Run a plan of experiments instead of one run (report: the report's four).")
@click.option("--seeds", callback=_seeds_option, metavar="LIST",
              help="Run the plan (the suite's experiments, or this one run) once per seed: e.g. 101-105, "
                   "101,103,107 or 101-103,110; the runs' names carry the seed and the table shows the mean and "
                   "range over seeds. Not with --seed.")
@click.option("--jobs", type=click.IntRange(1), default=1, show_default=True, metavar="N",
              help="Run the plan's runs as separate processes, N at a time, each with cpu_count/N CPU threads "
                   "(and, with GPUs, one of them in turn); 1: one after another in this process.")
@click.option("--write-plan", "plan_dir", type=click.Path(path_type=Path), metavar="DIR",
              help="Train nothing: write the plan's runs (the suite's experiments and/or --seeds, or this one run) "
                   "as DIR/members/NAME.json, one `btk run --config FILE` each, for a job array (Slurm) or any "
                   "scheduler; `btk report` puts the finished runs together.")
@_recipe_option("epochs", "--epochs", type=click.IntRange(1))
@_recipe_option("batch_size", "--batch-size", type=click.IntRange(1))
@_recipe_option("image_size", "--image-size", type=click.IntRange(8, 4096))
@_recipe_option("channels", "--channels", type=click.Choice(["1", "3"]))
@_recipe_option("val_fraction", "--val-fraction", type=click.FloatRange(0, 1, min_open=True, max_open=True))
@_recipe_option("learning_rate", "--learning-rate", type=click.FloatRange(0, min_open=True))
@click.option("--seed", type=int, default=101, show_default=True, help="Seed for splits, initialisation and shuffling.")
@click.option("--limit-train", type=click.IntRange(0), default=0, help="Use at most N training images (0 = all).")
@click.option("--limit-test", type=click.IntRange(0), default=0, help="Use at most N test images (0 = all).")
@click.option("--out", type=click.Path(path_type=Path), default=Path("runs"), show_default=True,
              help="Parent folder of run directories.")
@click.option("--name", default="", help="Name in the run directory's name (a plain name: no '/').")
@click.option("--reporter", multiple=True, default=("terminal",), show_default=True,
              help="Reporter plugin(s) for the finished run.")
@click.option("--strict", is_flag=True, help="Stop at the first unreadable image instead of skipping it.")
@click.option("--duplicate-threshold", type=click.FloatRange(0, 1), default=0.95, show_default=True,
              help="Near-copy score: copies stay on one side of the splits btk makes, and test images with a "
                   "copy in training are also reported apart. 0 turns this off.")
@click.option("--tta", is_flag=True,
              help="Score the test (and validation) images with test-time augmentation: each image and its mirror "
                   "image, probabilities averaged; predict and evaluate follow the run.")
@click.option("--devices", default="", metavar="auto|N|LIST",
              help="Data-parallel training (Keras' DataParallel): auto (every device), N (the first N) or device "
                   "indices (0,1). The global batch (--batch-size) is split evenly over the devices; the learning "
                   "rate and batch size are per global batch. JAX backend only (KERAS_BACKEND=jax): on TensorFlow "
                   "and PyTorch, auto and 1 train on one device and say so, more are refused. "
                   "Not given: one device.")
@click.option("--coordinator", metavar="HOST:PORT",
              help="Several hosts (JAX): process 0's address; every process runs the same command "
                   "[JAX_COORDINATOR_ADDRESS]. Only process 0 writes the run directory.")
@click.option("--num-processes", type=click.IntRange(1), metavar="N",
              help="Several hosts: how many processes [JAX_NUM_PROCESSES, else SLURM_NTASKS].")
@click.option("--process-id", type=click.IntRange(0), metavar="K",
              help="Several hosts: this process's index, 0..N-1 [JAX_PROCESS_ID, else SLURM_PROCID].")
@click.option("--ensemble", type=click.IntRange(1), default=1, show_default=True, metavar="N",
              help="Train N members (seeds SEED..SEED+N-1) on one split, each written as a run, and write one "
                   "more run whose model averages theirs (N times the training time).")
def run(**opts: Any) -> None:
    """Train and evaluate a model; write a run directory (config, split, history, model,
    predictions, metrics) and report it."""
    from btk.distribute import init_multihost, multihost_from

    multihost = multihost_from(opts.pop("coordinator"), opts.pop("num_processes"), opts.pop("process_id"))
    if multihost is not None and (opts["suite"] or opts["seeds"] or opts["ensemble"] > 1 or opts["jobs"] > 1
                                  or opts["resume_dir"] is not None or opts["plan_dir"] is not None):
        raise BtkError("several processes (--coordinator) train one run: leave out --suite, --seeds, --ensemble, "
                       "--jobs, --resume and --write-plan")
    init_multihost(multihost)  # before anything else touches JAX
    if multihost is not None and not opts["devices"]:
        opts["devices"] = "auto"  # every process's devices
    from btk.config import RECIPE_FIELDS, make_run_config
    from btk.plugins import get_host
    from btk.render import collapsed_warning, out_console, written
    from btk.render.progress import RichFeedback

    host = get_host()
    reporters = [host.reporters.get(r) for r in opts["reporter"]]
    console = out_console()
    feedback = RichFeedback(console)
    if opts["seeds"] is not None and click.get_current_context().get_parameter_source("seed") in (
            ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT):
        raise click.UsageError("--seeds runs each seed it lists: leave out --seed")
    if opts["resume_dir"] is not None and opts["jobs"] > 1:
        raise BtkError("--resume continues one run in this process: leave out --jobs")
    if opts["resume_dir"] is not None:
        from btk.pipeline import resume_config, run_experiment

        ctx = click.get_current_context()
        given = [p.opts[0] for p in ctx.command.params if p.name not in RESUME_COMPATIBLE
                 and ctx.get_parameter_source(p.name) in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)]
        if given:
            raise BtkError(f"--resume continues a run with its own configuration; leave out {', '.join(given)}")
        config, run_id = resume_config(opts["resume_dir"])
        result = run_experiment(config, Path(opts["resume_dir"]).parent, feedback, host, run_id=run_id)
    else:
        overrides = {k: opts.pop(k) for k in RECIPE_FIELDS if k in opts and k != "model"}
        if overrides["channels"] is not None:
            overrides["channels"] = int(overrides["channels"])
        settings = _settings(opts["settings"])
        config = make_run_config(
            data=opts["data"], reader=opts["reader"], preset=opts["preset"], model=opts["model"], suite=opts["suite"],
            overrides=overrides, settings=settings,
            reader_options=_pairs(opts["reader_option"], "reader option"), task=opts["task"],
            negative_class=opts["negative_class"], model_options=_pairs(opts["model_option"], "model option"),
            train_degrade=tuple(opts["train_degrade"]), test_degrade=tuple(opts["test_degrade"]), seed=opts["seed"],
            limit_train=opts["limit_train"], limit_test=opts["limit_test"], strict=opts["strict"], name=opts["name"],
            duplicate_threshold=opts["duplicate_threshold"], tta=opts["tta"], ensemble=opts["ensemble"],
            devices=opts["devices"])
        if opts["config_file"] is not None:
            from btk.config_file import read_config_file, with_command_line

            ctx = click.get_current_context()
            typed = {p.name for p in ctx.command.params if p.name and ctx.get_parameter_source(p.name)
                     in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)}
            config = with_command_line(read_config_file(opts["config_file"]), config, typed, settings)
        if (opts["suite"] or opts["seeds"]) and config.ensemble > 1:
            raise BtkError("--ensemble trains one configuration: it does not go with --suite or --seeds")
        if opts["plan_dir"] is not None:
            from btk.render import line
            from btk.suite import write_plan

            files = write_plan(opts["suite"], config, opts["plan_dir"], seeds=opts["seeds"])
            written(console, f"{len(files)} run configuration(s) written to", files[0].parent)
            line(console, "run one per task: btk run --config FILE --out OUT   "
                          f"(e.g. sbatch --array=0-{len(files) - 1}; then btk report OUT/*)")
            return
        if opts["suite"] or opts["seeds"]:
            from btk.render.tables import failed_lines, render_suite_aggregate, render_suite_table
            from btk.suite import read_suite, run_suite

            folder = run_suite(opts["suite"], config, opts["out"], feedback, seeds=opts["seeds"], jobs=opts["jobs"])
            info = read_suite(folder) or {}
            title = f"suite '{info.get('suite', opts['suite'])}' ({folder})"
            render_suite_table(info.get("table", []), console, title)
            if info.get("aggregate"):
                render_suite_aggregate(info["aggregate"], console, f"{title}: mean (range) over seeds")
            written(console, "suite written to", folder)
            failed = info.get("failed") or []
            for text in failed_lines(failed, folder):
                console.print(text, markup=False, highlight=False)
            if failed:
                raise BtkError(f"{len(failed)} of {len(failed) + len(info.get('runs', {}))} runs failed "
                               "(suite.json lists them; the table holds the others)")
            return
        if config.ensemble > 1:
            from btk.ensemble import run_ensemble
            from btk.render.tables import render_ensemble

            result = run_ensemble(config, opts["out"], feedback, host)[1]
            render_ensemble(result, console)
        elif multihost is not None:
            from btk.distribute import run_multihost

            result = run_multihost(config, opts["out"], feedback, host)
            if result is None:  # a process other than 0: trained with the others, wrote nothing
                return
        else:
            from btk.pipeline import run_experiment

            result = run_experiment(config, opts["out"], feedback, host)
    for rep in reporters:
        rep.report(result, console)
    written(console, "run written to", result.path)
    if result.metrics["collapsed"]:
        collapsed_warning(console)


run.epilog = EPILOG_RUN


@cli.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--seed", type=int, help="Repeat with another seed [the run's own: the same run again].")
@click.option("--out", type=click.Path(path_type=Path), help="Parent folder of the new run [the run's parent].")
@click.option("--reporter", multiple=True, help="Reporter plugin(s) for the new run [none: the agreement only].")
def rerun(run_dir, seed, out, reporter):
    """Repeat a finished run from its recorded configuration and say whether the predictions
    agree: per test condition, how many test images get the same class, the largest
    probability difference, and McNemar's exact test of the two runs' correctness. With the
    same seed on the same machine a run repeats exactly; --seed shows how much it moves with
    the seed.

    \b
    Examples:
      btk rerun runs/20261127-101500-multiclass
      btk rerun runs/20261127-101500-multiclass --seed 102
    """
    from btk.compare import agreement
    from btk.config import RunConfig
    from btk.pipeline import run_experiment
    from btk.plugins import get_host
    from btk.render import out_console, written
    from btk.render.progress import RichFeedback
    from btk.render.tables import render_agreement
    from btk.runs import load_run

    original = load_run(run_dir)
    if original.is_evaluation:
        raise BtkError(f"{original.path} is an evaluation: rerun the run it evaluated")
    config = RunConfig.from_json(original.config["config"])
    if seed is not None:
        config = config.with_changes(seed=seed)
    if config.data is not None and not Path(config.data).exists():
        made_in = (original.config.get("provenance") or {}).get("cwd")
        if made_in and not Path(config.data).is_absolute() and (Path(made_in) / config.data).exists():
            config = config.with_changes(data=str(Path(made_in) / config.data))
        else:
            raise BtkError(f"the run's data {config.data} is not here (run from the folder the run was made in)")
    host = get_host()
    reporters = [host.reporters.get(r) for r in reporter]
    console = out_console()
    parent = Path(out) if out else original.path.parent
    if config.ensemble > 1:  # an ensemble is repeated as it was made: its members, then their mean
        from btk.ensemble import run_ensemble

        result = run_ensemble(config, parent, RichFeedback(console), host)[1]
    else:
        result = run_experiment(config, parent, RichFeedback(console), host)
    for rep in reporters:
        rep.report(result, console)
    render_agreement(original.name, result.name, agreement(original, result), console)
    written(console, "run written to", result.path)


@cli.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--data", "paths", multiple=True, required=True, type=click.Path(),
              help="The new site's unlabelled images: files or folders (searched at any depth), DICOM, NIfTI; "
                   "repeatable. Every slice of a series or volume counts.")
@click.option("--reader", help="Reader for --data [recognised from each path].")
@click.option("--out", type=click.Path(path_type=Path), help="Parent folder of the new run [the run's parent].")
@click.option("--name", default="", help="Name in the new run directory's name [the run's name + -adapted].")
@click.option("--strength", type=click.FloatRange(0, 1, min_open=True), default=1.0, show_default=True,
              help="Share of the new site in the statistics: 1 replaces the training images' statistics, 0.5 "
                   "describes both sites alike.")
@click.option("--reporter", multiple=True, default=("terminal",), show_default=True,
              help="Reporter plugin(s) for the new run.")
@click.option("--depth", default="auto", show_default=True, metavar="auto|N|all",
              help="Batch-norm layers to adapt, in order: auto (as many as keep the accuracy on the run's own "
                   "validation images within a point of the unadapted model's), N (the first N) or all.")
def adapt(run_dir, paths, reader, out, name, strength, depth, reporter):
    """Adapt a trained run to a new site's scans without labels: re-estimate its batch-norm
    statistics on them (AdaBN; nothing else is trained) and write a new run that records what it
    was adapted on, scored again on the run's own validation and test images.

    It needs a whole cohort of the new site (hundreds of images; fewer than 32 is refused), and a
    model with batch normalisation (res-cnn, the fast default's, has it). Check the new run with
    btk evaluate on labelled images of that site before trusting it (docs/adapt.md).

    \b
    Example:
      btk adapt runs/20261128-161834-fast101 --data new-hospital/ --name hospital-b
    """
    from btk.adapt import adapt_run
    from btk.plugins import get_host
    from btk.render import out_console, written
    from btk.render.progress import RichFeedback
    from btk.runs import load_run

    run_ = load_run(run_dir)
    host = get_host()
    reporters = [host.reporters.get(r) for r in reporter]
    console = out_console()
    if depth not in ("auto", "all") and not (depth.isdigit() and int(depth) > 0):
        raise click.BadParameter(f"{depth!r}: give auto, all or a number of layers", param_hint="--depth")
    layers = None if depth == "auto" else 0 if depth == "all" else int(depth)
    result = adapt_run(run_, list(paths), out, host, RichFeedback(console), reader, name, strength=strength,
                       depth=layers)
    for rep in reporters:
        rep.report(result, console)
    info = result.config["adaptation"]
    console.print(f"adapted {info['batch_norm_layers']} of {info['batch_norm_layers_in_model']} batch-norm layers on "
                  f"{info['images']} images: accuracy on the run's validation images "
                  f"{100 * info['val_accuracy_before']:.1f} -> {100 * info['val_accuracy_after']:.1f}", highlight=False)
    written(console, "adapted run written to", result.path)


@cli.command()
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), help="Parent folder of the new run [the first run's parent].")
@click.option("--name", default="", help="Name in the new run directory's name [ensembleN].")
@click.option("--tta/--no-tta", default=None,
              help="Test-time augmentation around the ensemble [the first run's choice].")
@click.option("--reporter", multiple=True, default=("terminal",), show_default=True,
              help="Reporter plugin(s) for the new run.")
def ensemble(run_dirs, out, name, tta, reporter):
    """Average the models of finished runs into one model, written as a new run and scored on
    their test images: what btk run --ensemble N does after training its members.

    The runs must have the same data, task, classes and image preparation and the same test
    images. The ensemble's model.keras is plain Keras (one input, each member a layer, the mean
    of their probabilities); predict, evaluate, explain, robustness and report treat it as one
    model. A temperature is fitted only when every run held out the same validation images
    (members of one --ensemble do; runs with different seeds do not).

    \b
    Example:
      btk ensemble runs/*-seed101 runs/*-seed102 runs/*-seed103 --name three-seeds
    """
    from btk.ensemble import combine
    from btk.plugins import get_host
    from btk.render import out_console, written
    from btk.render.progress import RichFeedback
    from btk.render.tables import render_ensemble
    from btk.runs import load_run

    runs = [load_run(p) for p in run_dirs]
    host = get_host()
    reporters = [host.reporters.get(r) for r in reporter]
    console = out_console()
    result = combine(runs, Path(out) if out else runs[0].path.parent, host, RichFeedback(console), name, tta)
    for rep in reporters:
        rep.report(result, console)
    render_ensemble(result, console)
    written(console, "ensemble written to", result.path)


@cli.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--reporter", multiple=True, help="Reporter plugin(s) for each run [terminal for one run].")
@click.option("--html", "html_path", type=click.Path(path_type=Path),
              help="Also write one self-contained HTML report here.")
def report(paths, reporter, html_path):
    """Report finished runs without re-running them.

    PATHS are run directories, suite directories (their runs are included) or evaluation
    directories (`btk evaluate`). One run: the full terminal report. Several: one comparison
    table (a row per run and test condition, the best of each column in bold) and McNemar's test
    for runs on the same test images. A run's evaluations are shown beside its own test metrics.
    Runs that differ only in their seed (a `--seeds` plan, or separate runs such as a job
    array's) also get the mean and range of each metric over the seeds. A directory that is not
    a complete run is named in one line and skipped.

    \b
    Examples:
      btk report runs/20261127-101500-multiclass
      btk report runs/20261127-101500-multiclass/evaluations/*
      btk report runs/* --html report.html
      btk report OUT/*-multiclass-seed*       # separate runs over seeds: mean and range
    """
    from btk.compare import best_by_column, evaluation_groups, gather_runs, paired_tests, run_rows
    from btk.plugins import get_host
    from btk.render import out_console, warn_lines, written
    from btk.render.tables import failed_lines, render_comparison, render_suite_aggregate, render_suite_table
    from btk.suite import seed_summary

    console = out_console()
    host = get_host()
    reporters = [host.reporters.get(r) for r in reporter]
    html_writer = host.reporters.get("html").write if html_path else None
    runs, suites, skipped = gather_runs(list(paths))
    warn_lines(skipped, prefix="btk: skipped: ")
    if not runs:
        raise BtkError("no complete run to report")
    in_suites = {name for info in suites for name in info.get("runs", {}).values()}
    over_seeds = seed_summary([r for r in runs if r.path.name not in in_suites])
    for info in suites:
        render_suite_table(info["table"], console, f"suite '{info['suite']}'")
        if info.get("aggregate"):
            render_suite_aggregate(info["aggregate"], console, f"suite '{info['suite']}' over seeds "
                                   f"{', '.join(map(str, info.get('seeds', [])))}: mean (lowest-highest)")
        warn_lines(failed_lines(info.get("failed", [])), prefix=f"btk: suite '{info['suite']}': ")
    if over_seeds is not None:
        render_suite_aggregate(over_seeds["aggregate"], console, "runs that differ only in their seed (seeds "
                               f"{', '.join(map(str, over_seeds['seeds']))}): mean (lowest-highest)")
        suites = [*suites, over_seeds]
    if not reporters and len(runs) == 1 and not suites:
        reporters = [host.reporters.get("terminal")]
    for rep in reporters:
        for run_ in runs:
            rep.report(run_, console)
    if len(runs) > 1:
        rows = run_rows(runs)
        render_comparison(rows, best_by_column(rows), paired_tests(runs), console)
    groups, unreadable = evaluation_groups(runs)
    warn_lines(unreadable, prefix="btk: skipped: ")
    for group in groups:
        rows = run_rows(group)
        tests = [t for t in paired_tests(group) if t["a"] == group[0].name]
        render_comparison(rows, best_by_column(rows), tests, console,
                          title=f"{group[0].name}: its own test images and {len(group) - 1} evaluation(s)")
    if html_writer:
        html_writer(runs, html_path, suites)
        written(console, "HTML report written to", html_path)


@cli.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--data", type=click.Path(path_type=Path), required=True, help="The labelled dataset to evaluate on.")
@click.option("--reader", help="Reader plugin for --data [the run's].")
@click.option("--reader-option", "-R", multiple=True, metavar="KEY=VALUE",
              help="Reader-specific option; repeatable [the run's, with the run's reader].")
@click.option("--split", help="Split of --data: Testing, Training or all [Testing if the data has one, else all].")
@click.option("--map", "class_map", multiple=True, metavar="SRC=DST",
              help="Rename the data's class SRC to the run's class DST; repeatable.")
@click.option("--degrade", multiple=True, metavar="SPEC",
              help="Also evaluate on images degraded by SPEC (e.g. blur@3); repeatable.")
@click.option("--duplicate-threshold", type=click.FloatRange(0, 1),
              help="Near-duplicate score for the copy check against the run's training images; 0 turns it off "
                   "[the run's].")
@click.option("--out", type=click.Path(path_type=Path),
              help="Parent folder of the evaluation directory [RUN_DIR/evaluations].")
@click.option("--name", default="", help="Name in the evaluation directory's name [the data folder and split].")
@click.option("--reporter", multiple=True, default=("terminal",), show_default=True,
              help="Reporter plugin(s) for the evaluation; repeatable.")
@click.option("--strict", is_flag=True, help="Stop at the first unreadable image instead of skipping it.")
@_scoring_options()
def evaluate(run_dir, data, reader, reader_option, split, class_map, degrade, duplicate_threshold, out, name,
             reporter, strict, tta, devices):
    """Evaluate a finished run on another labelled dataset (external validation).

    The images are read as the run read its own (image size, channels, crop, intensity,
    scaling; tumour vs none for a binary run) and scored with every metric a run has, clean
    and under each --degrade. Images with an exact or near copy among the run's training
    images are found and scored apart. The evaluation directory (run format, written
    atomically) goes into the run's evaluations/ folder; `btk report` shows it beside the
    run's own test metrics, with McNemar's test where the images are the same.

    \b
    Examples:
      btk evaluate runs/20261127-101500-multiclass --data DATA/sartaj
      btk evaluate runs/20261127-101500-multiclass --data DATA/other --split all \\
          --map glioma=glioma_tumor --map meningioma=meningioma_tumor \\
          --map notumor=no_tumor --map pituitary=pituitary_tumor --degrade blur@3
    """
    import time

    from btk.classmap import parse_class_map
    from btk.compare import best_by_column, paired_tests, run_rows
    from btk.evaluate import default_destination, evaluate_run, plan_evaluation, write_evaluation
    from btk.plugins import get_host
    from btk.render import out_console, written
    from btk.render.progress import RichFeedback
    from btk.render.tables import render_comparison

    t_start = time.perf_counter()
    host = get_host()
    reporters = [host.reporters.get(r) for r in reporter]
    plan = plan_evaluation(run_dir, data, host, reader, _pairs(reader_option, "reader option"), split,
                           parse_class_map(class_map), degrade, duplicate_threshold, strict, tta, devices)
    console = out_console()
    evaluation = evaluate_run(plan, host, RichFeedback(console))
    destination = default_destination(plan, evaluation.split, out, name)
    result = write_evaluation(destination, evaluation, time.perf_counter() - t_start)
    if destination.parent == plan.run.path / "evaluations":  # the run's card lists its evaluations
        from btk.model_card import write_card

        write_card(plan.run)
    for rep in reporters:
        rep.report(result, console)
    rows = run_rows([plan.run, result])
    render_comparison(rows, best_by_column(rows), paired_tests([plan.run, result]), console,
                      title=f"{plan.run.name}: its own test images and this evaluation")
    written(console, "evaluation written to", result.path)


@cli.command()
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(path_type=Path))
def card(run_dirs):
    """Write each run's MODEL_CARD.md again: what the model is for and not for, its data,
    training, metrics with intervals, calibration, robustness, explanations, external
    evaluations and known limitations, from the run's own files. `btk run` writes the card;
    run this after `btk robustness`, `btk evaluate` or `btk explain` added to it.

    \b
    Example:
      btk card runs/20261127-101500-multiclass
    """
    from btk.model_card import write_card
    from btk.render import out_console, written
    from btk.runs import load_run

    console = out_console()
    for path in run_dirs:
        run_ = load_run(path)
        if run_.is_evaluation:
            raise BtkError(f"{run_.path} is an evaluation: its run has the model card")
        written(console, "model card written to", write_card(run_))


@cli.command()
@click.option("--data", type=click.Path(path_type=Path), required=True, help="The dataset to audit.")
@click.option("--reader", default="folder", show_default=True, help="Reader plugin for --data.")
@click.option("--reader-option", "-R", multiple=True, metavar="KEY=VALUE", help="Reader-specific option; repeatable.")
@click.option("--against", type=click.Path(path_type=Path), help="Another dataset to look for copies in.")
@click.option("--against-reader", help="Reader for --against [same as --reader].")
@click.option("--map", "class_map", multiple=True, metavar="SRC=DST",
              help="Rename --against's class SRC to --data's class DST before labels are compared; repeatable.")
@click.option("--threshold", type=click.FloatRange(0.5, 1.0), default=0.95, show_default=True,
              help="Near-duplicate score (shift-tolerant normalised correlation of 64 px thumbnails).")
@click.option("--pairs", "pairs_out", type=click.Path(path_type=Path),
              help="Write every pair to this .csv or .json file.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON instead of tables.")
def audit(data, reader, reader_option, against, against_reader, class_map, threshold, pairs_out, as_json):
    """Audit a dataset: class counts, image sizes, unreadable files, and exact and
    near-duplicate images within splits, between Testing and Training, and against another
    dataset, with copies whose labels disagree. Labels are compared across datasets only when
    their class names match (after --map); otherwise the copies are still found and reported.

    \b
    Examples:
      btk audit --data DATA/sartaj --pairs pairs.csv
      btk audit --data DATA/sartaj --against DATA/other --map notumor=no_tumor --map glioma=glioma_tumor
    """
    import json

    from btk.audit import audit_paths, write_pairs
    from btk.classmap import parse_class_map
    from btk.plugins import get_host
    from btk.render import err_console, out_console, written
    from btk.render.progress import RichFeedback
    from btk.render.tables import render_audit

    mapping = parse_class_map(class_map)
    if mapping and not against:
        raise BtkError("--map renames --against's classes: give --against too")
    host = get_host()
    main_reader = host.readers.get(reader)
    other_reader = host.readers.get(against_reader or reader) if against else None
    result = audit_paths(data, main_reader, _pairs(reader_option, "reader option"), against, other_reader, threshold,
                         RichFeedback(err_console(quiet=as_json)), mapping)
    if pairs_out:
        write_pairs(result, pairs_out)
    if as_json:
        click.echo(json.dumps(result.summary(), indent=1))
        return
    console = out_console()
    render_audit(result.summary(), console)
    if pairs_out:
        written(console, f"{len(result.pairs)} pairs written to", pairs_out)


@cli.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("--reader", help="Reader for PATHS [recognised from each path: DICOM, NIfTI, image].")
@click.option("--reader-option", "-R", multiple=True, metavar="KEY=VALUE", help="Reader-specific option; repeatable.")
@click.option("--slices", default="all", show_default=True, help="Slices of a series or volume: middle, all, every:N.")
@click.option("--json", "as_json", is_flag=True, help="Print the predictions as a JSON list, an object per row.")
@click.option("--out", "out_path", type=click.Path(path_type=Path), metavar="FILE.csv|FILE.jsonl",
              help="Write the rows to this CSV or JSON-lines file as they come (as FILE.partial until complete); "
                   "the terminal then shows a summary.")
@click.option("--batch-size", type=click.IntRange(1), default=128, show_default=True,
              help="Images per model call (from one file or many).")
@click.option("--min-confidence", type=click.FloatRange(0.0, 1.0), default=0.0, show_default=True, metavar="P",
              help="Answer 'uncertain' (probabilities still given) where the top calibrated probability is "
                   "below P; the run's report shows accuracy against coverage for such thresholds.")
@_scoring_options()
def predict(run_dir, paths, reader, reader_option, slices, as_json, out_path, batch_size, min_confidence, tta,
            devices):
    """Classify new scans with a trained run: JPEG/PNG files or folders of them (searched at any
    depth), DICOM files or series folders, NIfTI volumes. Uses the run's model and the image
    size, channels, framing, intensity normalisation and scaling it recorded.

    Each row names its input by the path given (a file inside a given folder: the folder's path
    joined with the file's). A series or volume gets a row per slice and one aggregated answer
    (mean probability). Files that cannot be read are listed at the end and the rest predicted.

    The probabilities are calibrated with the temperature the run fitted on its validation
    split (docs/calibration.md); the predicted class is the model's.

    \b
    Examples:
      btk predict runs/20261127-101500-multiclass scan.dcm brain.nii.gz photo.jpg
      btk predict runs/20261127-101500-multiclass new-scans/ --out predictions.csv
    """
    from contextlib import ExitStack, closing

    from btk.distribute import check_devices
    from btk.plugins import get_host
    from btk.predict import PredictionTally, predict_stream
    from btk.predict_inputs import gather_inputs
    from btk.predict_output import JsonList, PredictionFile, out_kind
    from btk.render import line, out_console, warn_lines, written
    from btk.render.progress import stderr_feedback
    from btk.render.tables import PredictionTable, render_prediction_summary
    from btk.runs import load_run

    if out_path is not None:
        out_kind(out_path)
    options = _pairs(reader_option, "reader option")
    check_devices(devices)
    run_ = load_run(run_dir)
    inputs = gather_inputs(paths, get_host(), run_.config["recipe"], reader, options, slices)
    console = out_console()
    tally = PredictionTally()
    with ExitStack() as stack:
        sinks: list[Any] = []
        if out_path is not None:
            sinks.append(stack.enter_context(PredictionFile(out_path, run_.classes)))
        if as_json:
            sinks.append(JsonList(lambda text: click.echo(text, nl=False)))
        elif out_path is None:
            slices = any("slices" in getattr(inp.reader, "options", ()) for inp in inputs)
            sinks.append(PredictionTable(f"predictions of {run_.name}", run_.classes, console, slices))
        stream = stack.enter_context(closing(predict_stream(run_, inputs, stderr_feedback(), batch_size, tally,
                                                            min_confidence=min_confidence, tta=tta,
                                                            devices=devices)))
        for prediction in stream:
            for sink in sinks:
                sink.write(prediction)
        warn_lines([f"{source}: {reason}" for source, reason in tally.skipped], prefix="btk: skipped ")
        if tally.skipped:
            warn_lines([f"{len(tally.skipped)} input(s) could not be read"], prefix="btk: ")
        if not tally.images:
            raise BtkError("nothing could be read to predict")
        for sink in sinks:
            if not isinstance(sink, PredictionFile):
                sink.close()
    if not as_json:
        render_prediction_summary(tally.answers, tally.images, console)
        if out_path is None and sinks[0].printed > sinks[0].chunk:
            line(console, "(--out FILE.csv or FILE.jsonl keeps the rows in a file)")
    if out_path is not None and not as_json:
        written(console, f"{sinks[0].rows:,} rows written to", out_path)



@cli.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=Path("explain"), show_default=True,
              help="Folder for the heat-map PNGs, grid.png, explain.json and explain.csv.")
@click.option("--method", type=click.Choice(["gradcam", "occlusion"]), default="gradcam", show_default=True,
              help="Grad-CAM (last convolutional layer) or occlusion (a black square moved over the image).")
@click.option("--reader", help="Reader for PATHS [recognised from each path: DICOM, NIfTI, image].")
def explain(run_dir, paths, out_dir, method, reader):
    """Show what drove each prediction: a heat map over the image as the network saw it (after
    the run's crop and resize), one PNG per image and a grid of all, and the share of each map
    outside the head (a high share: the model looks at the background, not the anatomy).

    Grad-CAM needs a convolutional layer and the TensorFlow backend; otherwise occlusion is
    used, with a note. A series or volume is explained by its middle slice.

    \b
    Examples:
      btk explain runs/20261127-101500-multiclass scan1.jpg scan2.jpg --out explain/
      btk explain runs/20261127-101500-multiclass new-scans/ --method occlusion
    """
    import shutil

    import numpy as np

    from btk.explain import explain_images, read_network_images, write_outputs
    from btk.plugins import get_host
    from btk.render import out_console, warn_lines, written
    from btk.render.tables import render_explanations
    from btk.runs import load_run

    run_ = load_run(run_dir)
    host = get_host()
    images, skipped = read_network_images(run_, paths, host, reader)
    warn_lines([f"{source}: {reason}" for source, reason in skipped], prefix="btk: skipped ")
    if not images:
        raise BtkError("nothing could be read to explain")
    recipe = run_.config["recipe"]
    try:  # a model plugin may name the layer Grad-CAM should use
        layer_name = host.models.get(run_.config["config"]["model"]).gradcam_layer
    except (BtkError, KeyError, AttributeError):
        layer_name = None
    classes = run_.config.get("trained_classes") or run_.classes
    result = explain_images(run_.load_model(), np.stack([im for _, im in images]), [n for n, _ in images], classes,
                            recipe["scale"], recipe.get("intensity", "none"), method, layer_name)
    write_outputs(result, out_dir)
    if not run_.is_evaluation:  # the run keeps the summary of its latest explanations, for its model card
        from btk.model_card import write_card

        shutil.copyfile(Path(out_dir) / "explain.json", run_.path / "explain.json")
        write_card(run_)
    console = out_console()
    render_explanations([e.record() for e in result], console, f"what drove the predictions of {run_.name}")
    written(console, f"{len(result)} heat map(s), grid.png and explain.json written to", out_dir)

@cli.command()
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
                   "Testing: for choosing a recipe); validation results go to robustness-validation.json.")
@_scoring_options()
def robustness(run_dirs, baseline, degraders, plot_path, also, subset, tta, devices):
    """Evaluate trained runs on their test images under every degrader at every severity level,
    and score them as the corruption benchmarks do: corruption error (CE), mean CE and relative
    mCE against a baseline run. Results go to each run's robustness.json.

    \b
    Example:
      btk robustness runs/seed-cnn runs/augmented --baseline runs/seed-cnn
      btk robustness runs/A runs/B --also blur@report --also resolution@report
      btk robustness runs/A --subset validation       # choose recipes without Testing
    """
    from btk.degraders import resolve_degradations
    from btk.distribute import check_devices
    from btk.plugins import get_host
    from btk.render import line, out_console, written
    from btk.render.plots import robustness_plot
    from btk.render.progress import RichFeedback
    from btk.render.tables import render_robustness, render_robustness_extra
    from btk.robustness import compare_runs
    from btk.runs import load_run

    host = get_host()
    names = [n.strip() for n in degraders.split(",")] if degraders else None
    extra = resolve_degradations(host, list(also))
    check_devices(devices)
    runs = [load_run(p) for p in run_dirs]
    base_run = load_run(baseline) if baseline else runs[0]
    console = out_console()
    compared = compare_runs(runs, base_run, host, names, extra, RichFeedback(console), subset=subset, tta=tta,
                            devices=devices)
    for item in compared:
        render_robustness(item.run.name, item.result, item.scores, console)
        if item.extra_losses:
            render_robustness_extra(item.run.name, base_run.name, item.extra_losses, console, subset)
        mce, rel = item.scores["mce"], item.scores["relative_mce"]
        line(console, f"mCE {'-' if mce is None else format(mce, '.3f')}, relative mCE "
                      f"{'-' if rel is None else format(rel, '.3f')} against {base_run.name}")
    out = plot_path or runs[0].path / ("robustness.png" if subset == "test" else f"robustness-{subset}.png")
    robustness_plot([item.result for item in compared], out)
    written(console, "plot:", out)
    from btk.model_card import write_card

    for item in compared:  # each run's card shows its sweep
        if not item.run.is_evaluation and subset == "test":
            write_card(item.run)


@cli.command()
@click.option("--data", type=click.Path(path_type=Path), help="Images to degrade (read with --reader).")
@click.option("--reader", default="folder", show_default=True, help="Reader for --data.")
@click.option("--reader-option", "-R", multiple=True, metavar="KEY=VALUE", help="Reader-specific option; repeatable.")
@click.option("--degrader", "degrader_name", help="Degrader name.")
@click.option("--severity", type=click.IntRange(1), help="Severity level (1..the degrader's number of levels).")
@click.option("--params", "param_text", metavar="KEY=VALUE,...", help="Explicit parameters instead of a level.")
@click.option("--out", type=click.Path(path_type=Path), help="Folder for the degraded copies (PNG, same layout).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the random degraders.")
@click.option("--preview", type=click.Path(path_type=Path), help="Draw one image under every degrader and level here.")
def degrade(data, reader, reader_option, degrader_name, severity, param_text, out, seed, preview):
    """Write degraded copies of a dataset, or a preview grid of every degrader and level.

    \b
    Examples:
      btk degrade --data DATA/sartaj --degrader blur --severity 3 --out sartaj-blur3
      btk degrade --data DATA/sartaj --degrader blur --params ksize=9,sigma=2 --out sartaj-blur
      btk degrade --data DATA/sartaj --preview degraders.png
    """
    import cv2

    from btk.degraded_copies import first_image, write_degraded_copies
    from btk.degraders import resolve_degradations
    from btk.plugins import get_host
    from btk.render.images import degrader_preview

    host = get_host()
    if not preview and not (degrader_name and out):
        raise BtkError("give --degrader NAME (with --severity or --params) and --out, or --preview PATH")
    if severity is not None and param_text:
        raise BtkError("give --severity LEVEL or --params KEY=VALUE,..., not both")
    deg = None
    if degrader_name:
        spec = f"{degrader_name}@{severity}" if severity else degrader_name + (f":{param_text}" if param_text else "")
        (deg,) = resolve_degradations(host, [spec])
    if out is not None and out.exists() and any(out.iterdir()):
        raise BtkError(f"output folder is not empty: {out}")
    options = _pairs(reader_option, "reader option")
    reader_ = host.readers.get(reader)
    if preview:
        degraders = [d for d in host.degraders if d.levels]
        cv2.imwrite(str(preview), degrader_preview(first_image(reader_, data, options), degraders, seed))
        click.echo(f"preview of {len(degraders)} degraders written to {preview}")
    if deg is not None and out is not None:
        done = write_degraded_copies(reader_, data, options, deg, out, seed)
        for source, reason in done.skipped:
            click.echo(f"skipped {source}: {reason}", err=True)
        click.echo(f"{done.written} images degraded by {deg.label} written to {out}"
                   + (f"; {len(done.skipped)} skipped" if done.skipped else ""))


@cli.command()
@click.option("--clear", is_flag=True, help="Remove every cached dataset.")
def cache(clear):
    """List (or clear) the decode cache: datasets already read and resized, which the next
    run with the same files and image options maps instead of decoding again. The folder is
    $BTK_CACHE_DIR (default ~/.cache/btk); BTK_CACHE_DIR=off turns the cache off."""
    from btk import cache as decode_cache
    from btk.render import line, out_console
    from btk.render.tables import render_cache

    console = out_console()
    root = decode_cache.cache_root()
    if root is None:
        line(console, "the decode cache is off (BTK_CACHE_DIR=off)")
        return
    if clear:
        line(console, f"removed {decode_cache.clear()} cached dataset(s) from {root}")
        return
    render_cache(root, decode_cache.entries(), console)


@cli.command()
def plugins():
    """List the plugins, where each came from, and what each registered."""
    from btk.plugins import describe_plugins, get_host
    from btk.render import out_console
    from btk.render.tables import render_plugins

    host = get_host()
    render_plugins(describe_plugins(host), host.problems, out_console())


def _add_plugin_commands(host: Any = None) -> None:
    """Give ``cli`` the commands of ``host``'s plugins (default: the process's plugin host) and
    record in ``host.commands`` which plugin added which. Nothing happens if ``cli`` has them
    already; the commands of an earlier host's plugins are taken away first (a command one of them
    replaced comes back)."""
    from btk.plugins import get_host

    host = host if host is not None else get_host()
    previous = BtkGroup._plugin_commands_host
    if previous is host:
        return
    if previous is not None:
        for name in {n for names in previous.commands.values() for n in names}:
            cli.commands.pop(name, None)
            if name in BtkGroup._displaced:
                cli.commands[name] = BtkGroup._displaced.pop(name)
    BtkGroup._plugin_commands_host = host
    host.commands.clear()
    for impl in host.pm.hook.btk_register_commands.get_hookimpls():
        before = dict(cli.commands)
        try:
            impl.function(cli=cli)
        except Exception as exc:
            host.problems.append(f"plugin '{impl.plugin_name}' failed in btk_register_commands: "
                                 f"{type(exc).__name__}: {exc}")
        added = sorted(n for n, command in cli.commands.items() if before.get(n) is not command)
        from_plugins = {n for names in host.commands.values() for n in names}
        for name in added:
            if name in before and name not in from_plugins:
                BtkGroup._displaced.setdefault(name, before[name])
        if added:
            host.commands.setdefault(impl.plugin_name, []).extend(added)


def main() -> None:
    """Entry point of the ``btk`` script."""
    import gc

    from btk import quiet

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ log lines after its import
    quiet.install()  # its start-up lines at the import, other libraries' warnings (shown with --debug)
    try:
        cli(prog_name="btk")
    finally:
        # The process ends here: the interpreter's last garbage collection would walk TensorFlow's
        # object graph for about a second (measured: exit after `import keras` 1.0 s, 0.09 s frozen).
        # Files are closed by then (every writer closes its own).
        gc.freeze()
