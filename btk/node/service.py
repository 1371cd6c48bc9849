"""The node's work: answer each complete study once, send the answer back, and lose nothing.

:func:`serve` starts the receiver (:mod:`btk.node.receiver`, in a process of its own:
:mod:`btk.node.door_process`) and answers, one at a time, every
study that has been stable (no new instance) for the configured time: its series predicted with
the run's scorer (:func:`btk.predict_output.predict_run`, as ``btk predict`` does), its SRs (and
heat maps) written by :func:`btk.default_plugins.dicom_sr.report_predictions` and sent to the
destination (DICOMweb STOW-RS). A study is marked answered in the journal only after the
destination took it; a try that fails is tried again after a back-off (doubling), and a study that
fails every try is kept, with its reason, for a person. A study whose sender broke off the
association in the middle of it waits ``partial_wait`` for the rest, then is answered with what
came (``partial="answer"``) or held for a person (``"hold"``), and its log line says so. A
restarted node finds the studies it had not finished in the journal and answers them: the result
UIDs are derived from the sources, the model and the calibration, and the destination is asked
what it holds before anything is sent, so nothing is sent twice.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from btk.node.drift import DRIFT, DriftWindow
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
    partial_wait: float = 300.0
    partial: str = "answer"
    min_confidence: float = 0.0
    coverage: float | None = None
    maps: bool = False
    keep: bool = False
    late_window: float = 600.0
    batch: int = 16
    drift_window: int = 50
    tries: int = 5
    back_off: float = 10.0
    poll: float = 0.5
    follow: str | None = None
    follow_every: float = 5.0
    spool_limit_mb: float = 10240.0


def series_folders(paths: list[Path]) -> list[Path]:
    """The series folders (``SPOOL/<study>/<series>``) the kept instances ``paths`` lie in, sorted."""
    return sorted({p.parent for p in paths})


@dataclass
class Answer:
    """What was sent for one study: the SOP Instance UIDs of its SRs and maps, how many of
    them the destination held already, and what of it could not be read (each series or
    instance left out, with the reason; the study answered with the rest)."""

    sent: list[str]
    already: int
    left_out: list[str]


def answer_studies(run: Any, journal: Journal, studies: list[str], settings: NodeSettings,
                   keep_for_drift: bool = False) -> tuple[dict[str, Answer], Any]:
    """Predict the kept series of ``studies`` with ``run`` in one call, and send their SRs (and
    maps) in one store, as ``btk predict --sr DIR --store URL`` would for those files; what was
    sent for each study, and the prediction tally (with each image's features and probabilities
    when ``keep_for_drift``). An SR of a study answered before amends the earlier one.

    Raises:
        BtkError: nothing readable, or the destination could not take the results.
    """
    from btk.default_plugins.dicom_sr import report_predictions
    from btk.errors import BtkError
    from btk.file_names import uid_name
    from btk.predict import PredictionTally
    from btk.predict_output import predict_run

    folders = series_folders([p for study in studies for p in journal.instance_paths(study)])
    if not folders:
        raise BtkError("no image of it is kept (none was sent, or they were cleared)")
    sent_before = [uid for study in studies for uid in journal.results(study)]
    previous = earlier_reports(settings.folder / RESULTS, sent_before)
    rows: list[Any] = []
    tally = PredictionTally()
    try:
        predict_run(run, folders, on_row=lambda row: rows.append(row) if row.identity else None,
                    min_confidence=settings.min_confidence, coverage=settings.coverage, heat=settings.maps,
                    tally=tally, check_shift=keep_for_drift)
    except BtkError as exc:
        reasons = "; ".join(f"{Path(source).name}: {why}" for source, why in tally.skipped[:3])
        raise BtkError(f"{exc}" + (f" ({reasons})" if reasons else "")) from None
    (settings.folder / RESULTS).mkdir(parents=True, exist_ok=True)
    done = report_predictions(run, rows, settings.folder / RESULTS, settings.store, settings.min_confidence,
                              previous=previous)
    import pydicom

    objects = [(r.study, str(r.dataset.SOPInstanceUID)) for r in done.reports]
    for path in done.maps:
        header = pydicom.dcmread(path, stop_before_pixels=True)
        objects.append((str(header.StudyInstanceUID), str(header.SOPInstanceUID)))
    spool = {study: str(settings.folder / SPOOL / uid_name(study)) for study in studies}
    out = {}
    for study in studies:
        sent = [uid for of, uid in objects if of == study]
        left_out = [why for source, why in [*tally.skipped, *tally.notes]
                    if str(source).startswith(spool[study] + os.sep)]
        out[study] = Answer(sent, len(set(sent) & done.present), left_out)
    return out, tally


def earlier_reports(folder: Path, sent: list[str]) -> list[Any]:
    """The SRs the node sent before (SOP Instance UIDs ``sent``), read again from its results
    ``folder``: the documents new answers of their studies amend."""
    import pydicom

    if not sent or not folder.is_dir():
        return []
    wanted, found = set(sent), {}
    for path in folder.glob("*/*.dcm"):
        if path.parent.name.startswith("."):  # a result directory a killed node left half-written
            continue
        dataset = pydicom.dcmread(path, stop_before_pixels=True)
        if str(dataset.SOPInstanceUID) in wanted:
            found[str(dataset.SOPInstanceUID)] = dataset
    return list(found.values())


def clear_instances(journal: Journal, study: str) -> None:
    """Delete ``study``'s instances from the spool and say so in the journal."""
    for folder in {p.parent.parent for p in journal.instance_paths(study)}:
        shutil.rmtree(folder, ignore_errors=True)
    journal.removed(study)


