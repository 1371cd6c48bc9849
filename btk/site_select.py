"""Which scans of a new site to label (``btk select``): a budget of N scans, a share of them drawn
at random (for an honest estimate of accuracy at the site: only a random sample estimates it),
the rest chosen by the run or at random.

Methods:

- ``random``: every scan drawn at random, one per series or patient (the default until the
  learning curves of ``docs/site.md`` show the other better by the rule written there).
- ``uncertainty``: the most uncertain scans first (entropy of the run's calibrated
  probabilities), spread out: among the ``POOL`` x N most uncertain, k-center greedy on the
  network's features (each next scan the farthest from those already chosen, the random ones
  included), so the chosen scans are not near copies of one another.

Every series or patient (a reader's group: a DICOM series, a NIfTI volume, a file of its own)
gives at most one scan: its most uncertain slice for ``uncertainty``, a random one for
``random``. The list a person fills in (``to_label.csv``: ``path,label``, the format of
``--labels``) does not say which scans were drawn at random, and lists them in a random order;
``selection.json`` keeps that.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from btk.errors import BtkError

METHODS = ("random", "uncertainty")
DEFAULT_METHOD = "random"
POOL = 2
"""``uncertainty`` spreads its choice over the ``POOL`` x N most uncertain scans."""
LIST_FILE = "to_label.csv"
RECORD_FILE = "selection.json"


@dataclass
class Candidate:
    """One scan a person could label: the input, the slice (series, volumes), its group."""

    path: str
    slice: int | None
    group: str
    probabilities: np.ndarray = field(repr=False)
    features: np.ndarray | None = field(default=None, repr=False)

    @property
    def entropy(self) -> float:
        """Shannon entropy (nats) of the run's calibrated probabilities."""
        p = np.clip(np.asarray(self.probabilities, np.float64), 1e-12, 1.0)
        return float(-(p * np.log(p)).sum())


@dataclass
class Selection:
    """What ``btk select`` wrote: its folder, the scans (with how each was chosen)."""

    folder: Path
    chosen: list[tuple[Candidate, str]]
    scans: int
    groups: int
    method: str
    skipped: list[tuple[str, str]] = field(default_factory=list)  # inputs that could not be read, and why


def check_selection(budget: int, method: str, random_share: float) -> None:
    """One-line refusals before any image is read."""
    if budget < 1:
        raise BtkError(f"--budget {budget}: give at least 1 scan to label")
    if method not in METHODS:
        raise BtkError(f"--method {method}: unknown (known: {', '.join(METHODS)})")
    if not 0.0 <= random_share <= 1.0:
        raise BtkError(f"--random-share {random_share}: a share between 0 and 1")


def candidates_per_group(candidates: list[Candidate], method: str, rng: np.random.Generator) -> list[Candidate]:
    """One scan per group, in the order the groups first appear: the most uncertain slice
    (``uncertainty``) or a random one."""
    by_group: dict[str, list[Candidate]] = {}
    for c in candidates:
        by_group.setdefault(c.group, []).append(c)
    out = []
    for members in by_group.values():
        if method == "uncertainty":
            out.append(max(members, key=lambda c: c.entropy))
        else:
            out.append(members[int(rng.integers(len(members)))])
    return out


def choose(candidates: list[Candidate], budget: int, method: str, random_share: float, seed: int
           ) -> list[tuple[Candidate, str]]:
    """``budget`` scans of ``candidates`` (one per group), each with how it was chosen
    (``random`` or ``uncertainty``): the random ones first.

    Raises:
        BtkError: a budget larger than the site's series and patients.
    """
    rng = np.random.default_rng(seed)
    units = candidates_per_group(candidates, method, rng)
    if budget > len(units):
        raise BtkError(f"--budget {budget} is larger than the site: {len(units)} series or patients "
                       f"({len(candidates)} scans), one scan each")
    n_random = budget if method == "random" else int(round(random_share * budget))
    order = rng.permutation(len(units))
    picked = [int(i) for i in order[:n_random]]
    chosen = [(units[i], "random") for i in picked]
    if method == "uncertainty" and budget > n_random:
        drawn = set(picked)
        rest = [i for i in range(len(units)) if i not in drawn]
        wanted = budget - n_random
        rest.sort(key=lambda i: -units[i].entropy)
        pool = rest[:max(wanted, POOL * wanted)]
        feats = np.stack([np.asarray(u.features, np.float64) for u in units])
        feats = (feats - feats.mean(axis=0)) / (feats.std(axis=0) + 1e-9)
        if picked:
            nearest = np.min(np.linalg.norm(feats[pool][:, None, :] - feats[picked][None, :, :], axis=2), axis=1)
        else:
            nearest = np.full(len(pool), np.inf)
        taken: list[int] = []
        for _ in range(wanted):  # farthest first; the most uncertain wins a tie (the pool is in that order)
            k = int(np.argmax(np.where(np.isin(np.arange(len(pool)), taken), -np.inf, nearest)))
            taken.append(k)
            chosen.append((units[pool[k]], "uncertainty"))
            nearest = np.minimum(nearest, np.linalg.norm(feats[pool] - feats[pool[k]], axis=1))
    return chosen


