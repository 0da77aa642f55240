"""A DICOMweb server (a PACS) as a source of radiographs (:mod:`mura_cli.data.wado`) and a target for results
(dicomweb-client).

Addresses are written ``dicomweb+http://HOST:PORT/dicom-web`` (or ``dicomweb+https://``); the part after
``dicomweb+`` is the service root. :func:`find_instances` asks QIDO-RS which instances match (by study, modality,
study date, body part); each :class:`RemoteInstance` is fetched with WADO-RS only when the pipeline reads it
(:func:`read_remote`, in the decoding worker), so memory does not grow with the number of instances; its name
(``str``) is its WADO-RS URL, which is what failures and result rows show. :func:`store` sends objects with
STOW-RS, one object per request, and reads every answer's FailedSOPSequence, even on HTTP 200.

Authentication comes from the environment only, never the command line, and never appears in a message:
``MURA_DICOMWEB_TOKEN`` (a bearer token) or ``MURA_DICOMWEB_USER`` with ``MURA_DICOMWEB_PASSWORD`` (HTTP basic).
TLS certificates are verified (``REQUESTS_CA_BUNDLE`` names a private CA).

Bounds: every request times out after :data:`CONNECT_TIMEOUT` s to connect and :data:`READ_TIMEOUT` s to read.
QIDO and WADO requests that fail to connect or are answered 408, 429, 503 or 504 are tried :data:`ATTEMPTS`
times in all, 1 s then 2 s apart, so a server that refuses connections
fails in about 3 s; one that does not answer, in at most 3 x 5 s + 3 s. STOW-RS is never retried
(dicomweb-client would resend an empty body for a payload larger than its chunk size).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mura_cli.data.image import DEFAULT_MAX_PIXELS
from mura_cli.data.wado import (
    ATTEMPTS,
    CONNECT_TIMEOUT,
    ENV_PASSWORD,
    ENV_TOKEN,
    ENV_USER,
    READ_TIMEOUT,
    instance_bytes,
    new_session,
    qido,
)
from mura_cli.errors import DataError, MuraError, PacsError, UsageError

if TYPE_CHECKING:
    from mura_cli.data.records import Index

PREFIX = "dicomweb+"
RESULT_SERIES = "mura-cli AI result"
"""The series description of the results mura writes into a study; a source never reads those series back."""
NOT_IMAGES = frozenset({"SR", "PR", "KO", "SEG", "REG", "RWV", "DOC", "PLAN", "AU", "ECG"})
"""Modalities of series that hold no radiographs (reports, presentation states, ...): never fetched."""


def is_dicomweb(address: str) -> bool:
    """True for a ``dicomweb+http(s)://`` address."""
    return address.startswith((f"{PREFIX}http://", f"{PREFIX}https://"))


def service_url(address: str) -> str:
    """``dicomweb+http://h/p`` -> ``http://h/p`` (no trailing slash)."""
    if not is_dicomweb(address):
        raise UsageError(f"{address}: not a DICOMweb address; write dicomweb+http(s)://HOST:PORT/PATH")
    return address[len(PREFIX) :].rstrip("/")


def connect(address: str, *, retry: bool = True) -> Any:
    """A dicomweb-client (STOW-RS, metadata) for ``address`` with the timeouts, retries and credentials described
    above; QIDO-RS and WADO-RS of instances go through :mod:`mura_cli.data.wado`."""
    try:
        from dicomweb_client import DICOMwebClient
    except ImportError:
        raise MuraError("DICOMweb needs dicomweb-client: pip install 'mura-cli[pacs]'") from None

    client = DICOMwebClient(service_url(address), session=new_session(), timeout=(CONNECT_TIMEOUT, READ_TIMEOUT))
    if retry:
        client.set_http_retry_params(retry=True, max_attempts=ATTEMPTS, wait_exponential_multiplier=500)
    else:
        client.set_http_retry_params(retry=False)
    return client


