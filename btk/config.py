"""Run configuration: the training recipes (presets), the run's fields, and the one schema that
reads, orders and checks every setting, whatever its source.

Four recipes:

- ``report``: the report exactly: raw 0..255 pixels, Adam at Keras' default rate, 60 epochs,
  batch 32, the last 10% of the shuffled training data for validation, the final weights.
  On the real data this collapses (one class predicted for everything).
- ``btk`` (the default of ``btk plan --suite``): the report's architecture, epochs, batch size, image
  size and validation fraction, made safe: pixels scaled to 0..1, Adam at 1e-4, class weights
  when classes are unbalanced, a validation split that keeps groups on one side, and the
  weights of the epoch with the best validation accuracy restored at the end.
- ``fast`` (the default with ``--data``): btk's own recipe for a laptop: the ``res-cnn``
  residual network on 128 px grayscale images cropped to the head (every source framed alike;
  :mod:`btk.framing`) and stretched so the head's 99th percentile is white (every source's
  brightness alike; :mod:`btk.intensity`), Adam at 2e-3 with one warm-up epoch and a cosine
  decay, on-the-fly flips, small rotations, scalings and intensity changes, half the training
  images degraded by a random degrader at level 1-3 (robust to blur, low resolution, noise and
  MRI artefacts; chosen by the rule in docs/recipes.md), early stopping (patience 8) with the
  best weights restored, both judged only in the second half, class weights and the grouped
  validation split. About 7 minutes for SARTAJ on 2 cores.
- ``demo`` (the default without data: the built-in synthetic phantoms): ``btk`` with the
  ``small-cnn`` model at 96 px, 10 epochs, Adam at 1e-3 and a cosine decay: a minute on a laptop.

Settings come from four sources, applied in this order, each overriding the ones before
(:data:`SOURCE_ORDER`): a preset (chosen by ``--preset``, else the file's, else the default
above), a configuration file (``--config``), the command line's flags, and ``--set FIELD=VALUE``.
Every value goes through the same conversion and checks (:func:`resolve_config`); a bad one is
one line naming its source, e.g. ``c.toml: recipe.schedule: 'cosnie' is not one of constant, cosine``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from btk.errors import BtkError
from btk.framing import CROPS
from btk.intensity import INTENSITIES, is_intensity

SCHEDULES = ("constant", "cosine")
PRECISIONS = ("auto", "float32", "mixed_bfloat16", "mixed_float16")
TASKS = ("multiclass", "binary")
VAL_METHODS = ("grouped", "tail")


def _field(default: Any, help: str, flag: str = "", *, metavar: str = "", choices: Sequence[str] | None = None,
           low: float | None = None, high: float | None = None, low_open: bool = False, high_open: bool = False,
           check: Callable[[Any], str | None] | None = None, factory: Callable[[], Any] | None = None) -> Any:
    """A configuration field: its default, one-line help (``--help``, errors, docs), the flag
    that sets it besides ``--set`` (if any, with a short form after a space, e.g.
    ``--reader-option -R``) and the flag's ``metavar``, and what a valid value is: one of
    ``choices``, a number in ``[low, high]`` (``*_open``: the bound itself excluded), or whatever
    ``check`` accepts (it returns the problem in words, or ``None``)."""
    metadata = {"help": help, "flag": flag, "metavar": metavar, "choices": tuple(choices) if choices else None,
                "low": low, "high": high, "low_open": low_open, "high_open": high_open, "check": check}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


NAME_BYTES = 100
"""The longest run name (bytes in UTF-8): a result directory's name holds it beside a time stamp,
a prefix and a suffix, and a file system allows 255 bytes."""


def check_run_name(name: str) -> str | None:
    """The problem with run name ``name``, or ``None``: it goes into a directory's name, so it must
    be one path component: no path separator, not ``.`` or ``..``, not hidden (a leading dot
    marks unfinished runs), no control character (a line break) and at most :data:`NAME_BYTES`
    bytes long."""
    if name and ("/" in name or "\\" in name or name in (".", "..") or name.startswith(".")
                 or not name.isprintable()):
        return (f"{name!r} must be a plain name (no '/', '\\', control character, leading '.' or '..'): it becomes "
                "part of a directory's name")
    size = len(name.encode("utf-8", "surrogateescape"))
    if size > NAME_BYTES:
        return f"a name of {size} bytes is too long: at most {NAME_BYTES} (it becomes part of a directory's name)"
    return None


def require_run_name(name: str, what: str = "--name") -> str:
    """``name`` if it is a usable run name (:func:`check_run_name`).

    Raises:
        BtkError: it is not.
    """
    problem = check_run_name(name)
    if problem:
        raise BtkError(f"{what}: {problem}")
    return name


def _intensity_problem(value: str) -> str | None:
    return None if is_intensity(value) else f"{value!r} is not one of {', '.join(INTENSITIES)}"


def _model_problem(value: str) -> str | None:
    return None if value.strip() else "a model name is needed"


def _fold_problem(value: str) -> str | None:
    from btk.folds import parse_fold

    try:
        if value:
            parse_fold(value)
    except BtkError as exc:
        return str(exc).split(": ", 1)[-1]
    return None


def _devices_problem(value: str) -> str | None:
    from btk.distribute import parse_devices

    try:
        if value:
            parse_devices(value, 1 << 20)  # the form only: which devices exist is checked before training
    except BtkError as exc:
        return str(exc).split(": ", 1)[-1]
    return None


def _limit_train_problem(value: int) -> str | None:
    return "1 image cannot be split into training and validation images: use 0 (all) or at least 2" if value == 1 \
        else None


SEED_HIGH = 2**32 - 1  # NumPy's and scikit-learn's seeds are 32-bit


@dataclass(frozen=True)
class Recipe:
    """How a model is trained. Every field can be set with ``--set FIELD=VALUE`` (or
    ``recipe.FIELD``); the common ones also have a flag. The presets (:data:`RECIPES`) are the
    only place defaults live."""

    name: str = _field("custom", "The preset this recipe starts from.", "--preset")
    scale: float = _field(1 / 255, "Factor applied to the 0..255 pixels at the network's input.", low=0, low_open=True)
    epochs: int = _field(60, "Epochs (at most, with early stopping).", "--epochs", metavar="N", low=1)
    batch_size: int = _field(32, "Images per update.", "--batch-size", metavar="N", low=1)
    val_fraction: float = _field(0.1, "Validation share of the training data.", low=0, high=1, low_open=True,
                                 high_open=True)
    val_method: str = _field("grouped", "Validation split: grouped (stratified, whole groups and near-copies on one "
                             "side) or tail (the last share of a seeded shuffle, as Keras' validation_split).",
                             choices=VAL_METHODS)
    learning_rate: float | None = _field(1e-4, "Adam's (peak) learning rate; none: Keras' default (1e-3).",
                                         "--learning-rate", metavar="RATE", low=0, low_open=True)
    class_weight: bool = _field(True, "Weight classes by scikit-learn's 'balanced' weights when they are unbalanced.")
    restore_best: bool = _field(True, "Keep the weights of the epoch with the best validation accuracy (else the "
                                "last epoch's).")
    image_size: int = _field(256, "Square image side in pixels.", "--image-size", metavar="PX", low=8, high=4096)
    channels: int = _field(3, "1 grayscale, 3 as cv2.imread reads.", choices=("1", "3"))
    model: str = _field("seed-cnn", "Model plugin (`btk plugins` lists them).", "--model", metavar="NAME",
                        check=_model_problem)
    schedule: str = _field("constant", "Learning-rate schedule: constant, or cosine (linear warm-up, then cosine "
                           "decay).", choices=SCHEDULES)
    warmup_epochs: int = _field(0, "Warm-up epochs of the cosine schedule.", low=0)
    patience: int = _field(0, "Stop after N epochs without a better validation accuracy; 0 never.", low=0)
    monitor_after: float = _field(0.0, "Share of the epochs trained before validation accuracy counts for the best "
                                  "weights and early stopping (while the learning rate is high, it swings).",
                                  low=0, high=1, high_open=True)
    augment_images: bool = _field(False, "On-the-fly flips, small rotations, scalings and intensity changes.")
    binary_via_classes: bool = _field(False, "Binary task: train on every class and read P(tumour) = 1 - P(no "
                                      "tumour), so each tumour type stays its own target.")
    crop: str = _field("none", "Crop each image to a square around the head before resizing (head), so every "
                       "source is framed alike; or none.", choices=CROPS)
    intensity: str = _field("none", "Per-image intensity normalisation at the network's input: stretch (the head's "
                            "99th percentile becomes white), equalize (histogram equalisation), nyul (Nyul-Udupa "
                            "landmarks mapped to a scale learned from the training images) or none.",
                            check=_intensity_problem)
    augment_degraders: str = _field("", "Degraders that augment training on the fly: comma-separated names, all (every "
                                    "degrader with levels) or none; each training image, with augment_probability, "
                                    "goes through one at a random level 1..augment_max_level.",
                                    "--augment-degraders", metavar="NAMES")
    augment_probability: float = _field(0.5, "Share of training images that augment_degraders degrade.",
                                        low=0, high=1, low_open=True)
    augment_max_level: int = _field(5, "Highest severity level augment_degraders draw (1-5).", low=1, high=5)
    label_smoothing: float = _field(0.0, "Label smoothing of the cross-entropy: the target keeps 1 - s on its class "
                                    "and spreads s over all classes; 0 off.", low=0, high=1, high_open=True)
    mixup: float = _field(0.0, "Mixup: each training batch is blended with a shuffled copy of itself (images, "
                          "targets and weights) by a share drawn from Beta(a, a); a = this value, 0 off.", low=0)
    ema: float = _field(0.0, "Exponential moving average of the weights (momentum, e.g. 0.99): validation, the "
                        "best epoch and the saved model use the averaged weights; 0 off.", low=0, high=1,
                        high_open=True)
    negative_spots: float = _field(0.0, "Share of the negative class's training images given synthetic small "
                                   "bright spots (white-matter hyperintensities) on the fly, so that a bright "
                                   "spot alone does not mean a tumour; 0 off.", low=0, high=1)
    micro_batch: int = _field(0, "Compute each batch in micro-batches of N, gradients accumulated: the same updates, "
                              "less memory; 0: automatic (on a CPU, activations under 512 MiB, networks without "
                              "batch norm).", low=0)
    precision: str = _field("auto", "Compute precision: float32, mixed_bfloat16, mixed_float16, or auto (what "
                            "measured fastest on this kind of device).", choices=PRECISIONS)


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines a run: its recipe and the fields below. ``btk run``'s options,
    a configuration file and ``--set`` all set these (:func:`resolve_config`).

    Attributes:
        reader: registered reader name; ``data``: its path (``None`` for generated data).
        task: ``multiclass`` or ``binary`` (tumour vs ``negative_class``).
        train_degrade: degradation specs applied to the training (and validation) images.
        test_degrade: degradation specs evaluated on the test images besides the clean ones.
        limit_train / limit_test: use at most this many images (0 = all), class balance kept.
        test_fraction: share held out for testing when the data declares no test split.
        duplicate_threshold: near-duplicate score (:mod:`btk.duplicates`) above which images are
            copies: copies are kept on one side of every split btk makes, and test images with
            a copy in the training data are reported apart; 0 turns both off.
        tta: score test (and validation, for the temperature) images with test-time
            augmentation (:mod:`btk.tta`); every later scoring follows the run's choice.
        split_seed: the seed of the splits (``None``: ``seed``); an ensemble's members share one.
        ensemble: members trained (``btk ensemble --train N``), seeds ``seed`` .. ``seed + N - 1``.
        devices: data-parallel training (:mod:`btk.distribute`): ``auto``, a count or device
            indices such as ``0,1``; empty: Keras' default device.
        pac_delta: the prediction sets' training-conditional form (:func:`btk.conformal.order_index`);
            ``None``: the promise on average over calibration draws.
    """

    recipe: Recipe
    reader: str = _field("folder", "Reader plugin [folder with data, synthetic without].", "--reader",
                         metavar="NAME")
    data: str | None = _field(None, "Data path for the reader; none: the built-in synthetic phantoms.",
                               "--data", metavar="PATH")
    reader_options: dict[str, str] = _field(None, "Reader-specific option; repeatable.",
                                            "--reader-option -R", metavar="KEY=VALUE",
                                            factory=dict)
    task: str = _field("multiclass", "All classes, or tumour vs the negative class.", "--task", metavar="TASK",
                       choices=TASKS)
    negative_class: str = _field("no_tumor", "The 'no finding' class of a binary task.", "--negative-class",
                                 metavar="CLASS")
    model_options: dict[str, str] = _field(None, "Model-specific option; repeatable.",
                                           "--model-option -M", metavar="KEY=VALUE",
                                           factory=dict)
    train_degrade: tuple[str, ...] = _field((), "Train on images degraded by SPEC; repeatable.",
                                            "--train-degrade", metavar="SPEC")
    test_degrade: tuple[str, ...] = _field((), "Also score the test images degraded by SPEC; repeatable.",
                                           "--degrade", metavar="SPEC")
    seed: int = _field(101, "Seed for splits, initialisation and shuffling.", "--seed", metavar="N", low=0,
                       high=SEED_HIGH)
    limit_train: int = _field(0, "Use at most N training images (0: all).", "--limit-train", metavar="N",
                              low=0, check=_limit_train_problem)
    limit_test: int = _field(0, "Use at most N test images (0: all).", "--limit-test", metavar="N",
                             low=0)
    test_fraction: float = _field(0.2, "Share held out for testing when the data declares no test split.",
                                  low=0, high=1, low_open=True, high_open=True)
    strict: bool = _field(False, "Stop at the first unreadable image instead of skipping it.", "--strict")
    name: str = _field("", "Name in the run directory's name (a plain name).", "--name", check=check_run_name)
    duplicate_threshold: float = _field(0.95, "Near-copy score: copies stay on one side of the splits btk makes, and "
                                        "test images with a copy in training are also reported apart; 0: off.",
                                        "--duplicate-threshold", metavar="SCORE", low=0, high=1)
    tta: bool = _field(False, "Score images with test-time augmentation (each image and its mirror image).", "--tta")
    split_seed: int | None = _field(None, "Seed of the splits; none: the seed.", low=0, high=SEED_HIGH)
    ensemble: int = _field(1, "Members trained for an ensemble run (btk ensemble --train N).", low=1)
    devices: str = _field("", "Data-parallel training devices: auto, N or a list such as 0,1; empty: one.",
                          "--devices", metavar="auto|N|LIST", check=_devices_problem)
    fold: str = _field("", "Train on fold K of N of the training images (K/N, e.g. 2/5: validate on that fold, "
                            "train on the others; btk ensemble --folds N makes them); empty: the usual split.",
                       check=_fold_problem)
    labels: str | None = _field(None, "Label corrections kept beside the data: a CSV of path and label (or drop), "
                                "applied to what the reader read; the run records the file and its SHA-256.",
                                "--labels", metavar="FILE")
    pac_delta: float | None = _field(None, "Prediction sets, training-conditional: each class's coverage is at least "
                                     "the promise with probability 1 - DELTA over the calibration draw (e.g. 0.1; "
                                     "more images a class needed); none: the promise holds on average over draws.",
                                     low=0, high=0.5, low_open=True)

    def __post_init__(self) -> None:
        require_run_name(self.name)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict of the configuration (:meth:`from_json` reads it back)."""
        out = asdict(self)
        out["train_degrade"] = list(self.train_degrade)
        out["test_degrade"] = list(self.test_degrade)
        return out

    @property
    def model_name(self) -> str:
        """The model plugin (the recipe's)."""
        return self.recipe.model

    @classmethod
    def from_json(cls, data: Mapping[str, Any], source: str = "config") -> RunConfig:
        """The configuration :meth:`to_json` wrote (and older runs' forms of it), through the
        same checks as every other source.

        Raises:
            BtkError: an unknown field or an invalid value, named with ``source``.
        """
        values = migrate(dict(data))
        recipe = dict(values.pop("recipe", None) or {})
        preset = str(recipe.pop("name", "custom"))
        settings = [Setting(f"recipe.{k}", v, source) for k, v in recipe.items()]
        settings += [Setting(k, v, source) for k, v in values.items()]
        return resolve_config(settings, preset=preset)

    def with_changes(self, **changes: Any) -> RunConfig:
        """A copy with fields replaced."""
        return replace(self, **changes)


RECIPES: dict[str, Recipe] = {
    "btk": Recipe("btk"),  # the dataclass defaults: the report's architecture and sizes, made safe
    "report": Recipe(
        "report", scale=1.0, val_method="tail", learning_rate=None, class_weight=False, restore_best=False
    ),
    "fast": Recipe(
        "fast", epochs=30, learning_rate=2e-3, image_size=128, channels=1, model="res-cnn", schedule="cosine",
        warmup_epochs=1, patience=8, monitor_after=0.5, augment_images=True, crop="head",
        intensity="stretch", binary_via_classes=True, augment_degraders="all", augment_max_level=3,
    ),
    "demo": Recipe("demo", image_size=96, epochs=10, learning_rate=1e-3, schedule="cosine", model="small-cnn"),
}
"""The presets. ``fast`` is the default with data, ``demo`` without (the synthetic phantoms)."""

SOURCE_ORDER = ("default", "file", "flag", "set")
"""The order sources are applied in; a later one overrides an earlier one. ``default``: what a
command chooses for its user (a suite's preset); ``file``: ``--config``; ``flag``: ``btk run``'s
options; ``set``: ``--set FIELD=VALUE``."""

RECIPE_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(Recipe) if f.name != "name")
"""The recipe fields a run may set (``--set FIELD=VALUE``); ``name`` is the preset's."""

