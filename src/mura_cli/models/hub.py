"""Weights on disk and on the Hugging Face Hub: safetensors only, never a pickle.

- ImageNet backbone weights: :func:`load_backbone_weights` (``--weights``: ``default`` = timm's Hub repo for
  the arch, ``hf-hub:org/name``, a local folder or ``.safetensors`` file, or ``none``).
- Our fine-tuned models in the Hub layout (``model.safetensors`` + ``config.json`` + ``README.md``):
  :func:`save_pretrained`, :func:`load_pretrained` (run folder, local folder or Hub repo) and
  :func:`push_to_hub`.

Downloads go through ``huggingface_hub`` into its standard cache, so ``HF_HOME``, ``HF_HUB_CACHE``,
``HF_HUB_OFFLINE``, ``HF_ENDPOINT`` and ``HF_TOKEN`` behave as everywhere else.

An unreachable Hub fails fast, in one line: ``huggingface_hub`` (2.x) retries a failed download up to five times
with backoff (its second metadata attempt, ``retry_on_errors=True``, 60 s timeout; no setting turns that off), which
is 25-50 s of waiting for a connection that was refused or a host name that does not resolve. So
:func:`hub_download` first opens one TCP connection to ``HF_ENDPOINT`` (or to the proxy that applies to it), with
``HF_HUB_ETAG_TIMEOUT`` as the timeout; when that fails it serves the file from the cache or raises
:class:`HubError` at once. ``huggingface_hub``'s retry warnings are silenced during our calls (unless
``HF_HUB_VERBOSITY`` is set or ``mura -v`` is on): the error line says what happened.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import socket
import sys
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import torch

from mura_cli.errors import HubError, ModelError

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
_UNSAFE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".ckpt")
log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class HubHint:
    """What to tell the user when the Hub fails, for what was being fetched.

    ``unreachable`` ends a "could not reach the Hub" message (the ways out); ``offline`` ends an
    "HF_HUB_OFFLINE is set and the file is not cached" message.
    """

    unreachable: str
    offline: str


WEIGHTS_HINT = HubHint(  # ImageNet backbone weights for `mura train` (which has --weights)
    unreachable="set HF_HUB_OFFLINE=1 to use cached files, point HF_ENDPOINT at a mirror, "
    "or train from scratch with --weights none",
    offline="unset HF_HUB_OFFLINE to download them, or train from scratch with --weights none",
)
MODEL_HINT = HubHint(  # a fine-tuned model for `mura predict` / `mura localize` (--model)
    unreachable="pass a local run folder with --model, set HF_HUB_OFFLINE=1 to use the cache, "
    "or point HF_ENDPOINT at a mirror",
    offline="unset HF_HUB_OFFLINE to download it, or pass a local run folder with --model",
)
PUSH_HINT = HubHint(  # `mura push`
    unreachable="check the network connection and HF_ENDPOINT, then push again",
    offline="unset HF_HUB_OFFLINE to push",
)


@dataclass(frozen=True)
class LoadReport:
    """What loading backbone weights did."""

    source: str
    file: str | None
    loaded: int
    missing: tuple[str, ...]
    unexpected: tuple[str, ...]


# ------------------------------------------------------------------------------------------ errors


_HTTP_LIBRARIES = frozenset({"httpx", "httpx2", "httpcore", "requests", "urllib3", "aiohttp", "h11", "h2"})
_NETWORK_NAME = re.compile(r"Connect|Timeout|Network|Transport|Proxy|Protocol|Unreachable|Resolution|SSL")
# Base classes of transport errors, looked up only in HTTP libraries that are already imported.
_TRANSPORT_BASES = (
    ("httpx2", "TransportError"),
    ("httpx", "TransportError"),
    ("httpcore", "NetworkError"),
    ("httpcore", "TimeoutException"),
    ("requests", "ConnectionError"),
    ("requests", "Timeout"),
    ("urllib3.exceptions", "ProtocolError"),
    ("urllib3.exceptions", "NewConnectionError"),
)


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and the exceptions it was raised from or while handling."""
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        yield e
        e = e.__cause__ or e.__context__


