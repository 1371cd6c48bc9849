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
  flips, small rotations, scalings and intensity changes, early stopping (patience 8) with the
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
from btk.intensity import INTENSITIES


@dataclass(frozen=True)
class Recipe:
    """How a model is trained; every field can be overridden on the command line."""

    name: str
    scale: float = 1 / 255
    epochs: int = 60
    batch_size: int = 32
    val_fraction: float = 0.1
    val_method: str = "grouped"  # "grouped" or "tail" (the report's Keras validation_split)
    learning_rate: float | None = 1e-4
    class_weight: bool = True
    restore_best: bool = True
    image_size: int = 256
    channels: int = 3
    model: str = "seed-cnn"
    schedule: str = "constant"  # "constant" or "cosine" (linear warm-up, then cosine decay)
    warmup_epochs: int = 0
    patience: int = 0  # stop after this many epochs without a better validation accuracy; 0: never
    monitor_after: float = 0.0  # share of the epochs trained before validation accuracy counts (best weights, stopping)
    augment_images: bool = False  # flips, small rotations and scalings, intensity (btk.image_augment)
    binary_via_classes: bool = False  # binary task: train on all classes, read P(positive) = 1 - P(negative)
    crop: str = "none"  # "head": crop each image to a square around the head before resizing (btk.framing)
    intensity: str = "none"  # "stretch" or "equalize": per-image intensity normalisation at the input (btk.intensity)
    micro_batch: int = 0  # >0: micro-batches of this size, gradients accumulated (less memory); 0: auto (CPU, no BN)
    precision: str = "auto"  # "float32", "mixed_bfloat16", "mixed_float16"; auto: the measured best per device


RECIPES: dict[str, Recipe] = {
    "btk": Recipe("btk"),
    "report": Recipe(
        "report", scale=1.0, val_method="tail", learning_rate=None, class_weight=False, restore_best=False
    ),
    "fast": Recipe(
        "fast", epochs=30, learning_rate=2e-3, image_size=128, channels=1, model="res-cnn", schedule="cosine",
        warmup_epochs=1, patience=8, monitor_after=0.5, augment_images=True, crop="head",
        intensity="stretch", binary_via_classes=True,
    ),
}

SCHEDULES = ("constant", "cosine")
PRECISIONS = ("auto", "float32", "mixed_bfloat16", "mixed_float16")

DEMO_OVERRIDES: dict[str, Any] = {"image_size": 96, "epochs": 8, "learning_rate": 1e-3}


def get_recipe(name: str, **overrides: Any) -> Recipe:
    """The recipe ``name`` with ``overrides`` (``None`` values ignored).

    Raises:
        BtkError: unknown recipe or field.
    """
    try:
        recipe = RECIPES[name]
    except KeyError:
        raise BtkError(f"unknown preset '{name}' (known: {', '.join(RECIPES)})") from None
    valid = {f.name for f in fields(Recipe)}
    clean = {k: v for k, v in overrides.items() if v is not None}
    bad = set(clean) - valid
    if bad:
        raise BtkError(f"unknown recipe field(s): {', '.join(sorted(bad))}")
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
    if recipe.intensity not in INTENSITIES:
        raise BtkError(f"unknown intensity normalisation '{recipe.intensity}' (known: {', '.join(INTENSITIES)})")
    if recipe.precision not in PRECISIONS:
        raise BtkError(f"unknown precision '{recipe.precision}' (known: {', '.join(PRECISIONS)})")
    if recipe.patience < 0 or recipe.warmup_epochs < 0:
        raise BtkError("patience and warm-up epochs must be 0 or more")
    if not 0 <= recipe.monitor_after < 1:
        raise BtkError(f"monitor-after must be a share of the epochs in [0, 1), got {recipe.monitor_after}")
    if not 0 < recipe.val_fraction < 1:
        raise BtkError(f"validation fraction must be between 0 and 1, got {recipe.val_fraction}")
    return recipe


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
        augment: degraders applied on the fly to training images, each image with probability
            ``augment_probability``, one degrader at a random level (:mod:`btk.augment`).
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
    augment: tuple[str, ...] = ()
    augment_probability: float = 0.5

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict of the configuration."""
        out = asdict(self)
        out["model"] = self.model_name
        out["train_degrade"] = list(self.train_degrade)
        out["test_degrade"] = list(self.test_degrade)
        out["augment"] = list(self.augment)
        return out

    @property
    def model_name(self) -> str:
        """The model plugin to use: the run's own choice, else the recipe's."""
        return self.model or self.recipe.model

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "RunConfig":
        """The configuration :meth:`to_json` wrote (unknown keys are an error)."""
        data = dict(data)
        recipe = Recipe(**data.pop("recipe"))
        for key in ("train_degrade", "test_degrade", "augment"):
            data[key] = tuple(data.get(key) or ())
        return cls(recipe=recipe, **data)

    def with_changes(self, **changes: Any) -> "RunConfig":
        """A copy with fields replaced."""
        return replace(self, **changes)
