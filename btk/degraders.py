"""Degraders: pure functions of (image batch, parameters, random generator) -> image batch.

A :class:`Degrader` declares its parameters in one place (:class:`Param`), so the command
line, validation and the run record all read the same declaration. The same degraders serve
test-time degradation, degraded training copies and (later) augmentation and sweeps.

A degradation is written on the command line as ``NAME`` or ``NAME:KEY=VALUE,KEY=VALUE``,
e.g. ``blur`` or ``blur:ksize=9,sigma=2``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from btk.errors import BtkError


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
        if self.odd and int(converted) % 2 == 0:
            raise BtkError(f"{owner}: parameter '{self.name}' must be odd, got {converted}")
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

    @property
    def label(self) -> str:
        """``name`` alone at the default setting, else ``name:key=value,...``."""
        defaults = {p.name: p.default for p in self.degrader.params}
        changed = {k: v for k, v in self.params.items() if defaults.get(k) != v}
        if not changed:
            return self.degrader.name
        return self.degrader.name + ":" + ",".join(f"{k}={v}" for k, v in changed.items())

    def apply(self, images: np.ndarray, seed: int = 0) -> np.ndarray:
        """Degrade a batch of images with the bound parameters."""
        return self.degrader.apply(images, self.params, seed)

    def to_json(self) -> dict[str, Any]:
        """The record kept in a run's config."""
        return {"name": self.degrader.name, "params": self.params, "label": self.label}


def parse_spec(spec: str) -> tuple[str, dict[str, str]]:
    """Split ``"blur:ksize=9,sigma=2"`` into ``("blur", {"ksize": "9", "sigma": "2"})``.

    Raises:
        BtkError: a malformed specification.
    """
    name, _, rest = spec.strip().partition(":")
    if not name:
        raise BtkError(f"empty degrader name in {spec!r}")
    params: dict[str, str] = {}
    for item in filter(None, (x.strip() for x in rest.split(","))):
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise BtkError(f"bad degrader parameter {item!r} in {spec!r}: write KEY=VALUE")
        params[key.strip()] = value.strip()
    return name, params
