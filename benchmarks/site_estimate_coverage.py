"""Does ``btk estimate``'s 95% interval contain the accuracy on the rest of the site? ``--reps``
times: ``btk select`` draws ``--budget`` scans of the site at random (seed 0, 1, ...), a perfect
radiologist labels them (the site's folder names), ``btk estimate`` gives the accuracy and its
interval from them, and the run's accuracy on every scan not drawn (from one ``btk predict`` of
the whole site) is the truth it should contain. Prints each repetition and the count.

Usage: python benchmarks/site_estimate_coverage.py --run RUN --site DIR [--budget 40] [--reps 10]
       [--map yes=tumor --map no=no_tumor] [--json FILE]
(``--map``: the site's folder names read as the run's classes; a coarse site (tumour or none) is
judged on tumour vs none)
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}


def btk(*args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "btk", *args], env=ENV, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"btk {args[0]} failed:\n{done.stderr[-2000:]}")
    return done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True)
    parser.add_argument("--site", type=Path, required=True)
    parser.add_argument("--budget", type=int, default=40)
    parser.add_argument("--reps", type=int, default=10)
    parser.add_argument("--map", action="append", default=[])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    mapping = dict(m.split("=", 1) for m in args.map)
    rows = json.loads(btk("predict", args.run, "--data", str(args.site), "--json"))
    negative = "no_tumor"
    coarse = any(v == "tumor" for v in mapping.values())

    def right(path: str, predicted: str) -> bool:
        truth = mapping.get(Path(path).parent.name, Path(path).parent.name)
        return (truth != negative) == (predicted != negative) if coarse else truth == predicted

    answers = {r["path"]: right(r["path"], r["predicted"]) for r in rows if r.get("slice") is None}
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.reps):
            out = Path(tmp) / f"sel{seed}"
            btk("select", args.run, "--data", str(args.site), "--budget", str(args.budget), "--seed", str(seed),
                "--out", str(out))
            [folder] = list(out.iterdir())
            with open(folder / "to_label.csv") as fh:
                listed = list(csv.DictReader(fh))
            with open(folder / "filled.csv", "w", newline="") as fh:
                writer = csv.writer(fh)
                writer.writerow(["path", "slice", "label"])
                for r in listed:
                    writer.writerow([r["path"], r["slice"], Path(r["path"]).parent.name])
            [estimate] = json.loads(btk("estimate", args.run, "--selection", str(folder), "--labels",
                                        str(folder / "filled.csv"), *[a for m in args.map for a in ("--map", m)],
                                        "--json"))
            shown = estimate["tumour_vs_none" if coarse else "accuracy"]
            drawn = {r["path"] for r in listed}
            rest = [ok for path, ok in answers.items() if path not in drawn]
            truth = sum(rest) / len(rest)
            low, high = shown["ci95"]
            results.append({"seed": seed, "estimate": shown["value"], "ci95": [low, high], "rest": truth,
                            "rest_n": len(rest), "contains": low <= truth <= high})
            print(f"seed {seed}: {100 * shown['value']:.1f}% [{100 * low:.1f}, {100 * high:.1f}] on {shown['n']}; "
                  f"the rest ({len(rest)}): {100 * truth:.1f}% {'inside' if low <= truth <= high else 'OUTSIDE'}",
                  flush=True)
    inside = sum(r["contains"] for r in results)
    width = sum(r["ci95"][1] - r["ci95"][0] for r in results) / len(results)
    print(f"the interval contains the rest's accuracy in {inside} of {len(results)}; mean width {100 * width:.1f} "
          "points")
    if args.json:
        args.json.write_text(json.dumps({"run": args.run, "site": str(args.site), "budget": args.budget,
                                         "map": mapping, "results": results, "inside": inside,
                                         "mean_width": width}, indent=1) + "\n")


if __name__ == "__main__":
    main()