def log_line(settings: NodeSettings, record: dict[str, Any], on_log: Callable[[dict[str, Any]], None] | None) -> None:
    """Append ``record`` (with its time) as one JSON line to the node's log, and hand it on."""
    from datetime import datetime

    record = {"time": datetime.now().astimezone().isoformat(timespec="milliseconds"), **record}
    with open(settings.folder / LOG, "a") as fh:
        fh.write(json.dumps(record) + "\n")
    if on_log is not None:
        on_log(record)


def handle_studies(run: Any, journal: Journal, studies: list[str], settings: NodeSettings,
                   on_log: Callable[[dict[str, Any]], None] | None = None,
                   drift: DriftWindow | None = None) -> dict[str, str]:
    """One try at ``studies``, answered together: each ``answered``, ``retry`` or ``failed``
    (logged and journalled). When a batch of several fails, each study is tried alone, so one
    study that cannot be answered holds up no other. With ``drift``, the answered images join
    its window and its verdict is logged and kept."""
    from btk.errors import BtkError

    held = {study: journal.study(study) for study in studies}
    outcome: dict[str, str] = {}
    for study, last in held.items():
        if last is not None and last.broken_by and settings.partial == "hold":
            reason = broken_sentence(last, settings) + ": held for a person (--partial hold)"
            journal.failed(study, reason)
            log_line(settings, {"study": study, "event": "failed", "try": last.tries, "reason": reason}, on_log)
            outcome[study] = "failed"
    studies = [study for study in studies if study not in outcome]
    if not studies:
        return outcome
    started = time.monotonic()
    amends = {study: len(journal.results(study)) for study in studies}
    tries = {study: journal.start(study) for study in studies}
    try:
        answers, tally = answer_studies(run, journal, studies, settings, drift is not None)
    except Exception as exc:  # the node outlives any one study: the reason is journalled
        if len(studies) > 1:  # the batch's try counts as each study's; then each alone
            return {**outcome, **{study: handle_studies(run, journal, [study], settings, on_log, drift)[study]
                                  for study in studies}}
        [study] = studies
        reason = str(exc) if isinstance(exc, BtkError) else f"{type(exc).__name__}: {exc}"
        if tries[study] >= settings.tries:
            journal.failed(study, reason)
            log_line(settings, {"study": study, "event": "failed", "try": tries[study], "reason": reason}, on_log)
            return {**outcome, study: "failed"}
        after = min(settings.back_off * 2 ** (tries[study] - 1), 600.0)
        journal.retry_later(study, reason, after)
        log_line(settings, {"study": study, "event": "retry", "try": tries[study], "after_seconds": after,
                            "reason": reason}, on_log)
        return {**outcome, study: "retry"}
    seconds = round(time.monotonic() - started, 3)
    for study, answer in answers.items():
        last = held[study]
        journal.answered(study, answer.sent, None if settings.keep else settings.late_window)
        if not settings.keep and settings.late_window <= 0:
            clear_instances(journal, study)
        log_line(settings, {"study": study, "event": "answered", "try": tries[study], "results": len(answer.sent),
                            "already_there": answer.already, "amends": amends[study],
                            "instances": last.instances if last else None, "left_out": answer.left_out,
                            **({"partial": broken_sentence(last, settings) + f": answered with the {last.instances} "
                                "instance(s) received"} if last and last.broken_by else {}),
                            "answered_with": len(studies),
                            "seconds_since_last_instance": round(started_wall(started) - last.last_received, 3)
                            if last else None, "answer_seconds": seconds}, on_log)
    if drift is not None:
        drift.add(tally)
        check = drift.record(settings.folder, drift.check())
        log_line(settings, {"event": "drift", "verdict": check["verdict"], "p_value": check["p_value"],
                            "series": check["window_series"], "sentence": check["sentence"]}, on_log)
    return {**outcome, **dict.fromkeys(answers, "answered")}


