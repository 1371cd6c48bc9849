"""The ``dicomweb`` reader: images from a DICOM server through DICOMweb (dicomweb-client).

``--data`` is the server's DICOMweb root (``http://pacs:8042/dicom-web``), or a study or series
under it (``.../dicom-web/studies/UID[/series/UID]``, as btk names its inputs). QIDO-RS finds the
instances (every page of them), grouped into series; WADO-RS retrieves each series when it is
read. Slices are ordered, windowed and framed exactly as the ``dicom`` reader does it (the same
code, :func:`btk.default_plugins.dicom.series_samples`), multi-frame instances included, and
each slice keeps its DICOM identity (study, series, SOP instance) for results that refer back to
it (``btk predict --sr``).

Reader options (``-R KEY=VALUE``): ``study=UID``, ``series=UID``, ``slices``, ``window``, ``all=yes``,
and QIDO-RS matching keys (``PatientID=...``, ``Modality=MR``, ``StudyDate=20260101-``; any DICOM
keyword). A search must be scoped (:data:`SCOPES`: a study, a series, a patient, an accession
number or a date) or say ``all=yes`` to read the whole server: a mistyped key or a forgotten
``-R`` is refused in one line before anything is searched, never read as "everything".

Credentials never go on the command line (where they would be logged and recorded in a run):
``BTK_DICOMWEB_TOKEN`` (a bearer token) or ``BTK_DICOMWEB_USER`` and ``BTK_DICOMWEB_PASSWORD``
(HTTP basic authentication) are read from the environment; every command refuses a URL with
credentials in it (:mod:`btk.urls`).
"""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path
from typing import Any

from btk.api import BtkError, Entry, ReadOptions, RegisterReader, Sample, UnreadableInputError, choose_slices, hookimpl
from btk.default_plugins.dicom import NOT_IMAGES, is_image_class, not_images, series_samples
from btk.urls import ENV_PASSWORD, ENV_TOKEN, ENV_USER, public_url, split_url, url_instance

OWN_OPTIONS = ("study", "series", "slices", "window", "all")
QIDO_KEYS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "PatientID", "PatientName", "StudyDate",
             "StudyTime", "AccessionNumber", "StudyID", "ModalitiesInStudy", "ReferringPhysicianName", "Modality",
             "SeriesNumber", "SeriesDate", "SOPClassUID", "InstanceNumber")
"""The QIDO-RS matching keys DICOM names (PS3.18 10.6.1.2); any other DICOM keyword is accepted too."""
SCOPES = ("study", "series", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "PatientID",
          "AccessionNumber", "StudyDate", "SeriesDate")
"""The options that scope a search to less than the whole server."""
TAGS = {"StudyInstanceUID": "0020000D", "SeriesInstanceUID": "0020000E", "SOPInstanceUID": "00080018",
        "SOPClassUID": "00080016", "PatientID": "00100020", "Manufacturer": "00080070"}


def is_url(path: Any) -> bool:
    """Whether ``path`` (as given) is an http(s) URL."""
    return str(path).startswith(("http://", "https://"))


def search_scope(url: str, extra: dict[str, str]) -> tuple[str, str | None, str | None, dict[str, str]]:
    """What to search for: the server root, study, series and QIDO-RS matching keys of ``--data
    url`` and the reader options ``extra``, checked before anything is searched.

    Raises:
        BtkError: an unknown option, a URL's study or series that an option contradicts, or a
            search with no scope (:data:`SCOPES`) and without ``all=yes``.
    """
    from pydicom.datadict import keyword_dict

    unknown = sorted(k for k in extra if k not in OWN_OPTIONS and k != "inspect" and k not in keyword_dict)
    if unknown:
        raise BtkError(f"dicomweb reader: unknown option(s) {', '.join(unknown)} (options: {', '.join(OWN_OPTIONS)}; "
                       f"QIDO-RS keys: {', '.join(QIDO_KEYS)} or any DICOM keyword)")
    root, study, series = split_url(url)
    instance = url_instance(url)
    for key, value in (("study", study), ("series", series), ("SOPInstanceUID", instance)):
        if value and extra.get(key, value) != value:
            raise BtkError(f"dicomweb reader: {key}={extra[key]} contradicts the {key} of --data {public_url(url)}")
    study, series = study or extra.get("study"), series or extra.get("series")
    whole = extra.get("all", "no").lower()
    if whole not in ("yes", "no"):
        raise BtkError(f"dicomweb reader: all must be yes or no, got {extra['all']!r}")
    scoped = bool(study or series) or any(extra.get(k) for k in SCOPES)
    if not scoped and whole != "yes":
        raise BtkError(f"dicomweb reader: no scope for {public_url(root)}: give -R study=UID, -R series=UID, "
                       "-R StudyDate=..., -R PatientID=... (or a study or series URL as --data), or -R all=yes to "
                       "read every series on the server")
    filters = {k: v for k, v in extra.items() if k not in OWN_OPTIONS and k != "inspect"}
    if series and not study:
        filters["SeriesInstanceUID"] = series
    if instance:  # one instance's URL: that instance alone
        filters["SOPInstanceUID"] = instance
    return root, study, series, filters


def http_session() -> Any:
    """A ``requests`` session with the credentials of the environment (never logged): a bearer
    token (:data:`ENV_TOKEN`) and/or HTTP basic authentication (:data:`ENV_USER`,
    :data:`ENV_PASSWORD`). What every request btk makes to a server goes through."""
    import requests

    session = requests.Session()
    token = os.environ.get(ENV_TOKEN)
    if token:
        session.headers["Authorization"] = f"Bearer {token}"
    if os.environ.get(ENV_USER):
        session.auth = (os.environ[ENV_USER], os.environ.get(ENV_PASSWORD, ""))
    return session


