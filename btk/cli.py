"""The ``btk`` command line. Each command parses, calls the library and renders with rich.

Heavy libraries (keras, the ML backend, OpenCV) are imported only inside commands, so
``btk --help`` answers at once.
"""

from __future__ import annotations

import os
import sys
import traceback
from pathlib import Path
from typing import Any

import click

from btk import __version__
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

Degradations are NAME or NAME:KEY=VALUE,...; e.g. blur:ksize=9,sigma=2 or resolution:factor=3.
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


def _err_console():
    """The console for warnings and skipped inputs: one line each, never wrapped at the width."""
    from rich.console import Console

    return Console(stderr=True, soft_wrap=True)


def _show_problems() -> None:
    from btk.plugins import get_host

    problems = get_host().problems
    if problems:
        console = _err_console()
        for line in problems:
            console.print(f"[yellow]btk: warning: {line}[/]", highlight=False)


class BtkGroup(click.Group):
    """Turns :class:`BtkError` into one line and a non-zero exit; other errors too, unless debugging.
    Adds the plugins' commands when commands are looked up, again whenever the plugin host is
    rebuilt (:func:`btk.plugins.reset`, :func:`btk.plugins.register_plugin`)."""

    _plugin_commands_host: Any = None  # the plugin host whose plugins' commands the group holds
    _displaced: dict[str, click.Command] = {}  # core commands a plugin command replaced, by name

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
@click.option("--debug", is_flag=True, help="Show tracebacks (same as BTK_DEBUG=1).")
def cli(debug: bool) -> None:
    """btk: classify medical images (brain MRI first) with plugins for readers, degraders,
    models and reporters.

    Start with `btk run` (a built-in synthetic dataset) or `btk run --data FOLDER`.
    """
    if debug:
        os.environ["BTK_DEBUG"] = "1"
    _show_problems()


@cli.command()
@click.option("--data", type=click.Path(path_type=Path), help="Data path for the reader. Without it: the built-in synthetic dataset.")
@click.option("--reader", help="Reader plugin (default: folder with --data, synthetic without).")
@click.option("--reader-option", "-R", multiple=True, metavar="KEY=VALUE", help="Reader-specific option; repeatable.")
@click.option("--task", type=click.Choice(["multiclass", "binary"]), default="multiclass", show_default=True,
              help="All classes, or tumour vs the negative class.")
@click.option("--negative-class", default="no_tumor", show_default=True, help="The 'no finding' class for --task binary.")
@click.option("--binary-via-classes/--binary-direct", "binary_via_classes", default=None,
              help="--task binary: train on every class and read P(tumour) = 1 - P(no tumour), so each tumour "
                   "type stays its own target; or train on the two labels [fast: via classes; btk, report: direct].")
@click.option("--preset",
              help="Training recipe: fast (res-cnn at 128 px: minutes on a laptop), btk (the report's CNN made "
                   "safe) or report (the report exactly: raw pixels) [fast; btk for --suite and the demo].")
@click.option("--model", help="Model plugin [the preset's: seed-cnn, res-cnn for fast; small-cnn on the synthetic data].")
@click.option("--model-option", "-M", multiple=True, metavar="KEY=VALUE", help="Model-specific option; repeatable.")
@click.option("--degrade", "test_degrade", multiple=True, metavar="SPEC",
              help="Also evaluate on test images degraded by SPEC; repeatable.")
@click.option("--train-degrade", multiple=True, metavar="SPEC", help="Train on images degraded by SPEC.")
@click.option("--augment-degraders", metavar="NAMES",
              help="Augment training on the fly: comma-separated degraders (or 'all'), a random one at a random "
                   "level 1-5 for half the images.")
@click.option("--augment/--no-augment", "augment_images", default=None,
              help="On-the-fly flips, small rotations, scalings and intensity changes [fast: on].")
@click.option("--schedule", type=click.Choice(["constant", "cosine"]), help="Learning-rate schedule [fast: cosine].")
@click.option("--patience", type=click.IntRange(0),
              help="Stop after N epochs without a better validation accuracy; 0 never [fast: 8].")
@click.option("--monitor-after", type=click.FloatRange(0, 1, max_open=True), metavar="SHARE",
              help="Share of the epochs to train before validation accuracy counts for the best weights and early "
                   "stopping [fast: 0.5: while the learning rate is high, validation accuracy swings; btk: 0].")