def _is_network_error(exc: BaseException) -> bool:
    """True when ``exc`` (or what caused it) says the Hub could not be reached: refused, DNS, timeout, proxy...

    Independent of the HTTP library under ``huggingface_hub`` (requests in 0.x, httpx in 1.x, httpx2 in 2.x): stdlib
    socket errors, the transport-error base classes of whichever of those libraries is imported, and as a last resort
    the class names of exceptions that come from an HTTP library.
    """
    bases = tuple(
        cls
        for mod, name in _TRANSPORT_BASES
        if (module := sys.modules.get(mod)) is not None and isinstance(cls := getattr(module, name, None), type)
    )
    for e in _chain(exc):
        if isinstance(e, ConnectionError | TimeoutError | socket.gaierror | socket.herror) or (
            bases and isinstance(e, bases)
        ):
            return True
        for cls in type(e).__mro__:
            if cls.__module__.split(".")[0] in _HTTP_LIBRARIES and _NETWORK_NAME.search(cls.__name__):
                return True
    return False


def _network_reason(exc: BaseException) -> str:
    """A few words on why a connection failed: "connection refused", "host name not found", "timed out"..."""
    for e in _chain(exc):
        text = str(e).lower()
        if isinstance(e, socket.gaierror) or any(
            s in text
            for s in ("name or service not known", "name resolution", "nodename nor servname", "getaddrinfo failed")
        ):
            return "host name not found"
        if isinstance(e, ConnectionRefusedError) or "connection refused" in text:
            return "connection refused"
        if isinstance(e, TimeoutError) or "Timeout" in type(e).__name__ or "timed out" in text:
            return "timed out"
        if "Proxy" in type(e).__name__:
            return f"proxy error: {_short(e)}"
    return _short(exc)


def _short(exc: BaseException) -> str:
    msg = " ".join(str(exc).split()) or type(exc).__name__
    msg = re.sub(r"\[Errno -?\d+\]\s*", "", msg)  # "[Errno 111] Connection refused" -> "Connection refused"
    return msg[:200] + ("..." if len(msg) > 200 else "")


def _endpoint() -> str:
    from huggingface_hub import constants

    return constants.ENDPOINT


def _hub_call(what: str, fn: Callable[[], T], hint: HubHint, unreachable: str | None = None) -> T:
    """Run a huggingface_hub call, turning its errors into one-line :class:`HubError` messages.

    ``hint`` says what the user can do instead (it depends on what was being fetched); ``unreachable`` is the
    pre-flight's reason when the call was a cache-only look-up because the Hub cannot be reached.
    Exceptions that are neither Hub, network nor bad-argument errors are bugs and propagate.
    """
    from huggingface_hub import constants
    from huggingface_hub import errors as hf_errors

    try:
        return fn()
    except hf_errors.OfflineModeIsEnabled:
        raise HubError(f"{what}: HF_HUB_OFFLINE is set and the file is not cached; {hint.offline}") from None
    except hf_errors.LocalEntryNotFoundError as exc:  # a subclass of EntryNotFoundError: test it first
        if constants.HF_HUB_OFFLINE:
            raise HubError(f"{what}: HF_HUB_OFFLINE is set and the file is not in the cache; {hint.offline}") from None
        why = unreachable or _network_reason(exc.__cause__ or exc)
        raise HubError(
            f"{what}: not in the local cache and the Hub at {_endpoint()} cannot be reached ({why}); {hint.unreachable}"
        ) from None
    except hf_errors.GatedRepoError:
        raise HubError(f"{what}: the repo is gated; accept its terms on the Hub and set HF_TOKEN") from None
    except hf_errors.RepositoryNotFoundError:
        raise HubError(f"{what}: no such repo on the Hub (or it is private: set HF_TOKEN); check the name") from None
    except hf_errors.RevisionNotFoundError:
        raise HubError(f"{what}: no such revision in the repo") from None
    except hf_errors.EntryNotFoundError:
        raise HubError(
            f"{what}: no such file in the repo (mura only loads safetensors, never pickled .bin/.pth files)"
        ) from None
    except hf_errors.HfHubHTTPError as exc:
        raise HubError(f"{what}: the Hub answered with an error ({_short(exc)}); {hint.unreachable}") from None
    except hf_errors.HFValidationError as exc:
        raise HubError(f"{what}: not a valid Hub repo id ({_short(exc)}); use org/name") from None
    except Exception as exc:
        if _is_network_error(exc):  # httpx2.ConnectError & co. from create_repo/upload_folder, whatever the library
            raise HubError(
                f"{what}: could not reach the Hub at {_endpoint()} ({_network_reason(exc)}); {hint.unreachable}"
            ) from None
        if isinstance(exc, OSError | ValueError):  # cache folder not writable, disk full, bad arguments
            raise HubError(f"{what}: {_short(exc)}") from None
        raise


