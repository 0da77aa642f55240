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
    ],
)
def test_options_produce_valid_tensors(opts):
    cfg = TransformConfig(size=32, **opts)
    out = build_transforms(cfg, train=True)(_img())
    assert out.shape == (3, cfg.output_size, cfg.output_size)
    assert torch.isfinite(out).all()


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
