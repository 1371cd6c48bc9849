"""The node's DICOM receiver in a process of its own (``python -m btk.node.door_process SPEC``).

Receiving a DICOM instance costs a few milliseconds of Python (the DICOM network protocol in
pynetdicom, the header, the spool file, the journal's transaction). In the node's own process
that work would share one interpreter with the SR writer, so a node busy receiving would answer
slowly. :func:`btk.node.service.serve` runs :func:`btk.node.receiver.start_receiver` here
instead, on the same journal (SQLite serialises the two processes' writes), and reads each event
the receiver reports as one JSON line on this process's standard output. The node stops it by
closing its standard input, and a node that dies (``kill -9``) closes it as well, so the receiver
never outlives its node. Interrupts and SIGTERM sent to the node's process group are left to the
node, which finishes its study in flight and then closes the pipe.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any


def door_spec(door: Any, spool: Path, journal: Path, limit_bytes: int) -> str:
    """The command-line argument that tells a receiver process where to listen and what to keep
    (a :class:`btk.node.receiver.Door`, the spool, the journal, the spool's limit), as JSON."""
    from dataclasses import asdict

    return json.dumps({"door": asdict(door), "spool": str(spool), "journal": str(journal),
                       "limit_bytes": limit_bytes})


class DoorProcess:
    """A running receiver process (:func:`start_door`); its events go to ``on_event``."""

    def __init__(self, process: Any, on_event: Callable[..., None]) -> None:
        self.process = process
        self.forwarder = threading.Thread(target=self._forward, args=(on_event,), name="btk-door-events", daemon=True)
        self.forwarder.start()

    def _forward(self, on_event: Callable[..., None]) -> None:
        for line in self.process.stdout:
            kind, detail, study = json.loads(line)
            on_event(kind, detail, study)

    def alive(self) -> bool:
        """Whether the receiver still runs."""
        return self.process.poll() is None

    def stop(self) -> None:
        """Stop it (no new association; those under way are cut) and wait for its last events."""
        with contextlib.suppress(OSError):
            self.process.stdin.close()
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.forwarder.join(timeout=30)


def start_door(door: Any, spool: Path, journal: Path, limit_bytes: int, on_event: Callable[..., None]) -> DoorProcess:
    """Start the receiver process for ``door`` and return once it listens.

    Raises:
        OSError: it cannot listen there (``strerror`` says why).
    """
    process = subprocess.Popen([sys.executable, "-m", "btk.node.door_process",
                                door_spec(door, spool, journal, limit_bytes)],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
    first = process.stdout.readline() if process.stdout is not None else ""
    kind, detail, _ = json.loads(first) if first else ("cannot listen", f"the receiver exited ({process.wait()})", None)
    if kind != "ready":
        process.wait()
        raise OSError(0, detail)
    return DoorProcess(process, on_event)


def main(argv: list[str] | None = None) -> int:
    """Receive until standard input closes; each event a JSON line ``[kind, detail, study]`` on
    standard output, the first ``ready`` (or ``cannot listen`` with the reason, then exit 1)."""
    from btk.node.journal import Journal
    from btk.node.receiver import Door, start_receiver

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    spec = json.loads((argv or sys.argv[1:])[0])
    door = spec["door"]
    door = Door(door["port"], door["ae_title"], door["host"], tuple(door["allowed"]),
                tuple(door["tls"]) if door["tls"] else None)
    lock = threading.Lock()

    def tell(kind: str, detail: str, study: str | None = None) -> None:
        with lock, contextlib.suppress(OSError, ValueError):  # a node that died hears nothing: the journal keeps it
            sys.stdout.write(json.dumps([kind, detail, study]) + "\n")
            sys.stdout.flush()

    journal = Journal(spec["journal"])
    try:
        try:
            server = start_receiver(door, Path(spec["spool"]), journal, tell, spec["limit_bytes"])
        except OSError as exc:
            tell("cannot listen", exc.strerror or str(exc))
            return 1
        tell("ready", "")
        try:
            sys.stdin.read()  # until the node closes it: it stops, or it died
        finally:
            open_now = list(server.active_associations)
            server.shutdown()  # no new association
            for association in open_now:  # those under way are aborted: each marks its studies broken off
                association.abort()
                association.join(timeout=30)
    finally:
        journal.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
