"""Putting the shares of a sharded ``btk predict`` back together (``btk merge``).

``btk predict --shard K/N --out DIR`` predicts the K-th of N contiguous shares of its inputs'
entries (:func:`btk.predict_inputs.take_shard`) and records the share in ``predict.json``. The
shares of K = 1..N cover every entry once, in order, so their ``predictions.csv`` rows, put one
after the other in K order, are the rows the unsharded command writes: :func:`merge_predictions`
checks that the folders are the N shares of one job (the same run, inputs and N; every K once)
and writes that table, with a ``predict.json`` that adds up the shares' counts.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from btk.errors import BtkError


def read_share(folder: Path) -> tuple[dict[str, Any], list[str]]:
    """A share's ``predict.json`` and the lines of its ``predictions.csv``.

    Raises:
        BtkError: not a ``btk predict --out`` directory, or one predicted without ``--shard``.
    """
    record, table = folder / "predict.json", folder / "predictions.csv"
    if not record.is_file() or not table.is_file():
        raise BtkError(f"{folder}: not a btk predict result (no predict.json and predictions.csv)")
    meta = json.loads(record.read_text())
    if "shard" not in meta:
        raise BtkError(f"{folder}: predicted without --shard: nothing to merge it with")
    with open(table, newline="") as fh:  # its line ends as written (the csv module's \r\n)
        return meta, fh.read().splitlines(keepends=True)


def merge_predictions(folders: list[Path], out: Path) -> Path:
    """Merge the shares in ``folders`` (any order) into a new predictions directory in ``out``
    (complete or absent); its path.

    Raises:
        BtkError: the folders are not every share of one job once (one line saying which).
    """
    from btk.run_files import ResultDir, check_writable

    parent = check_writable(out, "--out")
    shares = [(folder, *read_share(folder)) for folder in folders]
    first = shares[0][1]
    for folder, meta, _ in shares[1:]:
        for key in ("run", "inputs"):
            if meta.get(key) != first.get(key):
                raise BtkError(f"{folder}: another {key} than {shares[0][0]} ({meta.get(key)} against "
                               f"{first.get(key)}): not shares of one prediction")
        if (meta["shard"]["n"], meta["shard"]["of"]) != (first["shard"]["n"], first["shard"]["of"]):
            raise BtkError(f"{folder}: a share of {meta['shard']['n']} of {meta['shard']['of']} inputs, "
                           f"{shares[0][0]} of {first['shard']['n']} of {first['shard']['of']}")
    n = first["shard"]["n"]
    given = Counter(meta["shard"]["k"] for _, meta, _ in shares)
    twice = sorted(k for k, c in given.items() if c > 1)
    missing = sorted(set(range(1, n + 1)) - set(given))
    if twice or missing:
        problems = [f"share {k}/{n} given {given[k]} times" for k in twice]
        if missing:
            problems.append(f"share(s) {', '.join(f'{k}/{n}' for k in missing)} missing")
        raise BtkError("; ".join(problems))
    shares.sort(key=lambda share: share[1]["shard"]["k"])
    header = shares[0][2][:1]
    for folder, _, lines in shares[1:]:
        if lines[:1] != header:
            raise BtkError(f"{folder}: its predictions.csv has other columns than {shares[0][0]}'s")
    answers: Counter[str] = Counter()
    for _, meta, _ in shares:
        answers.update(meta.get("answers", {}))
    merged = {key: value for key, value in first.items() if key not in ("shard", "rows", "images", "answers",
                                                                        "skipped", "read_in_part")}
    merged.update({"rows": sum(meta["rows"] for _, meta, _ in shares),
                   "images": sum(meta["images"] for _, meta, _ in shares), "answers": dict(answers),
                   "merged_from": [str(folder) for folder, _, _ in shares],
                   "skipped": [s for _, meta, _ in shares for s in meta.get("skipped", [])]})
    parts = [p for _, meta, _ in shares for p in meta.get("read_in_part", [])]
    if parts:
        merged["read_in_part"] = parts
    with ResultDir(parent, f"predict-merged-{Path(str(first['run'])).name}") as result:
        with open(result.path("predictions.csv"), "w", newline="") as fh:
            fh.writelines(header)
            for _, _, lines in shares:
                fh.writelines(lines[1:])
        result.path("predict.json").write_text(json.dumps(merged, indent=1) + "\n")
    return result.final