def network_error(address: str, exc: BaseException) -> MuraError:
    """One line for a failed request: unreachable, refused credentials, or the HTTP status (never the headers)."""
    import requests

    where = service_url(address)
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    if status in (401, 403):
        return PacsError(
            f"{where}: HTTP {status}, the server refused the credentials; set {ENV_TOKEN}, or {ENV_USER} and "
            f"{ENV_PASSWORD}"
        )
    if status is not None:
        return PacsError(f"{where}: HTTP {status} {getattr(response, 'reason', '')}".rstrip())
    if isinstance(exc, requests.exceptions.SSLError):
        return PacsError(f"{where}: TLS certificate not trusted; set REQUESTS_CA_BUNDLE to your CA bundle")
    if isinstance(exc, requests.exceptions.Timeout):
        return PacsError(f"{where}: no answer within {CONNECT_TIMEOUT:.0f} s (connect) / {READ_TIMEOUT:.0f} s (read)")
    if isinstance(exc, requests.exceptions.ConnectionError):
        return PacsError(f"{where}: cannot connect; check the address and that the server is running")
    return PacsError(f"{where}: {type(exc).__name__}: {exc}")


# ============================================================================================ source


@dataclass(frozen=True)
class RemoteInstance:
    """One instance on a DICOMweb server; ``str()`` is its WADO-RS URL (its name in results and failures)."""

    address: str
    study: str
    series: str
    instance: str

    def __str__(self) -> str:
        return f"{service_url(self.address)}/studies/{self.study}/series/{self.series}/instances/{self.instance}"


@dataclass(frozen=True)
class Query:
    """What to fetch: studies by UID (empty: every study matching the filters), modalities, a first study date
    (``YYYYMMDD`` or ``YYYY-MM-DD``) and body parts (BodyPartExamined, where the series has one)."""

    studies: tuple[str, ...] = ()
    modalities: tuple[str, ...] = ()
    since: str | None = None
    body_parts: tuple[str, ...] = ()


def find_instances(address: str, query: Query) -> list[RemoteInstance]:
    """QIDO-RS: the instances of the matching studies and series, in study, series, instance number order.

    Raises:
        DataError: a study UID the server does not have (one line naming it).
        PacsError: the server cannot be reached or refuses the request.
    """
    root = service_url(address)
    since = query.since.replace("-", "") if query.since else None
    try:
        studies = list(query.studies) or _all_studies(root, since)
        out: list[RemoteInstance] = []
        for uid in studies:
            filters = {"StudyInstanceUID": uid, **({"StudyDate": f"{since}-"} if since else {})}
            if not qido(root, "studies", filters):
                if query.studies and not qido(root, "studies", {"StudyInstanceUID": uid}):
                    raise DataError(f"{root}: no study {uid} on this server; check the UID")
                continue
            out.extend(_study_instances(root, address, uid, query))
        return out
    except MuraError:
        raise
    except Exception as exc:  # requests and dicomweb-client errors: one line, the server named
        raise network_error(address, exc) from None


def _all_studies(root: str, since: str | None) -> list[str]:
    found = qido(root, "studies", {"StudyDate": f"{since}-"} if since else None)
    return [_value(s, "0020000D") for s in found]


def _study_instances(root: str, address: str, study: str, query: Query) -> list[RemoteInstance]:
    fields = ["Modality", "BodyPartExamined", "SeriesNumber", "SeriesDescription"]
    series = qido(root, f"studies/{study}/series", {"includefield": fields})
    wanted_mod = {m.upper() for m in query.modalities}
    wanted_part = {p.upper() for p in query.body_parts}
    out: list[RemoteInstance] = []
    for s in sorted(series, key=lambda s: int(_value(s, "00200011") or 0)):
        modality = _value(s, "00080060").upper()
        if modality in NOT_IMAGES or _value(s, "0008103E") == RESULT_SERIES:
            continue
        if wanted_mod and modality not in wanted_mod:
            continue
        if wanted_part and _value(s, "00180015").upper() not in wanted_part:
            continue
        uid = _value(s, "0020000E")
        found = qido(root, f"studies/{study}/series/{uid}/instances", {"includefield": "InstanceNumber"})
        found.sort(key=lambda i: int(_value(i, "00200013") or 0))
        out.extend(RemoteInstance(address, study, uid, _value(i, "00080018")) for i in found)
    return out


def _value(item: dict[str, Any], tag: str) -> str:
    values = item.get(tag, {}).get("Value") or [""]
    return str(values[0])


