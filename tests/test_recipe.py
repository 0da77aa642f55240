"""Issue 10: patient folds, the kappa threshold, the schedule and weight average, flips, the box loss, CAM
components, the random-init recipe, and ``mura train --folds`` end to end through the real executable."""

from __future__ import annotations

import csv
import itertools
import json
import math

import numpy as np
import pytest
import torch

from mura_cli.cam import cam_box
from mura_cli.config import RANDOM_INIT_RECIPE, TrainConfig, TransformConfig, train_config
from mura_cli.data.index import IndexRow, patient_folds
from mura_cli.data.transforms import build_transforms
from mura_cli.engine.backends import FlipBackend
from mura_cli.engine.training.recipe import Schedule, WeightAverage
from mura_cli.engine.training.train import box_loss
from mura_cli.errors import DataError, UsageError
from mura_cli.metrics import cohen_kappa, kappa_threshold

from synth import TINY_TRAIN, make_fracatlas, mura, mura_tree_and_workdir, one_error_line


def _rows(n_patients: int = 23) -> list[IndexRow]:
    rows = []
    for p in range(n_patients):
        for s in range(1 + p % 3):
            rows.append(
                IndexRow(f"p{p}/s{s}.png", "train", "elbow" if p % 2 else "hand", f"p{p}", f"p{p}/s{s}", p % 4 == 0)
            )
    return rows


def test_patient_folds_keep_patients_whole_and_balanced():
    rows = _rows()
    folds = patient_folds(rows, 5, seed=0)
    assert set(folds) == {r.patient for r in rows} and set(folds.values()) == {1, 2, 3, 4, 5}
    sizes = np.bincount(list(folds.values()))[1:]
    assert sizes.max() - sizes.min() <= 4  # at most one per stratum (4 strata)
    assert patient_folds(rows, 5, seed=0) == folds and patient_folds(rows, 5, seed=1) != folds
    with pytest.raises(DataError, match="at least 2"):
        patient_folds(rows, 1)


def test_kappa_threshold_is_the_best_cut():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    s = np.clip(0.35 * y + rng.random(300) * 0.65, 0, 1)
    t = kappa_threshold(y, s)
    best = max(cohen_kappa(y, (s >= c).astype(int)) for c in np.unique(s))
    assert cohen_kappa(y, (s >= t).astype(int)) == pytest.approx(best)
    assert kappa_threshold([1, 1], [0.2, 0.9]) == 0.5  # one label: nothing to choose


def test_cosine_schedule_warms_up_decays_to_floor_and_resumes():
    model = torch.nn.Linear(2, 1)
    opt = torch.optim.Adam(model.parameters(), lr=1.0)
    cfg = TrainConfig(lr=1e-3, schedule="cosine", warmup=1, lr_min=1e-5, epochs=4)
    sched = Schedule(opt, cfg, steps_per_epoch=10)
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-4)  # first warm-up step
    lrs = []
    for _ in range(40):
        sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    assert max(lrs) == pytest.approx(1e-3) and lrs[-1] == pytest.approx(1e-5)
    assert all(a >= b for a, b in itertools.pairwise(lrs[10:]))  # monotone after warm-up
    again = Schedule(opt, cfg, steps_per_epoch=10)
    again.load_state_dict(json.loads(json.dumps(sched.state_dict())))
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-5)


def test_plateau_schedule_has_a_floor():
    model = torch.nn.Linear(2, 1)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    sched = Schedule(opt, TrainConfig(lr=1e-4, lr_min=1e-6, lr_patience=0), steps_per_epoch=5)
    for _ in range(10):
        sched.epoch_end(1.0)
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-6)
    sched.epoch_end(math.nan)  # an epoch without a tune loss changes nothing


def test_weight_average_follows_the_weights():
    model = torch.nn.BatchNorm1d(2)
    avg = WeightAverage(model, decay=0.5)
    with torch.no_grad():
        model.weight.fill_(3.0)
    for _ in range(50):
        avg.update(model)
    assert torch.allclose(avg.model.weight, torch.full((2,), 3.0), atol=1e-3)
    assert int(avg.model.num_batches_tracked) == int(model.num_batches_tracked)


