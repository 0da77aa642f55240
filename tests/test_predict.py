"""predict / localize: CAM exactness, planted-region boxes through the real pipeline, studies, CLI, real files."""

from __future__ import annotations

import csv
import json
import os
from dataclasses import astuple

import numpy as np
import pydicom
import pytest
import torch
from PIL import Image
from torch import nn

from mura_cli.cam import Box, cam_box, cam_grid_shape, cam_to_original, image_box
from mura_cli.config import TransformConfig, to_dict
from mura_cli.data.inputs import discover_inputs, mura_study_of
from mura_cli.data.transforms import eval_geometry
from mura_cli.engine.backends import TorchBackend
from mura_cli.engine.serving.load import LoadedModel
from mura_cli.engine.serving.localize import localize
from mura_cli.engine.serving.predict import group_studies, predict
from mura_cli.models.checkpoint import ModelConfig, save_run_model
from mura_cli.models.registry import MuraNet

from synth import SHARED_DATA as SHARED
from synth import make_mura_tree

needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data not present")


class _Planted(nn.Module):
    """A 'backbone' whose only feature is the local mean brightness: only bright regions can activate."""

    num_features = 1

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.avg_pool2d(x[:, :1], 4)


def planted_model(tcfg: TransformConfig) -> LoadedModel:
    net = MuraNet("test_resnet")
    net.backbone = _Planted()
    net.fc = nn.Linear(1, 1)
    with torch.no_grad():
        net.fc.weight.fill_(1.0)
        net.fc.bias.fill_(0.0)
    return LoadedModel(name="planted", backend=TorchBackend(net), config=ModelConfig(arch="planted", transform=tcfg))


def test_cam_equals_hooked_features_times_head_weights():
    torch.manual_seed(0)
    model = MuraNet("test_resnet").eval()
    feats = {}
    model.backbone.layer4.register_forward_hook(lambda m, i, o: feats.setdefault("f", o))  # last feature map
    x = torch.randn(2, 3, 64, 48)
    with torch.no_grad():
        logits, cam = model.forward_with_cam(x)
    f = feats["f"]
    w = model.fc.weight[0]
    direct = (f * w.view(1, -1, 1, 1)).sum(1)
    assert torch.allclose(cam, direct, atol=1e-5)
    assert torch.allclose(cam.mean((1, 2)) + model.fc.bias, logits, atol=1e-5)


@pytest.mark.parametrize(
    "tcfg",
    [
        TransformConfig(size=64),
        TransformConfig(size=64, resize="shorter"),
        TransformConfig(size=64, resize="shorter", center_crop=48),
    ],
)
@pytest.mark.parametrize("shape", [(300, 200), (200, 300)])
def test_planted_region_box_non_square(tmp_path, tcfg, shape):
    h, w = shape
    img = np.zeros((h, w), np.uint8)
    y0, x0 = h // 2 - 20, w // 2 + 5
    img[y0 : y0 + 40, x0 : x0 + 30] = 255
    Image.fromarray(img).save(tmp_path / "x.png")
    pred = next(predict([tmp_path / "x.png"], [planted_model(tcfg)], with_cam=True))
    assert pred.cam.shape == (h, w)
    loc = localize(pred, 0.2)
    truth = Box(x0, y0, x0 + 30, y0 + 40)
    assert loc.box is not None and loc.box.iou(truth) > 0.5, (loc.box, truth)
    assert truth.contains(*loc.peak)


def test_box_coordinates_on_a_2140x1760_dicom(tmp_path):
    ds = pydicom.Dataset()
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = pydicom.uid.generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    ds.Rows, ds.Columns = 2140, 1760
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 10, 9, 0
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.StudyInstanceUID = pydicom.uid.generate_uid()
    arr = np.full((2140, 1760), 100, np.uint16)
    arr[1500:1700, 300:500] = 1000  # the planted region, in original pixels
    ds.PixelData = arr.tobytes()
    path = tmp_path / "hip_like"  # no suffix: found by content
    ds.save_as(path, enforce_file_format=True)
    pred = next(predict([path], [planted_model(TransformConfig(size=128))], with_cam=True))
    loc = localize(pred)
    assert (pred.width, pred.height) == (1760, 2140)
    assert pred.cam.shape == cam_grid_shape(2140, 1760) == (512, 421)  # boxed on a grid, not 3.8 M pixels
    truth = Box(300, 1500, 500, 1700)
    assert loc.box.iou(truth) > 0.5, loc.box
    assert all(
        abs(a - b) < 60
        for a, b in zip((loc.box.x0, loc.box.y0, loc.box.x1, loc.box.y1), (300, 1500, 500, 1700), strict=True)
    )