def select_site(run: Any, paths: Sequence[str | Path], budget: int, out: Path | str,
                method: str = DEFAULT_METHOD, random_share: float = 0.25, seed: int = 0, feedback: Any = None,
                host: Any = None, reader_name: str | None = None, reader_options: dict[str, str] | None = None,
                slices: str = "all") -> Selection:
    """``btk select``, the whole job: the site's scans at ``paths`` read and scored by ``run``'s
    scorer (:func:`btk.predict.predict_stream`), ``budget`` of them chosen (:func:`choose`), and
    a new folder under ``out`` written with ``to_label.csv`` (for a person: ``path,label``, label
    empty, in a random order), ``label.html`` (the page to label them in, which saves that CSV
    filled in: :mod:`btk.label_page`) and ``selection.json`` (the run, the method, the seed, and
    each scan's way of being chosen, group, answer and entropy).

    Raises:
        BtkError: a bad budget, method or share; nothing readable; a budget larger than the site;
            a folder that cannot be written.
    """
    from contextlib import closing

    from btk.feedback import Feedback
    from btk.label_page import PAGE_FILE, preview_images, write_label_page
    from btk.plugins import get_host
    from btk.predict import PredictionTally, predict_stream
    from btk.predict_inputs import gather_inputs
    from btk.run_files import ResultDir, check_writable

    check_selection(budget, method, random_share)
    feedback = feedback or Feedback()
    parent = check_writable(out)
    inputs = gather_inputs(paths, host or get_host(), run.read_options({}), reader_name, reader_options, slices)
    tally = PredictionTally()
    rows = []
    stream = predict_stream(run, inputs, feedback, tally=tally, keep_probabilities=True,
                            keep_features=method == "uncertainty")
    with closing(stream):
        for row in stream:
            if row.aggregated_over is None:
                rows.append(row)
    if not rows:
        raise BtkError("nothing could be read to select from")
    probabilities = np.concatenate(tally.probabilities)
    features = np.concatenate(tally.features) if tally.features else [None] * len(rows)
    candidates = [Candidate(r.path, r.slice, g, p, f) for r, g, p, f in zip(rows, tally.groups, probabilities,
                                                                            features)]
    chosen = choose(candidates, budget, method, random_share, seed)
    shuffled = [chosen[i] for i in np.random.default_rng(seed + 1).permutation(len(chosen))]
    with feedback.task("making the labelling page"):
        previews = preview_images([c.path for c, _ in chosen], {(c.path, c.slice) for c, _ in chosen},
                                  host or get_host())
    with ResultDir(parent, f"select-{run.name}") as folder:
        write_label_page(folder.path(PAGE_FILE),
                         [{"path": c.path, "slice": c.slice, "image": previews.get((c.path, c.slice), ""),
                           "answer": run.classes[int(np.argmax(c.probabilities))],
                           "confidence": float(np.max(c.probabilities))} for c, _ in shuffled],
                         run.classes, f"Label {len(shuffled)} scans")
        with open(folder.path(LIST_FILE), "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["path", "slice", "label"])
            for c, _ in shuffled:
                writer.writerow([c.path, "" if c.slice is None else c.slice, ""])
        record = {"run": str(run.path), "inputs": [str(p) for p in paths], "budget": budget, "method": method,
                  "random_share": random_share if method != "random" else 1.0, "seed": seed,
                  "scans": len(candidates), "groups": len({c.group for c in candidates}),
                  "skipped": [list(s) for s in tally.skipped],
                  "chosen": [{"path": c.path, "slice": c.slice, "group": c.group, "chosen_by": how,
                              "predicted": run.classes[int(np.argmax(c.probabilities))],
                              "entropy": c.entropy} for c, how in chosen]}
        folder.path(RECORD_FILE).write_text(json.dumps(record, indent=1) + "\n")
    return Selection(folder.final, chosen, len(candidates), len({c.group for c in candidates}), method,
                     list(tally.skipped))
