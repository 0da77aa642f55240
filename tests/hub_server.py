"""A local, in-memory fake of the Hugging Face Hub HTTP API, for tests that exercise real ``huggingface_hub`` code.

Nothing is mocked on the client side: ``hf_hub_download``, ``snapshot_download``, ``HfApi.create_repo``,
``HfApi.upload_folder`` etc. make real HTTP requests (through ``httpx2``) to a ``ThreadingHTTPServer`` bound to
``127.0.0.1`` on a free port. The server is stdlib only and speaks the subset of the Hub API those calls use
(written against ``huggingface_hub`` 2.4.0, checked by reading its source):

Downloads
    ``HEAD|GET /[{datasets,spaces}/]{repo_id}/resolve/{revision}/{path}``: headers ``X-Repo-Commit``, ``ETag``
    (git blob sha1; for "LFS" files ``X-Linked-Etag`` = sha256 and ``X-Linked-Size``), ``Content-Length``,
    ``Range`` support (206). Never any ``X-Xet-Hash`` / xet ``Link`` header, so the client always downloads over
    plain HTTP, whether or not ``hf_xet`` is installed. Files are served directly (no redirect).
    ``GET /api/{models,datasets,spaces}/{repo_id}[/revision/{rev}]`` (repo_info, with ``sha`` and ``siblings``),
    ``GET /api/.../tree/{rev}[/{path}]`` (list_repo_tree, used by snapshot_download), ``POST .../paths-info/{rev}``,
    ``GET .../refs``.
Uploads
    ``POST /api/repos/create`` (409 + ``url`` if it exists), ``DELETE /api/repos/delete``,
    ``POST /api/.../preupload/{rev}`` (every file answered ``"regular"``, with the current git oid so unchanged
    files are skipped), ``POST /api/.../commit/{rev}`` (NDJSON: ``header``, ``file`` (base64), ``deletedFile``,
    ``deletedFolder``, ``lfsFile`` for blobs already known to the fake; ``?create_pr=1`` opens ``refs/pr/N``),
    ``POST /api/validate-yaml`` (README.md check, always OK), ``POST|DELETE .../branch/{name}``,
    ``POST .../tag/{rev}``, ``GET /api/whoami-v2``, ``GET /api/agent-harnesses`` (empty registry).
Errors
    Missing repo: 404 + ``X-Error-Code: RepoNotFound`` (``RepositoryNotFoundError``); private repo without a token:
    401 + ``RepoNotFound``; gated repo without a token: 401 + ``GatedRepo`` (``GatedRepoError``); missing revision:
    404 + ``RevisionNotFound`` (``RevisionNotFoundError``); missing file: 404 + ``EntryNotFound`` + ``X-Repo-Commit``
    (``huggingface_hub.errors.RemoteEntryNotFoundError``, a subclass of ``EntryNotFoundError``). NB: the client only
    maps a bare 401 to ``RepositoryNotFoundError`` for ``https://`` URLs, hence the explicit error codes here.
    Tokens: any ``Authorization: Bearer ...`` is accepted, unless ``FakeHub(tokens={...})`` restricts them; writes
    need a token. Unknown routes answer 404 and are recorded in ``FakeHub.unhandled``.

Usage::

    from hub_server import FakeHub, serving_hub, set_hf_offline

    @pytest.fixture
    def hub(monkeypatch, tmp_path):
        yield from serving_hub(monkeypatch, tmp_path)   # server + env + huggingface_hub.constants patched

    def test_x(hub):
        hub.add_file("org/model", "config.json", b"{}")
        path = hf_hub_download("org/model", "config.json")  # HF_ENDPOINT already points to hub.url
        assert hub.file_requests("org/model", "config.json", method="GET")

    # or without pytest: ``with FakeHub.serve() as hub: HfApi(endpoint=hub.url, token="x")...``

Env vars vs. ``huggingface_hub.constants`` (the gotcha): ``huggingface_hub`` reads its environment once, at import
time, into module globals. Setting ``HF_ENDPOINT``/``HF_HOME``/``HF_HUB_OFFLINE`` after import does nothing, so
``configure_hf_env`` (called by ``serving_hub``) sets the env vars (for subprocesses and fresh imports) AND patches:

* ``constants.ENDPOINT`` and ``constants.HUGGINGFACE_CO_URL_TEMPLATE`` (``hf_hub_url`` formats the template, which
  embeds the endpoint, so patching ``ENDPOINT`` alone is not enough), ``constants.HF_URL_HOSTS``;
* ``huggingface_hub.hf_api.api.endpoint``: the module-level ``HfApi()`` behind ``huggingface_hub.create_repo``,
  ``upload_folder``, ``model_info``... froze ``ENDPOINT`` when it was built (an ``HfApi()`` built before the fixture
  keeps its old endpoint too; build yours inside the test or pass ``endpoint=hub.url``);
* ``constants.HF_HOME``, ``HF_HUB_CACHE``, ``HUGGINGFACE_HUB_CACHE``, ``HF_ASSETS_CACHE``,
  ``HUGGINGFACE_ASSETS_CACHE``, ``HF_XET_CACHE``, ``HF_TOKEN_PATH``, ``HF_STORED_TOKENS_PATH``,
  ``AGENT_HARNESSES_PATH``, ``CHECK_FOR_UPDATE_DONE_PATH``, ``CHECK_FOR_SKILL_UPDATE_DONE_PATH`` (all derived from
  ``HF_HOME`` at import), plus the copies made by ``from ..constants import X``:
  ``utils._cache_manager.HF_HUB_CACHE`` (``scan_cache_dir``) and ``utils._cache_assets.HF_ASSETS_CACHE``;
* ``constants.HF_HUB_OFFLINE`` (what ``is_offline_mode()`` returns; ``False`` here, see ``set_hf_offline``);
* ``constants.HF_HUB_DISABLE_TELEMETRY = True`` (otherwise building the user-agent may GET
  ``{ENDPOINT}/api/agent-harnesses`` once per process), ``HF_HUB_DISABLE_XET`` (``True`` by default: with
  ``hf_xet`` installed, ``upload_folder`` otherwise goes through the xet "pipelined" uploader; that path also works
  against this server since every file is "regular", pass ``disable_xet=False`` to exercise it),
  ``HF_HUB_DISABLE_UPDATE_CHECK``, ``HF_HUB_DISABLE_PROGRESS_BARS`` (+ ``utils.tqdm`` copy).

It also removes ``HF_TOKEN``/``HUGGING_FACE_HUB_TOKEN``/``HF_HUB_OFFLINE``/``TRANSFORMERS_OFFLINE``/
``HUGGINGFACE_CO_STAGING`` from the env, adds ``127.0.0.1`` to ``NO_PROXY`` and closes the global ``httpx2`` client
(``huggingface_hub.utils.close_session``) before and after, so proxies are re-read and no pooled connection to a dead
server survives. Only attributes that exist in the installed version are patched.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import importlib
import itertools
import json
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

__all__ = ["FakeHub", "HubRequest", "configure_hf_env", "serving_hub", "set_hf_offline"]

REPO_TYPES = ("model", "dataset", "space")
_URL_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
_API_PLURAL = {"models": "model", "datasets": "dataset", "spaces": "space"}
_RESOLVE_PREFIX = {"datasets": "dataset", "spaces": "space"}
# Path segments that follow a repo_id in API urls (so "/api/models/gpt2/tree/main" is repo "gpt2").
_API_SUBPATHS = {"revision", "tree", "preupload", "commit", "refs", "paths-info", "branch", "tag", "resolve"}
# Suffixes tracked by LFS in the Hub's default .gitattributes (subset); bigger files are LFS too.
LFS_SUFFIXES = (
    ".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".onnx", ".msgpack", ".npy", ".npz", ".pkl",
    ".pickle", ".joblib", ".model", ".pb", ".tflite", ".tar", ".gz", ".tgz", ".zip", ".zst", ".xz", ".7z",
    ".arrow", ".parquet", ".ot", ".wasm",
)  # fmt: skip
LFS_THRESHOLD = 10 * 1024 * 1024
DEFAULT_USER = "fake-user"


def git_blob_sha1(data: bytes) -> str:
    """Git object id of a blob (what the Hub uses as ETag/oid of regular files)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@dataclass(frozen=True)
