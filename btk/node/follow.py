"""Pull instead of push: the node follows an Orthanc for new studies (``btk listen --follow URL``).

Some sites would rather the AI node fetch than be sent. The follower reads Orthanc's change log
(``GET /changes?since=N``, its REST API) and, for each ``StableStudy`` (Orthanc's own "no new
instance for ``StableAge`` seconds"), fetches the study's image instances that the journal does
not hold yet (``GET /instances/ID/file``; series of modality SR, SEG, PR or KO are not fetched,
so btk's own answers do not come round again) and keeps each as the receiver keeps a C-STORE
(:func:`btk.node.receiver.keep_instance`): written whole to the spool, then journalled. From
there the study is answered as any other. The change-log position is kept in the journal after
the instances of each batch of changes are kept, so a node killed in between fetches them again
(recorded once: the same SOP Instance UID is kept once) and misses none. Credentials come from
the environment, as for ``--store`` (``BTK_DICOMWEB_USER`` and ``BTK_DICOMWEB_PASSWORD``, or
``BTK_DICOMWEB_TOKEN``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from btk.node.journal import Journal

NOT_IMAGES = {"SR", "SEG", "PR", "KO"}
"""Series modalities the follower does not fetch (reports, segmentations, presentation states,
key-object selections: btk's answers among them)."""

SENDER = "FOLLOW"
"""The sender recorded in the journal for the instances the follower fetched."""


def fetch_study(session: Any, url: str, orthanc_id: str, spool: Path, journal: Journal,
                limit_bytes: int = 0) -> tuple[str, int]:
    """Fetch the image instances of the Orthanc study ``orthanc_id`` the journal does not hold
    and keep them (the spool's limit ``limit_bytes``, as for a sent instance); its Study
    Instance UID and how many were kept."""
    import io

    import pydicom

    from btk.node.receiver import keep_instance

    study_uid, kept = "", 0
    for series in get(session, f"{url}/studies/{orthanc_id}/series"):
        if str(series.get("MainDicomTags", {}).get("Modality", "")).upper() in NOT_IMAGES:
            continue
        for instance in get(session, f"{url}/series/{series['ID']}/instances"):
            if journal.known(str(instance.get("MainDicomTags", {}).get("SOPInstanceUID", ""))):
                continue
            response = session.get(f"{url}/instances/{instance['ID']}/file", timeout=60)
            response.raise_for_status()
            data = response.content
            dataset = pydicom.dcmread(io.BytesIO(data), force=True)
            kind, study_uid = keep_instance(data, dataset, spool, journal, SENDER, limit_bytes)
            kept += kind != "skipped"
    return study_uid, kept


def get(session: Any, url: str) -> Any:
    """``GET`` ``url`` as JSON (raises on an HTTP error)."""
    response = session.get(url, timeout=60)
    response.raise_for_status()
    return response.json()


def follow(url: str, spool: Path, journal: Journal, stop: threading.Event, every: float,
           on_event: Callable[..., None], limit_bytes: int = 0) -> None:
    """Follow the Orthanc at ``url`` (its REST root) until ``stop``: every ``every`` seconds,
    read its changes since the journal's position and fetch each stable study's new instances.
    ``on_event(kind, detail, study)`` hears each study fetched and each failed poll (the
    follower goes on after one, waiting longer each time, at most 5 minutes; a full spool is
    such a failure: the study is fetched once the spool has room)."""
    from btk.default_plugins.dicomweb import http_session
    from btk.urls import public_url

    session = http_session()
    url, wait = url.rstrip("/"), every
    while not stop.is_set():
        try:
            since = journal.position(url)
            changes = get(session, f"{url}/changes?since={since}&limit=100")
            for change in changes.get("Changes", []):
                if change.get("ChangeType") == "StableStudy":
                    study, kept = fetch_study(session, url, change["ID"], spool, journal, limit_bytes)
                    if kept:
                        on_event("fetched", f"{kept} instance(s) from {public_url(url)}", study)
            journal.move_to(url, int(changes.get("Last", since)))
            wait = every
            if not changes.get("Done", True):
                continue  # more changes wait: read on at once
        except Exception as exc:  # the follower outlives a PACS that is down or answers nonsense
            on_event("follow failed", f"{public_url(url)}: {type(exc).__name__}: {exc}"[:300])
            wait = min(wait * 2, 300.0)
        stop.wait(wait)
