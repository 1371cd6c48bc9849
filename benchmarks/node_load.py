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
  before it listens), and their ratio;
- the time from a study's last instance to its result stored (median and 95th percentile), from
  the node's own log (``seconds_since_last_instance`` + ``answer_seconds``), which includes the
  ``--stable`` wait.

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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--data", type=Path, required=True, help="SARTAJ root (its Testing images are used)")
    ap.add_argument("--studies", type=int, default=200)
    ap.add_argument("--senders", type=int, default=4)
    ap.add_argument("--stable", type=float, default=2.0, help="the node's --stable")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--out", type=Path, help="write the figures here as JSON")
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

        # the peer: what btk predict --sr does, on the same files in one call, in this process
        run = load_run(args.run)
        predict_run(run, [work / "studies" / "study000"])  # warm-up: the model loaded, as the node loads it first
        rows: list = []
        with orthanc_server(work / "peer-orthanc") as peer_pacs:  # the peer stores its SRs too, elsewhere
            t0 = time.perf_counter()
            predict_run(run, [work / "studies"], on_row=lambda row: rows.append(row) if row.identity else None)
            report_predictions(run, rows, work / "peer", peer_pacs.dicomweb)
            peer_seconds = time.perf_counter() - t0
        print(f"btk predict --sr --store: {slices / peer_seconds:.1f} slices/s ({peer_seconds:.1f} s)", flush=True)

        port = free_port()
        with orthanc_server(work / "orthanc") as pacs:
            node_dir = work / "node"
            log = node_dir / "node.log"
            process = subprocess.Popen([sys.executable, "-m", "btk", "listen", str(args.run), "--node", str(node_dir),
                                        "--port", str(port), "--allow", "ORTHANC", "--store", pacs.dicomweb,
                                        "--stable", str(args.stable), "--late-window", "0"],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                while not (log.is_file() and "listening" in log.read_text()):
                    assert process.poll() is None, "the node did not start"
                    time.sleep(0.2)
                start = time.time()
                senders = [send(port, studies[i::args.senders]) for i in range(args.senders)]
                for sender in senders:
                    _, errors = sender.communicate()
                    assert sender.returncode == 0, errors
                print(f"sent in {time.time() - start:.1f} s by {args.senders} senders", flush=True)

                def answered() -> list[dict]:
                    return [e for e in map(json.loads, log.read_text().splitlines()) if e["event"] == "answered"]

                deadline = time.monotonic() + 3600
                while len(answered()) < len(studies):
                    assert process.poll() is None and time.monotonic() < deadline, "the node stopped answering"
                    time.sleep(0.5)
                done = time.time()
                time.sleep(2 * args.stable + 1)  # anything answered twice would show now
            finally:
                process.terminate()
                process.wait(timeout=120)
            events = answered()
            per_study = {}
            for e in events:
                per_study[e["study"]] = per_study.get(e["study"], 0) + 1
            in_pacs = sum(1 for s in pacs.get("/series?expand") if s["MainDicomTags"].get("Modality") == "SR")
            counts = json.loads(subprocess.run([sys.executable, "-m", "btk", "listen", "--node", str(node_dir),
                                                "--status", "--json"], check=True, capture_output=True,
                                               text=True).stdout)
        node_seconds = done - start
        latency = np.array([e["seconds_since_last_instance"] + e["answer_seconds"] for e in events])
        figures = {
            "studies": len(studies), "slices": slices, "senders": args.senders, "stable_seconds": args.stable,
            "answered_events": len(events), "studies_answered": len(per_study),
            "studies_answered_twice": sum(1 for v in per_study.values() if v > 1), "srs_in_orthanc": in_pacs,
            "journal": counts["studies"], "node_seconds": node_seconds, "node_slices_per_second": slices / node_seconds,
            "peer_seconds": peer_seconds, "peer_slices_per_second": slices / peer_seconds,
            "ratio": peer_seconds / node_seconds, "latency_median_seconds": float(np.median(latency)),
            "latency_p95_seconds": float(np.percentile(latency, 95)),
            "answer_median_seconds": float(np.median([e["answer_seconds"] for e in events])),
            "run": str(args.run), "machine": os.environ.get("BTK_MACHINE", "")}
        print(json.dumps(figures, indent=1))
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(figures, indent=1) + "\n")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    main()
