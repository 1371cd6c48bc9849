"""How accurate a run is at a new site (``btk estimate``), from the scans ``btk select`` drew at
random there and a person labelled: only those are a random sample of the site's series and
patients (the scans chosen as uncertain are the hard cases by design, and never counted).

The interval is Clopper and Pearson's exact binomial 95% interval (SciPy's ``binomtest``),
which assumes the labelled random scans are a simple random sample of the site's series and
patients, one scan each (what ``btk select`` draws), that their labels are right, and that the
scans to be classified later come from the same site as it is now.

Labels coarser than the run's classes (tumour or none, for a run of four classes) are read
through ``--map`` (e.g. ``yes=tumor``, ``no=no_tumor``): such a label vouches for the run's
tumour-vs-none answer, never for its tumour type, and the estimate says which answers it
counts.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from btk.errors import BtkError

TUMOR = "tumor"
"""The coarse label for any tumour (the positive class of a binary task)."""


@dataclass
class Proportion:
    """``right`` of ``n``, with its exact 95% interval."""

    right: int
    n: int

    @property
    def value(self) -> float:
        return self.right / self.n if self.n else float("nan")

    def interval(self) -> tuple[float, float]:
        """Clopper-Pearson's exact 95% interval (``nan`` when nothing was counted)."""
        if not self.n:
            return float("nan"), float("nan")
        from scipy.stats import binomtest

        ci = binomtest(self.right, self.n).proportion_ci(confidence_level=0.95, method="exact")
        return float(ci.low), float(ci.high)

    def to_json(self) -> dict[str, Any]:
        low, high = self.interval()
        return {"right": self.right, "n": self.n, "value": self.value, "ci95": [low, high]}


@dataclass
class SiteEstimate:
    """A run's accuracy at a site: on its classes (scans labelled with one of them) and tumour vs
    none (every labelled scan), with how many scans were left out and why."""

    run: str
    classes: Proportion
    tumour_vs_none: Proportion
    per_class_recall: dict[str, Proportion]
    left_out: dict[str, int]

    def to_json(self) -> dict[str, Any]:
        return {"run": self.run, "accuracy": self.classes.to_json(), "tumour_vs_none": self.tumour_vs_none.to_json(),
                "recall": {c: p.to_json() for c, p in self.per_class_recall.items()}, "left_out": self.left_out,
                "method": "Clopper-Pearson exact binomial 95% interval on the scans drawn at random; assumes a "
                          "simple random sample of the site's series and patients, right labels, an unchanged site"}


def read_labels(path: Path, listed: Mapping[tuple[str, str], str]) -> dict[tuple[str, str], str]:
    """``(path, slice) -> label`` from a filled-in ``to_label.csv``.

    Raises:
        BtkError: an unreadable file, no ``path`` and ``label`` columns, or a scan not in the list.
    """
    from btk.label_corrections import label_rows

    out = {}
    for row in label_rows(path):
        key = (row["path"], row.get("slice") or "")
        if key not in listed:
            raise BtkError(f"--labels {path}: {row['path']}{' slice ' + key[1] if key[1] else ''} is not in the "
                           "selection's list: label only the scans btk select listed")
        out[key] = (row["label"] or "").strip()
    return out


def estimate_site(runs: Sequence[Any], selection: Path | str, labels: Path | str | None = None,
                  class_map: Mapping[str, str] | None = None, feedback: Any = None) -> list[SiteEstimate]:
    """``btk estimate``, the whole job: each of ``runs`` scored on the scans ``selection`` (a
    ``btk select`` folder) drew at random and ``labels`` (default: its ``to_label.csv``) labels,
    side by side; written to ``estimate.json`` in the selection folder.

    Raises:
        BtkError: not a selection folder, labels for scans not in its list, labels that are none of
            the runs' classes after ``class_map``, no labelled random scan.
    """
    from contextlib import closing

    from btk.plugins import get_host
    from btk.predict import predict_stream
    from btk.predict_inputs import gather_inputs
    from btk.run_files import write_json_atomic

    folder = Path(selection)
    record_file = folder / "selection.json"
    if not record_file.is_file():
        raise BtkError(f"--selection {folder}: not a btk select folder (no selection.json)")
    record = json.loads(record_file.read_text())
    listed = {(c["path"], "" if c["slice"] is None else str(c["slice"])): c["chosen_by"] for c in record["chosen"]}
    given = read_labels(Path(labels) if labels else folder / "to_label.csv", listed)
    mapping = dict(class_map or {})
    random_keys = [k for k, how in listed.items() if how == "random"]
    labelled = {k: mapping.get(given[k], given[k]) for k in random_keys if given.get(k) not in (None, "", "drop")}
    left_out = {"chosen_not_random": sum(1 for how in listed.values() if how != "random"),
                "skipped_or_unlabelled": sum(1 for k in random_keys if given.get(k) in (None, "")),
                "not_a_brain_mri": sum(1 for k in random_keys if given.get(k) == "drop")}
    if not labelled:
        raise BtkError(f"{folder}: none of the {len(random_keys)} scans drawn at random is labelled: nothing to "
                       "estimate from (the chosen ones never count)")
    for run in runs:
        known = set(run.classes) | set(getattr(run, "trained_classes", ())) | {TUMOR}
        unknown = sorted({v for v in labelled.values() if v not in known})
        if unknown:
            raise BtkError(f"labels {', '.join(unknown)} are none of {run.name}'s classes ({', '.join(run.classes)}) "
                           f"nor '{TUMOR}': map them with --map LABEL=CLASS")
    estimates = []
    host = get_host()
    paths = sorted({k[0] for k in labelled})
    for run in runs:
        inputs = gather_inputs(paths, host, run.read_options({}))
        answers: dict[tuple[str, str], str] = {}
        with closing(predict_stream(run, inputs, feedback)) as stream:
            for row in stream:
                if row.aggregated_over is None:
                    answers[(row.path, "" if row.slice is None else str(row.slice))] = row.predicted
        negative = run.config.negative_class
        exact = Proportion(0, 0)
        coarse = Proportion(0, 0)
        recall: dict[str, Proportion] = {}
        for key, truth in labelled.items():
            answer = answers.get(key)
            if answer is None:
                left_out["unreadable"] = left_out.get("unreadable", 0) + 1
                continue
            truth_tumour = truth != negative
            answer_tumour = answer != negative
            coarse = Proportion(coarse.right + int(truth_tumour == answer_tumour), coarse.n + 1)
            if truth in run.classes:
                exact = Proportion(exact.right + int(answer == truth), exact.n + 1)
                got = recall.get(truth, Proportion(0, 0))
                recall[truth] = Proportion(got.right + int(answer == truth), got.n + 1)
        estimates.append(SiteEstimate(run.name, exact, coarse, dict(sorted(recall.items())), dict(left_out)))
    write_json_atomic(folder / "estimate.json", {"selection": str(folder), "labels": str(labels or "to_label.csv"),
                                                 "map": mapping, "estimates": [e.to_json() for e in estimates]})
    return estimates
