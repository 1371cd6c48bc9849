"""The node's journal: every instance received and every study answered, on disk (SQLite).

A study moves through these states:

- ``receiving``: instances arrive; it is due once none has come for the stable time (or, when
  the sender broke off the association in the middle of it, for the longer partial wait);
- ``answering``: being predicted and reported (a node killed here finds it again on restart and
  answers it again: the result UIDs are derived from the sources, the model and the calibration,
  so the destination, which is asked first what it holds, is sent nothing twice);
- ``answered``: its results were written and sent (their SOP Instance UIDs kept); its instances
  stay in the spool for the late window, and an instance of it that comes in that window sends
  it back to ``receiving``, to be answered again with an SR that amends the first;
- ``failed``: it could not be answered after the allowed tries, or it was held (its sender broke
  off and the node is told to hold such studies); the reason kept, it waits, with its instances,
  for a person, or for a new instance of it, which sends it back to ``receiving``.

Every write is one SQLite transaction, so a node killed at any moment leaves the journal as it was
before or after that write, never between.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

STATES = ("receiving", "answering", "answered", "failed")
"""A study's states, in the order it goes through them."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS instances (
    sop TEXT PRIMARY KEY, study TEXT NOT NULL, series TEXT NOT NULL, path TEXT NOT NULL,
    sender TEXT NOT NULL, received REAL NOT NULL, removed INTEGER NOT NULL DEFAULT 0,
    bytes INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS instances_study ON instances (study);