def read_remote(inst: RemoteInstance, **read_kw: Any) -> list[Any]:
    """WADO-RS one instance (:func:`~mura_cli.data.wado.instance_bytes`: as stored, over this process's kept-alive
    connection) and read its frames from memory as :func:`~mura_cli.data.readers.read_images` reads a file.

    Raises:
        DataError: naming the instance's URL, when it cannot be fetched or read.
    """
    from mura_cli.data.dicom import read_dicom

    try:
        data = instance_bytes(service_url(inst.address), inst.study, inst.series, inst.instance)
    except Exception as exc:  # the batch goes on: a named failure of this instance
        raise DataError(f"{inst}: could not fetch ({network_error(inst.address, exc)})") from None
    read_kw.setdefault("max_pixels", DEFAULT_MAX_PIXELS)
    return read_dicom(str(inst), frames=None, data=data, **read_kw)


def read_remote_header(inst: RemoteInstance) -> Any:
    """WADO-RS metadata of one instance as a pydicom Dataset (no pixel data), for the DICOM results."""
    import warnings

    import pydicom

    try:
        meta = connect(inst.address).retrieve_instance_metadata(inst.study, inst.series, inst.instance)
    except Exception as exc:
        raise network_error(inst.address, exc) from None
    with warnings.catch_warnings():  # the pixel data is a bulk data URI, deliberately not fetched
        warnings.simplefilter("ignore")
        return pydicom.Dataset.from_json(meta[0] if isinstance(meta, list) else meta)


# ============================================================================================ sink


@dataclass(frozen=True)
class StoreResult:
    """What STOW-RS did with each file: ``stored`` files, and ``failed`` ``(file, reason)`` pairs."""

    stored: tuple[Path, ...]
    failed: tuple[tuple[Path, str], ...]


def store(address: str, files: Sequence[Path]) -> StoreResult:
    """STOW-RS ``files``, one per request, never retried; an object the server lists in FailedSOPSequence (even
    with HTTP 200) or answers with an error is a failure of that object, and the others are still sent."""
    import pydicom

    client = connect(address, retry=False)
    stored, failed = [], []
    for f in files:
        ds = pydicom.dcmread(f)
        try:
            answer = client.store_instances([ds])
        except Exception as exc:
            failed.append((f, str(network_error(address, exc))))
            continue
        bad = [str(i.get("FailureReason", "?")) for i in answer.get("FailedSOPSequence", [])]
        if bad:
            failed.append((f, f"{service_url(address)} refused it (failure reason {', '.join(bad)})"))
        else:
            stored.append(f)
    return StoreResult(tuple(stored), tuple(failed))


# ============================================================================================ labelled studies


def labelled_index(address: str, labels: str | Path | None) -> Index:
    """An :class:`~mura_cli.data.records.Index` of the instances of the studies a labels CSV names (columns
    ``study``: the Study Instance UID, ``label``: 1 abnormal / 0 normal, optional ``part``, else ``mixed``), on
    the server at ``address``, for ``mura benchmark``; every row is in the ``valid`` split and its path is the
    instance's WADO-RS URL.

    Raises:
        UsageError: no labels CSV given.
        DataError: the CSV cannot be read or lacks a column or a valid label (naming it); a study not on the server.
        PacsError: as :func:`find_instances`.
    """
    import csv

    from mura_cli.data.records import Index, IndexRow, part_from_name

    if not labels:
        raise UsageError("a DICOMweb --data needs --labels CSV (columns study, label [, part]): the truth to score")
    try:
        with open(labels, newline="", encoding="utf-8-sig") as f:
            table = list(csv.DictReader(f))
    except OSError as exc:
        raise DataError(f"{labels}: cannot read the labels CSV ({exc.strerror})") from None
    if not table or not {"study", "label"} <= set(table[0]):
        raise DataError(f"{labels}: a labels CSV needs the columns study and label (1 abnormal, 0 normal)")
    truth: dict[str, tuple[int, str]] = {}
    for n, row in enumerate(table, 2):
        if (row.get("label") or "").strip() not in ("0", "1"):
            raise DataError(f"{labels}: line {n}: label {row.get('label')!r}; write 1 (abnormal) or 0 (normal)")
        part = part_from_name(row.get("part") or "") or "mixed"
        truth[(row.get("study") or "").strip()] = (int(row["label"]), part)
    rows = [
        IndexRow(str(i), "valid", truth[i.study][1], i.study, i.study, truth[i.study][0])
        for i in find_instances(address, Query(tuple(truth)))
    ]
    return Index(Path(service_url(address)), "dicomweb", tuple(rows))
