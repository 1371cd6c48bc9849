"""Run configuration and the training recipes (presets).

Three recipes:

- ``report``: the report exactly: raw 0..255 pixels, Adam at Keras' default rate, 60 epochs,
  batch 32, the last 10% of the shuffled training data for validation, the final weights.
  On the real data this collapses (one class predicted for everything).
- ``btk`` (for ``--suite`` and the demo): the report's architecture, epochs, batch size, image size and
  validation fraction, made safe: pixels scaled to 0..1, Adam at 1e-4, class weights when
  classes are unbalanced, a validation split that keeps groups on one side, and the weights of
  the epoch with the best validation accuracy restored at the end.
- ``fast`` (the default with ``--data``): btk's own recipe for a laptop: the ``res-cnn``
  residual network on 128 px grayscale images cropped to the head (every source framed alike;
  :mod:`btk.framing`) and stretched so the head's 99th percentile is white (every source's
  brightness alike; :mod:`btk.intensity`), Adam at 2e-3 with one warm-up epoch and a cosine decay, on-the-fly
  flips, small rotations, scalings and intensity changes, half the training images degraded by
  a random degrader at level 1-3 (robust to blur, low resolution, noise and MRI artefacts; chosen
  by the rule in docs/recipes.md), early stopping (patience 8) with the
  best weights restored, both judged only in the second half (while the learning rate is high,
  validation accuracy swings from epoch to epoch), class weights and the grouped validation
  split. About 7 minutes for SARTAJ on 2 cores.

With no ``--data`` the run uses the built-in ``synthetic`` reader, the ``small-cnn`` model and
the demo sizes (96 px, 8 epochs, Adam at 1e-3) so it finishes in a few minutes on a laptop.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from btk.errors import BtkError
from btk.framing import CROPS
from btk.intensity import INTENSITIES, is_intensity


def _field(default: Any, help: str, flag: str = "") -> Any:
    """A recipe field with its one-line help (shown by ``--help``, ``--set`` errors and the docs)
    and the ``btk run`` flag that sets it, if one does besides ``--set``."""
    return field(default=default, metadata={"help": help, "flag": flag})


@dataclass(frozen=True)
class Recipe:
    """How a model is trained. Every field can be set with ``btk run --set FIELD=VALUE``; the
    common ones also have a flag. The presets (:data:`RECIPES`) are the only place defaults live."""

    name: str = _field("custom", "The preset this recipe starts from.", "--preset")
    scale: float = _field(1 / 255, "Factor applied to the 0..255 pixels at the network's input.")
    epochs: int = _field(60, "Epochs (at most, with early stopping).", "--epochs")
    batch_size: int = _field(32, "Images per update.", "--batch-size")
    val_fraction: float = _field(0.1, "Validation share of the training data.", "--val-fraction")
    val_method: str = _field("grouped", "Validation split: grouped (stratified, whole groups and near-copies on one "
                             "side) or tail (the last share of a seeded shuffle, as Keras' validation_split).")
    learning_rate: float | None = _field(1e-4, "Adam's (peak) learning rate; none: Keras' default (1e-3).",
                                         "--learning-rate")
    class_weight: bool = _field(True, "Weight classes by scikit-learn's 'balanced' weights when they are unbalanced.")
    restore_best: bool = _field(True, "Keep the weights of the epoch with the best validation accuracy (else the "
                                "last epoch's).")
    image_size: int = _field(256, "Square image side in pixels.", "--image-size")
    channels: int = _field(3, "1 grayscale, 3 as cv2.imread reads.", "--channels")
    model: str = _field("seed-cnn", "Model plugin.", "--model")
    schedule: str = _field("constant", "Learning-rate schedule: constant, or cosine (linear warm-up, then cosine "
                           "decay).", "--schedule")
    warmup_epochs: int = _field(0, "Warm-up epochs of the cosine schedule.")
    patience: int = _field(0, "Stop after N epochs without a better validation accuracy; 0 never.", "--patience")
    monitor_after: float = _field(0.0, "Share of the epochs trained before validation accuracy counts for the best "
                                  "weights and early stopping (while the learning rate is high, it swings).",
                                  "--monitor-after")
    augment_images: bool = _field(False, "On-the-fly flips, small rotations, scalings and intensity changes.",
                                  "--augment/--no-augment")
    binary_via_classes: bool = _field(False, "Binary task: train on every class and read P(tumour) = 1 - P(no "
                                      "tumour), so each tumour type stays its own target.",
                                      "--binary-via-classes/--binary-direct")
    crop: str = _field("none", "Crop each image to a square around the head before resizing (head), so every "
                       "source is framed alike; or none.", "--crop")
    intensity: str = _field("none", "Per-image intensity normalisation at the network's input: stretch (the head's "
                            "99th percentile becomes white), equalize (histogram equalisation), nyul (Nyul-Udupa "
                            "landmarks mapped to a scale learned from the training images) or none.",
                            "--intensity")
    augment_degraders: str = _field("", "Degraders that augment training on the fly: comma-separated names, all (every "
                                    "degrader with levels) or none; each training image, with augment_probability, "
                                    "goes through one at a random level 1..augment_max_level.",
                                    "--augment-degraders")
    augment_probability: float = _field(0.5, "Share of training images that augment_degraders degrade.")
    augment_max_level: int = _field(5, "Highest severity level augment_degraders draw (1-5).")
    micro_batch: int = _field(0, "Compute each batch in micro-batches of N, gradients accumulated: the same updates, "
                              "less memory; 0: automatic (on a CPU, activations under 512 MiB, networks without "
                              "batch norm).", "--micro-batch")
    precision: str = _field("auto", "Compute precision: float32, mixed_bfloat16, mixed_float16, or auto (what "
                            "measured fastest on this kind of device).", "--precision")


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
}

SCHEDULES = ("constant", "cosine")
PRECISIONS = ("auto", "float32", "mixed_bfloat16", "mixed_float16")

DEMO_OVERRIDES: dict[str, Any] = {"image_size": 96, "epochs": 10, "learning_rate": 1e-3, "schedule": "cosine"}
"""What ``btk run`` without ``--data`` changes in its preset (``btk``) for the synthetic demo."""

RECIPE_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(Recipe) if f.name != "name")
"""The recipe fields a run may set (``--set FIELD=VALUE``); ``name`` is the preset's."""


