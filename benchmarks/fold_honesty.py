"""Fold ensembles before and after the honest folds, on the same folds, against a pool no fold sees.

SARTAJ Training alone: a share of it (``--pool-fraction``, 20%) is held out first as a test pool,
whole groups (near-copy clusters; the folder reader has no patient ids) and stratified by class,
and written as the ``Testing`` of a folder of links; the rest is the ``Training`` the folds are
drawn from. For each seed, btk's folds (:func:`btk.split.fold_splits`: a calibration part, then K
folds, each with an inner selection part) are trained twice:

- **new**: this btk. Fold k trains on the other folds less its selection part, stops early and
  picks its best epoch on that part, and answers fold k; the ensemble fits its temperature and
  prediction sets on its own scores of the calibration part.
- **old**: btk at commit 2e45875 (``--old-code``: that commit's files; made with ``git archive``
  when missing), given the same folds: fold k trains on the other folds (the new fold's training
  and selection parts), stops early and picks its best epoch on fold k itself, and answers fold
  k; the ensemble fits its temperature and sets on the single folds' out-of-fold outputs.

Neither trains on the calibration part or the pool. Reported per seed and code: out-of-fold
accuracy, the ensemble's accuracy and calibration error on the pool, and its per-class coverage
on the pool at 90% and 95% with each class's exact (Clopper-Pearson) 95% interval.

Each fold run is kept as it finishes (``OUT/new/seedS``, ``OUT/old/seedS``) and a rerun skips the
finished ones, so the benchmark can run across sittings. The whole of it (5 folds, 2 seeds, both
codes: 20 fold runs of the ``fast`` recipe, at most 30 epochs each) takes about 1 hour 40
minutes on 2 CPU cores with the machine to itself (measured 2026-12-07: 4.5 to 5.5 minutes a
fold run; 7 to 12 beside a test suite)::

    python benchmarks/fold_honesty.py --data ../shared/data/sartaj --out runs/fold-honesty \\
        --results docs/results/cpu-fold-honesty/fold-honesty.json

A check of the whole path in minutes: ``--limit 40 --folds 2 --seeds 101 --set epochs=1``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

OLD_COMMIT = "2e45875"
NEWER_FIELDS = ("pac_delta",)  # run fields added after OLD_COMMIT
COVERAGES = (0.9, 0.95)


def build_pool(data_root: Path, dest: Path, fraction: float, seed: int, limit: int) -> dict:
    """Links: ``dest/Training`` = SARTAJ Training less the pool, ``dest/Testing`` = the pool
    (grouped by near-copy cluster, stratified; :func:`btk.split.grouped_holdout`). With ``limit``,
    at most that many Training images per class first (sorted by name). Kept in ``dest/pool.json``
    and reused."""
    from btk.config import Setting, resolve_config
    from btk.pipeline import load_for_config
    from btk.plugins import get_host
    from btk.split import grouped_holdout, split_groups, task_labels

    record = dest / "pool.json"
    if record.is_file():
        return json.loads(record.read_text())
    source = dest.parent / "sartaj-training"  # beside the data folder: the folder reader reads only splits there
    for cls in sorted(p.name for p in (data_root / "Training").iterdir() if p.is_dir()):
        (source / cls).mkdir(parents=True, exist_ok=True)
        files = sorted((data_root / "Training" / cls).iterdir())
        for f in files[:limit] if limit else files:
            link = source / cls / f.name
            if not link.exists():
                link.symlink_to(f.resolve())
    config = resolve_config([Setting("data", str(source), "fold_honesty")], preset="fast")  # its image options
    data = load_for_config(config, get_host())
    y, _ = task_labels(data, "multiclass", config.negative_class)
    held = grouped_holdout(y, split_groups(data, config.duplicate_threshold), fraction, seed)
    for i, name in enumerate(data.sources):
        rel = Path(str(name))
        link = dest / ("Testing" if held[i] else "Training") / rel.parent.name / rel.name
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.exists():
            link.symlink_to((data_root / "Training" / rel.parent.name / rel.name).resolve())
    out = {"pool": int(held.sum()), "training": int((~held).sum()), "seed": seed, "fraction": fraction,
           "limit": limit}
    record.write_text(json.dumps(out, indent=1))
    return out


def finished(folder: Path, name: str) -> Path | None:
    """The finished run called ``name`` in ``folder`` (``<id>-<name>``), if any."""
    found = sorted(p for p in folder.glob(f"*-{name}") if (p / "metrics.json").is_file()) if folder.is_dir() else []
    return found[-1] if found else None


def write_parts(config_json: dict, folds: int, parts_file: Path) -> None:
    """This btk's folds (:func:`btk.pipeline.folds_for`), each part as sources, in ``parts_file``
    (kept: the old code trains on them too)."""
    from btk.config import RunConfig
    from btk.pipeline import folds_for, label_data, load_for_config
    from btk.plugins import get_host

    if parts_file.is_file():
        return
    config = RunConfig.from_json(config_json)
    data = load_for_config(config, get_host())
    _, _, y_fit, fit_classes = label_data(config, data)
    parts = folds_for(config, data, y_fit, list(fit_classes), folds)
    parts_file.write_text(json.dumps([{k: [str(data.sources[i]) for i in v] for k, v in p.items()} for p in parts]))


def new_code(config_json: dict, folds: int, out: Path) -> Path:
    """This btk's fold runs (each skipped when finished) and their ensemble."""
    from btk.config import RunConfig
    from btk.ensemble import combine_folds
    from btk.feedback import Feedback
    from btk.pipeline import load_for_config, run_experiment
    from btk.plugins import get_host
    from btk.runs import load_run

    config = RunConfig.from_json(config_json)
    host, feedback = get_host(), Feedback()
    data = load_for_config(config, host, feedback)
    out.mkdir(parents=True, exist_ok=True)
    runs = []
    for k in range(1, folds + 1):
        name = f"fold{k}"
        done = finished(out, name)
        if done is None:
            print(f"new code: fold {k} of {folds}", flush=True)
            done = run_experiment(config.with_changes(fold=f"{k}/{folds}", name=name), out, feedback, host,
                                  data=data).path
        runs.append(load_run(done))
    ensemble = finished(out, f"folds{folds}")
    if ensemble is None:
        ensemble = combine_folds(runs, out, host, feedback, name=f"folds{folds}", data=data).path
    return ensemble


