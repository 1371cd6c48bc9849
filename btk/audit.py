"""``btk audit``: what a dataset holds and where it repeats itself.

Reads every image at its own size (grayscale), keeps only fingerprints and statistics, and
reports class counts per split, image sizes, channels and bit depth, unreadable files, and
exact and near-duplicate pairs within each split, across splits, and against another dataset,
flagging pairs whose labels disagree.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np

from btk.classmap import map_labels, unknown_classes, vocabulary_error
from btk.dataset import iter_entries
from btk.duplicates import DEFAULT_THRESHOLD, Fingerprints, find_pairs, fingerprint
from btk.errors import BtkError
from btk.feedback import Feedback
from btk.types import Reader, ReadOptions


@dataclass
class ImageSet:
    """Fingerprints and descriptions of one dataset's images."""

    name: str
    sources: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    splits: list[str] = field(default_factory=list)
    sizes: Counter = field(default_factory=Counter)
    channels: Counter = field(default_factory=Counter)
    bit_depths: Counter = field(default_factory=Counter)
    unreadable: list[tuple[str, str]] = field(default_factory=list)
    fingerprints: Fingerprints | None = None

    def split_index(self, split: str) -> np.ndarray:
        """Indices of the images in ``split``."""
        return np.array([i for i, s in enumerate(self.splits) if s == split], dtype=int)


def read_image_set(name: str, reader: Reader, path: Path | None, reader_options: dict[str, str] | None = None,
                   progress: Callable[[int, int], None] | None = None) -> ImageSet:
    """Fingerprint every image ``reader`` finds at ``path``; unreadable ones are listed, never fatal."""
    options = ReadOptions(image_size=None, channels=1, extra={**(reader_options or {}), "inspect": "1"})

    def describe(samples):
        return [(s, fingerprint(s.image)) for s in samples]

    result = ImageSet(name)
    parts = []
    for entry, loaded in iter_entries(reader, path, options, progress=progress, transform=describe):
        if isinstance(loaded, str):
            result.unreadable.append((entry.source, loaded))
            continue
        for sample, fp in loaded:
            result.sources.append(sample.source)
            result.labels.append(str(sample.label))
            result.splits.append(sample.split or "all")
            result.sizes[f"{sample.image.shape[1]}x{sample.image.shape[0]}"] += 1
            channels = 1 if sample.image.ndim == 2 else sample.image.shape[-1]
            result.channels[sample.meta.get("file_channels", channels)] += 1
            result.bit_depths[sample.meta.get("bit_depth", sample.image.dtype.itemsize * 8)] += 1
            parts.append(fp)
    if not parts:
        raise BtkError(f"no readable images at {path} ({len(result.unreadable)} unreadable)")
    result.fingerprints = Fingerprints(np.array([p[0] for p in parts], dtype=object), np.stack([p[1] for p in parts]),
                                       np.stack([p[2] for p in parts]).astype(np.float16))
    return result


@dataclass
class Pair:
    """Two images that are copies of each other."""

    scope: str  # "within Training", "Testing vs Training", "against OTHER", ...
    a_source: str
    a_label: str
    b_source: str
    b_label: str
    kind: str  # "exact" or "near"
    score: float
    labels_compared: bool = True  # False where the two datasets name their classes differently

    @property
    def labels_disagree(self) -> bool:
        """Whether the two copies carry different labels (never, where labels are not compared)."""
        return self.labels_compared and self.a_label != self.b_label


@dataclass
class AuditResult:
    """Everything ``btk audit`` found."""

    sets: list[ImageSet]
    pairs: list[Pair]
    threshold: float
    copies: dict[str, dict[str, int | None]] = field(default_factory=dict)
    class_map: dict[str, str] = field(default_factory=dict)
    uncompared: dict[str, str] = field(default_factory=dict)  # scope -> why its labels were not compared

    def summary(self) -> dict[str, Any]:
        """A JSON-ready summary."""
        out: dict[str, Any] = {"threshold": self.threshold, "datasets": {}, "pairs": {}, "copies": self.copies,
                               "class_map": self.class_map, "labels_not_compared": self.uncompared}
        for s in self.sets:
            counts: dict[str, dict[str, int]] = {}
            for split, label in zip(s.splits, s.labels):
                counts.setdefault(split, {}).setdefault(label, 0)
                counts[split][label] += 1
            out["datasets"][s.name] = {
                "images": len(s.sources), "class_counts": counts, "sizes": dict(s.sizes.most_common()),
                "channels": {str(k): v for k, v in s.channels.items()},
                "bit_depths": {str(k): v for k, v in s.bit_depths.items()},
                "unreadable": [{"source": src, "reason": why} for src, why in s.unreadable],
            }
        for scope in dict.fromkeys(p.scope for p in self.pairs):
            ps = [p for p in self.pairs if p.scope == scope]
            out["pairs"][scope] = {"exact": sum(p.kind == "exact" for p in ps),
                                   "near": sum(p.kind == "near" for p in ps),
                                   "labels_disagree": None if scope in self.uncompared
                                   else sum(p.labels_disagree for p in ps)}
        return out


SPLIT_TITLES = {"train": "Training", "test": "Testing", "all": "all"}