def field_help(name: str) -> str:
    """The one-line help of recipe field ``name``."""
    return next(f.metadata["help"] for f in fields(Recipe) if f.name == name)


def field_flag(name: str) -> str:
    """The ``btk run`` flag that sets recipe field ``name`` ('' when only ``--set`` does)."""
    return next(f.metadata["flag"] for f in fields(Recipe) if f.name == name)


def show_value(value: Any) -> str:
    """A recipe value as `--help` and the docs show it (on/off, none, 1/255)."""
    if value is None or value == "":
        return "none"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        return "1/255" if abs(value * 255 - 1) < 1e-12 else f"{value:.4g}"
    return str(value)


def preset_hint(name: str, demo: bool = True) -> str:
    """Each preset's value of recipe field ``name``, presets with the same value together, e.g.
    ``fast: 30; btk, report: 60; demo: 10``: what ``--help`` shows in brackets."""
    by_value: dict[str, list[str]] = {}
    for preset in sorted(RECIPES, key=lambda p: (p != "fast", p != "btk", p)):  # the default preset first
        by_value.setdefault(show_value(getattr(RECIPES[preset], name)), []).append(preset)
    if len(by_value) == 1:
        text = f"every preset: {next(iter(by_value))}"
    else:
        text = "; ".join(f"{', '.join(presets)}: {value}" for value, presets in by_value.items())
    if demo and name in DEMO_OVERRIDES:
        text += f"; demo: {show_value(DEMO_OVERRIDES[name])}"
    return text