RUN_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(RunConfig) if f.name != "recipe")
"""The run fields a file or ``--set`` may set."""

_FIELDS = {**{f"recipe.{f.name}": f for f in fields(Recipe) if f.name != "name"},
           **{f.name: f for f in fields(RunConfig) if f.name != "recipe"}}


@dataclass(frozen=True)
class Setting:
    """One value for one configuration field, and where it came from.

    Attributes:
        key: ``preset``, a run field (``seed``), a recipe field (``recipe.epochs``; a bare recipe
            field name works too), or one entry of an options table (``reader_options.slices``).
        value: as the source gave it: text from a command line, a typed value from a file.
        source: where it came from, for messages: a file's path, a flag, ``--set``.
        origin: the kind of source (:data:`SOURCE_ORDER`): its place in the order of overrides.
    """

    key: str
    value: Any
    source: str
    origin: str = "file"


def canonical_key(name: str) -> str:
    """``name`` as the schema spells it: ``epochs`` -> ``recipe.epochs``; run fields, options
    entries (``reader_options.KEY``) and ``preset`` as they are.

    Raises:
        BtkError: a name that is not a field (the message lists them).
    """
    name = name.strip()
    if name == "preset" or name in _FIELDS:
        return name
    if name in RECIPE_FIELDS:
        return f"recipe.{name}"
    head, dot, _ = name.partition(".")
    if dot and head in ("reader_options", "model_options"):
        return name
    raise BtkError(f"unknown field '{name}' (recipe fields: {', '.join(RECIPE_FIELDS)}; run fields: "
                   f"{', '.join(RUN_FIELDS)})")


