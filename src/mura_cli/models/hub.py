"""Weights on disk and on the Hugging Face Hub: safetensors only, never a pickle.

- ImageNet backbone weights: :func:`load_backbone_weights` (``--weights``: ``default`` = timm's Hub repo for
  the arch, ``hf-hub:org/name``, a local folder or ``.safetensors`` file, or ``none``).
- Our fine-tuned models in the Hub layout (``model.safetensors`` + ``config.json`` + ``README.md``, written and
  read by :mod:`mura_cli.models.checkpoint`): :func:`resolve_model_folder` / :func:`load_model` (run folder,
  local folder or Hub repo) and :func:`push_to_hub`.

Downloads go through ``huggingface_hub`` into its standard cache, so ``HF_HOME``, ``HF_HUB_CACHE``,
``HF_HUB_OFFLINE``, ``HF_ENDPOINT`` and ``HF_TOKEN`` behave as everywhere else.

An unreachable Hub fails fast, in one line (see :mod:`mura_cli.models.hub_errors`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from mura_cli.errors import ModelError
from mura_cli.models.checkpoint import (
    UNSAFE_SUFFIXES,
    ModelConfig,
    load_backbone_state,
    load_run_model,
    read_weights,
)
from mura_cli.models.checkpoint import LoadReport as LoadReport
from mura_cli.models.hub_errors import MODEL_HINT as MODEL_HINT
from mura_cli.models.hub_errors import PUSH_HINT as PUSH_HINT
from mura_cli.models.hub_errors import WEIGHTS_HINT as WEIGHTS_HINT
from mura_cli.models.hub_errors import HubHint as HubHint
from mura_cli.models.hub_errors import hub_call, hub_endpoint, quiet_hub
from mura_cli.models.hub_errors import hub_unreachable as hub_unreachable
from mura_cli.models.run_folder import CONFIG_NAME as CONFIG_NAME
from mura_cli.models.run_folder import HUB_FILES, RunFolder
from mura_cli.models.run_folder import WEIGHTS_NAME as WEIGHTS_NAME

if TYPE_CHECKING:  # torch only where a network is built: resolving a model folder does not need it
    from mura_cli.models.registry import MuraNet

log = logging.getLogger(__name__)


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

    from mura_cli._version import __version__

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

    with quiet_hub():
        if not constants.HF_HUB_OFFLINE:
            why = hub_unreachable()
            if why is not None:
                log.info("the Hub at %s cannot be reached (%s); looking for %s in the cache", hub_endpoint(), why, what)
                return hub_call(what, lambda: download(True), hint, unreachable=why)
        return hub_call(what, lambda: download(False), hint)


def resolve_weights_file(source: str, arch: str) -> Path | None:
    """Where the backbone weights for ``source`` are: a local ``.safetensors`` file, or ``None`` for ``none``."""
    src = (source or "default").strip()
    if src.lower() == "none":
        return None
    if src.lower() == "default":
        from mura_cli.models.registry import pretrained_cfg

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
        if p.suffix.lower() in UNSAFE_SUFFIXES:
            raise ModelError(f"{p}: pickled weights are never loaded (they can run code); convert to .safetensors")
        return p
    if _is_repo_id(src):
        raise ModelError(f"--weights {src}: not a local path; did you mean hf-hub:{src}?")
    raise ModelError(f"--weights {src}: expected default, hf-hub:org/name, a folder, a .safetensors file or none")


def load_backbone_weights(model: MuraNet, source: str = "default") -> LoadReport:
    """Load ImageNet weights from ``source`` (see :func:`resolve_weights_file`) into ``model.backbone``.

    Raises:
        ModelError: when the weights do not fit the architecture.
        HubError: when a download fails.
    """
    path = resolve_weights_file(source, model.arch)
    if path is None:
        return LoadReport(source="none", file=None, loaded=0, missing=(), unexpected=())
    return load_backbone_state(model, read_weights(path), source=source, file=str(path))


# ------------------------------------------------------------------------------------------ our models


def _hub_repo_for(source: str) -> str | None:
    """The Hub repo id that a ``--model`` value names, or None when it is a local path (see load_model)."""
    if source.startswith("hf-hub:"):
        return source[len("hf-hub:") :]
    if not _is_repo_id(source) or "\\" in source or ":" in source:
        return None
    if Path(source).expanduser().exists() or Path(source.split("/")[0]).is_dir():
        return None  # `runs/nope` when ./runs is a folder: a mistyped run folder, not the Hub repo "runs/nope"
    return source


def resolve_model_folder(source: str | Path, *, hint: HubHint = MODEL_HINT) -> Path:
    """The local folder holding the model that ``source`` names, downloading it from the Hub when needed.

    ``source`` is one of:

    - ``hf-hub:org/name``: always the Hub repo ``org/name`` (its config and weights, into the Hub cache);
    - a local folder with ``model.safetensors`` + ``config.json`` (a run folder, or a downloaded repo);
    - ``org/name``: the Hub repo, but only when no such local path exists, it does not look like a path (starts
      with ``.``, ``/`` or ``~``) and its first component is not an existing local folder: with ``./runs`` present,
      ``runs/nope`` is a mistyped run folder, reported as ``runs/nope: no such run folder`` without asking the Hub.

    Anything else is a local path that does not exist (:class:`ModelError`). A pickled ``.bin``/``.pt``/``.pth``
    file is never taken, locally or from the Hub.

    Raises:
        ModelError: no such folder, a file instead of a folder, or a Hub config that is not a mura model config.
        HubError: the Hub repo cannot be fetched (``hint`` is the advice in the message).
    """
    src = str(source)
    repo = _hub_repo_for(src)
    if repo is not None:
        ModelConfig.from_json(hub_download(repo, CONFIG_NAME, hint=hint))  # a bad config fails before the download
        return hub_download(repo, WEIGHTS_NAME, hint=hint).parent
    p = Path(src).expanduser()
    if p.is_file():
        if p.suffix.lower() in UNSAFE_SUFFIXES:
            raise ModelError(f"{src}: pickled weights are never loaded (they can run code); pass a run folder")
        raise ModelError(f"{src}: a file, not a run folder; pass the folder that holds {WEIGHTS_NAME} and config")
    if not p.is_dir():
        also = f", or write hf-hub:{src} if you meant a Hub repo" if _is_repo_id(src) else ""
        raise ModelError(f"{src}: no such run folder; check the path (`mura train` saves runs as runs/NAME){also}")
    return p


def load_model(
    source: str | Path, map_location: str = "cpu", *, hint: HubHint = MODEL_HINT
) -> tuple[MuraNet, ModelConfig]:
    """Load one of our models from a run folder, a local folder or a Hub repo (see :func:`resolve_model_folder`).

    Returns ``(model in eval mode, its config)``. Only safetensors are read.

    Raises:
        ModelError: no such folder, no config/weights in it, or weights that do not fit.
        HubError: the Hub repo cannot be fetched.
    """
    return load_run_model(resolve_model_folder(source, hint=hint), map_location)


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
    if RunFolder(src).is_ensemble:
        raise ModelError(
            f"{src}: a --folds ensemble; push one member (mura push {RunFolder(src).fold(1)} ORG/NAME), or each to "
            "its own repo"
        )
    for name in (WEIGHTS_NAME, CONFIG_NAME):
        if not (src / name).is_file():
            raise ModelError(f"{src}: no {name}; train first (mura train) or pass a run folder")
    api = HfApi(token=token)
    with quiet_hub():
        hub_call(f"create {repo_id}", lambda: api.create_repo(repo_id, private=private, exist_ok=True), PUSH_HINT)
        info = hub_call(
            f"upload to {repo_id}",
            lambda: api.upload_folder(
                repo_id=repo_id,
                folder_path=str(src),
                commit_message=commit_message,
                allow_patterns=list(HUB_FILES),
            ),
            PUSH_HINT,
        )
    return str(getattr(info, "commit_url", None) or f"{repo_id}")
