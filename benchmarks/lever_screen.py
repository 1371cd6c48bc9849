"""Screen a recipe change ("lever") on one fold, by the rule of docs/recipes.md.

Each variant trains fold K of a K-fold split of the training images (``btk run --set fold=K/N``)
with the baseline's seed, so it holds out the same images as the baseline fold run (also with
``--labels``: btk draws folds before corrections). On those held-out images, scored against the
labels of the data as read (the class folders), it measures accuracy, each class's recall and
tumour vs none, each with a 95% Wilson interval, on the images both runs scored, and applies
steps 1-2 of the rule: guard (no-tumour recall down more than 1 point, or accuracy down more than
0.5 point: drop) and pass (accuracy up at least 1 point, or no-tumour recall up at least 2
points, neither down). For injected label noise (flips through ``--labels``) the data as read
holds the true labels, so the held-out images are scored against the truth.

    python benchmarks/lever_screen.py --data ../shared/data/sartaj \\
        --baseline runs/folds5/*-cv5-seed101-fold1 --variant smooth="--set label_smoothing=0.1"
    python benchmarks/lever_screen.py --data ../shared/data/sartaj --baseline RUN   # the table so far

The baseline may also be a fold ensemble (``btk ensemble --folds K``), with fold ensembles as
variants (``NAME=@RUN``): the comparison is then on the out-of-fold answers of every training
image both scored, the full-size confirmation of step 4.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path


def wilson(k: int, n: int) -> tuple[float, float]:
    """95% Wilson interval of ``k`` successes in ``n`` (SciPy)."""
    from scipy.stats import binomtest

    ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    return float(ci.low), float(ci.high)


def held_out_answers(run_dir: Path) -> dict[str, str]:
    """``source -> predicted class`` of the run's validation (held-out fold) images, through the
    run's record (its prediction-set calibration keeps their calibrated probabilities); for a fold
    ensemble, the out-of-fold answers of every training image."""
    from btk.runs import load_run

    run = load_run(run_dir)
    cal = run.require_conformal()
    return {s: cal.classes[int(k)] for s, k in zip(cal.sources, cal.probabilities.argmax(axis=1))}


def scores(answers: dict[str, str], truth: dict[str, str], negative: str) -> dict:
    """Accuracy, recall per class and tumour vs none of ``answers`` against ``truth``."""
    paths = sorted(answers)
    right = [answers[p] == truth[p] for p in paths]
    out = {"images": len(paths), "accuracy": sum(right) / len(paths), "accuracy_ci": wilson(sum(right), len(paths))}
    for cls in sorted({truth[p] for p in paths}):
        mine = [answers[p] == cls for p in paths if truth[p] == cls]
        out[f"recall_{cls}"] = sum(mine) / len(mine)
    binary = [(answers[p] == negative) == (truth[p] == negative) for p in paths]
    out["tumour_vs_none"] = sum(binary) / len(binary)
    return out


def own_test(run_dir: Path) -> dict:
    """The run's own test images (SARTAJ Testing, with and without a copy in its training
    images): kept for the record, never read by the rule."""
    from btk.runs import load_run

    metrics = load_run(run_dir).metrics
    clean = metrics["conditions"]["clean"]
    unseen = metrics["leakage"]["conditions_without_copies"]["clean"]
    return {"accuracy": clean["accuracy"], "images": clean["n"], "no_copy_accuracy": unseen["accuracy"],
            "no_copy_images": unseen["n"]}


def folder_truth(sources: list[str]) -> dict[str, str]:
    """The label of each source as the folder reader reads it: its class folder's name."""
    return {s: Path(s).parent.name for s in sources}