class _File:
    data: bytes
    lfs: bool
    sha1: str  # git blob oid of the content (or of the LFS pointer for LFS files)
    sha256: str

    @classmethod
    def make(cls, path: str, data: bytes, lfs: bool | None = None) -> _File:
        data = bytes(data)
        if lfs is None:
            lfs = path.lower().endswith(LFS_SUFFIXES) or len(data) >= LFS_THRESHOLD
        sha256 = hashlib.sha256(data).hexdigest()
        oid = git_blob_sha1(cls.pointer(sha256, len(data)) if lfs else data)
        return cls(data=data, lfs=lfs, sha1=oid, sha256=sha256)

    @staticmethod
    def pointer(sha256: str, size: int) -> bytes:
        return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()

    @property
    def etag(self) -> str:
        """What ends up as the blob name in the HF cache: sha256 for LFS files, git sha1 otherwise."""
        return self.sha256 if self.lfs else self.sha1


@dataclass
class _Commit:
    oid: str
    parent: str | None
    files: dict[str, _File]
    title: str
    date: str


@dataclass
class _Repo:
    repo_type: str
    repo_id: str
    private: bool = False
    gated: bool | str = False
    commits: dict[str, _Commit] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)  # branch / tag / refs/pr/N -> commit oid
    tags: set[str] = field(default_factory=set)
    created_at: str = field(default_factory=_now)
    n_prs: int = 0