@click.option("--crop", type=click.Choice(["none", "head"]),
              help="Crop each image to a square around the head before resizing, so every source is framed "
                   "alike [fast: head; btk and report: none].")
@click.option("--intensity", type=click.Choice(["none", "stretch", "equalize"]),
              help="Normalise each image's intensities at the network's input: stretch (the head's 99th percentile "
                   "becomes white) or equalize (histogram equalisation), so sources windowed differently look "
                   "alike [fast: stretch; btk and report: none].")
@click.option("--micro-batch", type=click.IntRange(1),
              help="Compute each batch in micro-batches of N (gradients accumulated): the same updates, less memory "
                   "[auto: on a CPU, small enough to keep a step's activations under 512 MiB, for networks without "
                   "batch norm; whole batches on accelerators]. N = the batch size: whole batches.")
@click.option("--precision", type=click.Choice(["auto", "float32", "mixed_bfloat16", "mixed_float16"]),
              help="Compute precision; auto: what measured fastest on this kind of device [auto].")
@click.option("--resume", "resume_dir", type=click.Path(path_type=Path),
              help="Continue an interrupted run from its last epoch: its .ID.partial folder under --out.")
@click.option("--suite", help="Run a plan of experiments instead of one run (report: the report's four).")
@click.option("--epochs", type=click.IntRange(1), help="Epochs [fast: 30, btk and report: 60; 8 on the synthetic data].")
@click.option("--batch-size", type=click.IntRange(1), help="Batch size [preset: 32].")
@click.option("--image-size", type=click.IntRange(8, 4096), help="Square image side in pixels [fast: 128, btk and report: 256; 96 synthetic].")
@click.option("--channels", type=click.Choice(["1", "3"]), help="1 grayscale, 3 as cv2.imread reads [fast: 1, btk and report: 3].")
@click.option("--val-fraction", type=click.FloatRange(0, 1, min_open=True, max_open=True), help="Validation share of the training data [0.1].")
@click.option("--learning-rate", type=click.FloatRange(0, min_open=True), help="Adam's (peak) learning rate [fast: 2e-3, btk: 1e-4, report: Keras default].")
@click.option("--seed", type=int, default=101, show_default=True, help="Seed for splits, initialisation and shuffling.")
@click.option("--limit-train", type=click.IntRange(0), default=0, help="Use at most N training images (0 = all).")
@click.option("--limit-test", type=click.IntRange(0), default=0, help="Use at most N test images (0 = all).")
@click.option("--out", type=click.Path(path_type=Path), default=Path("runs"), show_default=True, help="Parent folder of run directories.")
@click.option("--name", default="", help="Name in the run directory's name.")
@click.option("--reporter", multiple=True, default=("terminal",), show_default=True, help="Reporter plugin(s) for the finished run.")
@click.option("--strict", is_flag=True, help="Stop at the first unreadable image instead of skipping it.")
@click.option("--duplicate-threshold", type=click.FloatRange(0, 1), default=0.95, show_default=True,
              help="Near-copy score: copies stay on one side of the splits btk makes, and test images with a "
                   "copy in training are also reported apart. 0 turns this off.")