def judge(base: dict, cand: dict, negative: str) -> str:
    """Steps 1-2 of the rule (docs/recipes.md): DROP, PASS or HOLD (neither)."""
    d_acc = 100 * (cand["accuracy"] - base["accuracy"])
    d_neg = 100 * (cand[f"recall_{negative}"] - base[f"recall_{negative}"])
    if d_neg < -1 or d_acc < -0.5:
        return "DROP"
    if (d_acc >= 1 or d_neg >= 2) and d_acc >= 0 and d_neg >= 0:
        return "PASS"
    return "HOLD"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--baseline", type=Path, required=True, help="the baseline fold run")
    ap.add_argument("--variant", action="append", default=[],
                    help="NAME=\"btk run flags\", or NAME=@RUN for a fold run already made; repeatable; none: "
                         "only print the table of what has been screened")
    ap.add_argument("--out", type=Path, default=Path("runs/screen"))
    ap.add_argument("--negative", default="no_tumor")
    args = ap.parse_args()
    from btk.runs import load_run

    base_run = load_run(args.baseline)
    fold, seed = base_run.config.fold, base_run.config.seed
    args.out.mkdir(parents=True, exist_ok=True)
    results_file = args.out / "screen.json"
    results = json.loads(results_file.read_text()) if results_file.exists() else {}
    for spec in args.variant:
        name, _, flags = spec.partition("=")
        run_dir = Path(flags[1:]) if flags.startswith("@") else next(iter(sorted(args.out.glob(f"*-screen-{name}"))),
                                                                            None)
        seconds = None
        if run_dir is None:
            cmd = [sys.executable, "-m", "btk", "run", "--data", str(args.data), "--set", f"fold={fold}",
                   "--seed", str(seed), *shlex.split(flags), "--name", f"screen-{name}", "--out", str(args.out),
                   "--reporter", "none", "--json"]
            print("$", shlex.join(cmd), flush=True)
            t0 = time.perf_counter()
            done = subprocess.run(cmd, capture_output=True, text=True)
            seconds = time.perf_counter() - t0
            if done.returncode:
                sys.exit(done.stderr[-3000:])
            run_dir = Path(json.loads(done.stdout)["run"])
        results[name] = {"run": str(run_dir), "flags": flags, "seconds": seconds,
                         "answers": held_out_answers(run_dir)}
        results_file.write_text(json.dumps(results, indent=1) + "\n")
    base_answers = held_out_answers(args.baseline)
    truth = folder_truth(list(base_answers))
    table = {}
    folds = base_run.metrics.get("cv", {}).get("folds")
    where = f"out of fold, {folds} folds" if folds and not fold else f"fold {fold}"
    print(f"{where}, seed {seed}; baseline {args.baseline.name}; scored against the class folders")
    for name, res in results.items():
        common = sorted(set(res["answers"]) & set(base_answers))
        base = scores({p: base_answers[p] for p in common}, truth, args.negative)
        cand = scores({p: res["answers"][p] for p in common}, truth, args.negative)
        verdict = judge(base, cand, args.negative)
        table[name] = {"baseline": base, "variant": cand, "verdict": verdict, "seconds": res["seconds"],
                       "flags": res["flags"], "test_record": own_test(Path(res["run"])),
                       "baseline_test_record": own_test(args.baseline)}
        recalls = "  ".join(f"{k[7:]} {100 * base[k]:.1f}->{100 * cand[k]:.1f}"
                            for k in cand if k.startswith("recall_"))
        lo, hi = cand["accuracy_ci"]
        print(f"{name:14s} {len(common)} images  accuracy {100 * base['accuracy']:.1f} -> {100 * cand['accuracy']:.1f} "
              f"[{100 * lo:.1f}, {100 * hi:.1f}]  {recalls}  tumour vs none {100 * base['tumour_vs_none']:.1f} -> "
              f"{100 * cand['tumour_vs_none']:.1f}  {verdict}"
              + (f"  ({res['seconds'] / 60:.1f} min)" if res["seconds"] else ""))
    (args.out / "screen-table.json").write_text(json.dumps(table, indent=1) + "\n")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
