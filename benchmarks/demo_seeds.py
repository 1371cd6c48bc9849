"""`make demo` over seeds: the accuracy of `btk run` (the demo: small-cnn on the built-in
synthetic phantoms) for each seed and compute precision, and its time, written as JSON. The
README quotes these figures; a test keeps its sentence and this file in step.

    python benchmarks/demo_seeds.py --seeds 101-103 --out docs/results/cpu-demo/demo-seeds.json
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path


def main() -> None:
    from btk.plan import parse_seeds

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="101-103")
    parser.add_argument("--precisions", default="auto,float32", help="comma-separated compute precisions")
    parser.add_argument("--out", type=Path, required=True, help="JSON file to write")
    parser.add_argument("--runs", type=Path, default=Path("/tmp/btk-demo-seeds"), help="folder for the runs")
    args = parser.parse_args()
    results = []
    for precision in args.precisions.split(","):
        for seed in parse_seeds(args.seeds):
            start = time.perf_counter()
            done = subprocess.run([sys.executable, "-m", "btk", "run", "--seed", str(seed), "--set",
                                   f"precision={precision}", "--out", str(args.runs / precision), "--json"],
                                  capture_output=True, text=True, check=True)
            seconds = time.perf_counter() - start
            summary = json.loads(done.stdout)
            clean = summary["metrics"]["clean"]
            results.append({"seed": seed, "precision": precision, "accuracy": clean["accuracy"],
                            "correct": clean["correct"], "n": clean["n"], "seconds": round(seconds, 1),
                            "run": summary["run"]})
            print(f"{precision} seed {seed}: {100 * clean['accuracy']:.1f}% ({clean['correct']}/{clean['n']}), "
                  f"{seconds:.0f} s", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": platform.platform(), "processor": platform.processor(),
                                    "date": time.strftime("%Y-%m-%d"), "results": results}, indent=1) + "\n")


if __name__ == "__main__":
    main()
