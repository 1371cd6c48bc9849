"""Class names across datasets: ``--map SRC=DST`` renames a dataset's classes into another
vocabulary (a run's, or the dataset it is audited against), and a vocabulary that still does
not fit is one error that lists both."""

from __future__ import annotations

from collections.abc import Iterable

from btk.errors import BtkError


def parse_class_map(values: Iterable[str]) -> dict[str, str]:
    """``{SRC: DST}`` from ``SRC=DST`` strings (``--map``, repeatable).

    Raises:
        BtkError: an entry without ``=`` or with an empty side, or a class mapped twice.
    """
    mapping: dict[str, str] = {}
    for value in values:
        src, sep, dst = value.partition("=")
        src, dst = src.strip(), dst.strip()
        if not sep or not src or not dst:
            raise BtkError(f"--map expects SRC=DST (a class name on each side), got '{value}'")
        if src in mapping and mapping[src] != dst:
            raise BtkError(f"--map names class '{src}' twice ({mapping[src]}, {dst})")
        mapping[src] = dst
    return mapping


def map_labels(labels: Iterable[str], mapping: dict[str, str]) -> list[str]:
    """Each label renamed by ``mapping`` (unmapped labels unchanged)."""
    return [mapping.get(str(label), str(label)) for label in labels]


def unknown_classes(classes: Iterable[str], vocabulary: Iterable[str]) -> list[str]:
    """The names in ``classes`` that ``vocabulary`` does not have, sorted."""
    known = set(vocabulary)
    return sorted({c for c in classes if c not in known})


def vocabulary_error(data_name: str, data_classes: Iterable[str], other_name: str, other_classes: Iterable[str],
                     mapping: dict[str, str]) -> BtkError:
    """The one-line error for class names that do not match: both vocabularies, what is
    missing, and the ``--map`` that would fix it."""
    data_set, other_set = sorted(set(data_classes)), sorted(set(other_classes))
    missing = unknown_classes(data_set, other_set)
    hint = f"use --map {missing[0]}=<one of {other_name}'s classes>" if missing else "use --map SRC=DST"
    used = f" after --map {', '.join(f'{k}={v}' for k, v in mapping.items())}" if mapping else ""
    return BtkError(f"class names do not match{used}: {data_name} has {', '.join(data_set)}; "
                    f"{other_name} has {', '.join(other_set)}; not in {other_name}: {', '.join(missing)} ({hint})")