def field_help(name: str) -> str:
    """The one-line help of field ``name`` (a recipe field's bare name works)."""
    return _FIELDS[canonical_key(name)].metadata["help"]


def field_flag(name: str) -> str:
    """The ``btk run`` flag that sets field ``name`` ('' when only ``--set`` does)."""
    return _FIELDS[canonical_key(name)].metadata["flag"]


def flagged_fields() -> list[tuple[str, tuple[str, ...], str, str]]:
    """``(key, option declarations, metavar, kind)`` of every field a flag sets (run fields first,
    then recipe fields), but the preset and the name, which every command declares itself: what
    :func:`btk.commands.options.config_options` turns into options."""
    out = []
    for key, f in [*((k, v) for k, v in _FIELDS.items() if not k.startswith("recipe.")),
                   *((k, v) for k, v in _FIELDS.items() if k.startswith("recipe."))]:
        flag = f.metadata["flag"]
        if flag and key != "name":
            out.append((key, tuple(flag.split()), f.metadata["metavar"], _kind(f)[0]))
    return out


def field_choices(name: str) -> tuple[str, ...] | None:
    """The values field ``name`` may take, when it is a choice."""
    return _FIELDS[canonical_key(name)].metadata["choices"]


def show_value(value: Any) -> str:
    """A value as `--help` and the docs show it (on/off, none, 1/255)."""
    if value is None or (isinstance(value, (str, tuple, list, dict)) and not value):
        return "none"
    if isinstance(value, (tuple, list)):
        return ", ".join(map(str, value))
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items())
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        return "1/255" if abs(value * 255 - 1) < 1e-12 else f"{value:.4g}"
    return str(value)


