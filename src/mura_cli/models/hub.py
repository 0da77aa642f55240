"""Weights on disk and on the Hugging Face Hub: safetensors only, never a pickle.

- ImageNet backbone weights: :func:`load_backbone_weights` (``--weights``: ``default`` = timm's Hub repo for
  the arch, ``hf-hub:org/name``, a local folder or ``.safetensors`` file, or ``none``).
- Our fine-tuned models in the Hub layout (``model.safetensors`` + ``config.json`` + ``README.md``):
  :func:`save_pretrained`, :func:`load_pretrained` (run folder, local folder or Hub repo) and
  :func:`push_to_hub`.

Downloads go through ``huggingface_hub`` into its standard cache, so ``HF_HOME``, ``HF_HUB_CACHE``,
``HF_HUB_OFFLINE``, ``HF_ENDPOINT`` and ``HF_TOKEN`` behave as everywhere else.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch

from mura_cli.errors import HubError, ModelError

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
_UNSAFE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".ckpt")
_HUB_HINT = (
    "if the Hub is unreachable, set HF_HUB_OFFLINE=1 to use cached files, point HF_ENDPOINT at a mirror, "
    "or train from scratch with --weights none"
)
log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class LoadReport:
    """What loading backbone weights did."""

    source: str
    file: str | None
    loaded: int
    missing: tuple[str, ...]
    unexpected: tuple[str, ...]


def _hub_call(what: str, fn: Callable[[], T]) -> T:
    """Run a huggingface_hub call, turning its errors into one-line :class:`HubError` messages."""
    from huggingface_hub import errors as hf_errors

    try:
        return fn()
    except hf_errors.OfflineModeIsEnabled:
        raise HubError(
            f"{what}: HF_HUB_OFFLINE is set and the file is not cached; unset it or use --weights none"
        ) from None
    except hf_errors.LocalEntryNotFoundError as exc:  # a subclass of EntryNotFoundError: test it first
        from huggingface_hub import constants

        if constants.HF_HUB_OFFLINE:
            raise HubError(
                f"{what}: HF_HUB_OFFLINE is set and the file is not in the cache; unset HF_HUB_OFFLINE "
                "to download it, or use --weights none"
            ) from None
        raise HubError(
            f"{what}: not in the local cache and the Hub could not be reached at {constants.ENDPOINT} "
            f"({_short(exc)}); {_HUB_HINT}"
        ) from None
    except hf_errors.GatedRepoError:
        raise HubError(f"{what}: the repo is gated; accept its terms on the Hub and set HF_TOKEN") from None
    except hf_errors.RepositoryNotFoundError:
        raise HubError(f"{what}: no such repo on the Hub (or it is private: set HF_TOKEN); check the name") from None
    except hf_errors.RevisionNotFoundError:
        raise HubError(f"{what}: no such revision in the repo") from None
    except hf_errors.EntryNotFoundError:
        raise HubError(
            f"{what}: the repo has no {WEIGHTS_NAME} (mura only loads safetensors, never pickled .bin/.pth files)"
        ) from None
    except hf_errors.HfHubHTTPError as exc:
        raise HubError(f"{what}: the Hub answered with an error ({_short(exc)}); {_HUB_HINT}") from None
    except (OSError, ValueError) as exc:  # connection errors, bad repo ids
        raise HubError(f"{what}: {_short(exc)}; {_HUB_HINT}") from None


def _short(exc: BaseException) -> str:
    msg = " ".join(str(exc).split())
    return msg[:200] + ("..." if len(msg) > 200 else "")


def _is_repo_id(source: str) -> bool:
    parts = source.split("/")
    return len(parts) == 2 and all(parts) and not source.startswith((".", "/", "~"))


def hub_download(repo_id: str, filename: str, revision: str | None = None) -> Path:
    """Download one file of a Hub model repo into the standard cache (or take it from there)."""
    from huggingface_hub import hf_hub_download

    from mura_cli import __version__

    return Path(
        _hub_call(
            f"hf-hub:{repo_id}/{filename}",
            lambda: hf_hub_download(
                repo_id, filename, revision=revision, library_name="mura-cli", library_version=__version__
            ),
        )
    )


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


def load_pretrained(source: str | Path, map_location: str = "cpu") -> tuple[Any, dict[str, Any]]:
    """Load one of our models: a run folder, a folder in the Hub layout, or a Hub repo (``org/name`` or
    ``hf-hub:org/name``). Returns ``(model in eval mode, config dict)``."""
    from mura_cli.models.registry import MuraNet

    src = str(source)
    p = Path(src).expanduser()
    if p.is_dir():
        folder = p
        weights = folder / WEIGHTS_NAME
        cfg = read_model_config(folder)
    elif src.startswith("hf-hub:") or _is_repo_id(src):
        repo = src.removeprefix("hf-hub:")
        cfg_path = hub_download(repo, CONFIG_NAME)
        cfg = read_model_config(cfg_path.parent)
        weights = hub_download(repo, WEIGHTS_NAME)
    else:
        raise ModelError(f"{src}: no such run folder; pass a run folder (runs/NAME), org/name or hf-hub:org/name")
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
    """Upload a folder in the Hub layout (``model.safetensors``, ``config.json``, ``README.md``); returns its URL."""
    from huggingface_hub import HfApi

    src = Path(folder)
    for name in (WEIGHTS_NAME, CONFIG_NAME):
        if not (src / name).is_file():
            raise ModelError(f"{src}: no {name}; train first (mura train) or pass a run folder")
    api = HfApi(token=token)
    _hub_call(f"create {repo_id}", lambda: api.create_repo(repo_id, private=private, exist_ok=True))
    info = _hub_call(
        f"upload to {repo_id}",
        lambda: api.upload_folder(
            repo_id=repo_id,
            folder_path=str(src),
            commit_message=commit_message,
            allow_patterns=[WEIGHTS_NAME, CONFIG_NAME, "README.md", "metrics.csv", "curves.png"],
        ),
    )
    return str(getattr(info, "commit_url", None) or f"{repo_id}")