def run(data, reader, reader_option, task, negative_class, binary_via_classes, preset, model, model_option, test_degrade, train_degrade,
        suite, epochs, batch_size, image_size, channels, val_fraction, learning_rate, seed, limit_train, limit_test,
        out, name, reporter, strict, duplicate_threshold, augment_degraders, augment_images, schedule, patience,
        monitor_after, crop, intensity, micro_batch, precision, resume_dir):
    """Train and evaluate a model; write a run directory (config, split, history, model,
    predictions, metrics) and report it."""
    from rich.console import Console

    from btk.config import DEMO_OVERRIDES, RunConfig, get_recipe
    from btk.plugins import get_host

    host = get_host()
    reporters = [host.reporters.get(r) for r in reporter]
    if resume_dir is not None:
        from rich.console import Console

        from btk.pipeline import resume_config, run_experiment

        config, run_id = resume_config(resume_dir)
        console = Console()
        result = run_experiment(config, Path(resume_dir).parent, console, host, run_id=run_id)
        for rep in reporters:
            rep.report(result, console)
        console.print(f"run written to [bold]{result.path}[/]")
        return
    augment: tuple[str, ...] = ()
    if augment_degraders:
        augment = tuple(d.name for d in host.degraders if d.levels) if augment_degraders == "all" else tuple(
            n.strip() for n in augment_degraders.split(",") if n.strip())
        from btk.augment import make_augmenter

        make_augmenter([host.degraders.get(n) for n in augment])  # validates names and levels
    overrides = dict(epochs=epochs, batch_size=batch_size, image_size=image_size,
                     channels=int(channels) if channels else None, val_fraction=val_fraction,
                     learning_rate=learning_rate, augment_images=augment_images, schedule=schedule, patience=patience,
                     monitor_after=monitor_after, crop=crop, intensity=intensity, binary_via_classes=binary_via_classes,
                     precision=precision, micro_batch=micro_batch)
    if data is None and reader is None:
        reader = "synthetic"
        model = model or "small-cnn"
        preset = preset or "btk"
        overrides = {**DEMO_OVERRIDES, **{k: v for k, v in overrides.items() if v is not None}}
    recipe = get_recipe(preset or ("btk" if suite else "fast"), **overrides)
    config = RunConfig(recipe=recipe, reader=reader or "folder", data=str(data) if data else None,
                       reader_options=_pairs(reader_option, "reader option"), task=task,
                       negative_class=negative_class, model=model or "", model_options=_pairs(model_option, "model option"),
                       train_degrade=tuple(train_degrade), test_degrade=tuple(test_degrade), seed=seed,
                       limit_train=limit_train, limit_test=limit_test, strict=strict, name=name,
                       duplicate_threshold=duplicate_threshold, augment=augment)
    console = Console()
    if suite:
        from btk.suite import run_suite

        folder = run_suite(suite, config, out, console)
        console.print(f"suite written to [bold]{folder}[/]")
        return
    from btk.pipeline import run_experiment

    result = run_experiment(config, out, console, host)
    for rep in reporters:
        rep.report(result, console)
    console.print(f"run written to [bold]{result.path}[/]")
    if result.metrics["collapsed"]:
        console.print("[bold red]WARNING: this run collapsed (one class predicted for every test image).[/]")


run.epilog = EPILOG_RUN


@cli.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--reporter", multiple=True, help="Reporter plugin(s) for each run [terminal for one run].")
@click.option("--html", "html_path", type=click.Path(path_type=Path), help="Also write one self-contained HTML report here.")
def report(paths, reporter, html_path):
    """Report finished runs without re-running them.

    PATHS are run directories or suite directories (their runs are included). One run: the full
    terminal report. Several: one comparison table (a row per run and test condition, the best
    of each column in bold) and McNemar's test for runs on the same test images. A directory
    that is not a complete run is named in one line and skipped.

    \b
    Examples:
      btk report runs/20261127-101500-multiclass
      btk report runs/* --html report.html
    """
    import json

    from rich.console import Console

    from btk.plugins import get_host
    from btk.runs import MARKER, load_run
    from btk.suite import render_suite_table

    console, err = Console(), _err_console()
    host = get_host()
    reporters = [host.reporters.get(r) for r in reporter]
    html_writer = host.reporters.get("html").write if html_path else None
    runs, suites = [], []
    for path in paths:
        if (path / "suite.json").exists():
            info = json.loads((path / "suite.json").read_text())
            suites.append(info)
            candidates = [path / name for name in info.get("runs", {}).values()]
        else:
            candidates = [path]
        for candidate in candidates:
            try:
                runs.append(load_run(candidate))
            except BtkError as exc:
                err.print(f"[yellow]btk: skipped: {exc}[/]", highlight=False)
    if not runs:
        raise BtkError("no complete run to report")
    for info in suites:
        render_suite_table(info["table"], console, f"suite '{info['suite']}'")
    if not reporters and len(runs) == 1 and not suites:
        reporters = [host.reporters.get("terminal")]
    for rep in reporters:
        for run_ in runs:
            rep.report(run_, console)
    if len(runs) > 1:
        render_comparison(runs, console)
    if html_writer:
        html_writer(runs, html_path, suites)
        console.print(f"HTML report written to [bold]{html_path}[/]")