def preset_hint(name: str) -> str:
    """Each preset's value of recipe field ``name``, presets with the same value together, e.g.
    ``fast: 30; btk, report: 60; demo: 10``: what ``--help`` shows in brackets."""
    by_value: dict[str, list[str]] = {}
    for preset in presets_in_order():
        by_value.setdefault(show_value(getattr(RECIPES[preset], name)), []).append(preset)
    if len(by_value) == 1:
        return f"every preset: {next(iter(by_value))}"
    return "; ".join(f"{', '.join(presets)}: {value}" for value, presets in by_value.items())


def presets_in_order() -> list[str]:
    """The preset names, the default ones first (fast, then btk, then the rest)."""
    return sorted(RECIPES, key=lambda p: (p != "fast", p != "btk", p != "report", p))


_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def _kind(f: Any) -> tuple[str, bool]:
    """A field's base type (``int``, ``float``, ``bool``, ``str``, ``dict``, ``tuple``) and whether
    ``None`` is allowed, from its annotation."""
    text = str(f.type)
    return text.split("[")[0].split("|")[0].strip(), "None" in text


def parse_pairs(value: Any) -> dict[str, str]:
    """An options table from a mapping, or from ``KEY=VALUE`` items (text or a list of them):
    how every ``-R``/``-M`` style option is read.

    Raises:
        ValueError: an item without ``=`` or a key.
    """
    if isinstance(value, Mapping):
        return {str(k): str(v) for k, v in value.items()}
    if not isinstance(value, (str, list, tuple)):
        raise ValueError(f"{value!r} is not a table of options (KEY = VALUE) or a list of KEY=VALUE items")
    items = [value] if isinstance(value, str) else list(value)
    out = {}
    for item in items:
        key, eq, val = str(item).partition("=")
        if not eq or not key.strip():
            raise ValueError(f"{item!r}: write KEY=VALUE")
        out[key.strip()] = val.strip()
    return out


