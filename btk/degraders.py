"""Degraders: pure functions of (image batch, parameters, random generator) -> image batch.

A :class:`Degrader` declares its parameters in one place (:class:`Param`), so the command
line, validation and the run record all read the same declaration. The same degraders serve
test-time degradation, degraded training copies and (later) augmentation and sweeps.

A degradation is written on the command line as ``NAME``, ``NAME:KEY=VALUE,KEY=VALUE`` or
``NAME@LEVEL`` (a severity level 1..5, as in the corruption-robustness benchmarks), e.g.
``blur``, ``blur:ksize=9,sigma=2`` or ``blur@3``. Level parameters are given for 256-pixel
images; those measured in pixels (``Degrader.scaled``) scale with the image width.

``NAME@report`` is the degrader's default setting (for ``blur`` and ``resolution``, the
report's) at the report's scale: given for 256-pixel images, as the report applied it, and
rescaled to the width of the images degraded (``Degrader.rescale``), so that a 128 px network
sees the blur the report's 256 px network saw, relative to the head. Plain ``blur`` applies the
report's 15 x 15 kernel to whatever size the images are.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from btk.errors import BtkError

REFERENCE_SIZE = 256
LEVELS = 5
AT_REPORT = "report"


@dataclass(frozen=True)
class Param:
    """One parameter of a degrader, with its type, default and valid range."""

    name: str
    type: type
    default: Any
    minimum: float | None = None
    maximum: float | None = None
    help: str = ""
    odd: bool = False

    def coerce(self, value: Any, owner: str) -> Any:
        """Convert ``value`` (often a string from the command line) and check its range.

        Raises:
            BtkError: the value has the wrong type or is out of range.
        """
        try:
            if isinstance(value, bool):
                raise ValueError
            number = float(value)
            if self.type is int and number != int(number):
                raise ValueError
            converted = self.type(number)
        except (TypeError, ValueError):
            raise BtkError(
                f"{owner}: parameter '{self.name}' must be {self.type.__name__}, got {value!r}"
            ) from None
        low = self.minimum if self.minimum is not None else float("-inf")
        high = self.maximum if self.maximum is not None else float("inf")
        if not low <= converted <= high:
            raise BtkError(
                f"{owner}: parameter '{self.name}' must be between {self.minimum} and {self.maximum}, "
                f"got {converted}"
            )
        if self.odd and int(converted) % 2 == 0 and converted != 0:
            raise BtkError(f"{owner}: parameter '{self.name}' must be odd (or 0: from sigma), got {converted}")
        return converted


@dataclass(frozen=True)
class Degrader:
    """A named, parametrised image degradation.

    Attributes:
        name: the name used on the command line.
        function: ``function(image, rng, **params) -> image`` for one uint8 image (H x W or
            H x W x C); it must keep shape and dtype.
        params: the declared parameters; their defaults are the degrader's default setting.
        description: one line for ``btk plugins`` and ``--help``.
    """

    name: str
    function: Callable[..., np.ndarray]
    params: tuple[Param, ...] = ()
    description: str = ""
    levels: tuple[dict[str, Any], ...] = ()
    scaled: tuple[str, ...] = ()
    none: dict[str, Any] | None = None
    rescale: Callable[[dict[str, Any], float], dict[str, Any]] | None = None

    def rescaled(self, params: dict[str, Any], factor: float) -> dict[str, Any]:
        """``params`` given for images of one width, for images ``factor`` times as wide: the
        degrader's own ``rescale`` if it has one, else its ``scaled`` parameters times ``factor``."""
        if factor == 1:
            return self.resolve(params)
        if self.rescale is not None:
            return self.resolve(self.rescale(dict(params), factor))
        return self.resolve(self._scale_pixels(params, factor))

    def _scale_pixels(self, params: dict[str, Any], width: float, reference: float = 1.0) -> dict[str, Any]:
        """``params`` with the ``scaled`` ones (measured in pixels) times ``width / reference``."""
        values = dict(params)
        for key in self.scaled:
            if key in values:
                scaled = values[key] * width / reference
                kind = next(p.type for p in self.params if p.name == key)
                values[key] = kind(round(scaled)) if kind is int else float(scaled)
        return values

    def level_params(self, level: int, width: int = REFERENCE_SIZE) -> dict[str, Any]:
        """The parameters of severity ``level`` (1..len(levels)) for images ``width`` pixels wide.

        Raises:
            BtkError: the degrader has no levels, or ``level`` is outside them.
        """
        if not self.levels:
            raise BtkError(f"degrader '{self.name}' has no severity levels")
        if not 1 <= level <= len(self.levels):
            raise BtkError(f"degrader '{self.name}': level must be 1..{len(self.levels)}, got {level}")
        return self.resolve(self._scale_pixels(self.levels[level - 1], width, REFERENCE_SIZE))

    def resolve(self, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
        """The full parameter set: defaults updated with validated ``overrides``.

        Raises:
            BtkError: an unknown parameter name or a bad value.
        """
        known = {p.name: p for p in self.params}
        values = {p.name: p.default for p in self.params}
        for key, value in (overrides or {}).items():
            if key not in known:
                valid = ", ".join(known) or "none"
                raise BtkError(f"degrader '{self.name}' has no parameter '{key}' (parameters: {valid})")
            values[key] = known[key].coerce(value, f"degrader '{self.name}'")
        return values

    def apply(self, images: np.ndarray, params: dict[str, Any] | None = None, seed: int = 0) -> np.ndarray:
        """Degrade a batch (N x H x W [x C]) of uint8 images; returns a new array."""
        values = self.resolve(params)
        rng = np.random.default_rng(seed)
        out = np.empty_like(images)
        for i, image in enumerate(images):
            out[i] = self.function(image, rng, **values)
        return out


@dataclass(frozen=True)
class Degradation:
    """A degrader bound to its parameters: what a run records and applies."""

    degrader: Degrader
    params: dict[str, Any] = field(default_factory=dict)
    level: int | None = None
    reference: int | None = None  # params are for images this wide, rescaled to the actual width (@report)

    @property
    def label(self) -> str:
        """``name@level`` for a level, ``name@report`` at the report's scale, ``name`` alone at the
        default setting, else ``name:key=value,...``."""
        if self.reference is not None:
            return f"{self.degrader.name}@{AT_REPORT}"
        if self.level is not None:
            return f"{self.degrader.name}@{self.level}"
        defaults = {p.name: p.default for p in self.degrader.params}
        changed = {k: v for k, v in self.params.items() if defaults.get(k) != v}
        if not changed:
            return self.degrader.name
        return self.degrader.name + ":" + ",".join(f"{k}={v}" for k, v in changed.items())

    def params_for(self, width: int) -> dict[str, Any]:
        """The parameters used on images ``width`` pixels wide."""
        if self.reference is not None:
            return self.degrader.rescaled(self.params, width / self.reference)
        return self.degrader.level_params(self.level, width) if self.level is not None else self.params

    def apply(self, images: np.ndarray, seed: int = 0) -> np.ndarray:
        """Degrade a batch of images with the bound parameters (or level)."""
        return self.degrader.apply(images, self.params_for(images.shape[2]), seed)

    def to_json(self) -> dict[str, Any]:
        """The record kept in a run's config."""
        out = {"name": self.degrader.name, "params": self.params, "level": self.level, "label": self.label}
        if self.reference is not None:
            out["reference_width"] = self.reference
        return out


def parse_spec(spec: str) -> tuple[str, dict[str, str], int | None]:
    """Split ``"blur:ksize=9,sigma=2"`` into ``("blur", {"ksize": "9", "sigma": "2"}, None)`` and
    ``"blur@3"`` into ``("blur", {}, 3)``.

    Raises:
        BtkError: a malformed specification.
    """
    head, _, rest = spec.strip().partition(":")
    name, at, level_text = head.partition("@")
    if not name:
        raise BtkError(f"empty degrader name in {spec!r}")
    level = None
    if at:
        if rest:
            raise BtkError(f"{spec!r}: give a level (NAME@LEVEL) or parameters (NAME:KEY=VALUE), not both")
        try:
            level = int(level_text)
        except ValueError:
            raise BtkError(f"{spec!r}: the level must be a whole number 1..{LEVELS} or '{AT_REPORT}'") from None
    params: dict[str, str] = {}
    for item in filter(None, (x.strip() for x in rest.split(","))):
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise BtkError(f"bad degrader parameter {item!r} in {spec!r}: write KEY=VALUE")
        params[key.strip()] = value.strip()
    return name, params, level


def resolve_degradations(host: Any, specs: tuple[str, ...] | list[str]) -> list[Degradation]:
    """Parse and validate ``NAME[:K=V,...]`` specs against the registered degraders."""
    out = []
    for spec in specs:
        if spec.strip().endswith("@" + AT_REPORT):
            degrader = host.degraders.get(spec.strip()[: -len(AT_REPORT) - 1])
            out.append(Degradation(degrader, degrader.resolve({}), reference=REFERENCE_SIZE))
            continue
        name, params, level = parse_spec(spec)
        degrader = host.degraders.get(name)
        if level is not None:
            degrader.level_params(level)  # validates the level
            out.append(Degradation(degrader, {}, level))
        else:
            out.append(Degradation(degrader, degrader.resolve(params)))
    return out
