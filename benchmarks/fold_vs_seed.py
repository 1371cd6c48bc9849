"""Fold ensembles against a seed ensemble, as acceptance wants them side by side: out-of-fold
accuracy (fold ensembles), the ensemble on its own test images (for runs on the held-out-source
data of ``benchmarks/source_holdout.py``: the held-out tumours), on SARTAJ Testing and on the
Testing images with no copy in the run's training images, and the members' training minutes.
Every figure is read through the run record; SARTAJ Testing is scored by ``btk evaluate``'s
library function (an evaluation already in the run's ``evaluations/`` folder is reused).

    python benchmarks/fold_vs_seed.py --testing ../shared/data/sartaj \\
        --run runs/cv5h/*-folds5 --run runs/source-holdout/ensembles/*-seeds5 \\
        --out docs/results/cpu-folds/fold-vs-seed.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from lever_screen import wilson  # benchmarks/: the script's own folder


def testing_evaluation(run, testing: Path):
    """The run's evaluation on ``testing``'s Testing split: the one it has, or a new one."""
    from btk.evaluate import evaluate

    for ev in run.evaluations():
        source = ev.evaluation
        if source and Path(source.data).resolve() == testing.resolve() and source.split == "Testing":
            return ev
    return evaluate(run.path, testing)


def summary(run_dir: Path, testing: Path) -> dict:
    """One ensemble's figures (see the module's description)."""
    from btk.runs import load_run

    run = load_run(run_dir)
    own = run.metrics["conditions"]["clean"]
    ev = testing_evaluation(run, testing)
    sartaj = ev.metrics["conditions"]["clean"]
    unseen = ev.metrics["leakage"]["conditions_without_copies"]["clean"]
    members = run.ensemble.members if run.ensemble else ()
    out = {
        "run": run.name, "kind": "folds" if "cv" in run.metrics else "seeds", "members": len(members),
        "train_minutes": sum(m.train_seconds or 0 for m in members) / 60,
        "own_test": {"images": own["n"], "accuracy": own["accuracy"], "ci": wilson(own["correct"], own["n"]),
                     "recall": {c: v["recall"] for c, v in own["per_class"].items() if v["support"]}},
        "sartaj_testing": {"images": sartaj["n"], "accuracy": sartaj["accuracy"],
                           "ci": wilson(sartaj["correct"], sartaj["n"]),
                           "recall": {c: v["recall"] for c, v in sartaj["per_class"].items()}},
        "sartaj_testing_no_copy": {"images": unseen["n"], "accuracy": unseen["accuracy"],
                                   "ci": wilson(unseen["correct"], unseen["n"])},
    }
    if "cv" in run.metrics:
        cv = run.metrics["cv"]
        out["cv"] = {k: cv[k] for k in ("accuracy_per_fold", "accuracy_mean", "accuracy_std", "oof_accuracy",
                                        "oof_recall")}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--testing", type=Path, required=True, help="SARTAJ root (its Testing split is scored)")
    ap.add_argument("--run", type=Path, action="append", required=True, help="an ensemble run; repeatable")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    rows = [summary(r, args.testing) for r in args.run]
    for r in rows:
        cv = r.get("cv")
        cv_text = (f"OOF {100 * cv['oof_accuracy']:.1f} (folds {100 * cv['accuracy_mean']:.1f} +- "
                   f"{100 * cv['accuracy_std']:.1f})  ") if cv else ""
        t, s, u = r["own_test"], r["sartaj_testing"], r["sartaj_testing_no_copy"]
        print(f"{r['run']}: {r['members']} {r['kind']}, {r['train_minutes']:.1f} min training  {cv_text}"
              f"own test {100 * t['accuracy']:.1f} [{100 * t['ci'][0]:.1f}, {100 * t['ci'][1]:.1f}] of {t['images']}  "
              f"Testing {100 * s['accuracy']:.1f}  no copy {100 * u['accuracy']:.1f} of {u['images']}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