def convert(key: str, value: Any) -> Any:
    """``value`` (text from a command line, or a typed value from a file) as field ``key``'s
    type, checked against what the field allows.

    Raises:
        ValueError: the problem in words (the caller names the source and the field).
    """
    f = _FIELDS[key]
    kind, optional = _kind(f)
    meta = f.metadata
    if value is None or (optional and isinstance(value, str) and value.strip().lower() == "none"):
        if optional:
            return None
        raise ValueError("a value is needed")
    if kind == "dict":
        return parse_pairs(value)
    if kind == "tuple":
        items = [value] if isinstance(value, str) else list(value) if isinstance(value, (list, tuple)) else None
        if items is None:
            raise ValueError(f"{value!r} is not a list")
        return tuple(str(v).strip() for v in items if str(v).strip())
    if kind == "bool":
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise ValueError(f"{value!r} is not on or off")
    if kind in ("int", "float"):
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ValueError(f"{value!r} is not a number")
        try:
            number: float = float(str(value).strip())
        except ValueError:
            raise ValueError(f"{value!r} is not {'an integer' if kind == 'int' else 'a number'}") from None
        if not math.isfinite(number):
            raise ValueError(f"{value!r} is not a finite number")
        if kind == "int":
            if not number.is_integer():
                raise ValueError(f"{value!r} is not an integer")
            number = value if isinstance(value, int) else int(number)  # 30.0 is 30
        low, high = meta["low"], meta["high"]
        if low is not None and (number < low or (meta["low_open"] and number == low)):
            raise ValueError(f"{value!r} must be {'above' if meta['low_open'] else 'at least'} {low:g}")
        if high is not None and (number > high or (meta["high_open"] and number == high)):
            raise ValueError(f"{value!r} must be {'below' if meta['high_open'] else 'at most'} {high:g}")
        if meta["choices"] and str(number) not in meta["choices"]:
            raise ValueError(f"{value!r} is not one of {', '.join(meta['choices'])}")
        problem = meta["check"](number) if meta["check"] else None
        if problem:
            raise ValueError(problem)
        return number
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError(f"{value!r} is not text")
    text = str(value).strip()
    if meta["choices"] and text not in meta["choices"]:
        raise ValueError(f"{text!r} is not one of {', '.join(meta['choices'])}")
    problem = meta["check"](text) if meta["check"] else None
    if problem:
        raise ValueError(problem)
    return text