_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def parse_field(name: str, text: str) -> Any:
    """The value of recipe field ``name`` written as ``text`` (``--set name=text``), converted to
    the field's type: numbers, on/off (true/false, yes/no, 1/0), ``none`` where allowed.

    Raises:
        BtkError: an unknown field (the message lists them) or a value of the wrong type.
    """
    if name not in RECIPE_FIELDS:
        raise BtkError(f"unknown recipe field '{name}' (fields: {', '.join(RECIPE_FIELDS)})")
    kind = str(next(f.type for f in fields(Recipe) if f.name == name))
    value = text.strip()
    try:
        if "None" in kind and value.lower() == "none":
            return None
        if kind.startswith("bool"):
            if value.lower() in _TRUE:
                return True
            if value.lower() in _FALSE:
                return False
            raise ValueError
        if kind.startswith("int"):
            return int(value)
        if kind.startswith("float"):
            return float(value)
        return value
    except ValueError:
        raise BtkError(f"recipe field '{name}' ({kind}): cannot read {text!r}") from None


def get_recipe(name: str, settings: dict[str, Any] | None = None, **overrides: Any) -> Recipe:
    """The recipe ``name`` with ``overrides`` (``None`` values ignored: flags not given) and
    ``settings`` (taken as they are, ``None`` included: ``--set learning_rate=none``).

    Raises:
        BtkError: unknown recipe or field, or a value out of range.
    """
    try:
        recipe = RECIPES[name]
    except KeyError:
        raise BtkError(f"unknown preset '{name}' (known: {', '.join(RECIPES)})") from None
    clean = {**{k: v for k, v in overrides.items() if v is not None}, **(settings or {})}
    bad = set(clean) - set(RECIPE_FIELDS)
    if bad:
        raise BtkError(f"unknown recipe field(s): {', '.join(sorted(bad))} (fields: {', '.join(RECIPE_FIELDS)})")
    recipe = replace(recipe, **clean)
    if recipe.epochs < 1 or recipe.batch_size < 1:
        raise BtkError("epochs and batch size must be at least 1")
    if recipe.channels not in (1, 3):
        raise BtkError(f"channels must be 1 or 3, got {recipe.channels}")
    if recipe.schedule not in SCHEDULES:
        raise BtkError(f"unknown schedule '{recipe.schedule}' (known: {', '.join(SCHEDULES)})")
    if recipe.micro_batch and (recipe.micro_batch < 0 or recipe.batch_size % recipe.micro_batch):
        raise BtkError(f"micro-batch {recipe.micro_batch} must divide the batch size {recipe.batch_size}")
    if recipe.crop not in CROPS:
        raise BtkError(f"unknown crop '{recipe.crop}' (known: {', '.join(CROPS)})")
    if not is_intensity(recipe.intensity):
        raise BtkError(f"unknown intensity normalisation '{recipe.intensity}' (known: {', '.join(INTENSITIES)})")
    if recipe.precision not in PRECISIONS:
        raise BtkError(f"unknown precision '{recipe.precision}' (known: {', '.join(PRECISIONS)})")
    if recipe.patience < 0 or recipe.warmup_epochs < 0:
        raise BtkError("patience and warm-up epochs must be 0 or more")
    if not 0 <= recipe.monitor_after < 1:
        raise BtkError(f"monitor-after must be a share of the epochs in [0, 1), got {recipe.monitor_after}")
    if not 0 < recipe.augment_probability <= 1:
        raise BtkError(f"augment_probability must be in (0, 1], got {recipe.augment_probability}")
    if not 1 <= recipe.augment_max_level <= 5:
        raise BtkError(f"augment_max_level must be 1..5, got {recipe.augment_max_level}")
    if not 0 < recipe.val_fraction < 1:
        raise BtkError(f"validation fraction must be between 0 and 1, got {recipe.val_fraction}")
    return recipe