def broken_sentence(study: Any, settings: NodeSettings) -> str:
    """What happened to a study whose sender broke off (a :class:`btk.node.journal.Study`)."""
    wait = max(settings.stable_seconds, settings.partial_wait)
    return f"{study.broken_by}, and nothing more came for {wait:g} s"


def started_wall(monotonic_start: float) -> float:
    """The wall-clock time of a ``time.monotonic()`` reading."""
    return time.time() - (time.monotonic() - monotonic_start)


def serve(run_dir: Path, settings: NodeSettings, stop: threading.Event,
          on_log: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Run the node until ``stop`` is set: receive, answer each stable study, send it back.
    On ``stop`` no association is taken any more and the study in flight is finished; the
    journal's counts are returned.

    Raises:
        BtkError: the run cannot be loaded, or the port cannot be opened.
    """
    from btk.errors import BtkError
    from btk.node.door_process import start_door
    from btk.node.receiver import check_port
    from btk.runs import load_run

    run = load_run(run_dir)
    run.scoring_model()  # loaded once, before the first study (and a damaged model refused before listening)
    check_port(settings.door)
    settings.folder.mkdir(parents=True, exist_ok=True)
    journal = Journal(settings.folder / JOURNAL)

    def heard(kind: str, detail: str, study: str | None = None) -> None:  # the receiver's events, logged
        if kind not in ("stored", "again"):
            log_line(settings, {**({"study": study} if study else {}), "event": kind, "detail": detail}, on_log)

    limit = int(settings.spool_limit_mb * 2**20)
    for leftover in (settings.folder / RESULTS).glob(".*.partial"):  # half-written when the node was killed
        shutil.rmtree(leftover, ignore_errors=True)
    try:
        for study in journal.cut_by_stop():  # the node was killed while a sender was sending it
            heard("broken off", "the node stopped while an association was sending it", study)
        found = journal.counts()["studies"]
        if any(found[state] for state in ("receiving", "answering", "failed")):  # what a restarted node goes on with
            log_line(settings, {"event": "resumed", **found, "waiting_for_rest": len(journal.waiting_for_rest())},
                     on_log)
        try:  # in a process of its own: receiving shares no interpreter with answering
            door = start_door(settings.door, settings.folder / SPOOL, settings.folder / JOURNAL, limit, heard)
        except OSError as exc:
            raise BtkError(f"cannot listen on {settings.door.host}:{settings.door.port}: {exc.strerror}") from None
        follower = None
        if settings.follow:  # pull beside push: new stable studies fetched from an Orthanc
            from btk.node.follow import follow

            follower = threading.Thread(target=follow, name="btk-follow", daemon=True,
                                        args=(settings.follow, settings.folder / SPOOL, journal, stop,
                                              settings.follow_every, heard, limit))
            follower.start()
        drift = DriftWindow.for_run(run, settings.drift_window)
        log_line(settings, {"event": "listening", "host": settings.door.host, "port": settings.door.port,
                            "ae_title": settings.door.ae_title, "run": str(run_dir),
                            "tls": settings.door.tls is not None, "follow": settings.follow,
                            "spool_limit_mib": settings.spool_limit_mb or None,
                            "drift_window": settings.drift_window if drift is not None else
                            "off (the run keeps no prediction-set calibration to compare with)"
                            if settings.drift_window else "off"}, on_log)
        # on stop the door closes at once (no new association), while the study in flight is finished
        def close_on_stop() -> None:
            stop.wait()
            door.stop()

        threading.Thread(target=close_on_stop, name="btk-door-close", daemon=True).start()
        try:
            while not stop.is_set():
                if not door.alive():
                    raise BtkError(f"the node's DICOM receiver stopped (exit status {door.process.returncode}): "
                                   "start the node again")
                for study in journal.to_clear():  # past the late window
                    clear_instances(journal, study)
                while not stop.is_set():  # in batches: under load the node keeps up as btk predict does
                    due = journal.due(settings.stable_seconds, settings.partial_wait)[:settings.batch]
                    if not due:
                        break
                    handle_studies(run, journal, due, settings, on_log, drift)
                stop.wait(settings.poll)
        finally:
            door.stop()
            if follower is not None:
                follower.join(timeout=120)
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
    if (folder / DRIFT).is_file():
        counts["drift"] = json.loads((folder / DRIFT).read_text())
    counts["spool_bytes"] = disk_use(folder / SPOOL)
    return counts


def disk_use(folder: Path) -> int:
    """The bytes of the files under ``folder`` (0 when it is missing); a file a running node
    deletes while they are counted is not counted."""
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            with contextlib.suppress(FileNotFoundError):
                total += os.stat(os.path.join(root, name)).st_size
    return total