def client(url: str) -> Any:
    """A DICOMweb client for ``url`` with the credentials of the environment (never logged)."""
    from dicomweb_client.api import DICOMwebClient

    web = DICOMwebClient(url, session=http_session())
    # three tries, 0.2 s then 0.4 s apart (the client's default: five, up to 16 s apart, also when
    # nothing listens, which would make "the server is down" a half-minute wait)
    web.set_http_retry_params(retry=True, max_attempts=3, wait_exponential_multiplier=100)
    return web


def explain(exc: Exception, url: str, what: str) -> BtkError:
    """One line for a failed DICOMweb request (no credentials in it)."""
    import requests

    where = public_url(url)
    if isinstance(exc, requests.exceptions.HTTPError) and exc.response is not None:
        status = exc.response.status_code
        if status in (401, 403):
            return BtkError(f"{where}: {status} {exc.response.reason} while {what}: set {ENV_USER} and "
                            f"{ENV_PASSWORD}, or {ENV_TOKEN}, to credentials the server accepts")
        return BtkError(f"{where}: HTTP {status} {exc.response.reason} while {what}")
    if isinstance(exc, requests.exceptions.ConnectionError):
        return BtkError(f"cannot reach the DICOMweb server at {where} while {what}: is it running?")
    if isinstance(exc, requests.exceptions.RequestException):
        return BtkError(f"{where}: {type(exc).__name__} while {what}")
    return BtkError(f"{where}: {type(exc).__name__} while {what}: {exc}")


def _value(record: dict[str, Any], keyword: str) -> str:
    values = (record.get(TAGS[keyword]) or {}).get("Value") or [""]
    return str(values[0])


class DicomWebReader:
    """Reads series from a DICOMweb server (QIDO-RS to find them, WADO-RS to retrieve them)."""

    name = "dicomweb"
    description = "series on a DICOM server through DICOMweb (QIDO-RS, WADO-RS; dicomweb-client)"
    options = OWN_OPTIONS

    def can_read(self, path: Any) -> bool:
        """An http(s) URL."""
        return is_url(path)

    def scan(self, path: Path | str | None, options: ReadOptions) -> list[Entry]:
        """Every series QIDO-RS finds at the server under ``path`` for the options' study,
        series and matching keys, one entry each.

        Raises:
            BtkError: no URL, a server that cannot be reached or refuses, nothing found.
        """
        if path is None or not is_url(path):
            raise BtkError(f"the dicomweb reader needs --data URL (a DICOMweb root, e.g. "
                           f"http://localhost:8042/dicom-web), got {path}")
        given = str(path).rstrip("/")
        extra = dict(options.extra)
        url, study, series, filters = search_scope(given, extra)
        choose_slices(3, extra.get("slices", "middle"), [1, 1, 1])
        try:
            found = client(url).search_for_instances(
                study_instance_uid=study or None, series_instance_uid=series if study else None,
                search_filters=filters or None, fields=list(TAGS), get_remaining=True)
        except Exception as exc:
            raise explain(exc, url, "searching for instances (QIDO-RS)") from None
        if not found:
            asked = ", ".join(f"{k}={v}" for k, v in {"study": study, "series": series, **filters}.items() if v)
            raise BtkError(f"no instances at {public_url(url)}" + (f" for {asked}" if asked else ""))
        members: dict[tuple[str, str], list[str]] = defaultdict(list)
        others: dict[tuple[str, str], list[tuple[str, str]]] = defaultdict(list)  # non-image objects
        patients: dict[tuple[str, str], str] = {}
        for record in found:
            key = (_value(record, "StudyInstanceUID"), _value(record, "SeriesInstanceUID"))
            patients[key] = _value(record, "PatientID") or key[0]
            if is_image_class(_value(record, "SOPClassUID")):
                members[key].append(_value(record, "SOPInstanceUID"))
            else:
                others[key].append((_value(record, "SOPClassUID"), _value(record, "Manufacturer")))
        one = url_instance(given)  # an instance's URL: its own entry, retrieved alone
        entries = [Entry(f"studies/{st}/series/{se}" + (f"/instances/{one}" if one else ""), None,
                         patients[(st, se)], "", payload=(url, st, se, sorted(uids), bool(one)))
                   for (st, se), uids in members.items()]
        return entries + [Entry(f"studies/{st}/series/{se}", None, patients[(st, se)], "",
                                payload=(NOT_IMAGES, not_images(kinds))) for (st, se), kinds in others.items()]

    def load(self, entry: Entry, options: ReadOptions) -> list[Sample]:
        """Retrieve one series (WADO-RS) and read it as the ``dicom`` reader reads files."""
        if entry.payload[0] == NOT_IMAGES:  # not retrieved at all
            raise UnreadableInputError(entry.payload[1])
        url, study, series, uids, alone = entry.payload
        try:
            web = client(url)
            datasets = [web.retrieve_instance(study, series, uid) for uid in uids] if alone else \
                web.retrieve_series(study, series)
        except Exception as exc:
            raise UnreadableInputError(str(explain(exc, url, f"retrieving {entry.source} (WADO-RS)"))) from None
        where = f"{public_url(url)}/studies/{study}/series/{series}"
        return series_samples(entry, [(f"{where}/instances/{ds.get('SOPInstanceUID', '')}", ds) for ds in datasets],
                              options)


@hookimpl
def btk_register_readers(register: RegisterReader) -> None:
    register(DicomWebReader())
