"""mura-cli: abnormality detection and localization in musculoskeletal radiographs.

The package is a library first; the ``mura`` command line is a thin layer over it. ``load_model``, ``predict``,
``localize``, ``benchmark`` and ``train`` (:mod:`mura_cli.api`) are imported on first use, so ``import mura_cli``
stays light.

Example:
    >>> import mura_cli
    >>> model = mura_cli.load_model("runs/elbow")  # a run folder, org/name on the Hub, or None: the newest run
    >>> result = mura_cli.predict("xrays/", model=model)
    >>> result.to_pandas()  # one row per study
    >>> img = mura_cli.read_image("scan.dcm")  # HxW float32 in [0, 1], and its metadata
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mura_cli._version import __version__ as __version__
from mura_cli.data.readers import Image as Image
from mura_cli.data.readers import read_image as read_image
from mura_cli.data.readers import read_images as read_images
from mura_cli.errors import MuraError as MuraError

if TYPE_CHECKING:
    from mura_cli.api import Model as Model
    from mura_cli.api import benchmark as benchmark
    from mura_cli.api import load_model as load_model
    from mura_cli.api import localize as localize
    from mura_cli.api import predict as predict
    from mura_cli.api import train as train

_API = ("Model", "benchmark", "load_model", "localize", "predict", "train")


def __getattr__(name: str) -> Any:
    """The API functions, imported from :mod:`mura_cli.api` when first asked for."""
    if name in _API:
        from mura_cli import api

        return getattr(api, name)
    raise AttributeError(f"module 'mura_cli' has no attribute {name!r}")


__all__ = [
    "Image",
    "Model",
    "MuraError",
    "__version__",
    "benchmark",
    "load_model",
    "localize",
    "predict",
    "read_image",
    "read_images",
    "train",
]