@contextlib.contextmanager
def _quiet_hub() -> Iterator[None]:
    """Silence huggingface_hub's warnings ("Retrying in 1s [Retry 1/5]"...) while we call it: our error line says
    what happened. Left alone when the user asked for them: ``HF_HUB_VERBOSITY`` set, or ``mura -v`` (INFO logging).
    """
    from huggingface_hub.utils import logging as hf_logging

    if os.environ.get("HF_HUB_VERBOSITY") or logging.getLogger().isEnabledFor(logging.INFO):
        yield
        return
    before = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(before)


# ------------------------------------------------------------------------------------------ pre-flight

_DEFAULT_PORTS = {"http": 80, "https": 443, "socks5": 1080, "socks5h": 1080, "socks4": 1080}


def _connect_target(endpoint: str) -> tuple[str, str, int] | None:
    """``(what, host, port)`` that a request to ``endpoint`` connects to first: the endpoint itself, or the proxy
    that applies to it (``HTTPS_PROXY``/``HTTP_PROXY``/``ALL_PROXY`` minus ``NO_PROXY``). None when unknown."""
    url = urlsplit(endpoint)
    host, scheme = url.hostname, url.scheme.lower()
    if not host or scheme not in ("http", "https"):
        return None
    proxies = urllib.request.getproxies()
    proxy = proxies.get(scheme) or proxies.get("all")
    if proxy and not urllib.request.proxy_bypass(host):
        purl = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        port = purl.port or _DEFAULT_PORTS.get(purl.scheme.lower())
        return ("the proxy", purl.hostname, port) if purl.hostname and port else None
    return ("the Hub", host, url.port or _DEFAULT_PORTS[scheme])


def hub_unreachable(endpoint: str | None = None, timeout: float | None = None) -> str | None:
    """Why the Hub at ``endpoint`` (default ``HF_ENDPOINT``) cannot be reached at all, or None if it can.

    One TCP connection (to the proxy, if one applies), ``timeout`` defaulting to ``HF_HUB_ETAG_TIMEOUT``: a host
    name that does not resolve, a refused connection, an unreachable network or no answer within the timeout are
    not worth huggingface_hub's five retries. HTTP-level trouble (5xx, 429) is left to huggingface_hub's retries.
    """
    from huggingface_hub import constants

    target = _connect_target(endpoint or constants.ENDPOINT)
    if target is None:
        return None
    what, host, port = target
    wait = float(timeout if timeout is not None else constants.HF_HUB_ETAG_TIMEOUT)
    try:
        socket.create_connection((host, port), timeout=wait).close()
    except socket.gaierror:
        return f"host name {host} not found" if what == "the Hub" else f"proxy host name {host} not found"
    except ConnectionRefusedError:
        return "connection refused" if what == "the Hub" else f"connection to the proxy {host}:{port} refused"
    except TimeoutError:
        return f"no answer from {what.removeprefix('the ')} {host}:{port} within {wait:g} s"
    except OSError as exc:  # network unreachable, no route to host...
        return f"{host}:{port}: {exc.strerror or _short(exc)}"
    return None


# ------------------------------------------------------------------------------------------ downloads


def _is_repo_id(source: str) -> bool:
    parts = source.split("/")
    return len(parts) == 2 and all(parts) and not source.startswith((".", "/", "~"))


def hub_download(repo_id: str, filename: str, revision: str | None = None, *, hint: HubHint = WEIGHTS_HINT) -> Path:
    """Download one file of a Hub model repo into the standard cache (or take it from there).

    When the Hub cannot be reached at all (see :func:`hub_unreachable`), the cached copy is used if there is one,
    else :class:`HubError` is raised at once, without huggingface_hub's retries. ``hint`` is the advice in error
    messages: :data:`WEIGHTS_HINT` (backbone weights, ``mura train``) or :data:`MODEL_HINT` (``--model``).
    """
    from huggingface_hub import constants, hf_hub_download

    from mura_cli import __version__

    what = f"hf-hub:{repo_id}/{filename}"

    def download(local_only: bool) -> Path:
        return Path(
            hf_hub_download(
                repo_id,
                filename,
                revision=revision,
                local_files_only=local_only,
                library_name="mura-cli",
                library_version=__version__,
            )
        )

    with _quiet_hub():
        if not constants.HF_HUB_OFFLINE:
            why = hub_unreachable()
            if why is not None:
                log.info("the Hub at %s cannot be reached (%s); looking for %s in the cache", _endpoint(), why, what)
                return _hub_call(what, lambda: download(True), hint, unreachable=why)
        return _hub_call(what, lambda: download(False), hint)