def _cross_problems(recipe: Recipe) -> list[tuple[tuple[str, ...], str]]:
    """Problems between fields: (the fields involved, the problem)."""
    out: list[tuple[tuple[str, ...], str]] = []
    if recipe.micro_batch and recipe.batch_size % recipe.micro_batch:
        out.append((("recipe.micro_batch", "recipe.batch_size"),
                    f"micro-batch {recipe.micro_batch} must divide the batch size {recipe.batch_size}"))
    return out


def default_preset(data: Any, reader: Any) -> str:
    """The preset of a configuration that names none: ``demo`` on the built-in synthetic
    phantoms (no data and no reader, or the ``synthetic`` reader), ``fast`` otherwise."""
    return "demo" if data is None and reader in (None, "synthetic") else "fast"


def resolve_config(settings: Iterable[Setting], preset: str | None = None) -> RunConfig:
    """The configuration ``settings`` describe: the preset's recipe with every setting applied
    in :data:`SOURCE_ORDER` (in the given order within one kind of source), each value converted
    and checked by :func:`convert`, then the checks between fields.

    Args:
        settings: the values, from any sources. A ``preset`` setting chooses the recipe (the
            last one in the order wins); ``preset``: the recipe when none does (else
            :func:`default_preset`).

    Raises:
        BtkError: one line naming the source, the field and the problem.
    """
    ordered = sorted(settings, key=lambda s: SOURCE_ORDER.index(s.origin))
    values: dict[str, Any] = {}
    source_of: dict[str, str] = {}
    for s in ordered:
        try:
            key = canonical_key(s.key)
        except BtkError as exc:
            raise BtkError(f"{s.source}: {exc}") from None
        if key == "preset":
            preset_value = str(s.value).strip()
            if preset_value not in RECIPES:
                raise BtkError(f"{s.source}: preset: {preset_value!r} is not one of {', '.join(presets_in_order())}")
            preset, source_of["preset"] = preset_value, s.source
            continue
        head, dot, entry = key.partition(".")
        try:
            if dot and head in ("reader_options", "model_options"):
                table = dict(values.get(head) or {})
                table[entry] = str(s.value)
                values[head] = table
            elif key in ("reader_options", "model_options") and s.origin == "flag":
                values[key] = {**(values.get(key) or {}), **convert(key, s.value)}  # -R adds to the file's
            else:
                values[key] = convert(key, s.value)
        except ValueError as exc:
            raise BtkError(f"{s.source}: {key}: {exc}") from None
        source_of[head if head in ("reader_options", "model_options") else key] = s.source
    chosen = preset or default_preset(values.get("data"), values.get("reader"))
    base = RECIPES.get(chosen) or Recipe(name=chosen)
    recipe = replace(base, **{k.split(".", 1)[1]: v for k, v in values.items() if k.startswith("recipe.")})
    recipe = replace(recipe, channels=int(recipe.channels))
    for keys, problem in _cross_problems(recipe):
        where = "; ".join(dict.fromkeys(source_of.get(k, f"preset {recipe.name}") for k in keys))
        raise BtkError(f"{where}: {problem}")
    run_values = {k: v for k, v in values.items() if not k.startswith("recipe.")}
    if "reader" not in run_values:
        run_values["reader"] = "folder" if run_values.get("data") is not None else "synthetic"
    return RunConfig(recipe=recipe, **run_values)