def test_cam_to_original_inverts_geometry():
    g = eval_geometry(100, 50, TransformConfig(size=20))
    cam = np.zeros((20, 20), np.float32)
    cam[5, 10] = 1
    full = cam_to_original(cam, g, 100, 50)
    y, x = np.unravel_index(full.argmax(), full.shape)
    assert abs(y - 27) <= 3 and abs(x - 26) <= 3  # (5.5 / 20 * 100, 10.5 / 20 * 50)


@pytest.mark.parametrize("component", ["largest", "peak"])
def test_box_on_the_grid_matches_the_box_at_full_size(component):
    """The box found on the 512 px grid and scaled is the full-size box, to within one grid cell (maps with one
    clear peak: where two near-equal peaks compete, which one the sampling favours is a coin toss)."""
    rng = np.random.default_rng(3)
    h, w = 2140, 1760
    g = eval_geometry(h, w, TransformConfig(size=320))
    for _ in range(5):
        cam = rng.standard_normal((10, 10)).astype(np.float32)
        cam[rng.integers(10), rng.integers(10)] += 3
        full_box, _ = cam_box(cam_to_original(cam, g, h, w), 0.2, component)
        grid = cam_grid_shape(h, w)
        box, _ = image_box(cam_to_original(cam, g, h, w, grid), h, w, 0.2, component)
        cell = max(h / grid[0], w / grid[1])
        for a, b in zip(astuple(box), astuple(full_box), strict=True):
            assert abs(a - b) <= cell + 1, (box, full_box)


def test_cam_box_edge_cases():
    assert cam_box(np.zeros((4, 4)))[0] is None
    cam = np.zeros((10, 10))
    cam[1:3, 1:3] = 1.0
    cam[6:9, 5:9] = 0.9  # larger component wins even if its peak is lower
    box, thr = cam_box(cam, 0.2)
    assert box == Box(5, 6, 9, 9) and thr == pytest.approx(0.2)


def test_study_grouping_and_mura_paths(tmp_path):
    mura = make_mura_tree(tmp_path, patients_per_part=2, valid_patients=1)
    files, skipped = discover_inputs([mura])
    assert len(skipped) == 4  # the four CSVs
    some = files[0]
    part, _, study = mura_study_of(some)
    assert part == "elbow" and study.startswith("MURA-v1.1/") and study.endswith("/")
    preds = list(predict(files, [planted_model(TransformConfig(size=32))]))
    studies = group_studies(preds, 0.5)
    assert len(studies) == len({p.study for p in preds}) and sum(s.images for s in studies) == len(files)
    per_image = list(predict(files[:3], [planted_model(TransformConfig(size=32))], per_image=True))
    assert len({p.study for p in per_image}) == 3


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("run")
    torch.manual_seed(0)
    t = TransformConfig(size=64)
    save_run_model(
        MuraNet("test_resnet"),
        d,
        ModelConfig.from_json({"arch": "test_resnet", "part": "all", "threshold": 0.5, "transform": to_dict(t)}),
    )
    return d


def _main(capsys, *args):
    from mura_cli.cli import main

    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in args])
    out = capsys.readouterr()
    return exc.value.code, out.out, out.err


def test_cli_predict_goes_past_bad_files(tmp_path, run_dir, capsys):
    mura = make_mura_tree(tmp_path / "d", patients_per_part=2, valid_patients=1)
    bad = mura / "train" / "XR_ELBOW" / "patient00001" / "study1_positive" / "broken.png"
    bad.parent.mkdir(parents=True, exist_ok=True)
    bad.write_bytes(b"not a png")
    out = tmp_path / "results.csv"
    code, stdout, err = _main(
        capsys, "predict", mura, "--model", run_dir, "--out", out, "--images", tmp_path / "images.csv", "--workers", "0"
    )
    assert code == 6, err  # finished, some inputs failed (issue 11)
    assert "broken.png" in err
    rows = list(csv.DictReader(out.read_text().splitlines()))
    assert rows and set(rows[0]) == {"study", "part", "images", "probability", "prediction", "threshold", "model"}
    assert "failed" in stdout
    # never overwrite what is there
    code, _, err = _main(capsys, "predict", mura, "--model", run_dir, "--out", out)
    assert code == 2 and "--overwrite" in err
    code, _, err = _main(
        capsys, "predict", mura, "--model", run_dir, "--out", tmp_path / "m.csv", "--format", "mura", "--workers", "0"
    )
    assert code == 6, err  # broken.png still fails
    first = (tmp_path / "m.csv").read_text().splitlines()[0]
    assert first.startswith("MURA-v1.1/") and first.rsplit(",", 1)[1] in ("0", "1")


def test_cli_predict_without_model_is_clean_error(tmp_path, capsys):
    code, _, err = _main(capsys, "predict", tmp_path, "--model", tmp_path / "nope", "--out", tmp_path / "r.csv")
    assert code in (2, 3, 4) and "Traceback" not in err


