"""btk as a hospital node (``btk listen``), against a real Orthanc that routes studies to it by
DICOM C-STORE and receives its SRs by DICOMweb: each study answered once, with the SR btk predict
--sr writes for the same files; nothing lost or sent twice across a kill -9 in the middle of a
load; callers not let in are refused; non-image objects are recorded and not kept; a sender that
breaks off, a damaged instance, a late one; C-STORE back; pull from Orthanc; the systemd unit."""

from __future__ import annotations

import copy
import json
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pydicom
import pytest
from click.testing import CliRunner

from btk.cli import cli
from btk.testing import orthanc_missing, orthanc_server

pytestmark = [pytest.mark.slow, pytest.mark.skipif(orthanc_missing() is not None,
                                                   reason=f"no local PACS: {orthanc_missing()} (.ci/run installs it)")]

# Attributes of an SR that may differ between the node's and btk predict --sr's: when it was made.
WHEN = {"InstanceCreationDate", "InstanceCreationTime", "ContentDate", "ContentTime", "SeriesDate", "SeriesTime",
        "ContributionDateTime"}


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Node:
    """``btk listen`` in its own process, on a free port, in ``folder``."""

    def __init__(self, run_dir: Path, folder: Path, store: str, port: int, *extra: str,
                 command: list[str] | None = None) -> None:
        self.folder, self.port = folder, port
        self.args = command or [sys.executable, "-m", "btk", "listen", str(run_dir), "--node", str(folder), "--port",
                                str(port), "--allow", "ORTHANC", "--store", store, *extra]
        self.process: subprocess.Popen | None = None

    def start(self) -> Node:
        seen = len(self.events("listening"))
        out = open(self.folder.parent / f"{self.folder.name}.out", "a")  # noqa: SIM115 (the process holds it)
        self.process = subprocess.Popen(self.args, stdout=out, stderr=subprocess.STDOUT)
        self.wait(lambda: len(self.events("listening")) > seen, "the node to listen")
        return self

    def events(self, kind: str | None = None) -> list[dict]:
        log = self.folder / "node.log"
        lines = [json.loads(x) for x in log.read_text().splitlines()] if log.is_file() else []
        return [e for e in lines if kind is None or e["event"] == kind]

    def wait(self, condition, what: str, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if self.process is not None and self.process.poll() is not None:
                out = (self.folder.parent / f"{self.folder.name}.out").read_text()
                raise AssertionError(f"the node exited ({self.process.returncode}) waiting for {what}:\n{out}")
            assert time.monotonic() < deadline, f"timed out waiting for {what}: {self.events()}"
            time.sleep(0.2)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        assert self.process is not None
        self.process.send_signal(sig)
        return self.process.wait(timeout=60)


def _ok(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.fixture(scope="module")
def studies(tmp_path_factory, sartaj_small) -> list[Path]:
    """Four one-series studies of three SARTAJ Testing slices each (``btk convert``)."""
    out = tmp_path_factory.mktemp("converted")
    _ok("convert", "--data", str(sartaj_small / "Testing"), "--to", "dicom", "--out", str(out), "--per-patient", "3")
    return sorted(p for p in next(out.iterdir()).glob("*/*") if p.is_dir())


@pytest.fixture(scope="module")
def pacs(tmp_path_factory, studies):
    """Orthanc holding the four studies, with the node as its modality ``btk`` (AE title BTK), and
    its own DICOM server on (AE title ORTHANC)."""
    port = _port()
    with orthanc_server(tmp_path_factory.mktemp("orthanc"), modalities={"btk": ("BTK", "127.0.0.1", port)},
                        dicom=True) as server:
        server.upload(sorted(p for s in studies for p in s.glob("*.dcm")))
        server.node_port = port
        yield server


def _study_uid(folder: Path) -> str:
    return str(pydicom.dcmread(next(folder.glob("*.dcm")), stop_before_pixels=True).StudyInstanceUID)


def _route(pacs, folder: Path) -> None:
    """Orthanc sends the study of ``folder`` to the node (C-STORE), and waits until it is sent."""
    import requests

    found = requests.post(f"{pacs.url}/tools/lookup", data=_study_uid(folder), timeout=30).json()
    orthanc_id = next(f["ID"] for f in found if f["Type"] == "Study")
    response = requests.post(f"{pacs.url}/modalities/btk/store", json={"Resources": [orthanc_id],
                                                                      "Synchronous": True}, timeout=120)
    assert response.status_code == 200, response.text


def _srs_in_pacs(pacs, folder: Path) -> list:
    """The SRs the PACS holds in the study of ``folder``, read back through DICOMweb."""
    from dicomweb_client.api import DICOMwebClient

    web = DICOMwebClient(pacs.dicomweb)
    study = _study_uid(folder)
    found = web.search_for_series(study_instance_uid=study, search_filters={"Modality": "SR"})
    out = []
    for series in found:
        uid = series["0020000E"]["Value"][0]
        out += web.retrieve_series(study_instance_uid=study, series_instance_uid=uid)
    return out


def _without_when(data):
    """A dataset's DICOM JSON (``to_json_dict``) without the :data:`WHEN` attributes, at any depth."""
    if hasattr(data, "to_json_dict"):
        data = data.to_json_dict()
    if isinstance(data, dict):
        return {k: _without_when(v) for k, v in data.items()
                if not (len(k) == 8 and pydicom.datadict.keyword_for_tag(int(k, 16)) in WHEN)}
    if isinstance(data, list):
        return [_without_when(v) for v in data]
    return data


def test_a_routed_study_is_answered_once_with_the_sr_btk_predict_writes(pacs, studies, sartaj_small_run, tmp_path):
    node = Node(sartaj_small_run, tmp_path / "node", pacs.dicomweb, pacs.node_port, "--stable", "1",
                "--late-window", "0").start()
    try:
        _route(pacs, studies[0])
        node.wait(lambda: node.events("answered"), "the study's answer")
        _route(pacs, studies[0])  # sent again: the same instances, nothing new to answer
        time.sleep(2.5)
    finally:
        assert node.stop() == 0  # SIGTERM: a clean stop
    answered = node.events("answered")
    assert len(answered) == 1 and answered[0]["study"] == _study_uid(studies[0]), node.events()
    assert answered[0]["instances"] == 3 and answered[0]["already_there"] == 0
    assert answered[0]["seconds_since_last_instance"] >= 1.0  # stable for --stable seconds first
    in_pacs = _srs_in_pacs(pacs, studies[0])
    assert len(in_pacs) == 1
    # btk predict --sr on the same files gives the same SR: same UIDs, same content
    _ok("predict", str(sartaj_small_run), "--data", str(studies[0]), "--sr", str(tmp_path / "sr"))
    [mine] = list((tmp_path / "sr").glob("*/*.dcm"))
    predicted = pydicom.dcmread(mine)
    assert in_pacs[0].SOPInstanceUID == predicted.SOPInstanceUID
    assert _without_when(in_pacs[0]) == _without_when(predicted)
    assert not list((tmp_path / "node" / "spool").rglob("*.dcm"))  # sent: the instances are deleted
    status = json.loads(_ok("listen", "--node", str(tmp_path / "node"), "--status", "--json"))
    assert status["studies"]["answered"] == 1 and status["instances"] == 3 and status["instances_kept"] == 0


def test_over_tls_a_caller_not_let_in_and_a_plain_association_are_refused_and_a_non_image_not_kept(
        pacs, studies, sartaj_small_run, tmp_path):
    import ssl

    from pynetdicom import AE
    from pynetdicom.sop_class import Verification

    cert, key = tmp_path / "node.pem", tmp_path / "node.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=btk-node", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    _ok("predict", str(sartaj_small_run), "--data", str(studies[3]), "--sr", str(tmp_path / "sr"))
    sr = pydicom.dcmread(next((tmp_path / "sr").glob("*/*.dcm")))
    port = _port()
    node = Node(sartaj_small_run, tmp_path / "node", pacs.dicomweb, port, "--stable", "600", "--tls-cert", str(cert),
                "--tls-key", str(key)).start()
    tls = (ssl.create_default_context(cafile=str(cert)), "127.0.0.1")
    try:
        assert node.events("listening")[0]["tls"] is True
        stranger = AE(ae_title="STRANGER")
        stranger.add_requested_context(Verification)
        assert stranger.associate("127.0.0.1", port, ae_title="BTK", tls_args=tls).is_rejected
        node.wait(lambda: node.events("association refused"), "the refusal recorded")

        caller = AE(ae_title="ORTHANC")
        caller.add_requested_context(Verification)
        caller.add_requested_context(sr.SOPClassUID)
        assert not caller.associate("127.0.0.1", port, ae_title="BTK").is_established  # plain: refused
        assoc = caller.associate("127.0.0.1", port, ae_title="BTK", tls_args=tls)
        assert assoc.is_established
        assert assoc.send_c_echo().Status == 0x0000
        assert assoc.send_c_store(sr).Status == 0x0000  # acknowledged
        assoc.release()
        node.wait(lambda: node.events("skipped"), "the non-image recorded")
    finally:
        assert node.stop() == 0
    assert "not an image (Comprehensive 3D SR Storage, btk)" in node.events("skipped")[0]["detail"]
    assert node.events("association refused")[0]["detail"] == "STRANGER"
    status = json.loads(_ok("listen", "--node", str(tmp_path / "node"), "--status", "--json"))
    assert status["instances"] == 0 and status["studies"]["receiving"] == 0
    assert status["events"] == {"association refused": 1, "skipped": 1}
    assert not [p for p in (tmp_path / "node").rglob("*") if p.is_file() and "spool" in p.parts]


def test_a_node_without_a_run_store_journal_or_free_port_is_one_line(sartaj_small_run, tmp_path):
    from conftest import one_line_refusal

    assert one_line_refusal(["listen", "--node", str(tmp_path / "n")]) == \
        "Error: btk listen needs the RUN that answers the studies (or --status)"
    assert one_line_refusal(["listen", str(sartaj_small_run), "--node", str(tmp_path / "n")]) == \
        "Error: btk listen needs --store URL: the DICOMweb server (or dicom://HOST:PORT/AE_TITLE) its SRs are sent to"
    assert one_line_refusal(["listen", str(sartaj_small_run), "--node", str(tmp_path / "n"), "--store",
                             "dicom://127.0.0.1/ORTHANC"]) == \
        "Error: dicom://127.0.0.1/ORTHANC: a DICOM destination is written dicom://HOST:PORT/AE_TITLE, e.g. " \
        "dicom://127.0.0.1:4242/ORTHANC"
    assert one_line_refusal(["listen", str(sartaj_small_run), "--node", str(tmp_path / "n"), "--store",
                             "dicom://127.0.0.1:4242/A-TITLE-FAR-TOO-LONG"]) == \
        "Error: dicom://127.0.0.1:4242/A-TITLE-FAR-TOO-LONG: 'A-TITLE-FAR-TOO-LONG' is not an AE title (1 to 16 " \
        "characters, no backslash)"
    assert one_line_refusal(["listen", "--node", str(tmp_path / "n"), "--status"]) == \
        f"Error: {tmp_path / 'n'}: no node here (no journal.sqlite): give the --node folder of a btk listen"
    assert one_line_refusal(["listen", str(sartaj_small_run), "--node", str(tmp_path / "n"), "--store",
                             "http://127.0.0.1:1/x", "--follow", "orthanc:8042"]) == \
        "Error: --follow orthanc:8042: give the http(s) URL of an Orthanc, e.g. http://127.0.0.1:8042"
    assert "user name or password" in one_line_refusal(
        ["listen", str(sartaj_small_run), "--node", str(tmp_path / "n"), "--store", "http://u:secret@127.0.0.1:1/x"])
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert one_line_refusal(["listen", str(sartaj_small_run), "--node", str(tmp_path / "n"), "--port", str(port),
                                 "--store", "http://127.0.0.1:1/dicom-web"]) == \
            f"Error: cannot listen on 127.0.0.1:{port}: Address already in use"
    assert not (tmp_path / "n").exists()  # refused before anything was made


def test_bad_tls_files_are_one_line_before_anything_is_made(sartaj_small_run, tmp_path):
    from conftest import one_line_refusal

    (tmp_path / "junk.pem").write_text("not a certificate")
    base = ["listen", str(sartaj_small_run), "--node", str(tmp_path / "n"), "--store", "http://127.0.0.1:1/dicom-web"]
    assert one_line_refusal([*base, "--tls-cert", str(tmp_path / "junk.pem")]) == \
        "Error: DICOM over TLS needs --tls-cert and --tls-key together (and --tls-ca only with them)"
    missing = [*base, "--tls-cert", str(tmp_path / "none.pem"), "--tls-key", str(tmp_path / "junk.pem")]
    assert one_line_refusal(missing) == f"Error: --tls-cert {tmp_path / 'none.pem'}: no such file"
    assert one_line_refusal([*base, "--tls-cert", str(tmp_path / "junk.pem"), "--tls-key", str(tmp_path / "junk.pem")]
                            ).startswith(f"Error: --tls-cert {tmp_path / 'junk.pem'} with --tls-key")
    assert not (tmp_path / "n").exists()


def test_a_destination_that_is_down_gets_the_results_when_it_is_back(pacs, studies, sartaj_small_run, tmp_path):
    down = _port()  # nothing listens there yet
    node = Node(sartaj_small_run, tmp_path / "node", f"http://127.0.0.1:{down}/dicom-web", pacs.node_port,
                "--stable", "0.5", "--back-off", "2").start()
    try:
        _route(pacs, studies[3])
        node.wait(lambda: node.events("retry"), "a failed try")
        first = node.events("retry")[0]
        assert "cannot reach the DICOMweb server" in first["reason"] and first["after_seconds"] == 2.0
        with orthanc_server(tmp_path / "later", port=down) as later:  # the destination comes back
            node.wait(lambda: node.events("answered"), "the answer, sent when the destination is back")
            assert len(_srs_in_pacs(later, studies[3])) == 1
    finally:
        assert node.stop() == 0
    tries = [e["try"] for e in node.events() if e["event"] in ("retry", "answered")]
    assert tries == list(range(1, len(tries) + 1)) and len(tries) >= 2  # each try logged, the last answered
    assert [e["after_seconds"] for e in node.events("retry")] == [2.0 * 2 ** k for k in range(len(tries) - 1)]


def _unit_command(unit: Path, values: dict[str, str]) -> list[str]:
    """The ExecStart of the systemd ``unit`` as an argument list, run with this Python, its
    ``${VAR}`` replaced from ``values`` (each variable must be one the unit sets in Environment=)."""
    import re
    import shlex

    lines = unit.read_text().splitlines()
    environment = dict(x.removeprefix("Environment=").split("=", 1) for x in lines if x.startswith("Environment="))
    [start] = [x.removeprefix("ExecStart=") for x in lines if x.startswith("ExecStart=")]
    assert set(re.findall(r"\$\{(\w+)\}", start)) == set(environment) == set(values)
    program, *args = shlex.split(start)
    assert program.endswith("/bin/btk")
    return [sys.executable, "-m", "btk", *(re.sub(r"\$\{(\w+)\}", lambda m: values[m[1]], a) for a in args)]


def test_orthanc_and_systemd_configured_as_the_docs_say_route_a_new_study_and_receive_the_answer(
        studies, sartaj_small_run, tmp_path):
    """docs/node/orthanc-to-btk.lua and docs/node/btk-listen.service, tried end to end: the node
    started with the unit's command, a study uploaded to Orthanc reaches it by itself, the SR
    comes back into the study without going round again, and the unit's stop signal stops the
    node cleanly."""
    docs = Path(__file__).resolve().parents[1] / "docs" / "node"
    unit = docs / "btk-listen.service"
    if shutil.which("systemd-analyze"):  # the unit is one systemd reads without a complaint
        checked = tmp_path / "btk-listen.service"
        checked.write_text(unit.read_text().replace("/opt/btk/.venv/bin/btk", str(Path(sys.executable).parent / "btk")
                                                    if (Path(sys.executable).parent / "btk").exists() else "/bin/true"))
        verify = subprocess.run(["systemd-analyze", "verify", str(checked)], capture_output=True, text=True)
        assert verify.returncode == 0 and verify.stderr == "", verify.stderr
    assert "KillSignal=SIGTERM" in unit.read_text().splitlines()
    port = _port()
    with orthanc_server(tmp_path / "orthanc", modalities={"btk": ("BTK", "127.0.0.1", port)},
                        lua=[docs / "orthanc-to-btk.lua"]) as pacs:
        command = _unit_command(unit, {"BTK_RUN": str(sartaj_small_run), "BTK_NODE": str(tmp_path / "node"),
                                       "BTK_PORT": str(port), "BTK_CALLER": "ORTHANC", "BTK_STORE": pacs.dicomweb})
        node = Node(sartaj_small_run, tmp_path / "node", pacs.dicomweb, port,
                    command=[*command, "--stable", "1"]).start()  # the unit's --stable 10, shortened
        try:
            pacs.upload(sorted(studies[0].glob("*.dcm")))
            node.wait(lambda: node.events("answered"), "the routed study's answer")
            time.sleep(2)  # the SR stored in Orthanc is not sent to the node
        finally:
            assert node.stop() == 0
        assert len(_srs_in_pacs(pacs, studies[0])) == 1
    assert [e["study"] for e in node.events("answered")] == [_study_uid(studies[0])]
    assert not node.events("skipped")


def test_a_node_that_follows_orthanc_fetches_each_stable_study_and_answers_it_once(studies, sartaj_small_run,
                                                                                   tmp_path):
    with orthanc_server(tmp_path / "orthanc") as pacs:  # routes nothing: the node pulls
        node = Node(sartaj_small_run, tmp_path / "node", pacs.dicomweb, _port(), "--stable", "0.5", "--follow",
                    pacs.url, "--follow-every", "0.5").start()
        try:
            pacs.upload(sorted(studies[1].glob("*.dcm")))
            node.wait(lambda: node.events("answered"), "the followed study's answer")
            # the SR stored makes the study stable again in Orthanc: the follower fetches nothing more
            def stable_after_the_sr() -> bool:
                kinds = [c["ChangeType"] for c in pacs.get("/changes?since=0&limit=1000")["Changes"]]
                return kinds.count("NewSeries") == 2 and kinds[::-1].index("StableStudy") < kinds[::-1].index(
                    "NewSeries")

            node.wait(stable_after_the_sr, "the study stable again after its SR came")
            time.sleep(2)  # four reads of the change log
        finally:
            assert node.stop() == 0
        assert len(_srs_in_pacs(pacs, studies[1])) == 1
    [fetched] = node.events("fetched")
    assert fetched["study"] == _study_uid(studies[1]) and fetched["detail"].startswith("3 instance(s) from http")
    [answered] = node.events("answered")
    assert answered["study"] == _study_uid(studies[1]) and answered["instances"] == 3
    assert not node.events("skipped") and not node.events("follow failed")
    with sqlite3.connect(tmp_path / "node" / "journal.sqlite") as db:
        [(since,)] = db.execute("SELECT since FROM follow").fetchall()
    assert since > 0  # where it is in the change log, for a restart


def _send(port: int, files: list[Path], break_off: bool = False) -> None:
    """C-STORE ``files`` to the node as ORTHANC would, over one association, then release it
    (or, ``break_off``, abort it as a sender that fails mid-study)."""
    from pynetdicom import AE

    datasets = [pydicom.dcmread(f) for f in files]
    caller = AE(ae_title="ORTHANC")
    for uid in {str(d.SOPClassUID) for d in datasets}:
        caller.add_requested_context(uid)
    assoc = caller.associate("127.0.0.1", port, ae_title="BTK")
    assert assoc.is_established
    try:
        assert all(assoc.send_c_store(d).Status == 0x0000 for d in datasets)
    finally:
        assoc.abort() if break_off else assoc.release()


def _copy_study(folder: Path, tag: str, out: Path) -> list[Path]:
    """The slices of the study in ``folder`` as a new study (new Study, Series and SOP Instance
    UIDs, derived from ``tag``), written to ``out``."""
    from pydicom.uid import generate_uid

    out.mkdir(parents=True)
    study, series = generate_uid(entropy_srcs=[tag, "study"]), generate_uid(entropy_srcs=[tag, "series"])
    files = []
    for k, f in enumerate(sorted(folder.glob("*.dcm"))):
        d = pydicom.dcmread(f)
        d.StudyInstanceUID, d.SeriesInstanceUID = study, series
        d.SOPInstanceUID = d.file_meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=[tag, str(k)])
        d.save_as(out / f"{k}.dcm", enforce_file_format=True)
        files.append(out / f"{k}.dcm")
    return files


def test_results_go_back_by_c_store_to_a_dicom_destination_and_are_not_sent_twice(pacs, studies,
                                                                                   sartaj_small_run, tmp_path):
    from btk.default_plugins.dimse import store_by_c_store

    files = _copy_study(studies[0], "c-store", tmp_path / "c-store")
    destination = f"dicom://127.0.0.1:{pacs.dicom_port}/ORTHANC?calling=BTK"
    node = Node(sartaj_small_run, tmp_path / "node", destination, pacs.node_port, "--stable", "0.5").start()
    try:
        _send(pacs.node_port, files)
        node.wait(lambda: node.events("answered"), "the answer, sent by C-STORE")
    finally:
        assert node.stop() == 0
    [answered] = node.events("answered")
    assert answered["results"] == 1 and answered["already_there"] == 0
    [sr] = _srs_in_pacs(pacs, tmp_path / "c-store")  # in the study, as read back through DICOMweb
    _ok("predict", str(sartaj_small_run), "--data", str(tmp_path / "c-store"), "--sr", str(tmp_path / "sr"))
    predicted = pydicom.dcmread(next((tmp_path / "sr").glob("*/*.dcm")))
    assert _without_when(sr) == _without_when(predicted)
    # sent again: the destination is asked first (C-FIND) and holds it, so nothing is sent
    assert store_by_c_store(destination, [predicted], "here") == (0, {str(predicted.SOPInstanceUID)})


def test_a_sender_that_breaks_off_mid_study_leaves_it_waiting_then_answered_as_partial(pacs, studies,
                                                                                     sartaj_small_run, tmp_path):
    cut = _copy_study(studies[1], "cut", tmp_path / "cut")  # two of three slices, then nothing more
    resent = _copy_study(studies[2], "resent", tmp_path / "resent")  # all sent, broken off, then sent again
    node = Node(sartaj_small_run, tmp_path / "node", pacs.dicomweb, pacs.node_port, "--stable", "0.5",
                "--partial-wait", "6", "--late-window", "0").start()
    try:
        _send(pacs.node_port, cut[:2], break_off=True)
        _send(pacs.node_port, resent, break_off=True)  # whole, but the node cannot know
        node.wait(lambda: len(node.events("broken off")) == 2, "both broken-off studies recorded")
        _send(pacs.node_port, resent)  # each instance received before: the mark lifted all the same
        node.wait(lambda: node.events("answered"), "the study sent again whole")
        node.wait(lambda: len(node.events("answered")) == 2, "the partial study, after --partial-wait")
    finally:
        assert node.stop() == 0
    whole, partial = node.events("answered")
    assert whole["study"] == _study_uid(tmp_path / "resent") and "partial" not in whole
    assert whole["instances"] == 3 and whole["seconds_since_last_instance"] < 6  # not held by the mark
    assert partial["study"] == _study_uid(tmp_path / "cut") and partial["instances"] == 2
    assert partial["partial"] == ("ORTHANC broke off the association mid-study, and nothing more came for 6 s: "
                                  "answered with the 2 instance(s) received")
    assert partial["seconds_since_last_instance"] >= 6  # it waited --partial-wait, well past --stable
    assert {e["study"] for e in node.events("broken off")} == {whole["study"], partial["study"]}
    [sr] = _srs_in_pacs(pacs, tmp_path / "cut")  # the SR is of the two slices that came
    assert len({r.ReferencedSOPInstanceUID for e in sr.CurrentRequestedProcedureEvidenceSequence
                for s in e.ReferencedSeriesSequence for r in s.ReferencedSOPSequence}) == 2


def test_kill_9_in_the_middle_of_a_load_loses_nothing_and_answers_each_study_once(pacs, studies, sartaj_small_run,
                                                                                 tmp_path):
    import threading

    load = [_copy_study(studies[k % 4], f"load{k}", tmp_path / f"load{k}") for k in range(8)]
    folder = tmp_path / "node"
    args = ("--stable", "1", "--batch", "2")
    node = Node(sartaj_small_run, folder, pacs.dicomweb, pacs.node_port, *args).start()
    failures: list[BaseException] = []

    def sender(share: list[list[Path]]) -> None:
        try:
            _send(pacs.node_port, [f for study in share for f in study])
        except BaseException as exc:  # reported by the test below
            failures.append(exc)

    senders = [threading.Thread(target=sender, args=(load[k::2],)) for k in range(2)]  # two at once
    try:
        for t in senders:
            t.start()
        for t in senders:
            t.join(timeout=120)
        assert not failures, failures
        node.wait(lambda: node.events("answered"), "the first answers")
    finally:
        node.stop(signal.SIGKILL)
    before = len(node.events("answered"))
    assert 1 <= before < 8, before  # killed in the middle: some studies answered, most not
    node.start()
    try:
        with sqlite3.connect(folder / "journal.sqlite") as db:
            node.wait(lambda: db.execute("SELECT COUNT(*) FROM studies WHERE state = 'answered'").fetchone()[0] == 8,
                      "every study answered after the restart")
            once = db.execute("SELECT study, COUNT(*) FROM events WHERE event = 'answered' GROUP BY study").fetchall()
    finally:
        assert node.stop() == 0
    before_restart = len(node.events("answered"))
    resumed = node.events("resumed")[0]  # what the restarted node found in its journal, in its log
    assert resumed["answered"] + resumed["receiving"] + resumed["answering"] == 8 and resumed["answered"] < 8
    uids = {_study_uid(tmp_path / f"load{k}") for k in range(8)}
    assert dict(once) == dict.fromkeys(uids, 1)  # each study answered once in the journal, across the kill
    for k in range(8):
        assert len(_srs_in_pacs(pacs, tmp_path / f"load{k}")) == 1  # and one SR of it in the PACS
    status = json.loads(_ok("listen", "--node", str(folder), "--status", "--json"))
    assert status["studies"] == {"receiving": 0, "answering": 0, "answered": 8, "failed": 0}
    assert status["instances"] == 24 and status["events"]["answered"] == 8
    # killed after sending, before the journal said so: the restarted node answers the study
    # again and finds every object there already (the same UIDs), so nothing is sent twice
    first = _study_uid(tmp_path / "load0")
    with sqlite3.connect(folder / "journal.sqlite") as db:
        db.execute("UPDATE studies SET state = 'answering' WHERE study = ?", (first,))
    node.start()
    try:
        node.wait(lambda: len(node.events("answered")) > before_restart, "the interrupted answer")
    finally:
        assert node.stop() == 0
    again = node.events("answered")[-1]
    assert again["study"] == first and again["already_there"] == again["results"] == 1
    assert len(_srs_in_pacs(pacs, tmp_path / "load0")) == 1


def test_an_instance_after_the_answer_gives_an_sr_that_amends_the_first(pacs, studies, sartaj_small_run, tmp_path):
    files = sorted(studies[3].glob("*.dcm"))
    node = Node(sartaj_small_run, tmp_path / "node", pacs.dicomweb, pacs.node_port, "--stable", "1").start()
    try:
        _send(pacs.node_port, files[:2])
        node.wait(lambda: node.events("answered"), "the first answer (two slices)")
        _send(pacs.node_port, files[2:])  # the third slice, late
        node.wait(lambda: len(node.events("answered")) == 2, "the amended answer")
    finally:
        assert node.stop() == 0
    first, second = node.events("answered")
    assert (first["amends"], second["amends"]) == (0, 1) and node.events("amend")
    srs = sorted(_srs_in_pacs(pacs, studies[3]), key=lambda d: int(d.InstanceNumber))
    assert len(srs) == 2 and srs[0].SeriesInstanceUID == srs[1].SeriesInstanceUID
    assert "PredecessorDocumentsSequence" not in srs[0]
    [study] = srs[1].PredecessorDocumentsSequence
    [series] = study.ReferencedSeriesSequence
    assert [i.ReferencedSOPInstanceUID for i in series.ReferencedSOPSequence] == [srs[0].SOPInstanceUID]
    referenced = {r.ReferencedSOPInstanceUID for e in srs[1].CurrentRequestedProcedureEvidenceSequence
                  for s in e.ReferencedSeriesSequence for r in s.ReferencedSOPSequence}
    assert len(referenced) == 3  # the amended answer is of all three slices
    if shutil.which("dciodvfy"):  # the amending SR is valid DICOM too
        srs[1].save_as(tmp_path / "amending.dcm", enforce_file_format=True)
        out = subprocess.run(["dciodvfy", str(tmp_path / "amending.dcm")], capture_output=True, text=True)
        assert [x for x in (out.stdout + out.stderr).splitlines() if x.startswith("Error")] == []


def test_a_damaged_instance_and_a_non_image_in_a_study_are_recorded_and_the_rest_answered(pacs, studies,
                                                                                          sartaj_small_run, tmp_path):
    from pydicom.uid import generate_uid

    study_uid, series_uid = generate_uid(entropy_srcs=["damaged", "study"]), generate_uid(entropy_srcs=["damaged"])
    slices = []
    for k, f in enumerate(sorted(studies[2].glob("*.dcm"))):
        d = pydicom.dcmread(f)
        d.StudyInstanceUID, d.SeriesInstanceUID = study_uid, series_uid
        d.SOPInstanceUID = d.file_meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=["damaged", str(k)])
        slices.append(d)
    damaged = copy.deepcopy(slices[0])
    damaged.SOPInstanceUID = damaged.file_meta.MediaStorageSOPInstanceUID = generate_uid(
        entropy_srcs=["damaged", "pixels"])
    damaged.PixelData = slices[0].PixelData[:100]  # far fewer bytes than Rows x Columns
    for i, d in enumerate([*slices, damaged]):
        d.save_as(tmp_path / f"{i}.dcm", enforce_file_format=True)
    _ok("predict", str(sartaj_small_run), "--data", str(studies[0]), "--sr", str(tmp_path / "sr"))
    report = pydicom.dcmread(next((tmp_path / "sr").glob("*/*.dcm")))
    report.StudyInstanceUID = study_uid  # a non-image object of the same study
    report.save_as(tmp_path / "report.dcm", enforce_file_format=True)

    node = Node(sartaj_small_run, tmp_path / "node", pacs.dicomweb, pacs.node_port, "--stable", "1").start()
    try:
        _send(pacs.node_port, [*(tmp_path / f"{i}.dcm" for i in range(4)), tmp_path / "report.dcm"])
        node.wait(lambda: node.events("answered"), "the answer without the damaged slice")
    finally:
        assert node.stop() == 0
    [answered] = node.events("answered")
    assert answered["instances"] == 4 and answered["left_out"] == [
        f"1 of 4 instance(s) could not be decoded and were left out ({damaged.SOPInstanceUID}.dcm: ValueError: "
        "The number of bytes of pixel data is less than expected (100 vs 55696 bytes) - the dataset may be "
        "corrupted, have an invalid group 0028 element value, or the transfer syntax may be incorrect)"], answered
    assert "not an image (Comprehensive 3D SR Storage, btk)" in node.events("skipped")[0]["detail"]
    [sr] = _srs_in_pacs(pacs, tmp_path)  # of the three readable slices
    assert len({r.ReferencedSOPInstanceUID for e in sr.CurrentRequestedProcedureEvidenceSequence
                for s in e.ReferencedSeriesSequence for r in s.ReferencedSOPSequence}) == 3


