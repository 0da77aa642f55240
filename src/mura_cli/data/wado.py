"""QIDO-RS and WADO-RS requests with ``requests`` alone: one kept-alive session per process and server.

:mod:`mura_cli.data.dicomweb` finds and reads a PACS's instances through here and keeps dicomweb-client for
STOW-RS and metadata. Reading through dicomweb-client cost a 0.45 s import before the first request and a new
connection per instance; here each decoding worker keeps one connection (:func:`session`), asks for the
instance in the transfer syntax the server holds it in (the reader decodes every common one; dicomweb-client's
default asks the server to transcode to uncompressed little endian) and for an uncompressed HTTP body
(``Accept-Encoding: identity``: gzip of compressed pixel data costs the server more than it saves; Orthanc took
45 ms per 0.8 MB JPEG 2000 instance with it, 10 ms without).

Credentials come from the environment (:data:`ENV_TOKEN`, or :data:`ENV_USER` and :data:`ENV_PASSWORD`), TLS
is verified (``REQUESTS_CA_BUNDLE`` names a private CA), and every request is bounded: :data:`CONNECT_TIMEOUT`
s to connect, :data:`READ_TIMEOUT` s to read, :data:`ATTEMPTS` tries in all when the connection fails or the
server answers 408, 429, 503 or 504, 1 s then 2 s apart.
"""

from __future__ import annotations

import os
import time
from typing import Any

CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 60.0
ATTEMPTS = 3
RETRY_STATUS = frozenset({408, 429, 503, 504})
ENV_TOKEN = "MURA_DICOMWEB_TOKEN"
ENV_USER = "MURA_DICOMWEB_USER"
ENV_PASSWORD = "MURA_DICOMWEB_PASSWORD"
ANY_SYNTAX = 'multipart/related; type="application/dicom"; transfer-syntax=*'
JSON = "application/dicom+json"

_SESSIONS: dict[tuple[Any, ...], Any] = {}


def new_session(*, identity: bool = False) -> Any:
    """A ``requests`` session carrying the credentials from the environment (a bearer token wins over basic)."""
    import requests

    s = requests.Session()
    if identity:
        s.headers["Accept-Encoding"] = "identity"
    token, user = os.environ.get(ENV_TOKEN), os.environ.get(ENV_USER)
    if token:
        s.headers["Authorization"] = f"Bearer {token}"
    elif user:
        s.auth = (user, os.environ.get(ENV_PASSWORD, ""))
    return s


def session(root: str) -> Any:
    """This process's session for the service ``root`` (made once per process and credentials, so decoding
    workers, forked or not, never share a connection)."""
    key = (os.getpid(), root, *(os.environ.get(k) for k in (ENV_TOKEN, ENV_USER, ENV_PASSWORD)))
    if key not in _SESSIONS:
        _SESSIONS[key] = new_session(identity=True)
    return _SESSIONS[key]


def get(root: str, path: str, accept: str, params: dict[str, Any] | None = None, *, stream: bool = False) -> Any:
    """GET ``root/path`` with the bounds above; the response of the last try (``raise_for_status`` applied).

    Raises:
        requests.RequestException: the server could not be reached, or answered an HTTP error.
    """
    import requests

    s = session(root)
    for attempt in range(ATTEMPTS):
        last = attempt == ATTEMPTS - 1
        try:
            r = s.get(
                f"{root}/{path}",
                params=params,
                headers={"Accept": accept},
                stream=stream,
                timeout=(CONNECT_TIMEOUT, READ_TIMEOUT),
            )
        except (requests.ConnectionError, requests.Timeout):
            if last:
                raise
        else:
            if r.status_code not in RETRY_STATUS or last:
                r.raise_for_status()
                return r
        time.sleep(2**attempt)
    raise AssertionError("unreachable")  # pragma: no cover


def qido(root: str, path: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """A QIDO-RS search: the matches as DICOM JSON (``[]`` for 204 No Content)."""
    r = get(root, path, JSON, params)
    return list(r.json()) if r.content else []


def instance_bytes(root: str, study: str, series: str, instance: str) -> bytes:
    """WADO-RS one instance, as stored: the DICOM file's bytes (the one part of the multipart answer).

    Raises:
        ValueError: the answer is not a multipart message holding a DICOM part.
        requests.RequestException: as :func:`get`.
    """
    r = get(root, f"studies/{study}/series/{series}/instances/{instance}", ANY_SYNTAX, stream=True)
    try:
        body = r.raw.read(decode_content=True)  # in one read: requests' .content reads 10 kB at a time
    finally:
        r.raw.release_conn()  # kept alive for the next instance
    return first_part(body, r.headers.get("Content-Type", ""))


def first_part(body: bytes, content_type: str) -> bytes:
    """The first part's body of a ``multipart/related`` message (RFC 2046) with the boundary in ``content_type``."""
    boundary = ""
    for param in content_type.split(";")[1:]:
        key, _, value = param.strip().partition("=")
        if key.lower() == "boundary":
            boundary = value.strip('"')
    if not boundary:
        raise ValueError(f"not a multipart answer (Content-Type {content_type or 'missing'})")
    delimiter = b"--" + boundary.encode()
    start = body.find(delimiter)
    head_end = body.find(b"\r\n\r\n", start)
    end = body.find(b"\r\n" + delimiter, head_end)
    if start < 0 or head_end < 0 or end < 0:
        raise ValueError("a multipart answer without a complete part")
    return body[head_end + 4 : end]