@needs_shared
@pytest.mark.slow
def test_predict_and_localize_every_real_file(tmp_path, run_dir, capsys):
    code, _, err = _main(
        capsys,
        "predict",
        SHARED / "dicom",
        SHARED / "mura-sample",
        "--model",
        run_dir,
        "--out",
        tmp_path / "r.csv",
        "--images",
        tmp_path / "i.csv",
        "--workers",
        "0",
    )
    assert code == 0, err
    n_images = len(list(csv.DictReader((tmp_path / "i.csv").read_text().splitlines())))
    assert n_images == 9 + 10
    code, _, err = _main(
        capsys,
        "localize",
        SHARED / "dicom",
        SHARED / "mura-sample",
        "--model",
        run_dir,
        "--out",
        tmp_path / "boxes.json",
        "--overlay",
        "--overlay-dir",
        tmp_path / "ov",
        "--heatmap",
        "png",
        "--workers",
        "0",
    )
    assert code == 0, err
    boxes = json.loads((tmp_path / "boxes.json").read_text())["boxes"]
    assert len(boxes) == 19
    for b in boxes:
        ov = Image.open(b["overlay"])
        src_w, src_h = (1760, 2140) if "hip" in b["image"] else ov.size
        assert ov.size == (src_w, src_h)
        if b["x0"] is not None:
            assert 0 <= b["x0"] < b["x1"] <= ov.size[0] and 0 <= b["y0"] < b["y1"] <= ov.size[1]
        heat = Image.open(b["heatmap"])
        assert heat.mode.startswith("I") and heat.size == ov.size  # full size, made from the grid map


@needs_shared
@pytest.mark.slow
def test_localize_keeps_neither_maps_nor_pixels(tmp_path, run_dir):
    """Each image is boxed and drawn as it comes: what the job keeps is a few numbers per image, so memory does
    not grow with the folder (a 2,140 px DICOM's full-size map alone is 15 MB)."""
    from mura_cli.config_infer import LocalizeConfig
    from mura_cli.engine.serving.localize import run_localize

    cfg = LocalizeConfig(
        paths=(str(SHARED / "dicom" / "CR_hip_RG2_jpegls_lossless.dcm"), str(SHARED / "mura-sample")),
        model=(str(run_dir),),
        out=str(tmp_path / "boxes.csv"),
        overlay=True,
        overlay_dir=str(tmp_path / "ov"),
        heatmap="npy",
        workers=0,
    )
    report = run_localize(cfg)
    assert len(report.rows) == len(report.run.predictions) == 11 and report.overlays == 11
    assert all(p.cam is None and "pixels" not in p.meta for p in report.run.predictions)
    hip = next(r for r in report.rows if "hip" in r["image"])
    assert np.load(hip["heatmap"]).shape == (2140, 1760)


@needs_shared
def test_jpeg2000_screened_at_reduced_resolution_reports_original_pixels(run_dir):
    """predict and localize read a 2,500 x 2,048 JPEG 2000 plate at the wavelet level its 64 px model needs, yet
    sizes, maps and boxes are the original's; with overlays the full image is read (it is drawn on)."""
    from mura_cli.engine.serving.load import load_models

    hand = SHARED / "dicom" / "CR_hand_PA_kodak_j2k_lossless.dcm"
    models = load_models([str(run_dir)])
    fast = next(predict([hand], models, with_cam=True))
    drawn = next(predict([hand], models, with_cam=True, keep_pixels=True))
    assert (fast.width, fast.height) == (drawn.width, drawn.height) == (2048, 2500)
    assert fast.cam.shape == drawn.cam.shape == cam_grid_shape(2500, 2048)
    assert drawn.meta["pixels"].shape == (2500, 2048)
    assert abs(fast.probability - drawn.probability) < 0.02
    box = localize(fast).box
    assert box is not None and 0 <= box.x0 < box.x1 <= 2048 and 0 <= box.y0 < box.y1 <= 2500


def _square(i: int) -> int:
    return i * i


def _die_at_three(i: int) -> int:
    if i == 3:
        os._exit(1)
    return i


def test_ordered_map_keeps_input_order_in_and_out_of_process():
    from mura_cli.engine.serving.parallel import ordered_map

    for workers in (0, 2):
        assert list(ordered_map(_square, 20, workers, ahead=3)) == [i * i for i in range(20)]
    assert list(ordered_map(_square, 0, 2)) == []


def test_a_dying_decoding_worker_ends_in_one_line_naming_the_files():
    from mura_cli.engine.serving.parallel import ordered_map
    from mura_cli.errors import DataError

    with pytest.raises(DataError, match=r"worker died while reading one of: .*file3"):
        list(ordered_map(_die_at_three, 8, 2, ahead=2, name=lambda i: f"file{i}"))