@dataclass(frozen=True)
class HubRequest:
    """One request received by the fake Hub (``path`` is percent-decoded, without the query string)."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]

    @property
    def token(self) -> str | None:
        auth = self.headers.get("authorization", "")
        return auth[7:] if auth.lower().startswith("bearer ") else None


_Response = tuple[int, bytes, dict[str, str]]


def _resp(status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> _Response:
    return status, body, dict(headers or {})


def _json(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> _Response:
    return status, json.dumps(payload).encode(), {"Content-Type": "application/json", **(headers or {})}


class _HttpError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.headers = status, message, code, headers or {}


class FakeHub:
    """In-memory store of Hub repos (git-like: commits, branches, tags) plus the HTTP server that serves it.

    Store API (usable with or without the server running):
        ``create_repo``, ``add_file``, ``add_files`` (one commit), ``delete_repo``, ``files``, ``file``, ``head``,
        ``repo_ids``, ``create_branch``, ``create_tag``.
    Request log:
        ``requests`` (list of ``(method, path)``), ``records`` (full ``HubRequest`` objects), ``unhandled``,
        ``file_requests(repo_id, filename, method=None)``, ``clear_log()``.
    Server:
        ``with FakeHub.serve() as hub: hub.url`` (or ``hub.start()`` / ``hub.stop()``).
    """

    def __init__(self, *, tokens: set[str] | None = None, username: str = DEFAULT_USER):
        self.tokens = tokens  # None: any bearer token is valid
        self.username = username
        self.requests: list[tuple[str, str]] = []
        self.records: list[HubRequest] = []
        self.unhandled: list[tuple[str, str]] = []
        self._repos: dict[tuple[str, str], _Repo] = {}
        self._lock = threading.RLock()
        self._counter = itertools.count()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ server

    @classmethod
    @contextlib.contextmanager
    def serve(cls, **kwargs: Any) -> Iterator[FakeHub]:
        """Start a new FakeHub on 127.0.0.1:<free port>, yield it, stop it on exit."""
        hub = cls(**kwargs)
        hub.start()
        try:
            yield hub
        finally:
            hub.stop()

    def start(self) -> FakeHub:
        if self._server is not None:
            return self
        server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        server.daemon_threads = True
        server.hub = self  # type: ignore[attr-defined]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-hub", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None

    @property
    def url(self) -> str:
        """Base URL to use as ``HF_ENDPOINT`` / ``HfApi(endpoint=...)``."""
        if self._server is None:
            raise RuntimeError("FakeHub is not serving: use `with FakeHub.serve() as hub:` or `hub.start()`")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    # ------------------------------------------------------------------- store

    def create_repo(
        self, repo_id: str, *, repo_type: str = "model", private: bool = False, gated: bool | str = False
    ) -> None:
        """Create an empty repo (one empty initial commit on ``main``); no-op if it exists."""
        with self._lock:
            key = (repo_type, repo_id)
            if key in self._repos:
                return
            repo = _Repo(
                repo_type=repo_type, repo_id=repo_id, private=private, gated="auto" if gated is True else gated
            )
            self._repos[key] = repo
            self._new_commit(repo, parent=None, files={}, title="initial commit")
            repo.refs["main"] = next(iter(repo.commits))

    def delete_repo(self, repo_id: str, *, repo_type: str = "model") -> None:
        with self._lock:
            self._repos.pop((repo_type, repo_id), None)

    def add_file(
        self,
        repo_id: str,
        filename: str,
        data: bytes,
        revision: str = "main",
        *,
        repo_type: str = "model",
        lfs: bool | None = None,
        message: str | None = None,
    ) -> str:
        """Commit one file on branch ``revision`` (repo and branch created if needed); returns the commit oid.

        ``lfs=None`` decides like the Hub's default ``.gitattributes`` (``*.safetensors``, ``*.bin``... or >=10 MB).
        """
        return self.add_files(repo_id, {filename: data}, revision, repo_type=repo_type, lfs=lfs, message=message)

    def add_files(
        self,
        repo_id: str,
        files: dict[str, bytes],
        revision: str = "main",
        *,
        repo_type: str = "model",
        lfs: bool | None = None,
        message: str | None = None,
    ) -> str:
        """Commit several files at once on branch ``revision``; returns the commit oid."""
        with self._lock:
            self.create_repo(repo_id, repo_type=repo_type)
            repo = self._repos[(repo_type, repo_id)]
            if revision not in repo.refs:
                repo.refs[revision] = repo.refs["main"]
            parent = repo.commits[repo.refs[revision]]
            new_files = dict(parent.files)
            for path, data in files.items():
                new_files[path.strip("/")] = _File.make(path, data, lfs)
            commit = self._new_commit(repo, parent.oid, new_files, message or f"Upload {', '.join(files)}")
            repo.refs[revision] = commit.oid
            return commit.oid

    def create_branch(self, repo_id: str, branch: str, revision: str = "main", *, repo_type: str = "model") -> None:
        with self._lock:
            repo = self._repos[(repo_type, repo_id)]
            repo.refs[branch] = self._resolve(repo, revision)

    def create_tag(self, repo_id: str, tag: str, revision: str = "main", *, repo_type: str = "model") -> None:
        with self._lock:
            repo = self._repos[(repo_type, repo_id)]
            repo.refs[tag] = self._resolve(repo, revision)
            repo.tags.add(tag)

    def files(self, repo_id: str, revision: str = "main", *, repo_type: str = "model") -> dict[str, bytes]:
        """``{path: content}`` of the repo at ``revision`` (branch, tag or commit oid); KeyError if unknown."""
        with self._lock:
            repo = self._repos[(repo_type, repo_id)]
            return {p: f.data for p, f in sorted(repo.commits[self._resolve(repo, revision)].files.items())}

    def file(self, repo_id: str, filename: str, revision: str = "main", *, repo_type: str = "model") -> bytes:
        return self.files(repo_id, revision, repo_type=repo_type)[filename]

    def head(self, repo_id: str, revision: str = "main", *, repo_type: str = "model") -> str:
        """Commit oid that ``revision`` points to."""
        with self._lock:
            return self._resolve(self._repos[(repo_type, repo_id)], revision)

    def repo_ids(self, repo_type: str = "model") -> list[str]:
        with self._lock:
            return sorted(rid for (rtype, rid) in self._repos if rtype == repo_type)

    # ------------------------------------------------------------- request log

    def clear_log(self) -> None:
        with self._lock:
            self.requests.clear()
            self.records.clear()
            self.unhandled.clear()

    def file_requests(
        self, repo_id: str, filename: str, method: str | None = None, *, repo_type: str = "model"
    ) -> list[tuple[str, str]]:
        """Logged ``/resolve/`` requests for this file (any revision), e.g. ``method="GET"`` = actual downloads."""
        prefix = f"/{_URL_PREFIX[repo_type]}{repo_id}/resolve/"
        with self._lock:
            return [
                (m, p)
                for m, p in self.requests
                if p.startswith(prefix) and p.endswith("/" + filename) and (method is None or m == method)
            ]

    # ---------------------------------------------------------------- helpers

    def _log(self, request: HubRequest) -> None:
        with self._lock:
            self.requests.append((request.method, request.path))
            self.records.append(request)

    def _new_commit(self, repo: _Repo, parent: str | None, files: dict[str, _File], title: str) -> _Commit:
        h = hashlib.sha1(f"{repo.repo_type}/{repo.repo_id}\n{parent}\n{title}\n{next(self._counter)}".encode())
        for path in sorted(files):
            h.update(f"{path}\0{files[path].sha1}\n".encode())
        commit = _Commit(oid=h.hexdigest(), parent=parent, files=files, title=title, date=_now())
        repo.commits[commit.oid] = commit
        return commit

    @staticmethod
    def _resolve(repo: _Repo, revision: str) -> str:
        if revision in repo.refs:
            return repo.refs[revision]
        if revision in repo.commits:
            return revision
        matches = [oid for oid in repo.commits if len(revision) >= 7 and oid.startswith(revision)]
        if len(matches) == 1:
            return matches[0]
        raise KeyError(revision)

    @staticmethod
    def _resolve_ref_name(repo: _Repo, revision: str) -> str:
        """Branch a commit on ``revision`` moves (committing on a tag or a raw commit oid is refused)."""
        if revision in repo.refs and revision not in repo.tags:
            return revision
        raise _HttpError(400, f"Cannot commit on {revision!r}: not a branch")

    def _repo_url(self, repo: _Repo) -> str:
        return f"{self.url}/{_URL_PREFIX[repo.repo_type]}{repo.repo_id}"

    def _find_lfs_blob(self, sha256: str) -> _File | None:
        for repo in self._repos.values():
            for commit in repo.commits.values():
                for f in commit.files.values():
                    if f.sha256 == sha256:
                        return f
        return None


# ---------------------------------------------------------------------------------------------------- HTTP layer


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeHub/1.0"

    # quiet
    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    # ---------------------------------------------------------------- plumbing

    @property
    def hub(self) -> FakeHub:
        return self.server.hub  # type: ignore[attr-defined]

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        headers = dict(headers or {})
        headers.setdefault("Content-Length", str(len(body)))
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)

    def _dispatch(self, method: str) -> None:
        split = urlsplit(self.path)
        raw_segments = [s for s in split.path.split("/") if s]
        request = HubRequest(
            method=method,
            path=unquote(split.path),
            query=parse_qs(split.query, keep_blank_values=True),
            headers={k.lower(): v for k, v in self.headers.items()},
        )
        body = self._read_body() if method in ("POST", "PUT", "DELETE") else b""
        self.hub._log(request)
        try:
            with self.hub._lock:  # the response is built under the lock, sent outside of it
                self._check_token(request)
                if raw_segments[:1] == ["api"]:
                    response = self._route_api(method, raw_segments[1:], request, body)
                elif "resolve" in raw_segments[1:] and method in ("GET", "HEAD"):
                    response = self._route_resolve(raw_segments, request)
                else:
                    raise _HttpError(404, f"FakeHub: no route for {method} {request.path}", code="Unhandled")
        except _HttpError as e:
            if e.code == "Unhandled":
                with self.hub._lock:
                    self.hub.unhandled.append((method, request.path))
            headers = dict(e.headers)
            if e.code and e.code != "Unhandled":
                headers["X-Error-Code"] = e.code
            headers["X-Error-Message"] = e.message
            response = _json({"error": e.message}, status=e.status, headers=headers)
        except Exception as e:  # a bug in the fake: make it visible client side as a 500
            response = _json({"error": f"FakeHub internal error: {e!r}"}, status=500)
        self._send(*response)

    def _check_token(self, request: HubRequest) -> None:
        auth = request.headers.get("authorization")
        if auth is None or self.hub.tokens is None:
            return
        if request.token not in self.hub.tokens:
            raise _HttpError(401, "Invalid credentials in Authorization header")

    def _require_token(self, request: HubRequest) -> None:
        if request.token is None:
            raise _HttpError(401, "You must be authenticated to do this (no token sent)")

    def _get_repo(self, repo_type: str, repo_id: str, request: HubRequest) -> _Repo:
        repo = self.hub._repos.get((repo_type, repo_id))
        if repo is None:
            raise _HttpError(404, "Repository not found", code="RepoNotFound")
        if repo.private and request.token is None:
            raise _HttpError(401, "Invalid username or password.", code="RepoNotFound")
        if repo.gated and request.token is None:
            raise _HttpError(401, f"Access to model {repo_id} is restricted.", code="GatedRepo")
        return repo

    def _commit(self, repo: _Repo, revision: str) -> _Commit:
        try:
            return repo.commits[FakeHub._resolve(repo, revision)]
        except KeyError:
            raise _HttpError(404, f"Invalid rev id: {revision}", code="RevisionNotFound") from None

    # ----------------------------------------------------------------- resolve

    def _route_resolve(self, segs: list[str], request: HubRequest) -> _Response:
        i = segs.index("resolve", 1)
        repo_segs, rest = segs[:i], segs[i + 1 :]
        repo_type = "model"
        if repo_segs[0] in _RESOLVE_PREFIX and len(repo_segs) > 1:
            repo_type, repo_segs = _RESOLVE_PREFIX[repo_segs[0]], repo_segs[1:]
        if len(repo_segs) not in (1, 2) or len(rest) < 2:
            raise _HttpError(404, f"FakeHub: no route for {request.method} {request.path}", code="Unhandled")
        repo = self._get_repo(repo_type, unquote("/".join(repo_segs)), request)
        commit = self._commit(repo, unquote(rest[0]))
        filename = unquote("/".join(rest[1:]))
        f = commit.files.get(filename)
        if f is None:
            raise _HttpError(404, "Entry not found", code="EntryNotFound", headers={"X-Repo-Commit": commit.oid})
        headers = {
            "X-Repo-Commit": commit.oid,
            "ETag": f'"{f.sha1}"',
            "Accept-Ranges": "bytes",
            "Content-Type": "application/octet-stream",
        }
        if f.lfs:
            headers.update({"X-Linked-Etag": f'"{f.sha256}"', "X-Linked-Size": str(len(f.data))})
        data, status = f.data, 200
        range_header = request.headers.get("range")
        if range_header and range_header.startswith("bytes=") and "," not in range_header:
            start_s, _, end_s = range_header[6:].partition("-")
            total = len(f.data)
            if start_s:
                start, end = int(start_s), int(end_s) if end_s else total - 1
            else:  # suffix range: last N bytes
                start, end = max(total - int(end_s), 0), total - 1
            if start >= total or start > end:
                raise _HttpError(416, "Range not satisfiable", headers={"Content-Range": f"bytes */{total}"})
            end = min(end, total - 1)
            data, status = f.data[start : end + 1], 206
            headers["Content-Range"] = f"bytes {start}-{end}/{total}"
        return _resp(status, data, headers)

    # --------------------------------------------------------------------- api

    def _route_api(self, method: str, segs: list[str], request: HubRequest, body: bytes) -> _Response:
        hub = self.hub
        if segs == ["whoami-v2"] and method == "GET":
            self._require_token(request)
            return _json(
                {
                    "type": "user",
                    "id": "0" * 24,
                    "name": hub.username,
                    "fullname": "Fake User",
                    "orgs": [],
                    "auth": {"type": "access_token", "accessToken": {"displayName": "fake", "role": "write"}},
                }
            )
        if segs == ["agent-harnesses"] and method == "GET":
            return _json({"standardEnvVars": [], "harnesses": {}})
        if segs == ["validate-yaml"] and method == "POST":
            return _json({"errors": [], "warnings": []})
        if segs == ["repos", "create"] and method == "POST":
            return self._api_create_repo(request, json.loads(body or b"{}"))
        if segs == ["repos", "delete"] and method == "DELETE":
            return self._api_delete_repo(request, json.loads(body or b"{}"))
        if len(segs) >= 2 and segs[0] in _API_PLURAL:
            repo_type, rest = _API_PLURAL[segs[0]], segs[1:]
            if len(rest) >= 2 and rest[1] not in _API_SUBPATHS:
                repo_id, tail = f"{unquote(rest[0])}/{unquote(rest[1])}", rest[2:]
            else:
                repo_id, tail = unquote(rest[0]), rest[1:]
            return self._route_repo_api(method, repo_type, repo_id, tail, request, body)
        raise _HttpError(404, f"FakeHub: no route for {method} {request.path}", code="Unhandled")

    def _route_repo_api(
        self, method: str, repo_type: str, repo_id: str, tail: list[str], request: HubRequest, body: bytes
    ) -> _Response:
        repo = self._get_repo(repo_type, repo_id, request)
        op, args = (tail[0], [unquote(s) for s in tail[1:]]) if tail else ("", [])
        if op == "" and method in ("GET", "HEAD"):
            return self._api_info(repo, "main", request)
        if op == "revision" and args and method in ("GET", "HEAD"):
            return self._api_info(repo, args[0], request)
        if op == "tree" and args and method == "GET":
            return self._api_tree(repo, args[0], "/".join(args[1:]), request)
        if op == "paths-info" and args and method == "POST":
            return self._api_paths_info(repo, args[0], request, body)
        if op == "refs" and method == "GET":
            return self._api_refs(repo)
        if op == "preupload" and args and method == "POST":
            self._require_token(request)
            return self._api_preupload(repo, args[0], json.loads(body or b"{}"))
        if op == "commit" and args and method == "POST":
            self._require_token(request)
            return self._api_commit(repo, args[0], request, body)
        if op == "branch" and args and method in ("POST", "DELETE"):
            self._require_token(request)
            return self._api_branch(repo, args[0], method, json.loads(body or b"{}"))
        if op == "tag" and args and method in ("POST", "DELETE"):
            self._require_token(request)
            return self._api_tag(repo, args[0], method, json.loads(body or b"{}"))
        raise _HttpError(404, f"FakeHub: no route for {method} {request.path}", code="Unhandled")

    # ---- repos

    def _api_create_repo(self, request: HubRequest, payload: dict) -> _Response:
        self._require_token(request)
        repo_type = payload.get("type") or "model"
        if repo_type not in REPO_TYPES:
            raise _HttpError(400, f"Invalid repo type: {repo_type}")
        name, organization = payload["name"], payload.get("organization") or self.hub.username
        repo_id = f"{organization}/{name}"
        private = payload.get("visibility") == "private" or bool(payload.get("private"))
        url = f"{self.hub.url}/{_URL_PREFIX[repo_type]}{repo_id}"
        if (repo_type, repo_id) in self.hub._repos:
            return _json({"error": f"You already created this {repo_type} repo", "url": url}, status=409)
        self.hub.create_repo(repo_id, repo_type=repo_type, private=private)
        return _json({"url": url, "name": repo_id, "id": hashlib.sha1(repo_id.encode()).hexdigest()[:24]})

    def _api_delete_repo(self, request: HubRequest, payload: dict) -> _Response:
        self._require_token(request)
        repo_type = payload.get("type") or "model"
        organization = payload.get("organization") or self.hub.username
        repo_id = f"{organization}/{payload['name']}"
        if (repo_type, repo_id) not in self.hub._repos:
            raise _HttpError(404, "Repository not found", code="RepoNotFound")
        self.hub.delete_repo(repo_id, repo_type=repo_type)
        return _resp(200)

    # ---- read

    def _api_info(self, repo: _Repo, revision: str, request: HubRequest) -> _Response:
        commit = self._commit(repo, revision)
        with_blobs = request.query.get("blobs", ["false"])[0].lower() in ("1", "true")
        siblings = []
        for path, f in sorted(commit.files.items()):
            sibling: dict[str, Any] = {"rfilename": path}
            if with_blobs:
                sibling.update(size=len(f.data), blobId=f.sha1)
                if f.lfs:
                    sibling["lfs"] = {"sha256": f.sha256, "size": len(f.data), "pointerSize": 134}
            siblings.append(sibling)
        namespace = repo.repo_id.split("/")[0] if "/" in repo.repo_id else None
        info: dict[str, Any] = {
            "_id": hashlib.sha1(repo.repo_id.encode()).hexdigest()[:24],
            "id": repo.repo_id,
            "author": namespace,
            "sha": commit.oid,
            "lastModified": commit.date,
            "createdAt": repo.created_at,
            "private": repo.private,
            "gated": repo.gated,
            "disabled": False,
            "downloads": 0,
            "likes": 0,
            "tags": [],
            "siblings": siblings,
            "usedStorage": sum(len(f.data) for f in commit.files.values()),
        }
        if repo.repo_type == "model":
            info["modelId"] = repo.repo_id
        expand = request.query.get("expand") or request.query.get("expand[]")
        if expand:
            info = {k: v for k, v in info.items() if k in {"_id", "id", *expand}}
        return _json(info)

    @staticmethod
    def _entry(path: str, f: _File) -> dict[str, Any]:
        entry: dict[str, Any] = {"type": "file", "oid": f.sha1, "size": len(f.data), "path": path}
        if f.lfs:
            entry["lfs"] = {"oid": f.sha256, "size": len(f.data), "pointerSize": 134}
        return entry

    @staticmethod
    def _folder(path: str, commit: _Commit) -> dict[str, Any]:
        oid = hashlib.sha1(f"{commit.oid}:{path}".encode()).hexdigest()
        return {"type": "directory", "oid": oid, "size": 0, "path": path}

    def _api_tree(self, repo: _Repo, revision: str, path: str, request: HubRequest) -> _Response:
        commit = self._commit(repo, revision)
        recursive = request.query.get("recursive", ["false"])[0].lower() in ("1", "true")
        path = path.strip("/")
        prefix = f"{path}/" if path else ""
        entries: dict[str, dict[str, Any]] = {}
        for fpath, f in sorted(commit.files.items()):
            if not fpath.startswith(prefix):
                continue
            parts = fpath[len(prefix) :].split("/")
            for depth in range(1, len(parts)):  # parent folders below `path`
                if not recursive and depth > 1:
                    break
                folder = prefix + "/".join(parts[:depth])
                entries.setdefault(folder, self._folder(folder, commit))
            if recursive or len(parts) == 1:
                entries[fpath] = self._entry(fpath, f)
        if path and not entries:
            raise _HttpError(
                404, f"Entry not found: {path}", code="EntryNotFound", headers={"X-Repo-Commit": commit.oid}
            )
        return _json(list(entries.values()), headers={"X-Repo-Commit": commit.oid})

    def _api_paths_info(self, repo: _Repo, revision: str, request: HubRequest, body: bytes) -> _Response:
        commit = self._commit(repo, revision)
        ctype = request.headers.get("content-type", "")
        if "json" in ctype:
            paths = json.loads(body or b"{}").get("paths", [])
        else:
            paths = parse_qs(body.decode(), keep_blank_values=True).get("paths", [])
        out = []
        for p in paths:
            p = p.strip("/")
            if p in commit.files:
                out.append(self._entry(p, commit.files[p]))
            elif any(fp.startswith(p + "/") for fp in commit.files):
                out.append(self._folder(p, commit))
        return _json(out)

    def _api_refs(self, repo: _Repo) -> _Response:
        def ref(name: str, full: str) -> dict[str, str]:
            return {"name": name, "ref": full, "targetCommit": repo.refs[name]}

        return _json(
            {
                "branches": [ref(n, f"refs/heads/{n}") for n in repo.refs if n not in repo.tags and "/" not in n],
                "tags": [ref(n, f"refs/tags/{n}") for n in sorted(repo.tags)],
                "converts": [],
                "pullRequests": [ref(n, n) for n in repo.refs if n.startswith("refs/pr/")],
            }
        )

    # ---- write

    def _api_preupload(self, repo: _Repo, revision: str, payload: dict) -> _Response:
        try:
            files = repo.commits[FakeHub._resolve(repo, revision)].files
        except KeyError:
            files = {}  # e.g. a branch about to be created: everything is new
        out = []
        for item in payload.get("files", []):
            existing = files.get(item["path"])
            out.append(
                {
                    "path": item["path"],
                    "uploadMode": "regular",  # never "lfs": no LFS/xet upload protocol needed
                    "shouldIgnore": False,
                    "oid": git_blob_sha1(existing.data) if existing is not None else None,
                }
            )
        return _json({"files": out})

    def _api_commit(self, repo: _Repo, revision: str, request: HubRequest, body: bytes) -> _Response:
        lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        if not lines or lines[0].get("key") != "header":
            raise _HttpError(400, "Commit payload must start with a header line")
        header = lines[0]["value"]
        create_pr = request.query.get("create_pr", ["0"])[0] in ("1", "true")
        parent = self._commit(repo, revision)
        if header.get("parentCommit") and not create_pr and not parent.oid.startswith(header["parentCommit"]):
            raise _HttpError(412, "A commit has happened since. Please refresh and try again.")
        files = dict(parent.files)
        for line in lines[1:]:
            key, value = line["key"], line["value"]
            path = value["path"].strip("/")
            if key == "file":
                raw = value["content"]
                data = base64.b64decode(raw) if value.get("encoding") == "base64" else raw.encode()
                files[path] = _File.make(path, data)
            elif key == "lfsFile":
                blob = self.hub._find_lfs_blob(value["oid"])
                if blob is None:
                    raise _HttpError(400, f"LFS object {value['oid']} not found (FakeHub only accepts regular uploads)")
                files[path] = _File.make(path, blob.data, lfs=True)
            elif key == "deletedFile":
                if path not in files:
                    raise _HttpError(404, f"A file with this name doesn't exist: {path}", code="EntryNotFound")
                del files[path]
            elif key == "deletedFolder":
                for fpath in [p for p in files if p.startswith(path + "/")]:
                    del files[fpath]
            else:
                raise _HttpError(400, f"FakeHub: unsupported commit operation {key!r}")
        commit = self.hub._new_commit(repo, parent.oid, files, header.get("summary") or "commit")
        pr_url = None
        if create_pr:
            repo.n_prs += 1
            repo.refs[f"refs/pr/{repo.n_prs}"] = commit.oid
            pr_url = f"{self.hub._repo_url(repo)}/discussions/{repo.n_prs}"
        else:
            repo.refs[FakeHub._resolve_ref_name(repo, revision)] = commit.oid
        return _json(
            {
                "success": True,
                "commitOid": commit.oid,
                "commitUrl": f"{self.hub._repo_url(repo)}/commit/{commit.oid}",
                "hookOutput": "",
                "pullRequestUrl": pr_url,
            }
        )

    def _api_branch(self, repo: _Repo, branch: str, method: str, payload: dict) -> _Response:
        if method == "DELETE":
            if branch not in repo.refs or branch in repo.tags:
                raise _HttpError(404, f"Invalid rev id: {branch}", code="RevisionNotFound")
            del repo.refs[branch]
            return _resp(200)
        if branch in repo.refs:
            raise _HttpError(409, f"Reference already exists: {branch}")
        start = payload.get("startingPoint") or "main"
        repo.refs[branch] = self._commit(repo, start).oid
        return _resp(200)

    def _api_tag(self, repo: _Repo, revision: str, method: str, payload: dict) -> _Response:
        if method == "DELETE":
            if revision not in repo.tags:
                raise _HttpError(404, f"Invalid rev id: {revision}", code="RevisionNotFound")
            repo.tags.discard(revision)
            del repo.refs[revision]
            return _resp(200)
        tag = payload["tag"]
        if tag in repo.refs:
            raise _HttpError(409, f"Tag reference {tag} already exists")
        repo.refs[tag] = self._commit(repo, revision).oid
        repo.tags.add(tag)
        return _resp(200)


# ------------------------------------------------------------------------------------------------ env / fixtures


def _set_attr(monkeypatch: Any, module_name: str, attr: str, value: Any) -> None:
    """monkeypatch ``module.attr`` only if both exist in the installed huggingface_hub version."""
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return
    if hasattr(module, attr):
        monkeypatch.setattr(module, attr, value)


def _close_hf_session() -> None:
    try:
        from huggingface_hub.utils import close_session  # 1.x / 2.x (httpx)
    except ImportError:  # 0.x (requests)
        try:
            from huggingface_hub.utils import reset_sessions as close_session
        except ImportError:
            return
    close_session()


def set_hf_offline(monkeypatch: Any, offline: bool = True) -> None:
    """Toggle ``HF_HUB_OFFLINE`` the way huggingface_hub sees it: env var AND ``constants.HF_HUB_OFFLINE``."""
    if offline:
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    else:
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    _set_attr(monkeypatch, "huggingface_hub.constants", "HF_HUB_OFFLINE", offline)


def configure_hf_env(monkeypatch: Any, endpoint: str, hf_home: Path, *, disable_xet: bool = True) -> None:
    """Point huggingface_hub (env vars + already-imported constants) at ``endpoint`` and an isolated ``hf_home``.

    See the module docstring for the full list of what is patched and why.
    """
    hf_home = Path(hf_home)
    hub_cache, assets_cache = hf_home / "hub", hf_home / "assets"
    hub_cache.mkdir(parents=True, exist_ok=True)
    env = {
        "HF_ENDPOINT": endpoint,
        "HF_HOME": str(hf_home),
        "HF_HUB_CACHE": str(hub_cache),
        "HF_ASSETS_CACHE": str(assets_cache),
        "HF_XET_CACHE": str(hf_home / "xet"),
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_UPDATE_CHECK": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    }
    if disable_xet:
        env["HF_HUB_DISABLE_XET"] = "1"
    else:
        monkeypatch.delenv("HF_HUB_DISABLE_XET", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    for key in (
        "HF_TOKEN",
        "HUGGING_FACE_HUB_TOKEN",
        "HF_TOKEN_PATH",
        "HUGGINGFACE_HUB_CACHE",
        "HUGGINGFACE_ASSETS_CACHE",
        "HUGGINGFACE_CO_STAGING",
    ):
        monkeypatch.delenv(key, raising=False)
    for key in ("NO_PROXY", "no_proxy"):
        current = os.environ.get(key)
        monkeypatch.setenv(key, ",".join(filter(None, [current, "127.0.0.1", "localhost"])))
    set_hf_offline(monkeypatch, False)

    c = "huggingface_hub.constants"
    endpoint = endpoint.rstrip("/")
    _set_attr(monkeypatch, c, "ENDPOINT", endpoint)
    _set_attr(monkeypatch, c, "HUGGINGFACE_CO_URL_TEMPLATE", endpoint + "/{repo_id}/resolve/{revision}/{filename}")
    hosts = getattr(importlib.import_module(c), "HF_URL_HOSTS", None)
    if hosts is not None:
        _set_attr(monkeypatch, c, "HF_URL_HOSTS", frozenset(hosts) | {urlsplit(endpoint).hostname})
    for attr, value in {
        "HF_HOME": str(hf_home),
        "HF_HUB_CACHE": str(hub_cache),
        "HUGGINGFACE_HUB_CACHE": str(hub_cache),
        "HF_ASSETS_CACHE": str(assets_cache),
        "HUGGINGFACE_ASSETS_CACHE": str(assets_cache),
        "HF_XET_CACHE": str(hf_home / "xet"),
        "HF_TOKEN_PATH": str(hf_home / "token"),
        "HF_STORED_TOKENS_PATH": str(hf_home / "stored_tokens"),
        "AGENT_HARNESSES_PATH": str(hf_home / ".agent_harnesses.json"),
        "CHECK_FOR_UPDATE_DONE_PATH": str(hf_home / ".check_for_update_done"),
        "CHECK_FOR_SKILL_UPDATE_DONE_PATH": str(hf_home / ".check_for_skill_update_done"),
        "HF_HUB_DISABLE_TELEMETRY": True,
        "HF_HUB_DISABLE_UPDATE_CHECK": True,
        "HF_HUB_DISABLE_PROGRESS_BARS": True,
        "HF_HUB_DISABLE_XET": disable_xet,
    }.items():
        _set_attr(monkeypatch, c, attr, value)
    # Copies made by `from ..constants import X` at import time.
    _set_attr(monkeypatch, "huggingface_hub.utils._cache_manager", "HF_HUB_CACHE", str(hub_cache))
    _set_attr(monkeypatch, "huggingface_hub.utils._cache_assets", "HF_ASSETS_CACHE", str(assets_cache))
    _set_attr(monkeypatch, "huggingface_hub.utils.tqdm", "HF_HUB_DISABLE_PROGRESS_BARS", True)
    # The module-level HfApi() behind `huggingface_hub.create_repo`, `upload_folder`, ... froze ENDPOINT.
    with contextlib.suppress(ImportError):
        from huggingface_hub import hf_api

        if hasattr(hf_api, "api"):
            monkeypatch.setattr(hf_api.api, "endpoint", endpoint)


def serving_hub(monkeypatch: Any, tmp_path: Path, *, disable_xet: bool = True, **hub_kwargs: Any) -> Iterator[FakeHub]:
    """Generator for a pytest fixture: start a FakeHub, point huggingface_hub at it, yield it, clean up.

    ``@pytest.fixture`` + ``def hub(monkeypatch, tmp_path): yield from serving_hub(monkeypatch, tmp_path)``.
    The HF cache is ``tmp_path / "hf_home" / "hub"``. ``hub_kwargs`` go to ``FakeHub(...)`` (``tokens=``...).
    """
    with FakeHub.serve(**hub_kwargs) as hub:
        configure_hf_env(monkeypatch, hub.url, tmp_path / "hf_home", disable_xet=disable_xet)
        _close_hf_session()  # fresh httpx2 client: re-reads NO_PROXY, no pooled connection to an old server
        try:
            yield hub
        finally:
            _close_hf_session()
