"""The node's DICOM door: a C-STORE SCP (pynetdicom) that keeps each image it is sent.

Each received image is written whole into the spool (``SPOOL/<study>/<series>/<sop>.dcm``, names
made safe by :mod:`btk.file_names`; written to a temporary name, then renamed) and only then
recorded in the journal and acknowledged: an instance the sender was told is stored is on disk.
Non-image objects (an SR, a Segmentation: btk's own results among them) are acknowledged, recorded
as skipped and not kept, so a PACS that routes everything, btk's answers included, back to the
node starts no loop. Only the calling AE titles given are let in. An association that ends
without a proper release (the sender aborted, or its connection dropped) marks the studies it
was carrying as broken off (:meth:`btk.node.journal.Journal.broken_off`): they wait longer for the
rest before they are answered.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from btk.node.journal import Journal

SUCCESS, CANNOT_UNDERSTAND, OUT_OF_RESOURCES = 0x0000, 0xC000, 0xA700
"""C-STORE statuses (PS3.4 B.2.3): success, an error "cannot understand" (an object without the
UIDs a study needs, or unreadable), "out of resources" (the spool could not be written)."""


@dataclass
class Door:
    """Where the node listens: host (loopback unless told otherwise), port, its AE title, the
    calling AE titles let in (none: any), and DICOM over TLS: the certificate, key and clients'
    CA files of :func:`tls_context` (``None``: plain DICOM)."""

    port: int
    ae_title: str = "BTK"
    host: str = "127.0.0.1"
    allowed: tuple[str, ...] = ()
    tls: tuple[str, str, str | None] | None = None


class SpoolFull(OSError):
    """The spool holds its limit: an instance is refused (C-STORE "out of resources"; a PACS sends
    it again later) rather than the disk filled."""


def keep_instance(dataset_bytes: bytes, dataset: Any, spool: Path, journal: Journal, sender: str,
                  limit_bytes: int = 0) -> tuple[str, str]:
    """Keep one received object. What happened: ``received`` (the first of its study),
    ``stored``, ``again`` (received before), ``amend`` (its study was answered and is to be
    answered again), ``late`` (its study was answered and cleared: counted only), or ``skipped``
    (not an image: recorded, not kept); and a detail (the study, or why it was skipped).

    ``limit_bytes`` (0: none): the most the spool's kept instances may take; an instance that
    would take it past that is refused. Instances received at the same moment over several
    associations may each pass the check, so the spool can end up to one instance per sender
    over the limit.

    Raises:
        ValueError: the object names no study, series or SOP instance.
        SpoolFull: the instance is new and would take the spool past ``limit_bytes``.
        OSError: the spool cannot be written.
    """
    from btk.default_plugins.dicom import is_image_class
    from btk.file_names import inside, uid_name

    study, series, sop = (str(dataset.get(k, "") or "") for k in ("StudyInstanceUID", "SeriesInstanceUID",
                                                                   "SOPInstanceUID"))
    if not (study and series and sop):
        raise ValueError("no Study, Series or SOP Instance UID")
    if not is_image_class(dataset.get("SOPClassUID", "")):
        kind = str(getattr(dataset.get("SOPClassUID"), "name", "") or dataset.get("SOPClassUID"))
        reason = f"{sop}: not an image ({kind}, {dataset.get('Manufacturer', '')})"
        journal.event("skipped", study, reason)
        return "skipped", reason
    if limit_bytes and not journal.known(sop):
        used = journal.kept_bytes()
        if used + len(dataset_bytes) > limit_bytes:
            raise SpoolFull(28, f"the spool is full ({used / 2**20:.1f} MiB kept, --spool-limit "
                                f"{limit_bytes / 2**20:g} MiB)")
    path = inside(spool, uid_name(study), uid_name(series), f"{uid_name(sop)}.dcm")
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(f".{path.name}.{os.getpid()}.part")
    with open(part, "wb") as fh:
        fh.write(dataset_bytes)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(part, path)
    state = journal.received(sop, study, series, path, sender, size=len(dataset_bytes))
    if state in ("again", "late") and not journal.kept(sop):
        path.unlink()  # its study was answered (and its instances cleared) already
    return {"first": "received", "new": "stored"}.get(state, state), study


def tls_context(certificate: Path, key: Path, clients_ca: Path | None = None) -> Any:
    """The TLS context of a node that speaks DICOM over TLS (PS3.15 B.1): its ``certificate``
    and private ``key`` (PEM), TLS 1.2 at least; with ``clients_ca``, callers must present a
    certificate that CA signed.

    Raises:
        BtkError: a file that is missing or not a matching certificate, key or CA (one line).
    """
    import ssl

    from btk.errors import BtkError

    for flag, path in (("--tls-cert", certificate), ("--tls-key", key), ("--tls-ca", clients_ca)):
        if path is not None and not Path(path).is_file():
            raise BtkError(f"{flag} {path}: no such file")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(str(certificate), str(key))
    except (ssl.SSLError, ValueError) as exc:
        raise BtkError(f"--tls-cert {certificate} with --tls-key {key}: not a certificate and its private key in "
                       f"PEM ({getattr(exc, 'reason', None) or exc})") from None
    if clients_ca is not None:
        try:
            context.load_verify_locations(str(clients_ca))
        except ssl.SSLError as exc:
            raise BtkError(f"--tls-ca {clients_ca}: not a CA certificate in PEM ({exc.reason})") from None
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def check_port(door: Door) -> None:
    """Refuse, before anything is made, a port the node cannot listen on (taken, or not ours to
    take), binding as the receiver will (address reuse on).

    Raises:
        BtkError: the port cannot be bound.
    """
    import socket

    from btk.errors import BtkError

    with socket.socket(socket.AF_INET6 if ":" in door.host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((door.host, door.port))
            probe.listen()
        except OSError as exc:
            raise BtkError(f"cannot listen on {door.host}:{door.port}: {exc.strerror}") from None


def start_receiver(door: Door, spool: Path, journal: Journal, on_event: Any = None, limit_bytes: int = 0) -> Any:
    """Start the C-STORE SCP in its own threads; returns pynetdicom's server (``shutdown()``
    stops it). ``on_event(kind, detail, study)`` hears each stored, skipped or refused object,
    each refused association and each study whose sender broke off (``study``: its UID, where
    the event is of one study). ``limit_bytes``: the spool's limit (:func:`keep_instance`)."""
    import threading

    from pynetdicom import AE, AllStoragePresentationContexts, evt
    from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

    carrying: dict[int, set[str]] = {}  # the studies each open association has sent instances of
    lock = threading.Lock()

    def tell(kind: str, detail: str, study: str | None = None) -> None:
        if on_event is not None:
            on_event(kind, detail, study)

    def on_store(event: Any) -> int:
        sender = str(event.assoc.requestor.ae_title).strip()
        try:
            dataset = event.dataset
            encoded = event.encoded_dataset(include_meta=True)
        except Exception as exc:  # an object pydicom cannot decode: refused, the node goes on
            journal.event("refused", None, f"from {sender}: unreadable ({type(exc).__name__})")
            tell("refused", f"unreadable object from {sender}")
            return CANNOT_UNDERSTAND
        try:
            kind, detail = keep_instance(encoded, dataset, spool, journal, sender, limit_bytes)
        except ValueError as exc:
            journal.event("refused", None, f"from {sender}: {exc}")
            tell("refused", f"{exc} (from {sender})")
            return CANNOT_UNDERSTAND
        except OSError as exc:  # the spool full (the sender tries again later), or a disk that fails
            why = str(exc.strerror) if isinstance(exc, SpoolFull) else f"the spool cannot be written ({exc.strerror})"
            journal.event("refused", None, f"from {sender}: {why}")
            tell("refused", why)
            return OUT_OF_RESOURCES
        if kind in ("received", "stored", "amend", "again"):  # "again": a sender sending the study once more
            with lock:
                first = detail not in carrying.setdefault(id(event.assoc), set())
                carrying[id(event.assoc)].add(detail)
            if first:
                journal.sending(detail)
        tell(kind, detail)
        return SUCCESS

    def on_closed(event: Any) -> None:  # released properly, or not (aborted, connection lost)
        with lock:
            studies = carrying.pop(id(event.assoc), set())
        if not studies:
            return
        if event.assoc.is_released:
            journal.sent_whole(studies)
            return
        sender = str(event.assoc.requestor.ae_title).strip()
        why = f"{sender} broke off the association mid-study"
        for study in journal.broken_off(studies, why):
            tell("broken off", why, study)

    def on_rejected(event: Any) -> None:
        sender = str(event.assoc.requestor.ae_title).strip()
        journal.event("association refused", None, f"calling AE title {sender!r} is not allowed")
        tell("association refused", sender)

    ae = AE(ae_title=door.ae_title)
    ae.supported_contexts = AllStoragePresentationContexts
    ae.add_supported_context(Verification)
    if door.allowed:
        ae.require_calling_aet = list(door.allowed)
    ae.maximum_pdu_size = 0  # no limit: whole slices in one PDU
    handlers: list[Any] = [(evt.EVT_C_STORE, on_store), (evt.EVT_REJECTED, on_rejected),
                           (evt.EVT_CONN_CLOSE, on_closed)]
    tls = tls_context(Path(door.tls[0]), Path(door.tls[1]), Path(door.tls[2]) if door.tls[2] else None) \
        if door.tls else None
    return ae.start_server((door.host, door.port), block=False, evt_handlers=handlers, ssl_context=tls)
