"""Sending btk's results to a DICOM node by C-STORE, for a PACS without DICOMweb.

The destination is written ``dicom://HOST:PORT/AE_TITLE`` (the called AE title as the path;
``?calling=TITLE`` sets btk's own, ``BTK`` by default) wherever btk takes ``--store``. As with
STOW-RS, an object the destination holds already is not sent again: the destination is asked
first (C-FIND at the IMAGE level of the Study Root model, PS3.4 C.6.2, one query per result
series); the same results of the same sources, model and calibration have the same UIDs. A
destination that answers no C-FIND is sent every object, and a PACS that keeps the first copy
of a SOP instance (Orthanc does) still holds each result once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

from btk.api import BtkError

SCHEME = "dicom"
"""The URL scheme of a DICOM (DIMSE) destination."""


@dataclass(frozen=True)
class DicomNode:
    """A DICOM node to send to: host, port, its (called) AE title, and btk's calling AE title."""

    host: str
    port: int
    called: str
    calling: str = "BTK"

    def __str__(self) -> str:
        return f"{SCHEME}://{self.host}:{self.port}/{self.called}"


def is_dicom_url(url: str) -> bool:
    """Whether ``url`` names a DICOM node (``dicom://...``) rather than a DICOMweb server."""
    return url.lower().startswith(f"{SCHEME}://")


def parse_dicom_url(url: str) -> DicomNode:
    """``dicom://HOST:PORT/AE_TITLE[?calling=TITLE]`` as a :class:`DicomNode`.

    Raises:
        BtkError: no host, port or AE title, or an AE title DICOM does not allow (PS3.5 6.2:
            at most 16 characters, no backslash or control character).
    """
    parts = urlsplit(url)
    called = parts.path.strip("/")
    calling = parse_qs(parts.query).get("calling", ["BTK"])[0]
    try:
        port = parts.port
    except ValueError:
        port = None
    if not parts.hostname or port is None or not called:
        raise BtkError(f"{url}: a DICOM destination is written dicom://HOST:PORT/AE_TITLE, "
                       "e.g. dicom://127.0.0.1:4242/ORTHANC")
    for title in (called, calling):
        if len(title) > 16 or "\\" in title or not title.isprintable() or not title.strip():
            raise BtkError(f"{url}: {title!r} is not an AE title (1 to 16 characters, no backslash)")
    return DicomNode(parts.hostname, port, called, calling)


def _associate(node: DicomNode, contexts: list[str]) -> Any:
    """An association with ``node`` proposing the SOP classes ``contexts``.

    Raises:
        BtkError: the node cannot be reached, or refuses the association.
    """
    from pynetdicom import AE

    ae = AE(ae_title=node.calling)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    for uid in dict.fromkeys(contexts):
        ae.add_requested_context(uid)
    assoc = ae.associate(node.host, node.port, ae_title=node.called)
    if not assoc.is_established:
        why = "refused the association" if assoc.is_rejected else "cannot be reached"
        raise BtkError(f"the DICOM node {node} {why} (calling AE title {node.calling})")
    return assoc


def held_instances(node: DicomNode, series: set[tuple[str, str]]) -> set[str] | None:
    """The SOP Instance UIDs ``node`` holds in each (study, series) of ``series`` (C-FIND, IMAGE
    level), or ``None`` when it answers no such query.

    Raises:
        BtkError: the node cannot be reached.
    """
    from pydicom.dataset import Dataset
    from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind  # type: ignore[attr-defined]

    assoc = _associate(node, [StudyRootQueryRetrieveInformationModelFind])
    held: set[str] = set()
    try:
        for study, one in sorted(series):
            query = Dataset()
            query.QueryRetrieveLevel = "IMAGE"
            query.StudyInstanceUID, query.SeriesInstanceUID, query.SOPInstanceUID = study, one, ""
            for status, found in assoc.send_c_find(query, StudyRootQueryRetrieveInformationModelFind):
                code = int(getattr(status, "Status", -1))
                if code in (0xFF00, 0xFF01) and found is not None:
                    held.add(str(found.get("SOPInstanceUID", "")))
                elif code != 0x0000:  # refused, failed, or no answer at all
                    return None
    finally:
        assoc.release()
    return held


def store_by_c_store(url: str, objects: list[Any], where: str) -> tuple[int, set[str]]:
    """Send ``objects`` (pydicom datasets) to the DICOM node ``url`` by C-STORE, each only when
    the node does not hold it yet; how many were sent, and the SOP Instance UIDs it held already.

    Raises:
        BtkError: the node cannot be reached, or refuses an object (the local files in
            ``where`` stay).
    """
    node = parse_dicom_url(url)
    there = held_instances(node, {(str(o.StudyInstanceUID), str(o.SeriesInstanceUID)) for o in objects}) or set()
    new = [o for o in objects if str(o.SOPInstanceUID) not in there]
    if new:
        assoc = _associate(node, [str(o.SOPClassUID) for o in new])
        try:
            for o in new:
                status = assoc.send_c_store(o)
                code = int(getattr(status, "Status", -1))
                if code not in (0x0000, 0xB000, 0xB007, 0xB006):  # success, or a warning: stored
                    raise BtkError(f"the DICOM node {node} did not store {o.SOPInstanceUID} "
                                   f"(status 0x{code & 0xFFFF:04X}); the results are kept in {where}")
        finally:
            assoc.release()
    return len(new), {str(o.SOPInstanceUID) for o in objects} & there