def render_comparison(runs, console) -> None:
    """The comparison table of several runs and their paired tests."""
    from rich.table import Table

    from btk.compare import COLUMNS, best_by_column, paired_tests, run_rows

    rows = run_rows(runs)
    best = best_by_column(rows)
    table = Table(title=f"{len(runs)} runs (best of each column in bold)")
    for col in ("run", "task", "reader", "train degr.", "test", "acc", "bal. acc", "macro F1", "macro AUC", "ECE"):
        table.add_column(col, justify="right" if col in ("acc", "bal. acc", "macro F1", "macro AUC", "ECE") else "left",
                         overflow="fold")
    for r in rows:
        cells = []
        for c in COLUMNS:
            v = r[c]
            text = "-" if v is None else (f"{v:.3f}" if c == "ece" else f"{100 * v:.1f}")
            cells.append(f"[bold green]{text}[/]" if v is not None and v == best.get(c) else text)
        name = r["run"] + (" [red](COLLAPSED)[/]" if r["collapsed"] else "")
        table.add_row(name, r["task"], r["reader"], r["train_degrade"], r["test_condition"], *cells)
    console.print(table)
    for t in paired_tests(runs):
        console.print(f"McNemar (clean, {t['n']} images): {t['a']} vs {t['b']}: only A right {t['a_only']}, "
                      f"only B right {t['b_only']}, p = {t['p_value']:.4g}", highlight=False)


@cli.command()
@click.option("--data", type=click.Path(path_type=Path), required=True, help="The dataset to audit.")
@click.option("--reader", default="folder", show_default=True, help="Reader plugin for --data.")
@click.option("--reader-option", "-R", multiple=True, metavar="KEY=VALUE", help="Reader-specific option; repeatable.")
@click.option("--against", type=click.Path(path_type=Path), help="Another dataset to look for copies in.")
@click.option("--against-reader", help="Reader for --against [same as --reader].")
@click.option("--threshold", type=click.FloatRange(0.5, 1.0), default=0.95, show_default=True,
              help="Near-duplicate score (shift-tolerant normalised correlation of 64 px thumbnails).")
@click.option("--pairs", "pairs_out", type=click.Path(path_type=Path), help="Write every pair to this .csv or .json file.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON instead of tables.")
def audit(data, reader, reader_option, against, against_reader, threshold, pairs_out, as_json):
    """Audit a dataset: class counts, image sizes, unreadable files, and exact and
    near-duplicate images within splits, between Testing and Training, and against another
    dataset, with copies whose labels disagree.

    \b
    Example:
      btk audit --data DATA/sartaj --pairs pairs.csv
    """
    import json

    from rich.console import Console

    from btk.audit import audit as run_audit
    from btk.audit import read_image_set, write_pairs
    from btk.pipeline import _progress
    from btk.plugins import get_host

    host = get_host()
    console = Console()
    options = _pairs(reader_option, "reader option")
    main_reader = host.readers.get(reader)
    other_reader = host.readers.get(against_reader or reader) if against else None
    with _progress(Console(stderr=True, quiet=as_json)) as bar:
        task = bar.add_task(f"reading {data}", total=None, info="")
        main = read_image_set(Path(data).name, main_reader, data, options,
                              lambda d, t: bar.update(task, completed=d, total=t))
        other = None
        if against:
            task2 = bar.add_task(f"reading {against}", total=None, info="")
            other = read_image_set(Path(against).name, other_reader, against, options,
                                   lambda d, t: bar.update(task2, completed=d, total=t))
    result = run_audit(main, other, threshold)
    if pairs_out:
        write_pairs(result, pairs_out)
    if as_json:
        click.echo(json.dumps(result.summary(), indent=1))
    else:
        render_audit(result, console)
        if pairs_out:
            console.print(f"{len(result.pairs)} pairs written to [bold]{pairs_out}[/]")


