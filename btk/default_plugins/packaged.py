"""The runs btk ships: ``phantom-demo``, the ``demo`` recipe trained on btk's synthetic phantoms.

No model trained on real scans ships with btk. SARTAJ, the dataset btk's recipes are measured on,
carries no licence (its SOURCE.md), so weights trained on it are not btk's to distribute under
MIT. ``phantom-demo`` shows the machinery: a packaged run, usable by name wherever a run is asked
for, and by ``btk predict`` when no run is given; its card gives its accuracy on SARTAJ Testing,
which is what a model that never saw a real scan deserves. A hospital packages its own model the
same way (``btk_register_runs`` in a package with a ``btk`` entry point; docs/plugins.md).
"""

from __future__ import annotations

from pathlib import Path

from btk.api import PackagedRun, RegisterRun, hookimpl

PACKAGED = Path(__file__).resolve().parent.parent / "packaged"
DEFAULT_RUN = "phantom-demo"


@hookimpl
def btk_register_runs(register: RegisterRun) -> None:
    """btk's own packaged run."""
    register(PackagedRun(DEFAULT_RUN, PACKAGED / DEFAULT_RUN,
                         "the demo recipe (small-cnn, 96 px) trained on btk's synthetic phantoms, not on real scans: "
                         "near chance on real MRI (its card)"))
