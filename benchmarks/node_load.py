"""``btk listen`` under load: many studies sent at once by several senders, each answered exactly once.

The studies are SARTAJ Testing images written as one-series DICOM studies (``btk convert``'s
writer, Secondary Capture, 256 px) of 12 to 20 slices each, every study with its own UIDs. A fresh
Orthanc (Debian's ``orthanc`` and ``orthanc-dicomweb``) on a loopback port is the destination;
the node (``btk listen``, its own process) listens on another. ``--senders`` senders, each with
its own DICOM association, send their share of the studies at the same moment (dcmtk's
``storescu``, one process each). Measured:

- every study answered exactly once (one ``answered`` line each in the node's log) and one SR per
  study in Orthanc;
- the node's throughput, slices per second from the first instance sent to the last answer
  stored, against what ``btk predict --sr DIR --store URL`` does on the same files in one call
  (the peer: the same scorer, SR writer and STOW-RS, to another Orthanc, with no DICOM receiving,
  no journal and no waiting; timed in this process after a warm-up, as the node loads its model
  before it listens, once before the node and once after, their mean the peer's time), and their
  ratio;
- the time from a study's last instance to its result stored (median and 95th percentile), from
  the node's own log (``seconds_since_last_instance`` + ``answer_seconds``), which includes the
  ``--stable`` wait.

With ``--kill-after K`` the same load is sent again to a new node and a new Orthanc, and the node
is killed (``kill -9``) once K studies are answered, senders still sending; it is started again
on the same folder, and each sender whose association broke sends its share again, as a PACS
retries a failed send. Measured: every study answered, once in the journal and once in Orthanc,
and the journal's counts (``btk listen --status``) equal to the studies sent.

    python benchmarks/node_load.py --run runs/<run-id> --data ../shared/data/sartaj \\
        --studies 200 --senders 4 --out docs/results/cpu-node/load.json
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def free_port() -> int:
    """A TCP port nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_studies(data: Path, root: Path, n: int, low: int, high: int, seed: int) -> list[list[Path]]:
    """``n`` one-series studies of ``low``..``high`` SARTAJ Testing slices each, in ``root``."""
    import cv2

    from btk.default_plugins.convert import write_dicom_series

    files = sorted((data / "Testing").glob("*/*.jpg"))
    rng = random.Random(seed)
    studies = []
    for k in range(n):
        picked = rng.sample(files, rng.randint(low, high))
        images = [cv2.resize(cv2.imread(str(f), cv2.IMREAD_GRAYSCALE), (256, 256)) for f in picked]
        studies.append(write_dicom_series(images, root / f"study{k:03d}", f"LOAD{k:03d}", uid_seed=f"load-{seed}-{k}"))
    return studies