def _one_slice_studies(files: list[Path], folder: Path, tag: str) -> list[Path]:
    """Each image as a one-slice DICOM study of its own (``btk convert``'s writer)."""
    import cv2

    from btk.default_plugins.convert import write_dicom_series

    out = []
    for k, f in enumerate(files):
        image = cv2.resize(cv2.imread(str(f), cv2.IMREAD_GRAYSCALE), (128, 128))
        out += write_dicom_series([image], folder / f"{tag}{k:02d}", f"{tag.upper()}{k:02d}", uid_seed=f"{tag}-{k}")
    return out


def test_the_rolling_shift_check_fires_when_the_sender_switches_to_another_source(pacs, tmp_path):
    """Studies of SARTAJ Training images the run never saw, then of navoneel's (another source):
    the window of the last 24 series says the second cohort differs from the calibration images."""
    from conftest import SARTAJ

    navoneel = SARTAJ.parent / "navoneel"
    if not navoneel.is_dir():
        pytest.skip(f"navoneel not found at {navoneel}")
    data = tmp_path / "data" / "Training"
    unseen = []
    for c in ("glioma_tumor", "meningioma_tumor", "no_tumor", "pituitary_tumor"):
        files = sorted((SARTAJ / "Training" / c).glob("*.jpg"))
        (data / c).mkdir(parents=True)
        for f in files[:40]:
            shutil.copy(f, data / c / f.name)
        unseen += files[40:46]
    _ok("run", "--data", str(tmp_path / "data"), "--model", "small-cnn", "--image-size", "32", "--epochs", "1",
        "--set", "val_fraction=0.3", "--out", str(tmp_path / "runs"), "--reporter", "none")
    run_dir = next((tmp_path / "runs").iterdir())
    sartaj = _one_slice_studies(unseen, tmp_path / "sartaj", "s")
    other = _one_slice_studies(sorted((navoneel / "yes").iterdir())[:12] + sorted((navoneel / "no").iterdir())[:12],
                               tmp_path / "navoneel", "n")
    node = Node(run_dir, tmp_path / "node", pacs.dicomweb, pacs.node_port, "--stable", "0.5", "--drift-window", "24",
                "--late-window", "0").start()
    try:
        _send(pacs.node_port, sartaj)
        # each answer is followed by the window's verdict
        node.wait(lambda: len(node.events("answered")) == 24 and node.events()[-1]["event"] == "drift",
                  "the SARTAJ studies answered, and the window's verdict")
        before = node.events("drift")[-1]
        _send(pacs.node_port, other)
        node.wait(lambda: len(node.events("answered")) == 48 and node.events()[-1]["event"] == "drift",
                  "the navoneel studies answered, and the window's verdict")
    finally:
        assert node.stop() == 0
    after = node.events("drift")[-1]
    assert before["series"] == after["series"] == 24
    assert before["verdict"] in ("quiet", "differs")  # a verdict: 24 series are enough
    assert after["verdict"] == "differs" and after["p_value"] < 0.01, (before, after)
    status = json.loads(_ok("listen", "--node", str(tmp_path / "node"), "--status", "--json"))
    assert status["drift"]["verdict"] == "differs" and status["drift"]["window_series"] == 24