def check_run_name(name: str) -> None:
    """A run's name goes into its directory's name, so it must be one path component: no path
    separator, not ``.`` or ``..``, and not hidden (a leading dot marks unfinished runs).

    Raises:
        BtkError: the name is not usable.
    """
    if not name:
        return
    if "/" in name or "\\" in name or name in (".", "..") or name.startswith(".") or "\0" in name:
        raise BtkError(f"run name {name!r} must be a plain name (no '/', '\\', leading '.' or '..'): "
                       "it becomes part of the run directory's name")


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines a run. ``btk run``'s flags map onto these fields.

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
            augmentation (:mod:`btk.tta`); ``predict`` and ``evaluate`` follow the run's choice.
        split_seed: the seed of the splits (``None``: ``seed``); an ensemble's members share one.
        ensemble: members trained (``btk run --ensemble N``), seeds ``seed`` .. ``seed + N - 1``.
        devices: data-parallel training (:mod:`btk.distribute`): ``auto``, a count or device
            indices such as ``0,1``; empty: Keras' default device.
    """

    recipe: Recipe
    reader: str = "folder"
    data: str | None = None
    reader_options: dict[str, str] = field(default_factory=dict)
    task: str = "multiclass"
    negative_class: str = "no_tumor"
    model: str = ""  # empty: the recipe's model
    model_options: dict[str, str] = field(default_factory=dict)
    train_degrade: tuple[str, ...] = ()
    test_degrade: tuple[str, ...] = ()
    seed: int = 101
    limit_train: int = 0
    limit_test: int = 0
    test_fraction: float = 0.2
    strict: bool = False
    name: str = ""
    duplicate_threshold: float = 0.95
    tta: bool = False
    split_seed: int | None = None
    ensemble: int = 1
    devices: str = ""

    def __post_init__(self) -> None:
        check_run_name(self.name)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict of the configuration."""
        out = asdict(self)
        out["model"] = self.model_name
        out["train_degrade"] = list(self.train_degrade)
        out["test_degrade"] = list(self.test_degrade)
        return out

    @property
    def model_name(self) -> str:
        """The model plugin to use: the run's own choice, else the recipe's."""
        return self.model or self.recipe.model

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunConfig:
        """The configuration :meth:`to_json` wrote (unknown keys are an error)."""
        data = migrate_augment(dict(data))
        recipe = Recipe(**data.pop("recipe"))
        for key in ("train_degrade", "test_degrade"):
            data[key] = tuple(data.get(key) or ())
        return cls(recipe=recipe, **data)

    def with_changes(self, **changes: Any) -> RunConfig:
        """A copy with fields replaced."""
        return replace(self, **changes)


def migrate_augment(data: dict[str, Any]) -> dict[str, Any]:
    """A configuration written before degradation augmentation was a recipe field (``augment``
    and ``augment_probability`` beside the recipe) with those moved into its recipe."""
    names = data.pop("augment", None)
    probability = data.pop("augment_probability", None)
    recipe = data.get("recipe")
    if isinstance(recipe, dict):
        recipe = dict(recipe)
        if names:
            recipe.setdefault("augment_degraders", ",".join(names))
        if probability is not None and names:
            recipe.setdefault("augment_probability", probability)
        data["recipe"] = recipe
    return data


def make_run_config(*, data: Any = None, reader: str | None = None, preset: str | None = None,
                    model: str | None = None, suite: str | None = None, overrides: dict[str, Any] | None = None,
                    settings: dict[str, Any] | None = None, **fields_: Any) -> RunConfig:
    """The configuration ``btk run``'s options describe.

    Args:
        data, reader: the data and its reader; with neither, the built-in synthetic demo
            (``small-cnn``, the ``btk`` preset with :data:`DEMO_OVERRIDES`).
        preset: the recipe [``fast``; ``btk`` for a suite].
        overrides: recipe fields from their flags (``None``: flag not given).
        settings: recipe fields from ``--set`` (see :func:`parse_field`).
        fields_: the other :class:`RunConfig` fields.

    Raises:
        BtkError: a field given both as a flag and with ``--set``, or any invalid value.
    """
    explicit = {k: v for k, v in (overrides or {}).items() if v is not None}
    both = sorted(set(explicit) & set(settings or {}))
    if both:
        raise BtkError(f"recipe field(s) {', '.join(both)} given both by a flag and with --set: give each once")
    values = dict(explicit)
    if data is None and reader is None:  # the built-in demo
        reader, model, preset = "synthetic", model or "small-cnn", preset or "btk"
        values = {**DEMO_OVERRIDES, **values}
    recipe = get_recipe(preset or ("btk" if suite else "fast"), settings, **values)
    return RunConfig(recipe=recipe, reader=reader or "folder", data=str(data) if data else None, model=model or "",
                     **fields_)