OLD_DRIVER = r'''
import json, sys
from pathlib import Path
import numpy as np
import btk, btk.pipeline as pipeline
from btk.config import RunConfig
from btk.ensemble import combine_folds
from btk.feedback import Feedback
from btk.plugins import get_host
from btk.runs import load_run

config_json, folds, out, parts_file, finished_names = json.loads(sys.argv[1])
assert str(Path(btk.__file__).resolve()).startswith(sys.argv[2]), btk.__file__
parts = json.loads(Path(parts_file).read_text())
config = RunConfig.from_json(config_json)
host, feedback = get_host(), Feedback()
data = pipeline.load_for_config(config, host, feedback)
position = {str(s): i for i, s in enumerate(data.sources)}

def same_folds(config, data, y_fit, classes, n, host=None, feedback=None):
    """The new code's folds as the old code used them: train on the other folds, validate on this one."""
    pick = lambda names: np.array(sorted(position[s] for s in names), int)
    return [{"train": pick(p["train"] + p["val"]), "val": pick(p["oof"]), "test": pick(p["test"])} for p in parts]

pipeline.folds_for = same_folds
out = Path(out)
runs = []
for k in range(1, folds + 1):
    done = finished_names.get(f"fold{k}")
    if done is None:
        print(f"old code: fold {k} of {folds}", flush=True)
        done = pipeline.run_experiment(config.with_changes(fold=f"{k}/{folds}", name=f"fold{k}"), out, feedback,
                                       host, data=data).path
    runs.append(load_run(done))
if finished_names.get(f"folds{folds}") is None:
    combine_folds(runs, out, host, feedback, name=f"folds{folds}", data=data)
'''


def old_code(code: Path, config_json: dict, folds: int, out: Path, parts_file: Path) -> Path:
    """btk at ``OLD_COMMIT`` (its files in ``code``), in its own process, on the new code's folds."""
    if not (code / "btk").is_dir():
        code.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "archive", OLD_COMMIT], check=True, capture_output=True,
                                 cwd=Path(__file__).resolve().parents[1]).stdout
        subprocess.run(["tar", "-x", "-C", str(code)], input=archive, check=True)
    out.mkdir(parents=True, exist_ok=True)
    names = {n: str(p) for n in [*(f"fold{k}" for k in range(1, folds + 1)), f"folds{folds}"]
             if (p := finished(out, n)) is not None}
    env = {**os.environ, "PYTHONPATH": str(code.resolve())}
    # fields btk gained after OLD_COMMIT, which that code refuses: unset here, so leaving them out changes nothing
    newer = [k for k in NEWER_FIELDS if k in config_json]
    assert all(config_json[k] is None for k in newer), {k: config_json[k] for k in newer}
    old_json = {k: v for k, v in config_json.items() if k not in newer}
    arguments = json.dumps([old_json, folds, str(out), str(parts_file), names])
    # run in the old code's folder: "python -c" puts the working folder first on the import path
    subprocess.run([sys.executable, "-c", OLD_DRIVER, arguments, str(code.resolve())], check=True, env=env,
                   cwd=code)
    ensemble = finished(out, f"folds{folds}")
    assert ensemble is not None
    return ensemble


