"""The node's work: answer each complete study once, send the answer back, and lose nothing.

:func:`serve` starts the receiver (:mod:`btk.node.receiver`) and answers, one at a time, every
study that has been stable (no new instance) for the configured time: its series predicted with
the run's scorer (:func:`btk.predict_output.predict_run`, as ``btk predict`` does), its SRs (and
heat maps) written by :func:`btk.default_plugins.dicom_sr.report_predictions` and sent to the
destination (DICOMweb STOW-RS). A study is marked answered in the journal only after the
destination took it; a try that fails is tried again after a back-off (doubling), and a study that
fails every try is kept, with its reason, for a person. A restarted node finds the studies it had
not finished in the journal and answers them: the result UIDs are derived from the sources, the
model and the calibration, and the destination is asked what it holds before anything is sent,
so nothing is sent twice.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from btk.node.journal import Journal
from btk.node.receiver import Door

JOURNAL, SPOOL, RESULTS, LOG = "journal.sqlite", "spool", "results", "node.log"
"""What a node's folder holds: the journal, the received instances, the results written, the log."""


@dataclass
class NodeSettings:
    """How a node works (``btk listen``'s options)."""

    folder: Path
    door: Door
    store: str
    stable_seconds: float = 10.0
    min_confidence: float = 0.0
    coverage: float | None = None
    maps: bool = False
    keep: bool = False
    late_window: float = 600.0
    tries: int = 5
    back_off: float = 10.0
    poll: float = 0.5


def series_folders(paths: list[Path]) -> list[Path]:
    """The series folders (``SPOOL/<study>/<series>``) the kept instances ``paths`` lie in, sorted."""
    return sorted({p.parent for p in paths})


def answer_study(run: Any, journal: Journal, study: str, settings: NodeSettings) -> tuple[list[str], int]:
    """Predict ``study``'s kept series with ``run`` and send their SRs (and maps); the SOP
    Instance UIDs of what was sent or found already there, and how many were already there.

    Raises:
        BtkError: nothing readable, or the destination could not take the results.
    """
    from btk.default_plugins.dicom_sr import report_predictions
    from btk.errors import BtkError
    from btk.file_names import inside, uid_name
    from btk.predict_output import predict_run

    folders = series_folders(journal.instance_paths(study))
    if not folders:
        raise BtkError("no image of it is kept (none was sent, or they were cleared)")
    previous = earlier_reports(settings.folder / RESULTS / uid_name(study), journal.results(study))
    rows: list[Any] = []
    predict_run(run, folders, on_row=lambda row: rows.append(row) if row.identity else None,
                min_confidence=settings.min_confidence, coverage=settings.coverage, heat=settings.maps)
    results = inside(settings.folder / RESULTS, uid_name(study))
    results.mkdir(parents=True, exist_ok=True)
    done = report_predictions(run, rows, results, settings.store, settings.min_confidence, previous=previous)
    import pydicom

    sent = [str(r.dataset.SOPInstanceUID) for r in done.reports]
    sent += [str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in done.maps]
    return sent, done.already


def earlier_reports(folder: Path, sent: list[str]) -> list[Any]:
    """The SRs the node sent before for a study (SOP Instance UIDs ``sent``), read again from
    its results ``folder``: the documents a new answer of the study amends."""
    import pydicom

    if not sent or not folder.is_dir():
        return []
    found = {}
    for path in folder.glob("*/*.dcm"):
        dataset = pydicom.dcmread(path, stop_before_pixels=True)
        if str(dataset.SOPInstanceUID) in sent:
            found[str(dataset.SOPInstanceUID)] = dataset
    return list(found.values())


def clear_instances(journal: Journal, study: str) -> None:
    """Delete ``study``'s instances from the spool and say so in the journal."""
    for folder in {p.parent.parent for p in journal.instance_paths(study)}:
        shutil.rmtree(folder, ignore_errors=True)
    journal.removed(study)


def log_line(settings: NodeSettings, record: dict[str, Any], on_log: Callable[[dict[str, Any]], None] | None) -> None:
    """Append ``record`` (with its time) as one JSON line to the node's log, and hand it on."""
    record = {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **record}
    with open(settings.folder / LOG, "a") as fh:
        fh.write(json.dumps(record) + "\n")
    if on_log is not None:
        on_log(record)


