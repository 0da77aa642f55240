"""Reaching the Hugging Face Hub: one-line :class:`~mura_cli.errors.HubError` messages and a fast pre-flight.

An unreachable Hub fails fast, in one line: ``huggingface_hub`` (2.x) retries a failed download up to five times
with backoff (its second metadata attempt, ``retry_on_errors=True``, 60 s timeout; no setting turns that off), which
is 25-50 s of waiting for a connection that was refused or a host name that does not resolve. So
:func:`~mura_cli.models.hub.hub_download` first asks :func:`hub_unreachable`, which opens one TCP connection to
``HF_ENDPOINT`` (or to the proxy that applies to it), with ``HF_HUB_ETAG_TIMEOUT`` as the timeout; when that fails
it serves the file from the cache or raises :class:`HubError` at once. ``huggingface_hub``'s retry warnings are
silenced during our calls (:func:`quiet_hub`, unless ``HF_HUB_VERBOSITY`` is set or ``mura -v`` is on): the error
line says what happened. :func:`hub_call` turns huggingface_hub's exceptions into :class:`HubError`, whatever HTTP
library it runs on.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
import sys
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import urlsplit

from mura_cli.errors import HubError
from mura_cli.utils import short_error as _short

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


def hub_endpoint() -> str:
    from huggingface_hub import constants

    return constants.ENDPOINT


def hub_call(what: str, fn: Callable[[], T], hint: HubHint, unreachable: str | None = None) -> T:
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
            f"{what}: not in the local cache and the Hub at {hub_endpoint()} cannot be reached ({why}); "
            f"{hint.unreachable}"
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
                f"{what}: could not reach the Hub at {hub_endpoint()} ({_network_reason(exc)}); {hint.unreachable}"
            ) from None
        if isinstance(exc, OSError | ValueError):  # cache folder not writable, disk full, bad arguments
            raise HubError(f"{what}: {_short(exc)}") from None
        raise


@contextlib.contextmanager
def quiet_hub() -> Iterator[None]:
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
