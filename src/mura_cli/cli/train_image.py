"""``mura train``'s image options: input size, resize, the contrast tools and the training augmentations, each
setting a field of ``TrainConfig.transform``."""

from __future__ import annotations

from typing import Annotated

import typer

from mura_cli.cli._console import choice
from mura_cli.config import RESIZE_MODES

TRANSFORM_FLAGS = {
    "size": "size",
    "resize": "resize",
    "center_crop": "center_crop",
    "hflip": "hflip",
    "vflip": "vflip",
    "rotation": "rotation",
    "sharpen": "sharpen",
    "blur": "blur_sigma",
    "equalize": "equalize",
    "clahe": "clahe",
    "crop_scale": "crop_scale",
    "gamma": "gamma",
    "contrast": "contrast",
    "noise": "noise",
}
"""``mura train`` flags that set a field of ``TrainConfig.transform`` (flag name -> field name)."""

Size = Annotated[int, typer.Option(help="Input size in pixels (paper: 320).")]
Resize = Annotated[
    str, typer.Option(click_type=choice(RESIZE_MODES), help="stretch: to a square (paper); shorter: + center crop.")
]
CenterCrop = Annotated[int | None, typer.Option(help="Center crop side after resize.", show_default="no crop")]
Hflip = Annotated[bool, typer.Option("--hflip/--no-hflip", help="Random horizontal flips.")]
Vflip = Annotated[bool, typer.Option("--vflip/--no-vflip", help="Random vertical flips.")]
Rotation = Annotated[float, typer.Option(help="Random rotation range in degrees (paper: 30; --weights none: 10).")]
Sharpen = Annotated[float, typer.Option(help="Unsharp-mask amount (0 = off).")]
Blur = Annotated[float, typer.Option(help="Gaussian blur sigma (0 = off).")]
Equalize = Annotated[bool, typer.Option("--equalize/--no-equalize", help="Histogram equalization.")]
Clahe = Annotated[float, typer.Option(help="CLAHE clip limit (0 = off; 0.01 typical).")]
CropScale = Annotated[float, typer.Option(help="Random resized crops keeping at least this area fraction (1 = off).")]
Gamma = Annotated[float, typer.Option(help="Random gamma exp(+/-x) on the [0, 1] image (0 = off).")]
Contrast = Annotated[float, typer.Option(help="Random contrast 1+/-x and brightness +/-x/2 (0 = off).")]
Noise = Annotated[float, typer.Option(help="Gaussian noise sigma on the [0, 1] image (0 = off).")]
