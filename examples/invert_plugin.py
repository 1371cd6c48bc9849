"""A complete btk plugin in one file: an ``invert`` degrader (255 - pixel).

Install it as a package with this in its ``pyproject.toml``::

    [project.entry-points.btk]
    invert = "invert_plugin"

or, in Python, register it for the current process::

    import btk.plugins, invert_plugin
    btk.plugins.register_plugin(invert_plugin)
"""

from __future__ import annotations

import numpy as np

from btk.api import Degrader, Param, RegisterDegrader, hookimpl


def invert(image: np.ndarray, rng: np.random.Generator, amount: float) -> np.ndarray:
    """Blend the image with its negative: 0 keeps it, 1 fully inverts it."""
    out = (1 - amount) * image.astype(np.float32) + amount * (255 - image.astype(np.float32))
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


@hookimpl
def btk_register_degraders(register: RegisterDegrader) -> None:
    register(Degrader("invert", invert, (Param("amount", float, 1.0, 0.0, 1.0, "share of the negative"),),
                      "blend with the negative image"))
