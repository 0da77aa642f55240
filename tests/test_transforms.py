"""Transforms: shapes, normalization, augmentation options and the invertible eval geometry."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mura_cli.config import TransformConfig
from mura_cli.data.transforms import build_transforms, denormalize, eval_geometry
from mura_cli.errors import UsageError


def _img(h=60, w=40):
    rng = np.random.default_rng(0)
    return rng.random((h, w), dtype=np.float32)


def test_paper_defaults():
    cfg = TransformConfig()
    assert (cfg.size, cfg.resize, cfg.hflip, cfg.rotation) == (320, "stretch", True, 30.0)
    out = build_transforms(cfg, train=False)(_img())
    assert out.shape == (3, 320, 320) and out.dtype == torch.float32
    mean, std = torch.tensor(cfg.mean).view(3, 1, 1), torch.tensor(cfg.std).view(3, 1, 1)
    grey = out * std + mean
    assert torch.allclose(grey[0], grey[1], atol=1e-6) and torch.allclose(grey[1], grey[2], atol=1e-6)


def test_normalization_uses_config_mean_std():
    cfg = TransformConfig(size=32, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    out = build_transforms(cfg, train=False)(np.full((40, 40), 0.75, np.float32))
    assert torch.allclose(out, torch.ones_like(out))
    back = denormalize(out, cfg)
    assert torch.allclose(back, torch.full((1, 32, 32), 0.75))


def test_eval_is_deterministic_train_is_random():
    cfg = TransformConfig(size=32)
    img = _img()
    ev = build_transforms(cfg, train=False)
    assert torch.equal(ev(img), ev(img))
    tr = build_transforms(cfg, train=True)
    torch.manual_seed(0)
    outs = [tr(img) for _ in range(6)]
    assert any(not torch.equal(outs[0], o) for o in outs[1:])


@pytest.mark.parametrize(
    "opts",
    [
        {"equalize": True},
        {"clahe": 0.01},
        {"sharpen": 1.0},
        {"blur_sigma": 1.0},
        {"resize": "shorter"},
        {"center_crop": 24},
        {"vflip": True, "rotation": 10},
        {"crop_scale": 0.5},
        {"crop_scale": 0.6, "center_crop": 24},
        {"gamma": 0.4, "contrast": 0.3, "noise": 0.05},
    ],
)
def test_options_produce_valid_tensors(opts):
    cfg = TransformConfig(size=32, **opts)
    out = build_transforms(cfg, train=True)(_img())
    assert out.shape == (3, cfg.output_size, cfg.output_size)
    assert torch.isfinite(out).all()


def test_intensity_augmentation_keeps_the_mask_and_the_range():
    """Random exposure and noise change the image channel only, within [0, 1]; a box mask comes back as it went
    in (flips and rotation off, so geometry leaves it alone); evaluation never sees them."""
    cfg = TransformConfig(size=32, hflip=False, rotation=0, gamma=0.5, contrast=0.5, noise=0.1)
    img = _img()
    mask = np.zeros_like(img)
    mask[8:20, 8:20] = 1.0
    torch.manual_seed(0)
    plain = build_transforms(TransformConfig(size=32, hflip=False, rotation=0), train=True, with_mask=True)
    x0, m0 = plain(np.stack([img, mask]))
    x1, m1 = build_transforms(cfg, train=True, with_mask=True)(np.stack([img, mask]))
    assert torch.equal(m0, m1) and not torch.allclose(x0, x1)
    grey = denormalize(x1, cfg)
    assert grey.min() >= 0 and grey.max() <= 1
    plain_eval = build_transforms(TransformConfig(size=32), train=False)
    assert torch.equal(build_transforms(cfg, train=False)(img), plain_eval(img))


def test_random_resized_crop_moves_the_mask_with_the_image():
    """A crop cuts image and box mask alike: the mask's pixels stay where the bright square is."""
    cfg = TransformConfig(size=64, hflip=False, rotation=0, crop_scale=0.3)
    img = np.zeros((64, 64), np.float32)
    img[20:40, 20:40] = 1.0
    tf = build_transforms(cfg, train=True, with_mask=True)
    torch.manual_seed(1)
    for _ in range(5):
        x, m = tf(np.stack([img, img]))
        grey = denormalize(x, cfg)[0]
        assert x.shape == (3, 64, 64) and m.shape == (1, 64, 64)
        assert ((grey > 0.5) == m[0].bool()).float().mean() > 0.97


def test_geometry_stretch_and_shorter():
    g = eval_geometry(200, 100, TransformConfig(size=50))
    assert (g.scale_y, g.scale_x, g.offset_y, g.offset_x) == (0.25, 0.5, 0, 0)
    assert g.to_original(50, 50) == (100.0, 200.0)
    g = eval_geometry(200, 100, TransformConfig(size=50, resize="shorter"))
    assert g.resized == (100, 50) and g.offset_y == 25 and g.offset_x == 0
    assert g.to_original(0, 0) == (0.0, 50.0)  # the crop starts 50 original rows down
    assert g.to_original(50, 50) == (100.0, 150.0)


