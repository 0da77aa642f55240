"""mura-cli: abnormality detection and localization in musculoskeletal radiographs.

The package is a library first; the ``mura`` command line is a thin layer over it.

Example:
    >>> from mura_cli import read_image
    >>> img = read_image("scan.dcm")
    >>> img.pixels.shape, img.pixels.dtype
"""

from __future__ import annotations

__version__ = "0.1.0"

from mura_cli.data.readers import Image as Image
from mura_cli.data.readers import read_image as read_image
from mura_cli.data.readers import read_images as read_images
from mura_cli.errors import MuraError as MuraError

__all__ = ["Image", "MuraError", "__version__", "read_image", "read_images"]