def _pairs(scope: str, a: ImageSet, ia: np.ndarray, b: ImageSet | None, ib: np.ndarray | None,
           threshold: float, compared: bool = True) -> list[Pair]:
    # every ImageSet from read_image_set has fingerprints, and ib comes with b
    fa = cast(Fingerprints, a.fingerprints).subset(ia)
    fb = None if b is None else cast(Fingerprints, b.fingerprints).subset(cast(np.ndarray, ib))
    other, io = (a, ia) if b is None else (b, cast(np.ndarray, ib))
    return [Pair(scope, a.sources[ia[i]], a.labels[ia[i]], other.sources[io[j]], other.labels[io[j]], kind, score,
                 compared)
            for i, j, kind, score in find_pairs(fa, fb, threshold)]


def copies_of(pairs: list[Pair], scope: str, compared: bool = True) -> dict[str, int | None]:
    """For the first side of ``scope``'s pairs: how many images have an exact copy, a near copy
    only, and a copy with a different label (``None`` where labels were not compared)."""
    ps = [p for p in pairs if p.scope == scope]
    exact = {p.a_source for p in ps if p.kind == "exact"}
    near_only = {p.a_source for p in ps if p.kind == "near"} - exact
    disagree = {p.a_source for p in ps if p.labels_disagree}
    return {"exact_copy": len(exact), "near_copy_only": len(near_only), "any_copy": len(exact | near_only),
            "copy_with_other_label": len(disagree) if compared else None}


def comparable_vocabularies(a: set[str], b: set[str]) -> bool:
    """Whether two datasets name their classes alike: one's class names are all the other's."""
    return a <= b or b <= a


def audit(main: ImageSet, against: ImageSet | None = None, threshold: float = DEFAULT_THRESHOLD,
          class_map: dict[str, str] | None = None) -> AuditResult:
    """Find duplicate pairs within each split of ``main``, from its test split to its training
    split, and from ``main`` to ``against``.

    ``class_map`` renames ``against``'s classes into ``main``'s before labels are compared.
    Without it, two datasets whose class names differ have their copies found but no label
    conflicts counted (every pair would be one).

    Raises:
        BtkError: ``class_map`` is given and the renamed classes still do not match ``main``'s.
    """
    class_map = dict(class_map or {})
    pairs: list[Pair] = []
    splits = list(dict.fromkeys(main.splits))
    for split in splits:
        idx = main.split_index(split)
        pairs += _pairs(f"within {SPLIT_TITLES.get(split, split)}", main, idx, None, None, threshold)
    copies = {}
    if "test" in splits and "train" in splits:
        scope = "Testing vs Training"
        pairs += _pairs(scope, main, main.split_index("test"), main, main.split_index("train"), threshold)
        copies["Testing images with a copy in Training"] = copies_of(pairs, scope)
    uncompared: dict[str, str] = {}
    if against is not None:
        scope = f"{main.name} vs {against.name}"
        if class_map:
            unknown = unknown_classes(class_map, against.labels)
            if unknown:
                raise BtkError(f"--map names classes {against.name} does not have: {', '.join(unknown)} "
                               f"({against.name} has {', '.join(sorted(set(against.labels)))})")
            against.labels = map_labels(against.labels, class_map)
        mine, theirs = set(main.labels), set(against.labels)
        compared = comparable_vocabularies(mine, theirs)
        if not compared:
            if class_map:
                raise vocabulary_error(against.name, theirs, main.name, mine, class_map)
            uncompared[scope] = (f"the class names differ ({main.name}: {', '.join(sorted(mine))}; {against.name}: "
                                 f"{', '.join(sorted(theirs))}): give --map SRC=DST to compare labels")
        pairs += _pairs(scope, main, np.arange(len(main.sources)), against, np.arange(len(against.sources)), threshold,
                        compared)
        copies[f"{main.name} images with a copy in {against.name}"] = copies_of(pairs, scope, compared)
    return AuditResult([main] + ([against] if against else []), pairs, threshold, copies, class_map, uncompared)


def write_pairs(result: AuditResult, path: Path) -> None:
    """Every pair as CSV (``.csv``) or JSON (any other suffix), complete or not at all."""
    import csv
    import json

    from btk.run_files import partial_file

    rows = [{"scope": p.scope, "a": p.a_source, "a_label": p.a_label, "b": p.b_source, "b_label": p.b_label,
             "kind": p.kind, "score": p.score, "labels_disagree": p.labels_disagree} for p in result.pairs]
    tmp = partial_file(path)
    try:
        if path.suffix.lower() == ".csv":
            with open(tmp, "w", newline="") as fh:
                writer = csv.DictWriter(fh, fieldnames=list(rows[0]) if rows else ["scope", "a", "b"])
                writer.writeheader()
                writer.writerows(rows)
        else:
            tmp.write_text(json.dumps({"summary": result.summary(), "pairs": rows}, indent=1) + "\n")
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def audit_paths(data: Path, reader: Reader, reader_options: dict[str, str] | None = None,
                against: Path | None = None, against_reader: Reader | None = None,
                threshold: float = DEFAULT_THRESHOLD, feedback: Feedback | None = None,
                class_map: dict[str, str] | None = None) -> AuditResult:
    """Read ``data`` (and ``against``) with a progress task each, then :func:`audit` them
    (``class_map``: ``against``'s class names renamed into ``data``'s)."""
    feedback = feedback or Feedback()
    with feedback.task(f"reading {data}") as task:
        main = read_image_set(Path(data).name, reader, data, reader_options,
                              lambda d, t: task.update(completed=d, total=t))
    other = None
    if against is not None:
        with feedback.task(f"reading {against}") as task:
            other = read_image_set(Path(against).name, against_reader or reader, against, reader_options,
                                   lambda d, t: task.update(completed=d, total=t))
    return audit(main, other, threshold, class_map)