def render_audit(result, console) -> None:
    """The audit as rich tables."""
    from rich.table import Table

    summary = result.summary()
    for name, info in summary["datasets"].items():
        table = Table(title=f"{name}: {info['images']} images")
        splits = list(info["class_counts"])
        classes = sorted({c for counts in info["class_counts"].values() for c in counts})
        table.add_column("class")
        for split in splits:
            table.add_column(split, justify="right")
        for c in classes:
            table.add_row(c, *[str(info["class_counts"][s].get(c, 0)) for s in splits])
        console.print(table)
        sizes = ", ".join(f"{k} ({v})" for k, v in list(info["sizes"].items())[:5])
        more = len(info["sizes"]) - 5
        console.print(f"sizes: {sizes}{f', and {more} more' if more > 0 else ''}; channels in the files: "
                      f"{info['channels']}; bit depth: {info['bit_depths']}")
        if info["unreadable"]:
            console.print(f"[yellow]{len(info['unreadable'])} unreadable file(s)[/], e.g. "
                          f"{info['unreadable'][0]['source']}: {info['unreadable'][0]['reason']}")
        else:
            console.print("unreadable files: none")
    pairs = Table(title=f"duplicate pairs (near: score >= {result.threshold})")
    for col in ("where", "exact pairs", "near pairs", "labels disagree"):
        pairs.add_column(col, justify="left" if col == "where" else "right")
    for scope, counts in summary["pairs"].items():
        pairs.add_row(scope, str(counts["exact"]), str(counts["near"]),
                      f"[bold red]{counts['labels_disagree']}[/]" if counts["labels_disagree"] else "0")
    console.print(pairs)
    for title, c in summary["copies"].items():
        console.print(f"[bold]{title}:[/] {c['exact_copy']} pixel-identical, {c['near_copy_only']} more near-copies "
                      f"({c['any_copy']} in all); {c['copy_with_other_label']} with a copy that carries another label")


@cli.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--reader", help="Reader for PATHS [recognised from each path: DICOM, NIfTI, image].")
@click.option("--reader-option", "-R", multiple=True, metavar="KEY=VALUE", help="Reader-specific option; repeatable.")
@click.option("--slices", default="all", show_default=True, help="Slices of a series or volume: middle, all, every:N.")
@click.option("--json", "as_json", is_flag=True, help="Print the predictions as JSON.")
def predict(run_dir, paths, reader, reader_option, slices, as_json):
    """Classify new scans with a trained run: JPEG/PNG files, DICOM files or series folders,
    NIfTI volumes. Uses the run's model and the image size, channels and scaling it recorded.
    A series or volume gets a row per slice and one aggregated answer (mean probability).

    \b
    Example:
      btk predict runs/20261127-101500-multiclass scan.dcm brain.nii.gz photo.jpg
    """
    import json

    from rich.console import Console
    from rich.table import Table

    from btk.plugins import get_host
    from btk.predict import predict_paths
    from btk.runs import load_run

    run_ = load_run(run_dir)
    results, skipped = predict_paths(run_, list(paths), get_host(), reader, _pairs(reader_option, "reader option"),
                                     slices)
    err = _err_console()
    for source, reason in skipped:
        err.print(f"[yellow]btk: skipped {source}: {reason}[/]", highlight=False)
    if as_json:
        click.echo(json.dumps([r.__dict__ for r in results], indent=1))
        return
    table = Table(title=f"predictions of {run_.name}")
    for col in ("input", "slice", "class", *run_.classes):
        table.add_column(col, justify="right" if col in run_.classes else "left", overflow="fold")
    for r in results:
        slice_ = f"all {r.aggregated_over} (mean)" if r.slice is None else str(r.slice)
        style = "bold" if r.slice is None else None
        table.add_row(r.source, slice_, r.predicted, *[f"{r.probabilities[c]:.3f}" for c in run_.classes], style=style)
    Console().print(table)
    if not results:
        raise BtkError("nothing could be read to predict")


@cli.command()
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--baseline", type=click.Path(path_type=Path), help="Run to score CE and mCE against [the first RUN_DIR].")
@click.option("--degraders", help="Comma-separated degraders [every degrader with severity levels].")
@click.option("--plot", "plot_path", type=click.Path(path_type=Path), help="Accuracy-against-severity plot [RUN/robustness.png].")
@click.option("--also", multiple=True, metavar="SPEC",
              help="Also evaluate this degradation (e.g. blur, the report's own setting); repeatable.")
