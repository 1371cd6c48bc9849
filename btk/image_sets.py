"""Which images a run (or evaluation) was tested on, named so that two runs' images compare:
each source under its data folder. Comparisons name a best only among runs on the same images
(:mod:`btk.compare`); the model card says when an evaluation's images are the run's own."""

from __future__ import annotations

import hashlib
import os
from typing import Any

from btk.runs import Run


def data_root(run: Run) -> str:
    """Where ``run``'s image sources are relative to: its data folder (resolved where it is
    found), or for generated data (no folder, e.g. the synthetic phantoms) the reader and the
    fingerprint of what it generated."""
    path = run.data_path
    if path is not None:
        return str(path.resolve())
    if run.config.data:
        return os.path.normpath(run.config.data)
    sha = str((run.provenance.data if run.provenance is not None else {}).get("sha256") or "")
    return f"<{run.config.reader}{' ' + sha[:16] if sha else ''}>"


def image_keys(run: Run, sources: Any) -> frozenset[str]:
    """``sources`` of ``run`` named so that two runs' images compare: each under its data root
    (:func:`data_root`)."""
    root = data_root(run)
    return frozenset(f"{root}/{s}" for s in sources)


def tested_images(run: Run, condition: str = "clean") -> frozenset[str]:
    """The images ``run`` was tested on under ``condition`` (its first condition where it has
    no such), as :func:`image_keys`."""
    conditions = run.metrics["conditions"]
    sources, _, _ = run.condition_arrays(condition if condition in conditions else next(iter(conditions)))
    return image_keys(run, sources)


def images_id(keys: frozenset[str]) -> str:
    """A short fingerprint of a set of images (:func:`image_keys`): SHA-256 of the sorted names."""
    return hashlib.sha256("\n".join(sorted(keys)).encode()).hexdigest()[:12]


def own_images(run: Run, evaluation: Run) -> tuple[str, bool]:
    """Which of ``evaluation``'s images are ``run``'s own, in words for reports and the model
    card, and whether the evaluation is external (none of its images is one the run had, as far
    as the run records): ``("", True)`` when none are, else e.g. ``("the run's own 10 test
    images, the same images: not an external evaluation", False)`` or ``("10 of them the run's
    test images, 34 of them the run's training images: not an external evaluation", False)``."""
    from btk.errors import BtkError

    theirs = tested_images(evaluation)
    mine = tested_images(run)
    if theirs == mine:
        return f"the run's own {len(mine)} test images, the same images: not an external evaluation", False
    try:
        subsets = {subset: image_keys(run, run.subset_sources(subset))
                   for subset in dict.fromkeys(r["subset"] for r in run.split_rows())}
    except BtkError:
        subsets = {}
    subsets[run.roles.get("test") or "test"] = mine  # the test images as scored
    parts = [f"{len(theirs & keys)} of them the run's {run.describe_subset(subset)}"
             for subset, keys in subsets.items() if theirs & keys]
    if not parts:
        return "", True
    shared = len(theirs & frozenset().union(*subsets.values()))
    return ", ".join(parts) + (": not an external evaluation" if shared == len(theirs) else
                               f": {shared} of its {len(theirs)} images are the run's own"), False
