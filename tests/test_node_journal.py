"""The node's journal (SQLite) and its follower on their own: when a study is due, what a
broken-off association or a killed node leaves behind, a study held for a person, and a server
that is down."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from btk.node.journal import Journal


def _journal(tmp_path: Path) -> Journal:
    return Journal(tmp_path / "node" / "journal.sqlite")


def test_a_broken_off_study_waits_the_partial_time_and_a_whole_resend_lifts_it(tmp_path):
    journal = _journal(tmp_path)
    for k, study in enumerate(("A", "B", "C")):
        journal.received(f"{study}1", study, "s", tmp_path / f"{k}.dcm", "ORTHANC", now=100.0)
    assert journal.broken_off({"A", "B"}, "ORTHANC broke off the association mid-study", now=100.5) == ["A", "B"]
    assert journal.due(stable_seconds=2, partial_seconds=30, now=103) == ["C"]
    journal.sent_whole({"B"})  # the sender sent B again, whole, and released the association
    assert journal.due(stable_seconds=2, partial_seconds=30, now=103) == ["B", "C"]
    assert journal.due(stable_seconds=2, partial_seconds=30, now=131) == ["A", "B", "C"]
    assert journal.study("A").broken_by == "ORTHANC broke off the association mid-study"
    assert journal.study("B").broken_by is None
    assert journal.counts()["events"] == {"broken off": 2}
    journal.answered("C", ["r"], keep_for=None)
    assert journal.broken_off({"C"}, "late") == []  # an answered study is not marked
    journal.close()


def test_studies_a_killed_node_was_receiving_wait_for_the_sender_to_send_them_again(tmp_path):
    journal = _journal(tmp_path)
    journal.received("A1", "A", "s", tmp_path / "a.dcm", "ORTHANC", now=100.0)
    journal.received("B1", "B", "s", tmp_path / "b.dcm", "ORTHANC", now=100.0)
    journal.sending("A")  # an association was carrying A when the node died; B's had ended
    journal.sending("B")
    journal.sent_whole({"B"})
    journal.close()
    restarted = _journal(tmp_path)
    assert restarted.cut_by_stop() == ["A"]
    assert restarted.study("A").broken_by == "the node stopped while an association was sending it"
    assert restarted.due(stable_seconds=1, partial_seconds=60, now=110) == ["B"]
    assert restarted.cut_by_stop() == []  # once
    restarted.close()


def test_a_new_instance_of_a_failed_study_sends_it_back_to_receiving(tmp_path):
    journal = _journal(tmp_path)
    journal.received("A1", "A", "s", tmp_path / "a1.dcm", "ORTHANC", now=100.0)
    journal.start("A")
    journal.failed("A", "the destination refused it")
    assert journal.due(0, now=200) == []
    assert journal.received("A1", "A", "s", tmp_path / "a1.dcm", "ORTHANC", now=201.0) == "again"
    assert journal.study("A").state == "failed"  # the same instance again changes nothing
    assert journal.received("A2", "A", "s", tmp_path / "a2.dcm", "ORTHANC", now=202.0) == "new"
    assert (journal.study("A").state, journal.study("A").tries) == ("receiving", 0)
    assert journal.due(1, now=204) == ["A"]
    journal.close()


def test_with_partial_hold_a_broken_off_study_is_held_for_a_person_without_a_prediction(tmp_path):
    from btk.node.receiver import Door
    from btk.node.service import NodeSettings, handle_studies

    settings = NodeSettings(tmp_path / "node", Door(11112), "http://127.0.0.1:1/dicom-web", stable_seconds=1,
                            partial_wait=60, partial="hold")
    journal = _journal(tmp_path)
    journal.received("A1", "A", "s", tmp_path / "a.dcm", "ORTHANC", now=100.0)
    journal.broken_off({"A"}, "ORTHANC broke off the association mid-study")
    logged = []
    # no run: a held study is not predicted
    assert handle_studies(None, journal, ["A"], settings, logged.append) == {"A": "failed"}
    assert journal.counts()["failed"] == {
        "A": "ORTHANC broke off the association mid-study, and nothing more came for 60 s: held for a person "
             "(--partial hold)"}
    assert [e["event"] for e in logged] == ["failed"]
    journal.close()


def test_a_journal_an_earlier_node_wrote_opens_with_its_studies(tmp_path):
    path = tmp_path / "node" / "journal.sqlite"
    path.parent.mkdir()
    with sqlite3.connect(path) as db:  # the tables as the first btk listen made them
        db.executescript(
            "CREATE TABLE instances (sop TEXT PRIMARY KEY, study TEXT NOT NULL, series TEXT NOT NULL, path TEXT NOT "
            "NULL, sender TEXT NOT NULL, received REAL NOT NULL, removed INTEGER NOT NULL DEFAULT 0);"
            "CREATE TABLE studies (study TEXT PRIMARY KEY, state TEXT NOT NULL, first_received REAL NOT NULL, "
            "last_received REAL NOT NULL, tries INTEGER NOT NULL DEFAULT 0, not_before REAL NOT NULL DEFAULT 0, "
            "answered REAL, results TEXT, late INTEGER NOT NULL DEFAULT 0, reason TEXT, clear_after REAL, "
            "cleared INTEGER NOT NULL DEFAULT 0);"
            "CREATE TABLE events (at REAL NOT NULL, study TEXT, event TEXT NOT NULL, detail TEXT);"
            "INSERT INTO studies (study, state, first_received, last_received) VALUES ('A', 'receiving', 1, 1);")
    journal = Journal(path)
    assert journal.due(1, now=10) == ["A"] and journal.study("A").broken_by is None
    assert journal.cut_by_stop() == []
    journal.close()


def test_the_follower_outlives_a_server_that_is_down_and_says_so(tmp_path):
    import socket
    import threading

    from btk.node.follow import follow

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    journal, stop, heard = _journal(tmp_path), threading.Event(), []

    def on_event(kind, detail, study=None):
        heard.append((kind, detail))
        stop.set()

    follow(f"http://127.0.0.1:{port}", tmp_path / "spool", journal, stop, 0.5, on_event)
    [(kind, detail)] = heard
    assert kind == "follow failed" and detail.startswith(f"http://127.0.0.1:{port}: ConnectionError")
    assert journal.position(f"http://127.0.0.1:{port}") == 0  # nothing read: nothing skipped
    journal.move_to("http://pacs", 17)
    journal.move_to("http://pacs", 18)
    assert journal.position("http://pacs") == 18
    journal.close()


def test_an_instance_that_would_take_the_spool_past_its_limit_is_refused_and_not_written(tmp_path):
    import pytest
    from pydicom.dataset import Dataset
    from pydicom.uid import SecondaryCaptureImageStorage

    from btk.node.receiver import SpoolFull, keep_instance

    def instance(sop: str) -> Dataset:
        d = Dataset()
        d.SOPClassUID, d.StudyInstanceUID, d.SeriesInstanceUID, d.SOPInstanceUID = (
            SecondaryCaptureImageStorage, "1.2.3", "1.2.3.4", sop)
        return d

    journal, spool = _journal(tmp_path), tmp_path / "node" / "spool"
    assert keep_instance(b"x" * 600, instance("1.2.3.4.1"), spool, journal, "ORTHANC", 1000) == ("received", "1.2.3")
    with pytest.raises(SpoolFull, match=r"the spool is full \(0.0 MiB kept, --spool-limit 0.000953674 MiB\)"):
        keep_instance(b"x" * 600, instance("1.2.3.4.2"), spool, journal, "ORTHANC", 1000)
    assert [p.name for p in spool.rglob("*") if p.is_file()] == ["1.2.3.4.1.dcm"]  # nothing of the refused one
    assert journal.kept_bytes() == 600 and not journal.known("1.2.3.4.2")
    # the same instance again is no new bytes: taken (and recorded once)
    assert keep_instance(b"x" * 600, instance("1.2.3.4.1"), spool, journal, "ORTHANC", 1000) == ("again", "1.2.3")
    journal.removed("1.2.3")  # its instances deleted from the spool: room again
    assert journal.kept_bytes() == 0
    assert keep_instance(b"x" * 600, instance("1.2.3.4.2"), spool, journal, "ORTHANC", 1000)[0] == "stored"
    journal.close()


def test_the_receiver_process_stopped_mid_association_marks_the_study_broken_off(tmp_path):
    """The node's receiver runs in its own process; when the node stops it (or dies) while a
    sender is in the middle of a study, the study is marked broken off in the journal, so it
    waits for the sender to send it again instead of being answered half-sent."""
    import socket

    import numpy as np
    import pydicom
    from pynetdicom import AE

    from btk.default_plugins.convert import write_dicom_series
    from btk.node.door_process import start_door
    from btk.node.receiver import Door

    [first, _] = write_dicom_series([np.full((16, 16), k * 60, np.uint8) for k in (1, 2)], tmp_path / "series", "P1",
                                    uid_seed="door")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    heard = []
    node = tmp_path / "node"
    door = start_door(Door(port, allowed=("ORTHANC",)), node / "spool", node / "journal.sqlite", 0,
                      lambda *event: heard.append(event))
    dataset = pydicom.dcmread(first)
    caller = AE(ae_title="ORTHANC")
    caller.add_requested_context(dataset.SOPClassUID)
    assoc = caller.associate("127.0.0.1", port, ae_title="BTK")
    assert assoc.is_established and assoc.send_c_store(dataset).Status == 0x0000
    door.stop()  # one slice of two sent, the association still open
    assert not door.alive()
    journal = _journal(tmp_path)
    study = journal.study(str(dataset.StudyInstanceUID))
    assert study.instances == 1 and study.broken_by == "ORTHANC broke off the association mid-study"
    assert [e[0] for e in heard] == ["received", "broken off"]
    journal.close()


def test_earlier_reports_skip_a_result_directory_a_killed_node_left_half_written(tmp_path):
    import numpy as np
    import pydicom

    from btk.default_plugins.convert import write_dicom_series
    from btk.node.service import earlier_reports

    [done] = write_dicom_series([np.zeros((8, 8), np.uint8)], tmp_path / "results" / "sr-run", "P", uid_seed="sr")
    half = tmp_path / "results" / ".sr-run-2.partial"
    half.mkdir()
    (half / "x.dcm").write_bytes(b"\x00" * 10)  # cut off mid-write
    uid = str(pydicom.dcmread(done, stop_before_pixels=True).SOPInstanceUID)
    assert [str(d.SOPInstanceUID) for d in earlier_reports(tmp_path / "results", [uid])] == [uid]