class _Fake:
    name = "fake"

    def __call__(self, images, with_cam=False):
        x = np.asarray(images)
        logits = x[:, 0, 0, 0] * 2.0  # the top-left pixel drives the logit
        cams = x[:, 0].copy() if with_cam else None
        return logits.astype(np.float32), cams


def test_flip_backend_averages_probabilities_and_flips_maps_back():
    x = np.zeros((1, 3, 4, 4), np.float32)
    x[0, :, 0, 0] = 1.0  # logit 2 as is, 0 when flipped
    logits, cams = FlipBackend(_Fake())(x, with_cam=True)
    p = 1 / (1 + np.exp(-logits))
    assert p[0] == pytest.approx((1 / (1 + np.exp(-2.0)) + 0.5) / 2, abs=1e-6)
    assert cams[0, 0, 0] == pytest.approx(1.0) and cams[0, 0, 3] == pytest.approx(0.0)  # the map stays put


def test_cam_box_largest_or_peak_component():
    cam = np.zeros((20, 20), np.float32)
    cam[2:10, 2:10] = 0.5  # large, lower
    cam[15:17, 15:17] = 1.0  # small, holds the peak
    big, _ = cam_box(cam, 0.2)
    small, _ = cam_box(cam, 0.2, "peak")
    assert (big.x0, big.y0, big.x1, big.y1) == (2, 2, 10, 10)
    assert (small.x0, small.y0, small.x1, small.y1) == (15, 15, 17, 17)


def test_mask_follows_the_image_through_random_geometry():
    torch.manual_seed(0)
    img = np.zeros((60, 50), np.float32)
    img[10:20, 30:45] = 1.0
    tf = build_transforms(TransformConfig(size=32, rotation=30, mean=(0, 0, 0), std=(1, 1, 1)), True, with_mask=True)
    for _ in range(5):
        image, mask = tf(np.stack([img, img]))
        bright = image[0] > 0.5
        assert mask.shape == (1, 32, 32) and (mask[0].bool() == bright).float().mean() > 0.97


def test_box_loss_rewards_cam_mass_inside_the_box():
    mask = torch.zeros(2, 1, 8, 8)
    mask[:, :, :4, :4] = 1
    inside, outside = torch.zeros(2, 4, 4), torch.zeros(2, 4, 4)
    inside[:, 0, 0], outside[:, 3, 3] = 5.0, 5.0
    boxed = torch.tensor([True, True])
    assert box_loss(inside, mask, boxed) < box_loss(outside, mask, boxed)
    assert box_loss(outside, mask, torch.tensor([False, False])) == 0


def test_random_init_recipe_sits_under_file_and_flags():
    assert train_config({}, {}).schedule == "plateau"  # the paper with Hub weights
    cfg = train_config({}, {"weights": "none"})
    assert (cfg.lr, cfg.schedule, cfg.ema) == (RANDOM_INIT_RECIPE["lr"], "cosine", RANDOM_INIT_RECIPE["ema"])
    assert train_config({"weights": "none", "lr": 0.01}, {"epochs": 3}).lr == 0.01
    assert train_config({"weights": "none"}, {"schedule": "plateau"}).schedule == "plateau"
    # nested: the recipe's rotation (10) merges with typed transform flags and yields to a typed --rotation
    assert train_config({}, {"weights": "none", "transform": {"size": 64}}).transform.rotation == 10
    assert train_config({}, {"weights": "none", "transform": {"size": 64}}).transform.size == 64
    assert train_config({}, {"weights": "none", "transform": {"rotation": 30.0}}).transform.rotation == 30
    assert train_config({}, {}).transform.rotation == 30  # the paper's, with Hub weights
    with pytest.raises(UsageError, match="--folds"):
        TrainConfig(folds=1)