def robustness(run_dirs, baseline, degraders, plot_path, also):
    """Evaluate trained runs on their test images under every degrader at severity 1..5, and
    score them as the corruption benchmarks do: corruption error (CE), mean CE and relative mCE
    against a baseline run. Results go to each run's robustness.json.

    \b
    Example:
      btk robustness runs/seed-cnn runs/augmented --baseline runs/seed-cnn
      btk robustness runs/A runs/B --also blur --also resolution   # + the report's two settings
    """
    import json

    from rich.console import Console
    from rich.table import Table

    from btk.plugins import get_host
    from btk.robustness import corruption_errors, plot, sweep
    from btk.runs import load_run

    host = get_host()
    names = [n.strip() for n in degraders.split(",")] if degraders else None
    for n in names or []:
        if not host.degraders.get(n).levels:
            raise BtkError(f"degrader '{n}' has no severity levels")
    from btk.pipeline import resolve_degradations

    extra = resolve_degradations(host, list(also))
    console = Console()
    runs = [load_run(p) for p in run_dirs]
    base_run = load_run(baseline) if baseline else runs[0]
    results = {}
    for run_ in ([base_run] if base_run.path not in [r.path for r in runs] else []) + runs:
        with console.status(f"sweeping {run_.name}") as status:
            results[run_.name] = sweep(run_, host, names, lambda what: status.update(f"{run_.name}: {what}"),
                                       extra=extra)
    base = results[base_run.name]
    for run_ in runs:
        res = results[run_.name]
        scores = corruption_errors(res, base)
        table = Table(title=f"{run_.name}: test accuracy (%) by severity; clean {100 * res['clean']:.1f}")
        for col in ("degrader", "1", "2", "3", "4", "5", "CE", "rel. CE"):
            table.add_column(col, justify="left" if col == "degrader" else "right")
        for name, accs in res["degraders"].items():
            rel = scores["relative_ce"].get(name)
            table.add_row(name, *[f"{100 * a:.1f}" for a in accs], f"{scores['ce'].get(name, float('nan')):.3f}",
                          "-" if rel is None else f"{rel:.3f}")
        console.print(table)
        if res.get("extra"):
            base_clean = base["clean"]
            extra_table = Table(title=f"{run_.name}: test accuracy (%) under the settings given with --also")
            for col in ("degradation", "accuracy", "loss", f"loss of {base_run.name}", "share of the baseline's loss"):
                extra_table.add_column(col, justify="left" if col == "degradation" else "right")
            for label, acc in res["extra"].items():
                loss, base_loss = res["clean"] - acc, base_clean - base["extra"][label]
                share = f"{loss / base_loss:.2f}" if base_loss > 1e-9 else "-"
                extra_table.add_row(label, f"{100 * acc:.1f}", f"{100 * loss:.1f}", f"{100 * base_loss:.1f}", share)
            console.print(extra_table)
        console.print(f"mCE {scores['mce']:.3f}, relative mCE "
                      f"{'-' if scores['relative_mce'] is None else format(scores['relative_mce'], '.3f')} "
                      f"against {base_run.name}")
        (run_.path / "robustness-scores.json").write_text(json.dumps(scores, indent=1) + "\n")
    out = plot_path or runs[0].path / "robustness.png"
    plot([results[r.name] for r in runs], out)
    console.print(f"plot: [bold]{out}[/]")