def send(port: int, studies: list[list[Path]]) -> subprocess.Popen:
    """One sender: dcmtk's ``storescu`` (Debian's ``dcmtk``), its studies one after the other
    over one association, as a PACS sends them."""
    return subprocess.Popen(["storescu", "-aet", "ORTHANC", "-aec", "BTK", "127.0.0.1", str(port),
                             *[str(f) for study in studies for f in study]],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def start_node(run: Path, node_dir: Path, port: int, store: str, stable: float, *extra: str) -> subprocess.Popen:
    """``btk listen`` in its own process on ``port``, its folder ``node_dir``; returned once it listens."""
    seen = len(logged(node_dir, "listening"))
    process = subprocess.Popen([sys.executable, "-m", "btk", "listen", str(run), "--node", str(node_dir),
                                "--port", str(port), "--allow", "ORTHANC", "--store", store,
                                "--stable", str(stable), "--late-window", "0", *extra],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while len(logged(node_dir, "listening")) == seen:
        assert process.poll() is None, "the node did not start"
        time.sleep(0.2)
    return process


def logged(node_dir: Path, event: str) -> list[dict]:
    """The node's log lines of one kind."""
    log = node_dir / "node.log"
    lines = log.read_text().splitlines() if log.is_file() else []
    return [e for e in map(json.loads, lines) if e["event"] == event]


def node_counts(node_dir: Path) -> dict:
    """``btk listen --node DIR --status --json``."""
    done = subprocess.run([sys.executable, "-m", "btk", "listen", "--node", str(node_dir), "--status", "--json"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def srs_in(pacs) -> int:
    """How many SR series the Orthanc ``pacs`` holds (btk writes one SR series per study)."""
    return sum(1 for s in pacs.get("/series?expand") if s["MainDicomTags"].get("Modality") == "SR")


def kill_run(args: argparse.Namespace, studies: list[list[Path]], work: Path) -> dict:
    """The fault run: the load sent to a new node, ``kill -9`` once ``args.kill_after`` studies are
    answered, a restart on the same folder, and each sender that failed sending its share again."""
    import sqlite3

    from btk.testing import orthanc_server

    port, node_dir = free_port(), work / "node-killed"
    with orthanc_server(work / "orthanc-killed") as pacs:
        process = start_node(args.run, node_dir, port, pacs.dicomweb, args.stable, *args.node_args)
        shares = [studies[i::args.senders] for i in range(args.senders)]
        senders = [send(port, share) for share in shares]
        while len(logged(node_dir, "answered")) < args.kill_after:
            assert process.poll() is None, "the node stopped"
            time.sleep(0.1)
        process.kill()  # kill -9
        process.wait()
        answered_before = len(logged(node_dir, "answered"))
        failed = [i for i, sender in enumerate(senders) if sender.wait() != 0]
        print(f"killed after {answered_before} answers; {len(failed)} of {len(senders)} senders broke off",
              flush=True)
        process = start_node(args.run, node_dir, port, pacs.dicomweb, args.stable, *args.node_args)
        try:
            again = [send(port, shares[i]) for i in failed]  # as a PACS retries a failed send
            assert all(sender.wait() == 0 for sender in again), "a resend failed"
            deadline = time.monotonic() + 3600
            while node_counts(node_dir)["studies"]["answered"] < len(studies):
                assert process.poll() is None and time.monotonic() < deadline, "the node stopped answering"
                time.sleep(2)
            time.sleep(2 * args.stable + 1)
        finally:
            process.terminate()
            process.wait(timeout=120)
        with sqlite3.connect(node_dir / "journal.sqlite") as db:
            once = dict(db.execute("SELECT study, COUNT(*) FROM events WHERE event = 'answered' GROUP BY study"))
        counts = node_counts(node_dir)
        return {"kill_after": args.kill_after, "answered_before_kill": answered_before,
                "senders_that_broke_off": len(failed),
                "studies_broken_off": counts["events"].get("broken off", 0),
                "on_restart": (logged(node_dir, "resumed") or [None])[0],
                "studies_answered": len(once), "studies_answered_twice": sum(1 for v in once.values() if v > 1),
                "amended": counts["events"].get("amend", 0), "srs_in_orthanc": srs_in(pacs),
                "journal": counts["studies"], "journal_instances": counts["instances"],
                "slices_sent": sum(len(s) for s in studies)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--data", type=Path, required=True, help="SARTAJ root (its Testing images are used)")
    ap.add_argument("--studies", type=int, default=200)
    ap.add_argument("--senders", type=int, default=4)
    ap.add_argument("--stable", type=float, default=2.0, help="the node's --stable")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--kill-after", type=int, default=0, metavar="K",
                    help="then the fault run: kill -9 the node once K studies are answered, restart, resend")
    ap.add_argument("--out", type=Path, help="write the figures here as JSON")
    ap.add_argument("--keep-log", type=Path, help="copy the node's log here (node.log)")
    ap.add_argument("node_args", nargs="*", help="more btk listen options, after --, e.g. -- --drift-window 0")
    args = ap.parse_args()

    import numpy as np

    from btk.default_plugins.dicom_sr import report_predictions
    from btk.predict_output import predict_run
    from btk.runs import load_run
    from btk.testing import orthanc_server

    work = Path(tempfile.mkdtemp(prefix="btk-node-load-"))
    try:
        studies = make_studies(args.data, work / "studies", args.studies, 12, 20, args.seed)
        slices = sum(len(s) for s in studies)
        print(f"{len(studies)} studies, {slices} slices", flush=True)

        # the peer: what btk predict --sr does, on the same files in one call, in this process,
        # timed before the node and again after it (the mean is the peer's figure: a machine
        # whose speed drifts during the run moves both sides alike)
        run = load_run(args.run)
        predict_run(run, [work / "studies" / "study000"])  # warm-up: the model loaded, as the node loads it first

        def peer(k: int) -> float:
            rows: list = []
            with orthanc_server(work / f"peer-orthanc-{k}") as peer_pacs:  # the peer stores its SRs too, elsewhere
                t0 = time.perf_counter()
                predict_run(run, [work / "studies"], on_row=lambda row: rows.append(row) if row.identity else None)
                report_predictions(run, rows, work / f"peer-{k}", peer_pacs.dicomweb)
                seconds = time.perf_counter() - t0
            print(f"btk predict --sr --store: {slices / seconds:.1f} slices/s ({seconds:.1f} s)", flush=True)
            return seconds

        peer_times = [peer(1)]

        port = free_port()
        with orthanc_server(work / "orthanc") as pacs:
            node_dir = work / "node"
            process = start_node(args.run, node_dir, port, pacs.dicomweb, args.stable, *args.node_args)
            try:
                start = time.time()
                senders = [send(port, studies[i::args.senders]) for i in range(args.senders)]
                for sender in senders:
                    _, errors = sender.communicate()
                    assert sender.returncode == 0, errors
                print(f"sent in {time.time() - start:.1f} s by {args.senders} senders", flush=True)
                deadline = time.monotonic() + 3600
                while len(logged(node_dir, "answered")) < len(studies):
                    assert process.poll() is None and time.monotonic() < deadline, "the node stopped answering"
                    time.sleep(0.5)
                done = time.time()
                time.sleep(2 * args.stable + 1)  # anything answered twice would show now
            finally:
                process.terminate()
                process.wait(timeout=120)
            events = logged(node_dir, "answered")
            if args.keep_log:
                shutil.copy(node_dir / "node.log", args.keep_log)
            per_study = {}
            for e in events:
                per_study[e["study"]] = per_study.get(e["study"], 0) + 1
            in_pacs = srs_in(pacs)
            counts = node_counts(node_dir)
        peer_times.append(peer(2))
        peer_seconds = float(np.mean(peer_times))
        node_seconds = done - start
        latency = np.array([e["seconds_since_last_instance"] + e["answer_seconds"] for e in events])
        figures = {
            "studies": len(studies), "slices": slices, "senders": args.senders, "stable_seconds": args.stable,
            "answered_events": len(events), "studies_answered": len(per_study),
            "studies_answered_twice": sum(1 for v in per_study.values() if v > 1), "srs_in_orthanc": in_pacs,
            "journal": counts["studies"], "node_seconds": node_seconds, "node_slices_per_second": slices / node_seconds,
            "peer_seconds": peer_seconds, "peer_seconds_before_and_after": peer_times,
            "peer_slices_per_second": slices / peer_seconds,
            "ratio": peer_seconds / node_seconds, "latency_median_seconds": float(np.median(latency)),
            "latency_p95_seconds": float(np.percentile(latency, 95)),
            "answer_median_seconds": float(np.median([e["answer_seconds"] for e in events])),
            "node_options": args.node_args, "run": str(args.run), "machine": os.environ.get("BTK_MACHINE", "")}
        if args.kill_after:
            figures["kill_9"] = kill_run(args, studies, work)
        print(json.dumps(figures, indent=1))
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(figures, indent=1) + "\n")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    main()