@pytest.mark.slow
def test_train_folds_makes_an_ensemble_that_predict_uses(tmp_path):
    data, work = mura_tree_and_workdir(tmp_path, patients_per_part=4)
    args = TINY_TRAIN
    res = mura("train", "--data", data, *args, "--folds", "2", "--workers", "0", "--name", "cv", cwd=work)
    assert res.returncode == 0, res.stderr
    run = work / "runs" / "cv"
    assert "out-of-fold" in res.stdout and "mura predict FILES --model runs/cv" in res.stdout
    info = json.loads((run / "ensemble.json").read_text())
    assert info["members"] == ["fold-1", "fold-2"] and 0 < info["threshold"] < 1
    with open(run / "oof.csv") as f:
        oof = list(csv.DictReader(f))
    train_images = [p for p in data.rglob("*.png") if "/train/" in str(p)]
    assert len(oof) == len(train_images) and {r["fold"] for r in oof} == {"1", "2"}
    for k in (1, 2):  # no fold's model saw its held-out patients
        held = {r["patient"] for r in oof if r["fold"] == str(k)}
        other = {r["patient"] for r in oof if r["fold"] != str(k)}
        assert held and not held & other
        member = json.loads((run / f"fold-{k}" / "config.json").read_text())
        assert member["threshold"] == info["threshold"] and member.get("tta", False) == info["tta"]
    res = mura("predict", data / "valid", "--out", "r.csv", "--workers", "0", cwd=work)  # newest run: the ensemble
    assert res.returncode == 0, res.stderr
    assert "runs/cv (newest complete run under runs/)" in res.stderr
    with open(work / "r.csv") as f:
        rows = list(csv.DictReader(f))
    assert rows and all(float(r["threshold"]) == pytest.approx(info["threshold"], abs=1e-6) for r in rows)
    res = mura("train", "--resume", run, cwd=work)  # all folds done: only the out-of-fold step runs again
    assert res.returncode == 0, res.stderr
    assert res.stderr.count("already trained") == 2


@pytest.mark.slow
def test_box_loss_trains_on_fracatlas_boxes(tmp_path):
    data = make_fracatlas(tmp_path / "fa", n_fractured=6, n_normal=6)
    args = ("--arch", "test_resnet", "--weights", "none", "--size", "32", "--epochs", "1", "--workers", "0")
    res = mura("train", "--data", data, *args, "--box-loss", "1", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    res = mura("train", "--data", data, *args, "--box-loss", "-1", cwd=tmp_path)
    assert res.returncode == 2 and "--box-loss" in one_error_line(res)


@pytest.mark.slow
def test_augmentations_and_label_smoothing_train_and_are_recorded(tmp_path):
    """The radiograph augmentations and label smoothing train through the real executable (with the box loss's
    mask pipeline), land in the run's config, and a value out of range is one usage line naming the flag."""
    data = make_fracatlas(tmp_path / "fa", n_fractured=6, n_normal=6)
    args = ("--arch", "test_resnet", "--weights", "none", "--size", "32", "--epochs", "1", "--workers", "0")
    aug = ("--crop-scale", "0.6", "--gamma", "0.3", "--contrast", "0.2", "--noise", "0.02", "--label-smoothing", "0.1")
    res = mura("train", "--data", data, *args, *aug, "--box-loss", "0.1", "--name", "aug", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    cfg = json.loads((tmp_path / "runs" / "aug" / "train_config.json").read_text())
    assert cfg["label_smoothing"] == 0.1
    assert {k: cfg["transform"][k] for k in ("crop_scale", "gamma", "contrast", "noise")} == {
        "crop_scale": 0.6,
        "gamma": 0.3,
        "contrast": 0.2,
        "noise": 0.02,
    }
    for flag, bad in (("--crop-scale", "0"), ("--label-smoothing", "0.7"), ("--noise", "-1")):
        res = mura("train", "--data", data, *args, flag, bad, cwd=tmp_path)
        assert res.returncode == 2 and flag in one_error_line(res), (flag, res.stderr)