CREATE TABLE IF NOT EXISTS studies (
    study TEXT PRIMARY KEY, state TEXT NOT NULL, first_received REAL NOT NULL, last_received REAL NOT NULL,
    tries INTEGER NOT NULL DEFAULT 0, not_before REAL NOT NULL DEFAULT 0, answered REAL, results TEXT,
    late INTEGER NOT NULL DEFAULT 0, reason TEXT, clear_after REAL, cleared INTEGER NOT NULL DEFAULT 0,
    broken_by TEXT, sending INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS follow (url TEXT PRIMARY KEY, since INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    at REAL NOT NULL, study TEXT, event TEXT NOT NULL, detail TEXT);
"""


@dataclass(frozen=True)
class Study:
    """A study as the journal holds it."""

    study: str
    state: str
    first_received: float
    last_received: float
    tries: int
    instances: int
    broken_by: str | None = None
    """Why the study may be incomplete (a sender broke off an association in the middle of it,
    and has not sent it whole since), else ``None``."""


class Journal:
    """The journal in ``path`` (created with its folder when missing); safe to use from the
    receiver's threads and the node's worker at once."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        for table, column, kind in (("studies", "broken_by", "TEXT"),
                                    ("studies", "sending", "INTEGER NOT NULL DEFAULT 0"),
                                    ("instances", "bytes", "INTEGER NOT NULL DEFAULT 0")):
            if column not in {row[1] for row in self._db.execute(f"PRAGMA table_info({table})")}:
                self._db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")  # an earlier btk's journal

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()

    def _write(self, *statements: tuple[str, tuple[Any, ...]]) -> list[Any]:
        """Run ``statements`` as one transaction; each one's cursor ``rowcount``."""
        with self._lock:
            counts = []
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for sql, args in statements:
                    counts.append(self._db.execute(sql, args).rowcount)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            return counts

    def _read(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return list(self._db.execute(sql, args).fetchall())

    def event(self, event: str, study: str | None = None, detail: str = "") -> None:
        """Keep one event (a skipped object, a refused association, ...) with its time."""
        self._write(("INSERT INTO events VALUES (?, ?, ?, ?)", (time.time(), study, event, detail)))

    def received(self, sop: str, study: str, series: str, path: Path | str, sender: str,
                 now: float | None = None, size: int = 0) -> str:
        """Record an instance kept at ``path``: ``first`` (its study's first), ``new``, ``again``
        (the same SOP Instance UID received before: nothing changes), ``amend`` (its study was
        answered and its instances are still kept: it is to be answered again, with them) or
        ``late`` (its study was answered and cleared: counted, not kept, not answered).
        ``size``: its bytes on disk."""
        now = time.time() if now is None else now
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                added = self._db.execute("INSERT OR IGNORE INTO instances (sop, study, series, path, sender, received, "
                                         "bytes) VALUES (?, ?, ?, ?, ?, ?, ?)",
                                         (sop, study, series, str(path), sender, now, size))
                if added.rowcount == 0:
                    self._db.execute("COMMIT")
                    return "again"
                state = self._db.execute("SELECT state, cleared FROM studies WHERE study = ?", (study,)).fetchone()
                outcome = "first" if state is None else "new"
                if state is None:
                    self._db.execute("INSERT INTO studies (study, state, first_received, last_received) "
                                     "VALUES (?, 'receiving', ?, ?)", (study, now, now))
                elif state[0] == "answered" and state[1]:  # counted; not kept (its study is cleared)
                    outcome = "late"
                    self._db.execute("UPDATE instances SET removed = 1 WHERE sop = ?", (sop,))
                    self._db.execute("UPDATE studies SET late = late + 1 WHERE study = ?", (study,))
                    self._db.execute("INSERT INTO events VALUES (?, ?, 'late', ?)", (now, study, sop))
                elif state[0] == "answered":  # still kept: answered again, amending the first answer
                    outcome = "amend"
                    self._db.execute("UPDATE studies SET state = 'receiving', late = late + 1, last_received = ?, "
                                     "tries = 0, not_before = 0 WHERE study = ?", (now, study))
                    self._db.execute("INSERT INTO events VALUES (?, ?, 'amend', ?)", (now, study, sop))
                elif state[0] == "failed":  # more came for a study held for a person: tried afresh
                    self._db.execute("UPDATE studies SET state = 'receiving', last_received = ?, tries = 0, "
                                     "not_before = 0, broken_by = NULL WHERE study = ?", (now, study))
                    self._db.execute("INSERT INTO events VALUES (?, ?, 'resumed', ?)", (now, study, sop))
                else:
                    self._db.execute("UPDATE studies SET last_received = ? WHERE study = ?", (now, study))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return outcome

    def kept_bytes(self) -> int:
        """The bytes of the instances kept in the spool."""
        return int(self._read("SELECT COALESCE(SUM(bytes), 0) FROM instances WHERE removed = 0")[0][0])

    def known(self, sop: str) -> bool:
        """Whether the instance ``sop`` was received before (kept, or counted)."""
        return bool(self._read("SELECT 1 FROM instances WHERE sop = ?", (sop,)))

    def position(self, url: str) -> int:
        """Where the node is in the change log of the server it follows at ``url`` (0: the start)."""
        rows = self._read("SELECT since FROM follow WHERE url = ?", (url,))
        return int(rows[0][0]) if rows else 0

    def move_to(self, url: str, since: int) -> None:
        """The changes of ``url`` up to ``since`` are done with."""
        self._write(("INSERT INTO follow VALUES (?, ?) ON CONFLICT (url) DO UPDATE SET since = excluded.since",
                     (url, since)))

    def kept(self, sop: str) -> bool:
        """Whether the instance ``sop`` is kept in the spool (received, and its study not answered
        and cleared)."""
        return bool(self._read("SELECT 1 FROM instances WHERE sop = ? AND removed = 0", (sop,)))

    def due(self, stable_seconds: float, partial_seconds: float = 0.0, now: float | None = None) -> list[str]:
        """The studies to answer now, oldest first: receiving (or answering when a node stopped
        in the middle) with no instance for ``stable_seconds`` (``partial_seconds``, when longer,
        for a study whose sender broke off), and past any back-off."""
        now = time.time() if now is None else now
        rows = self._read("SELECT study FROM studies WHERE state IN ('receiving', 'answering') AND last_received <= ? "
                          "AND (broken_by IS NULL OR last_received <= ?) AND not_before <= ? ORDER BY last_received",
                          (now - stable_seconds, now - max(stable_seconds, partial_seconds), now))
        return [r[0] for r in rows]

    def sending(self, study: str) -> None:
        """An association has begun to carry instances of ``study`` (lifted when it ends)."""
        self._write(("UPDATE studies SET sending = 1 WHERE study = ?", (study,)))

    def cut_by_stop(self, now: float | None = None) -> list[str]:
        """At a node's start: the studies an association was carrying when the node last stopped
        without closing it (killed) are marked broken off, to wait for the sender to send them
        again; the studies marked."""
        rows = [r[0] for r in self._read("SELECT study FROM studies WHERE sending = 1 AND state = 'receiving'")]
        marked = self.broken_off(set(rows), "the node stopped while an association was sending it", now)
        self._write(("UPDATE studies SET sending = 0", ()))
        return marked

    def waiting_for_rest(self) -> list[str]:
        """The studies marked broken off and still being received: waiting for the rest."""
        return [r[0] for r in self._read("SELECT study FROM studies WHERE broken_by IS NOT NULL AND "
                                         "state = 'receiving' ORDER BY last_received")]

    def broken_off(self, studies: set[str], why: str, now: float | None = None) -> list[str]:
        """An association that carried instances of ``studies`` ended without a release (``why``,
        e.g. "ORTHANC broke off the association mid-study"): those still being received are
        marked, to wait the partial time for the rest. The studies marked."""
        now = time.time() if now is None else now
        marked = []
        for study in sorted(studies):
            changed, _ = self._write(("UPDATE studies SET broken_by = ?, sending = 0 WHERE study = ? AND "
                                      "state = 'receiving'", (why, study)),
                                     ("INSERT INTO events SELECT ?, ?, 'broken off', ? WHERE changes() > 0",
                                      (now, study, why)))
            if changed:
                marked.append(study)
        return marked

    def sent_whole(self, studies: set[str]) -> None:
        """An association that carried instances of ``studies`` was released properly: any mark
        of an earlier broken-off association is lifted (the sender sent them again, whole)."""
        for study in sorted(studies):
            self._write(("UPDATE studies SET broken_by = NULL, sending = 0 WHERE study = ?", (study,)))

    def start(self, study: str) -> int:
        """Mark ``study`` as being answered; the number of this try (1 for the first)."""
        self._write(("UPDATE studies SET state = 'answering', tries = tries + 1 WHERE study = ?", (study,)))
        return int(self._read("SELECT tries FROM studies WHERE study = ?", (study,))[0][0])

    def answered(self, study: str, results: list[str], keep_for: float | None, now: float | None = None) -> None:
        """Mark ``study`` answered, keeping the SOP Instance UIDs of its results; its instances
        are to be cleared after ``keep_for`` seconds (``None``: never)."""
        now = time.time() if now is None else now
        clear_after = None if keep_for is None else now + keep_for
        self._write(("UPDATE studies SET state = 'answered', answered = ?, results = ?, reason = NULL, "
                     "broken_by = NULL, clear_after = ? WHERE study = ?", (now, " ".join(results), clear_after, study)),
                    ("INSERT INTO events VALUES (?, ?, 'answered', ?)", (now, study, str(len(results)))))

    def retry_later(self, study: str, reason: str, after_seconds: float, now: float | None = None) -> None:
        """A try failed (``reason``): back to receiving, not due before ``after_seconds``."""
        now = time.time() if now is None else now
        self._write(("UPDATE studies SET state = 'receiving', not_before = ?, reason = ? WHERE study = ?",
                     (now + after_seconds, reason, study)),
                    ("INSERT INTO events VALUES (?, ?, 'retry', ?)", (now, study, reason)))

    def failed(self, study: str, reason: str) -> None:
        """Give up on ``study`` (``reason`` kept); its instances stay."""
        self._write(("UPDATE studies SET state = 'failed', reason = ? WHERE study = ?", (reason, study)),
                    ("INSERT INTO events VALUES (?, ?, 'failed', ?)", (time.time(), study, reason)))

    def instance_paths(self, study: str) -> list[Path]:
        """Where the instances of ``study`` that are still kept lie."""
        return [Path(r[0]) for r in self._read("SELECT path FROM instances WHERE study = ? AND removed = 0 "
                                               "ORDER BY path", (study,))]

    def to_clear(self, now: float | None = None) -> list[str]:
        """The answered studies whose instances are due to be deleted from the spool."""
        now = time.time() if now is None else now
        return [r[0] for r in self._read("SELECT study FROM studies WHERE state = 'answered' AND cleared = 0 AND "
                                         "clear_after IS NOT NULL AND clear_after <= ?", (now,))]

    def removed(self, study: str) -> None:
        """The instances of ``study`` were deleted from the spool: a later one is only counted."""
        self._write(("UPDATE instances SET removed = 1 WHERE study = ?", (study,)),
                    ("UPDATE studies SET cleared = 1 WHERE study = ?", (study,)))

    def study(self, study: str) -> Study | None:
        """``study`` as the journal holds it, or ``None``."""
        rows = self._read("SELECT s.study, s.state, s.first_received, s.last_received, s.tries, "
                          "(SELECT COUNT(*) FROM instances i WHERE i.study = s.study), s.broken_by FROM studies s "
                          "WHERE s.study = ?",
                          (study,))
        return Study(*rows[0]) if rows else None

    def results(self, study: str) -> list[str]:
        """The SOP Instance UIDs of what was sent for ``study``."""
        rows = self._read("SELECT results FROM studies WHERE study = ?", (study,))
        return rows[0][0].split() if rows and rows[0][0] else []

    def counts(self) -> dict[str, Any]:
        """Studies by state, instances received and still kept, late instances, events by kind,
        and the reason of each failed study."""
        by_state = dict.fromkeys(STATES, 0)
        by_state.update(dict(self._read("SELECT state, COUNT(*) FROM studies GROUP BY state")))
        instances, kept = self._read("SELECT COUNT(*), COALESCE(SUM(1 - removed), 0) FROM instances")[0]
        late = self._read("SELECT COALESCE(SUM(late), 0) FROM studies")[0][0]
        events = dict(self._read("SELECT event, COUNT(*) FROM events GROUP BY event"))
        failed = dict(self._read("SELECT study, reason FROM studies WHERE state = 'failed'"))
        return {"studies": by_state, "instances": int(instances), "instances_kept": int(kept), "late": int(late),
                "events": events, "failed": failed}