def test_geometry_matches_pixels():
    """A bright dot maps to where eval_geometry says it goes, for a crop of a non-square image."""
    cfg = TransformConfig(size=64, resize="shorter", center_crop=48)
    img = np.zeros((300, 150), np.float32)
    img[200:210, 100:110] = 1.0
    out = build_transforms(cfg, train=False)(img)[0]
    y, x = np.unravel_index(int(out.argmax()), out.shape)
    g = eval_geometry(300, 150, cfg)
    ox, oy = g.to_original(x + 0.5, y + 0.5)
    assert 198 <= oy <= 212 and 98 <= ox <= 112


def test_bad_config_rejected():
    with pytest.raises(UsageError):
        TransformConfig(size=4)
    with pytest.raises(UsageError):
        TransformConfig(resize="squash")
    with pytest.raises(UsageError):
        TransformConfig(size=32, center_crop=64)
    for bad in ({"crop_scale": 0.0}, {"crop_scale": 1.5}, {"gamma": -0.1}, {"contrast": 2.0}, {"noise": 0.9}):
        with pytest.raises(UsageError):
            TransformConfig(**bad)


@pytest.mark.parametrize("shape", [(512, 352), (2140, 1760), (100, 80), (320, 320)])
@pytest.mark.parametrize("resize", ["stretch", "shorter"])
def test_numpy_eval_input_is_torchvisions_resize_crop_and_normalize(shape, resize):
    """The eval input every engine reads (Pillow, no torch) is torchvision's antialiased resize, crop and
    normalize to within 1e-4, down- and upsampling, on a real-looking smooth image and on noise."""
    from torchvision.transforms import v2

    from mura_cli.data.preprocess import eval_geometry as geometry
    from mura_cli.data.preprocess import eval_input

    cfg = TransformConfig(size=320, resize=resize)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    smooth = (0.5 + 0.4 * np.sin(yy / 37.0) * np.cos(xx / 23.0)).astype(np.float32)
    for img in (smooth, np.random.default_rng(1).random(shape, dtype=np.float32)):
        g = geometry(*shape, cfg)
        ref = v2.functional.resize(torch.from_numpy(img)[None], list(g.resized), antialias=True)
        ref = v2.functional.crop(ref, int(g.offset_y), int(g.offset_x), g.out, g.out).clamp(0, 1).expand(3, -1, -1)
        ref = v2.functional.normalize(ref, list(cfg.mean), list(cfg.std))
        out = eval_input(img, cfg)
        assert out.shape == (3, 320, 320) and out.dtype == np.float32
        assert np.abs(out - ref.numpy()).max() < 2e-4  # (under 1e-4 of a grey level, times 1/std)


@pytest.mark.parametrize("src,dst", [((10, 10), (320, 320)), ((389, 320), (512, 421)), ((400, 320), (100, 80))])
def test_cam_bilinear_is_torch_interpolate(src, dst):
    from mura_cli.cam import bilinear

    a = np.random.default_rng(0).random(src, dtype=np.float32)
    ref = torch.nn.functional.interpolate(torch.from_numpy(a)[None, None], size=dst, mode="bilinear",
                                          align_corners=False)[0, 0].numpy()  # fmt: skip
    assert np.abs(bilinear(a, *dst) - ref).max() < 1e-4  # float32 rounding of the weights


@pytest.mark.parametrize("shape,resize", [((512, 352), "stretch"), ((2140, 1760), "shorter"), ((100, 80), "shorter")])
def test_cam_to_original_in_one_step_is_upsample_place_and_rescale(shape, resize):
    """The map mapped back at once equals the two steps it stands for: upsample to the network input, place it
    at the crop offset on a canvas of the upsampled minimum, rescale the canvas to the grid (torch as the
    reference)."""
    from mura_cli.cam import cam_grid_shape, cam_to_original

    f = torch.nn.functional.interpolate
    cfg = TransformConfig(size=320, resize=resize)
    g = eval_geometry(*shape, cfg)
    cam = np.random.default_rng(2).normal(size=(10, 10)).astype(np.float32)
    up = f(torch.from_numpy(cam)[None, None], size=(g.out, g.out), mode="bilinear", align_corners=False)
    canvas = torch.full((1, 1, *g.resized), float(up.min()))
    canvas[..., int(g.offset_y) : int(g.offset_y) + g.out, int(g.offset_x) : int(g.offset_x) + g.out] = up
    grid = cam_grid_shape(*shape)
    ref = f(canvas, size=grid, mode="bilinear", align_corners=False)[0, 0].numpy()
    assert np.abs(cam_to_original(cam, g, *shape, grid) - ref).max() < 1e-4