@cli.command()
@click.option("--data", type=click.Path(path_type=Path), help="Images to degrade (read with --reader).")
@click.option("--reader", default="folder", show_default=True, help="Reader for --data.")
@click.option("--reader-option", "-R", multiple=True, metavar="KEY=VALUE", help="Reader-specific option; repeatable.")
@click.option("--degrader", "degrader_name", help="Degrader name.")
@click.option("--severity", type=click.IntRange(1, 5), help="Severity level 1..5.")
@click.option("--params", "param_text", metavar="KEY=VALUE,...", help="Explicit parameters instead of a level.")
@click.option("--out", type=click.Path(path_type=Path), help="Folder for the degraded copies (PNG, same layout).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the random degraders.")
@click.option("--preview", type=click.Path(path_type=Path), help="Draw one image under every degrader and level here.")
def degrade(data, reader, reader_option, degrader_name, severity, param_text, out, seed, preview):
    """Write degraded copies of a dataset, or a preview grid of every degrader and level.

    \b
    Examples:
      btk degrade --data DATA/sartaj --degrader blur --severity 3 --out sartaj-blur3
      btk degrade --data DATA/sartaj --preview degraders.png
    """
    import cv2
    import numpy as np

    from btk.dataset import iter_entries
    from btk.degraders import Degradation
    from btk.pipeline import resolve_degradations
    from btk.plugins import get_host
    from btk.types import ReadOptions

    host = get_host()
    if not preview and not (degrader_name and out):
        raise BtkError("give --degrader NAME (with --severity or --params) and --out, or --preview PATH")
    deg = None
    if degrader_name:
        spec = f"{degrader_name}@{severity}" if severity else degrader_name + (f":{param_text}" if param_text else "")
        (deg,) = resolve_degradations(host, [spec])
    if out is not None and out.exists() and any(out.iterdir()):
        raise BtkError(f"output folder is not empty: {out}")
    extra = _pairs(reader_option, "reader option")
    if preview:
        first = next(iter_entries(host.readers.get(reader), data, ReadOptions(256, 3, extra)))
        if isinstance(first[1], str):
            raise BtkError(f"cannot read {first[0].source}: {first[1]}")
        image = first[1][0].image[None]
        rows = []
        for d in [d for d in host.degraders if d.levels]:
            tiles = [image[0]] + [Degradation(d, {}, lv).apply(image, seed)[0] for lv in range(1, len(d.levels) + 1)]
            tiles = [cv2.resize(t, (160, 160)) for t in tiles]
            label = np.zeros((160, 110, 3), np.uint8)
            cv2.putText(label, d.name, (4, 85), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (255, 255, 255), 1, cv2.LINE_AA)
            rows.append(np.hstack([label, *tiles]))
        header = np.zeros((30, rows[0].shape[1], 3), np.uint8)
        for k, text in enumerate(["clean"] + [f"level {lv}" for lv in range(1, 6)]):
            cv2.putText(header, text, (110 + 160 * k + 40, 21), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (255, 255, 255), 1,
                        cv2.LINE_AA)
        cv2.imwrite(str(preview), np.vstack([header, *rows]))
        click.echo(f"preview of {len(rows)} degraders written to {preview}")
    if deg is not None and out is not None:
        written = skipped = 0
        for entry, samples in iter_entries(host.readers.get(reader), data, ReadOptions(None, 3, extra)):
            if isinstance(samples, str):
                skipped += 1
                click.echo(f"skipped {entry.source}: {samples}", err=True)
                continue
            for k, sample in enumerate(samples):
                target = out / (Path(sample.source.split("[")[0]).with_suffix("").as_posix()
                                + (f"_{k}" if len(samples) > 1 else "") + ".png")
                target.parent.mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(target), deg.apply(sample.image[None], seed)[0])
                written += 1
        click.echo(f"{written} images degraded by {deg.label} written to {out}" + (f"; {skipped} skipped" if skipped else ""))


@cli.command()
@click.option("--clear", is_flag=True, help="Remove every cached dataset.")
def cache(clear):
    """List (or clear) the decode cache: datasets already read and resized, which the next
    run with the same files and image options maps instead of decoding again. The folder is
    $BTK_CACHE_DIR (default ~/.cache/btk); BTK_CACHE_DIR=off turns the cache off."""
    import time as _time

    from rich.console import Console
    from rich.table import Table

    from btk import cache as decode_cache

    console = Console()
    root = decode_cache.cache_root()
    if root is None:
        console.print("the decode cache is off (BTK_CACHE_DIR=off)")
        return
    if clear:
        console.print(f"removed {decode_cache.clear()} cached dataset(s) from {root}")
        return
    rows = decode_cache.entries()
    table = Table(title=f"decode cache: {root}")
    for col in ("key", "size", "last used"):
        table.add_column(col)
    for key, size, used in rows:
        table.add_row(key, f"{size / 2**20:.1f} MiB", _time.strftime("%Y-%m-%d %H:%M", _time.localtime(used)))
    console.print(table)
    console.print(f"{len(rows)} dataset(s), {sum(r[1] for r in rows) / 2**20:.1f} MiB")


@cli.command()
def plugins():
    """List the plugins, where each came from, and what each registered."""
    from rich.console import Console
    from rich.table import Table

    from btk.plugins import KINDS, get_host

    host = get_host()
    table = Table(title="btk plugins")
    table.add_column("plugin", no_wrap=True)  # a module path such as btk.default_plugins.mri_artefacts
    for col in ("from", "version", "registered"):
        table.add_column(col, overflow="fold")
    for info in host.plugins:
        parts = [f"{kind}: {', '.join(names)}" for kind in KINDS if (names := host.registry(kind).by_plugin(info.name))]
        if info.name in host.commands:
            parts.append(f"commands: {', '.join(host.commands[info.name])}")
        table.add_row(info.name, info.origin, info.version, "\n".join(parts) or "-")
    Console().print(table)
    for line in host.problems:
        Console().print(f"[yellow]problem: {line}[/]", highlight=False)


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
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's C++ start-up chatter out
    cli(prog_name="btk")
