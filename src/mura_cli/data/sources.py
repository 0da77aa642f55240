"""Where inputs come from: files, folders and globs on disk, or a DICOMweb server (:mod:`mura_cli.data.dicomweb`).

Every source yields the same records, named inputs that :func:`read_input` turns into images, so predict,
localize and the DICOM results sink do not know which source they read: :func:`scan_sources` lists them,
:func:`read_input` reads one (in a decoding worker), :func:`read_header` gives one DICOM input's header.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mura_cli.data.dicomweb import Query, RemoteInstance, find_instances, is_dicomweb, read_remote, read_remote_header
from mura_cli.data.inputs import InputIssue, scan_inputs
from mura_cli.errors import UsageError

Input = Path | RemoteInstance
"""One input: a file, or an instance on a DICOMweb server; ``str()`` names it."""

_URL = re.compile(r"^(?P<root>https?://.+)/studies/(?P<st>[^/]+)/series/(?P<se>[^/]+)/instances/(?P<i>[^/]+)$")


@dataclass(frozen=True)
class SourceScan:
    """What the sources hold: ``images`` to read, and the failed and skipped paths (as ``InputIssue``)."""

    images: list[Input]
    split: tuple[list[InputIssue], list[InputIssue]]


def scan_sources(paths: tuple[str, ...], query: Query = Query()) -> SourceScan:
    """Files, folders and globs (:func:`~mura_cli.data.inputs.scan_inputs`), or one DICOMweb address queried with
    ``query`` (QIDO-RS); the two are not mixed in one run."""
    remote = [p for p in paths if is_dicomweb(p)]
    if not remote:
        if query != Query():
            raise UsageError("--study, --modality, --since and --body-part filter a DICOMweb source only")
        scan = scan_inputs(paths)
        return SourceScan(list(scan.images), scan.split)
    if len(paths) > 1:
        raise UsageError("a DICOMweb source is given alone: one dicomweb+http(s):// address, no other paths")
    return SourceScan(list(find_instances(remote[0], query)), ([], []))


def source_query(cfg: Any) -> Query:
    """The DICOMweb query an inference config (``study``, ``modality``, ``since``, ``body_part``) asks for."""
    split = lambda v: tuple(x.strip() for x in (v or "").split(",") if x.strip())  # noqa: E731
    return Query(tuple(cfg.study), split(cfg.modality), cfg.since, split(cfg.body_part))


def read_input(item: Input, **read_kw: Any) -> list[Any]:
    """Every frame of one input (:func:`~mura_cli.data.readers.read_images`; a remote one fetched first)."""
    from mura_cli.data.readers import read_images

    if isinstance(item, RemoteInstance):
        return read_remote(item, **read_kw)
    return read_images(item, **read_kw)


def input_named(name: str) -> Input:
    """The input whose ``str()`` is ``name``: a remote instance for a WADO-RS URL, else a path."""
    m = _URL.match(name)
    return RemoteInstance(f"dicomweb+{m['root']}", m["st"], m["se"], m["i"]) if m else Path(name)


def read_header(name: str) -> Any:
    """The header (no pixels) of the DICOM input named ``name``, or ``None`` when it is not DICOM."""
    item = input_named(name)
    if isinstance(item, RemoteInstance):
        return read_remote_header(item)
    import pydicom

    from mura_cli.data.readers import is_dicom

    return pydicom.dcmread(name, stop_before_pixels=True) if is_dicom(name) else None