def resolve_weights_file(source: str, arch: str) -> Path | None:
    """Where the backbone weights for ``source`` are: a local ``.safetensors`` file, or ``None`` for ``none``."""
    from mura_cli.models.registry import pretrained_cfg

    src = (source or "default").strip()
    if src.lower() == "none":
        return None
    if src.lower() == "default":
        repo = pretrained_cfg(arch).get("hf_hub_id")
        if not repo:
            raise ModelError(f"{arch}: timm has no Hub weights for it; pass --weights hf-hub:org/name, a file, or none")
        return hub_download(repo.rstrip("/"), WEIGHTS_NAME)
    if src.startswith("hf-hub:"):
        return hub_download(src[len("hf-hub:") :], WEIGHTS_NAME)
    p = Path(src).expanduser()
    if p.is_dir():
        p = p / WEIGHTS_NAME
        if not p.is_file():
            raise ModelError(f"{src}: the folder has no {WEIGHTS_NAME}")
        return p
    if p.is_file():
        if p.suffix.lower() in _UNSAFE_SUFFIXES:
            raise ModelError(f"{p}: pickled weights are never loaded (they can run code); convert to .safetensors")
        return p
    if _is_repo_id(src):
        raise ModelError(f"--weights {src}: not a local path; did you mean hf-hub:{src}?")
    raise ModelError(f"--weights {src}: expected default, hf-hub:org/name, a folder, a .safetensors file or none")


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelError(f"{path}: not a readable safetensors file ({_short(exc)})") from None


def load_backbone_weights(model: Any, source: str = "default") -> LoadReport:
    """Load ImageNet weights into ``model.backbone`` (the classifier of the source is dropped).

    Raises:
        ModelError: when the weights do not fit the architecture.
        HubError: when a download fails.
    """
    path = resolve_weights_file(source, model.arch)
    if path is None:
        return LoadReport(source="none", file=None, loaded=0, missing=(), unexpected=())
    state = _read_safetensors(path)
    if any(k.startswith("backbone.") for k in state):  # one of our own MuraNet checkpoints
        state = {k[len("backbone.") :]: v for k, v in state.items() if k.startswith("backbone.")}
    own = model.backbone.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not usable:
        raise ModelError(f"{path}: none of its tensors fit {model.arch}; are these weights for another arch?")
    missing = tuple(k for k in own if k not in usable)
    unexpected = tuple(k for k in state if k not in usable)
    if len(missing) > 0.1 * len(own):
        raise ModelError(
            f"{path}: {len(missing)} of {len(own)} backbone tensors missing or mis-shaped for "
            f"{model.arch} (e.g. {', '.join(missing[:3])}); are these weights for another arch?"
        )
    model.backbone.load_state_dict(usable, strict=False)
    return LoadReport(source=source, file=str(path), loaded=len(usable), missing=missing, unexpected=unexpected)


# ------------------------------------------------------------------------------------------ our models