def clopper_pearson(k: int, n: int) -> list[float]:
    """The exact 95% binomial interval of k successes in n (scipy's ``binomtest``)."""
    from scipy.stats import binomtest

    ci = binomtest(k, n).proportion_ci(0.95, method="exact")
    return [float(ci.low), float(ci.high)]


def summarise(ensemble: Path) -> dict:
    """Out-of-fold accuracy, the pool's accuracy and calibration error, and per-class coverage on
    the pool at each of :data:`COVERAGES` with its exact interval."""
    import numpy as np

    from btk.runs import load_run

    run = load_run(ensemble)
    metrics = json.loads((ensemble / "metrics.json").read_text())
    cv, clean = metrics["cv"], metrics["conditions"]["clean"]
    rows = [r for r in csv.DictReader((ensemble / "predictions.csv").open()) if r["condition"] == "clean"]
    classes = list(run.classes)
    probs = np.array([[float(r[f"p_{c}"]) for c in classes] for r in rows])
    y = np.array([classes.index(r["label"]) for r in rows])
    member_paths = [Path(m.path) for m in run.ensemble.members] if run.ensemble else []
    members = [json.loads((p / "metrics.json").read_text())["conditions"]["clean"]["accuracy"] for p in member_paths]
    histories = [json.loads((p / "history.json").read_text()) for p in member_paths]
    trained = [{"train_seconds": round(json.loads((p / "metrics.json").read_text())["timing"]["train_seconds"], 1),
                "epochs": len(h["accuracy"]), "best_epoch": (h.get("best_epoch") or [None])[-1]}
               for p, h in zip(member_paths, histories)]
    coverage = {}
    sets_of = run.conformal()
    for c in COVERAGES:
        sets = sets_of.sets(probs, c)
        hit = sets[np.arange(len(y)), y]
        coverage[f"{c:g}"] = {
            "overall": float(hit.mean()), "mean_size": float(sets.sum(axis=1).mean()),
            "per_class": {name: {"n": int((y == k).sum()), "covered": int(hit[y == k].sum()),
                                 "coverage": float(hit[y == k].mean()),
                                 "exact_95": clopper_pearson(int(hit[y == k].sum()), int((y == k).sum())),
                                 "interval_below_promise": clopper_pearson(int(hit[y == k].sum()),
                                                                           int((y == k).sum()))[1] < c}
                          for k, name in enumerate(classes) if (y == k).any()}}
    return {"run": str(ensemble), "oof_accuracy": cv["oof_accuracy"], "oof_accuracy_per_fold": cv["accuracy_per_fold"],
            "pool_images": len(rows), "pool_accuracy": float((probs.argmax(axis=1) == y).mean()),
            "pool_accuracy_exact_95": clopper_pearson(int((probs.argmax(axis=1) == y).sum()), len(rows)),
            "members_pool_accuracy": members, "members_training": trained, "temperature": run.temperature,
            "pool_ece_before_temperature": clean.get("ece_uncalibrated"), "pool_ece": clean.get("ece"),
            "calibration_images": len(sets_of.sources), "coverage": coverage}


def markdown(results: dict) -> str:
    """The results file as the tables of ``docs/ensemble.md``: per seed and code, out-of-fold
    against pool accuracy, and the ensemble's per-class coverage on the pool."""
    pct = lambda v: f"{100 * v:.1f}"  # noqa: E731
    lines = ["| seed | code | out-of-fold accuracy (folds) | pool accuracy [exact 95%] | members on the pool | "
             "best epochs | temperature | pool ECE before -> after |", "|" + " --- |" * 8]
    for seed, codes in results["seeds"].items():
        for code in ("old", "new"):
            if code not in codes:
                continue
            r = codes[code]
            folds = ", ".join(pct(v) for v in r["oof_accuracy_per_fold"])
            low, high = r["pool_accuracy_exact_95"]
            members = f"{pct(min(r['members_pool_accuracy']))}-{pct(max(r['members_pool_accuracy']))}"
            best = ", ".join(str(m["best_epoch"]) for m in r.get("members_training", []))
            ece = f"{pct(r['pool_ece_before_temperature'])} -> {pct(r['pool_ece'])}"
            lines.append(f"| {seed} | {code} | {pct(r['oof_accuracy'])} ({folds}) | {pct(r['pool_accuracy'])} "
                         f"[{pct(low)}, {pct(high)}] | {members} | {best} | {r['temperature']:.3f} | {ece} |")
    lines += ["", "| seed | code | promise | class | n | covered | coverage [exact 95%] |", "|" + " --- |" * 7]
    for seed, codes in results["seeds"].items():
        for code in ("old", "new"):
            for promise, cov in codes.get(code, {}).get("coverage", {}).items():
                for name, c in cov["per_class"].items():
                    low, high = c["exact_95"]
                    flag = " **below**" if c["interval_below_promise"] else ""
                    lines.append(f"| {seed} | {code} | {promise} | {name} | {c['n']} | {c['covered']} | "
                                 f"{pct(c['coverage'])} [{pct(low)}, {pct(high)}]{flag} |")
    return "\n".join(lines)