def handle_study(run: Any, journal: Journal, study: str, settings: NodeSettings,
                 on_log: Callable[[dict[str, Any]], None] | None = None) -> str:
    """One try at ``study``: ``answered``, ``retry`` or ``failed`` (logged and journalled)."""
    from btk.errors import BtkError

    started = time.monotonic()
    held = journal.study(study)
    amends = len(journal.results(study))
    tries = journal.start(study)
    waited = round(time.time() - held.last_received, 3) if held else None
    try:
        sent, already = answer_study(run, journal, study, settings)
    except Exception as exc:  # the node outlives any one study: the reason is journalled
        reason = str(exc) if isinstance(exc, BtkError) else f"{type(exc).__name__}: {exc}"
        if tries >= settings.tries:
            journal.failed(study, reason)
            log_line(settings, {"study": study, "event": "failed", "try": tries, "reason": reason}, on_log)
            return "failed"
        after = min(settings.back_off * 2 ** (tries - 1), 600.0)
        journal.retry_later(study, reason, after)
        log_line(settings, {"study": study, "event": "retry", "try": tries, "after_seconds": after,
                            "reason": reason}, on_log)
        return "retry"
    journal.answered(study, sent, None if settings.keep else settings.late_window)
    if not settings.keep and settings.late_window <= 0:
        clear_instances(journal, study)
    log_line(settings, {"study": study, "event": "answered", "try": tries, "results": len(sent),
                        "already_there": already, "amends": amends, "instances": held.instances if held else None,
                        "seconds_since_last_instance": waited,
                        "answer_seconds": round(time.monotonic() - started, 3)}, on_log)
    return "answered"


def serve(run_dir: Path, settings: NodeSettings, stop: threading.Event,
          on_log: Callable[[dict[str, Any]], None] | None = None,
          ready: threading.Event | None = None) -> dict[str, Any]:
    """Run the node until ``stop`` is set: receive, answer each stable study, send it back.
    On ``stop`` no association is taken any more and the study in flight is finished; the
    journal's counts are returned. ``ready`` is set once the node listens.

    Raises:
        BtkError: the run cannot be loaded, or the port cannot be opened.
    """
    from btk.errors import BtkError
    from btk.node.receiver import check_port, start_receiver
    from btk.runs import load_run

    run = load_run(run_dir)
    check_port(settings.door)
    settings.folder.mkdir(parents=True, exist_ok=True)
    journal = Journal(settings.folder / JOURNAL)
    try:
        try:
            server = start_receiver(settings.door, settings.folder / SPOOL, journal,
                                    lambda kind, detail: log_line(settings, {"event": kind, "detail": detail}, on_log)
                                    if kind not in ("stored", "again") else None)
        except OSError as exc:
            raise BtkError(f"cannot listen on {settings.door.host}:{settings.door.port}: {exc.strerror}") from None
        log_line(settings, {"event": "listening", "host": settings.door.host, "port": settings.door.port,
                            "ae_title": settings.door.ae_title, "run": str(run_dir),
                            "tls": settings.door.tls is not None}, on_log)
        if ready is not None:
            ready.set()
        try:
            while not stop.is_set():
                for study in journal.to_clear():  # past the late window
                    clear_instances(journal, study)
                for study in journal.due(settings.stable_seconds):
                    if stop.is_set():
                        break
                    handle_study(run, journal, study, settings, on_log)
                stop.wait(settings.poll)
        finally:
            server.shutdown()
        counts = journal.counts()
        log_line(settings, {"event": "stopped", **counts["studies"]}, on_log)
        return counts
    finally:
        journal.close()


def node_status(folder: Path) -> dict[str, Any]:
    """What the node in ``folder`` has done: its journal's counts (studies by state, instances,
    late instances, events) and the disk its spool takes.

    Raises:
        BtkError: ``folder`` holds no node journal.
    """
    from btk.errors import BtkError

    if not (folder / JOURNAL).is_file():
        raise BtkError(f"{folder}: no node here (no {JOURNAL}): give the --node folder of a btk listen")
    journal = Journal(folder / JOURNAL)
    try:
        counts = journal.counts()
    finally:
        journal.close()
    spool = folder / SPOOL
    counts["spool_bytes"] = sum(p.stat().st_size for p in spool.rglob("*") if p.is_file()) if spool.is_dir() else 0
    return counts