def save_pretrained(model: Any, folder: str | Path, config: dict[str, Any], filename: str = WEIGHTS_NAME) -> Path:
    """Write ``model``'s weights as safetensors and ``config.json`` (the Hub layout) into ``folder``."""
    from safetensors.torch import save_file

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    tmp = out / (filename + ".tmp")
    save_file(state, str(tmp), metadata={"format": "pt", "arch": str(config.get("arch", ""))})
    tmp.replace(out / filename)
    if filename == WEIGHTS_NAME:
        (out / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")
    return out / filename


def read_model_config(folder: Path) -> dict[str, Any]:
    p = folder / CONFIG_NAME
    try:
        cfg = json.loads(p.read_text())
    except FileNotFoundError:
        raise ModelError(f"{folder}: no {CONFIG_NAME}; is this a mura run folder or model repo?") from None
    except json.JSONDecodeError as exc:
        raise ModelError(f"{p}: damaged ({exc.msg}); re-download or re-train") from None
    if "arch" not in cfg:
        raise ModelError(f"{p}: not a mura model config (no 'arch'); was it written by mura-cli?")
    return cfg


def _hub_repo_for(source: str) -> str | None:
    """The Hub repo id that a ``--model`` value names, or None when it is a local path (see load_pretrained)."""
    if source.startswith("hf-hub:"):
        return source[len("hf-hub:") :]
    if not _is_repo_id(source) or "\\" in source or ":" in source:
        return None
    if Path(source).expanduser().exists() or Path(source.split("/")[0]).is_dir():
        return None  # `runs/nope` when ./runs is a folder: a mistyped run folder, not the Hub repo "runs/nope"
    return source


def load_pretrained(
    source: str | Path, map_location: str = "cpu", *, hint: HubHint = MODEL_HINT
) -> tuple[Any, dict[str, Any]]:
    """Load one of our models. Returns ``(model in eval mode, config dict)``.

    ``source`` is one of:

    - ``hf-hub:org/name``: always the Hub repo ``org/name``;
    - a local folder with ``model.safetensors`` + ``config.json`` (a run folder, or a downloaded repo);
    - ``org/name``: the Hub repo, but only when no such local path exists, it does not look like a path (starts
      with ``.``, ``/`` or ``~``) and its first component is not an existing local folder: with ``./runs`` present,
      ``runs/nope`` is a mistyped run folder, reported as ``runs/nope: no such run folder`` without asking the Hub.

    Anything else is a local path that does not exist (:class:`ModelError`). Only safetensors are read: a pickled
    ``.bin``/``.pt``/``.pth`` file is never loaded, locally or from the Hub.

    Raises:
        ModelError: no such folder, no config/weights in it, or weights that do not fit.
        HubError: the Hub repo cannot be fetched (``hint`` is the advice in the message).
    """
    from mura_cli.models.registry import MuraNet

    src = str(source)
    repo = _hub_repo_for(src)
    if repo is not None:
        cfg_path = hub_download(repo, CONFIG_NAME, hint=hint)
        cfg = read_model_config(cfg_path.parent)
        weights = hub_download(repo, WEIGHTS_NAME, hint=hint)
    else:
        p = Path(src).expanduser()
        if p.is_file():
            if p.suffix.lower() in _UNSAFE_SUFFIXES:
                raise ModelError(f"{src}: pickled weights are never loaded (they can run code); pass a run folder")
            raise ModelError(f"{src}: a file, not a run folder; pass the folder that holds {WEIGHTS_NAME} and config")
        if not p.is_dir():
            also = f", or write hf-hub:{src} if you meant a Hub repo" if _is_repo_id(src) else ""
            raise ModelError(f"{src}: no such run folder; check the path (`mura train` saves runs as runs/NAME){also}")
        weights = p / WEIGHTS_NAME
        cfg = read_model_config(p)
    if not weights.is_file():
        raise ModelError(f"{weights}: missing; the run has not saved a best model yet")
    model = MuraNet(cfg["arch"], dropout=float(cfg.get("dropout", 0.0)))
    state = _read_safetensors(weights)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ModelError(f"{weights}: does not fit {cfg['arch']} ({_short(exc)})") from None
    return model.to(map_location).eval(), cfg


def push_to_hub(
    folder: str | Path,
    repo_id: str,
    *,
    token: str | None = None,
    private: bool = False,
    commit_message: str = "Upload mura-cli model",
) -> str:
    """Upload a folder in the Hub layout (``model.safetensors``, ``config.json``, ``README.md``); returns its URL.

    Raises:
        ModelError: the folder has no model or config.
        HubError: the Hub cannot be reached (whatever HTTP library huggingface_hub uses) or refuses the upload.
    """
    from huggingface_hub import HfApi

    src = Path(folder)
    for name in (WEIGHTS_NAME, CONFIG_NAME):
        if not (src / name).is_file():
            raise ModelError(f"{src}: no {name}; train first (mura train) or pass a run folder")
    api = HfApi(token=token)
    with _quiet_hub():
        _hub_call(f"create {repo_id}", lambda: api.create_repo(repo_id, private=private, exist_ok=True), PUSH_HINT)
        info = _hub_call(
            f"upload to {repo_id}",
            lambda: api.upload_folder(
                repo_id=repo_id,
                folder_path=str(src),
                commit_message=commit_message,
                allow_patterns=[WEIGHTS_NAME, CONFIG_NAME, "README.md", "metrics.csv", "curves.png"],
            ),
            PUSH_HINT,
        )
    return str(getattr(info, "commit_url", None) or f"{repo_id}")
