"""URLs given as data or as a destination: shown without credentials, refused with them.

A user name or password in a URL (``http://user:pass@host/...``) would be kept by the shell's
history, by logs and by btk's own records (a run's ``config.json``, its provenance command,
``predict.json``). btk reads DICOMweb credentials from the environment instead
(:data:`ENV_TOKEN`, or :data:`ENV_USER` and :data:`ENV_PASSWORD`), and every command refuses a
URL that carries them before it does anything.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from btk.errors import BtkError

ENV_TOKEN, ENV_USER, ENV_PASSWORD = "BTK_DICOMWEB_TOKEN", "BTK_DICOMWEB_USER", "BTK_DICOMWEB_PASSWORD"
"""The environment variables btk reads DICOMweb credentials from: a bearer token, or HTTP basic
authentication's user name and password."""

_AUTHORITY = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]+):/+(?P<authority>[^/?#]*)(?P<rest>.*)", re.DOTALL)
"""A URL's scheme, authority and the rest; ``:/`` as well as ``://`` (a URL that went through a
``pathlib.Path`` lost one slash)."""


_RESOURCE = re.compile(r"^(?P<root>.+?)/studies/(?P<study>[^/]+)"
                       r"(?:/series/(?P<series>[^/]+)(?:/instances/(?P<instance>[^/]+))?)?/*$")


def split_url(url: str) -> tuple[str, str | None, str | None]:
    """A DICOMweb URL as (server root, study, series): ``ROOT/studies/S/series/R`` (as btk names
    a series it read) gives ``(ROOT, S, R)``, ``ROOT/studies/S`` gives ``(ROOT, S, None)`` and a
    root ``(ROOT, None, None)``; an instance's URL gives its series' (:func:`url_instance`: the
    instance)."""
    url = url.rstrip("/")
    found = _RESOURCE.match(url)
    if found is None:
        return url, None, None
    return found["root"], found["study"], found["series"]


def url_instance(url: str) -> str | None:
    """The SOP Instance UID of an instance's DICOMweb URL (``ROOT/studies/S/series/R/instances/I``
    gives ``I``), else ``None``."""
    found = _RESOURCE.match(url.rstrip("/"))
    return found["instance"] if found is not None else None


def public_url(url: str) -> str:
    """``url`` without any user name or password in it: what messages show."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, parts.query, parts.fragment))


def credentials_problem(text: Any) -> str | None:
    """Why ``text`` may not be given (a URL with a user name or password in it), without the
    credentials; ``None`` when it may."""
    match = _AUTHORITY.fullmatch(str(text))
    if match is None or "@" not in match["authority"]:
        return None
    shown = f"{match['scheme']}://{match['authority'].rpartition('@')[2]}{match['rest']}"
    return (f"{shown} is given with a user name or password in it, which the command line, logs and btk's "
            f"records would keep: give the URL without them and set {ENV_USER} and {ENV_PASSWORD}, or "
            f"{ENV_TOKEN}, in the environment instead")


def refuse_credentials(ctx: Any, param: Any, value: Any) -> Any:
    """A click callback for ``--data`` (and any URL option): ``value`` (one, several or none)
    unchanged, or :class:`~btk.errors.BtkError` for a URL with credentials in it."""
    for item in value if isinstance(value, (tuple, list)) else [value]:
        problem = credentials_problem(item) if item is not None else None
        if problem:
            name = param.opts[0] if param is not None and param.opts else "--data"
            raise BtkError(f"{name}: {problem}")
    return value