def main() -> None:
    from btk.config import Setting, resolve_config

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, help="SARTAJ root (only its Training split is read)")
    ap.add_argument("--out", type=Path, default=Path("runs/fold-honesty"))
    ap.add_argument("--results", type=Path, help="the summary JSON [OUT/fold-honesty.json]")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--seeds", default="101,102")
    ap.add_argument("--pool-fraction", type=float, default=0.2)
    ap.add_argument("--pool-seed", type=int, default=7)
    ap.add_argument("--limit", type=int, default=0, help="at most N Training images per class (0: all)")
    ap.add_argument("--set", dest="settings", action="append", default=[], metavar="FIELD=VALUE",
                    help="a field of the fast recipe or the run, for both codes (e.g. epochs=1)")
    ap.add_argument("--old-code", type=Path, help=f"btk's files at {OLD_COMMIT} [OUT/old-code]")
    ap.add_argument("--only", choices=("new", "old"), help="run one code only")
    ap.add_argument("--markdown", type=Path, metavar="RESULTS", help="print a results file as tables, and stop")
    args = ap.parse_args()
    if args.markdown:
        print(markdown(json.loads(args.markdown.read_text())))
        return
    if args.data is None:
        ap.error("--data is required")
    out = args.out.resolve()
    t0 = time.perf_counter()
    pool = build_pool(args.data.resolve(), out / "data", args.pool_fraction, args.pool_seed, args.limit)
    print("held-out pool:", pool, flush=True)
    results: dict = {"machine": "this project's CPU machine: 2 cores, 24 GiB, TensorFlow CPU build",
                     "guarantee": {
                         "new": "split conformal, class by class, fitted on the ensemble's own scores of a calibration "
                                "part no member saw: per class, coverage >= C on average over calibration draws, for "
                                "images exchangeable with the calibration part (the pool is another grouped draw "
                                "from the same Training)",
                         "old": "none: sets fitted on single folds' out-of-fold outputs (each fold selected its epoch "
                                "on them), applied to the averaged ensemble"},
                     "pool": pool, "folds": args.folds, "settings": args.settings, "seeds": {}}
    target = args.results or out / "fold-honesty.json"
    if target.is_file():  # seeds measured in an earlier sitting, on the same pool, folds and settings, are kept
        earlier = json.loads(target.read_text())
        if all(earlier.get(k) == results[k] for k in ("pool", "folds", "settings")):
            results["seeds"] = earlier.get("seeds", {})
            results["seconds_earlier_sittings"] = earlier.get("seconds_earlier_sittings", 0) + earlier.get(
                "seconds_this_sitting", 0)
    for seed in [int(s) for s in args.seeds.split(",")]:
        settings = [Setting("data", str(out / "data"), "fold_honesty"), Setting("seed", seed, "fold_honesty"),
                    Setting("split_seed", seed, "fold_honesty"),
                    *[Setting(*s.split("=", 1), "--set", origin="set") for s in args.settings]]
        config_json = resolve_config(settings, preset="fast").to_json()
        parts_file = out / f"folds-seed{seed}.json"
        write_parts(config_json, args.folds, parts_file)
        mine: dict = {}
        if args.only != "old":
            mine["new"] = summarise(new_code(config_json, args.folds, out / "new" / f"seed{seed}"))
        if args.only != "new":
            code = args.old_code or out / "old-code"
            mine["old"] = summarise(old_code(code, config_json, args.folds, out / "old" / f"seed{seed}", parts_file))
        results["seeds"][str(seed)] = {**results["seeds"].get(str(seed), {}), **mine}
        print(json.dumps({seed: {k: {"oof": v["oof_accuracy"], "pool": v["pool_accuracy"]} for k, v in mine.items()}}),
              flush=True)
        # written after each seed, so a sitting that ends early keeps the seeds it finished
        results["seconds_this_sitting"] = round(time.perf_counter() - t0, 1)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(results, indent=1))
        print("written", target, flush=True)


if __name__ == "__main__":
    main()