def migrate(data: dict[str, Any]) -> dict[str, Any]:
    """A configuration in an older run's form, in today's: degradation augmentation beside the
    recipe (``augment``, ``augment_probability``) moved into it, and a run-level ``model`` (the
    plugin the run used) moved into the recipe."""
    names = data.pop("augment", None)
    probability = data.pop("augment_probability", None)
    model = data.pop("model", None)
    recipe = data.get("recipe")
    if isinstance(recipe, Mapping):
        recipe = dict(recipe)
        if names:
            recipe.setdefault("augment_degraders", ",".join(names))
        if probability is not None and names:
            recipe.setdefault("augment_probability", probability)
        if model:
            recipe["model"] = model
        data["recipe"] = recipe
    elif model:
        data["recipe"] = {"model": model}
    return data


def get_recipe(name: str, **fields_: Any) -> Recipe:
    """Preset ``name`` with recipe ``fields_`` changed, through the same checks as every source
    (for notebooks and tests).

    Raises:
        BtkError: an unknown preset or field, or an invalid value.
    """
    settings = [Setting("preset", name, "preset")] + [Setting(f"recipe.{k}", v, k) for k, v in fields_.items()]
    return resolve_config(settings, preset=name).recipe


def make_run_config(preset: str | None = None, recipe: Mapping[str, Any] | None = None, **fields_: Any) -> RunConfig:
    """A configuration from Python values: ``preset``, recipe fields in ``recipe`` and run
    fields as keywords, through the same checks as every other source (for notebooks, tests
    and benchmarks).

    Raises:
        BtkError: an unknown field or an invalid value.
    """
    settings = [Setting(f"recipe.{k}", v, k) for k, v in (recipe or {}).items()]
    settings += [Setting(k, v, k) for k, v in fields_.items()]
    if preset is not None:
        settings.append(Setting("preset", preset, "preset"))
    return resolve_config(settings)
