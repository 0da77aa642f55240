"""The typed model config (config.json): schema versions, defaults of old configs, and the model folder."""

from __future__ import annotations

import json
import logging

import pytest
import torch
from safetensors.torch import load_file

from mura_cli.config import TransformConfig, to_dict
from mura_cli.errors import ModelError, UsageError
from mura_cli.models.checkpoint import (
    SCHEMA_VERSION,
    ModelConfig,
    load_run_model,
    read_weights,
    save_run_model,
    save_weights,
)
from mura_cli.models.registry import MuraNet

# config.json exactly as mura-cli 0.1.0 wrote it (schema 0: no "schema" key)
V0_CONFIG = {
    "arch": "test_resnet",
    "timm_name": "test_resnet",
    "num_classes": 1,
    "label_names": ["normal", "abnormal"],
    "input_size": [3, 32, 32],
    "mean": [0.5, 0.5, 0.5],
    "std": [0.5, 0.5, 0.5],
    "transform": to_dict(TransformConfig(size=32, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))),
    "dropout": 0.0,
    "part": "elbow",
    "parts": ["elbow"],
    "threshold": 0.5,
    "weights": "none",
    "metrics": {"epoch": 3, "tune_loss": 0.36, "tune_study_auroc": None},
    "library": "mura-cli",
    "version": "0.1.0",
}


def test_v0_config_loads_and_writes_back_the_same_keys_plus_schema():
    cfg = ModelConfig.from_json(V0_CONFIG)
    assert cfg.schema == 0
    assert cfg.transform == TransformConfig(size=32, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    assert (cfg.part, cfg.parts, cfg.threshold, cfg.input_size) == ("elbow", ("elbow",), 0.5, (3, 32, 32))
    out = cfg.to_dict()
    assert list(out) == [*V0_CONFIG, "schema"]  # same keys, same order; "schema" last
    assert {k: v for k, v in out.items() if k != "schema"} == V0_CONFIG
    assert ModelConfig.from_json(out) == cfg


def test_minimal_v0_config_gets_the_defaults_predict_used():
    """What ``.get(key, default)`` gave for configs with only some keys (tests, hand-written configs)."""
    cfg = ModelConfig.from_json({"arch": "test_resnet"})
    assert cfg.threshold == 0.5 and cfg.part == "all" and cfg.parts == ("all",) and cfg.dropout == 0.0
    assert cfg.transform == TransformConfig()
    assert cfg.input_size == (3, 320, 320) and cfg.mean == TransformConfig().mean
    assert ModelConfig.from_json({"arch": "x", "part": "hand", "parts": []}).parts == ("hand",)


def test_new_configs_carry_the_schema_version():
    assert ModelConfig(arch="test_resnet").to_dict()["schema"] == SCHEMA_VERSION == 1


def test_unknown_keys_are_ignored_with_a_debug_line(caplog):
    with caplog.at_level(logging.DEBUG, logger="mura_cli.models.checkpoint"):
        cfg = ModelConfig.from_json({"arch": "test_resnet", "schema": 1, "future_field": [1, 2]})
    assert cfg.arch == "test_resnet"
    assert "future_field" in caplog.text


def test_bad_configs_are_model_errors(tmp_path):
    with pytest.raises(ModelError, match="no 'arch'"):
        ModelConfig.from_json({"threshold": 0.5})
    with pytest.raises(ModelError, match=r"no config\.json; is this a mura run folder"):
        ModelConfig.from_json(tmp_path)
    (tmp_path / "config.json").write_text("{nope")
    with pytest.raises(ModelError, match="damaged"):
        ModelConfig.from_json(tmp_path)
    (tmp_path / "config.json").write_text("[1, 2]")
    with pytest.raises(ModelError, match="no 'arch'"):
        ModelConfig.from_json(tmp_path / "config.json")


def test_config_file_errors_keep_their_words(tmp_path):
    """``--config`` files and model configs share one JSON reader; each keeps its own messages."""
    from mura_cli.config import load_config_file

    with pytest.raises(UsageError, match="config file not found"):
        load_config_file(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text('{"a": 1,\n}')
    with pytest.raises(UsageError, match=r"not valid JSON \(.* at line 2\); fix the file"):
        load_config_file(tmp_path / "bad.json")
    (tmp_path / "list.json").write_text("[]")
    with pytest.raises(UsageError, match="expected a JSON object of settings"):
        load_config_file(tmp_path / "list.json")


def test_run_folder_written_by_0_1_0_loads(tmp_path):
    model = MuraNet("test_resnet").eval()
    save_weights(model, tmp_path / "model.safetensors", arch="test_resnet")
    (tmp_path / "config.json").write_text(json.dumps(V0_CONFIG, indent=2) + "\n")
    back, cfg = load_run_model(tmp_path)
    assert cfg == ModelConfig.from_json(V0_CONFIG) and not back.training
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model(x), back(x))


def test_save_run_model_writes_the_hub_layout(tmp_path):
    model = MuraNet("test_resnet")
    cfg = ModelConfig(arch="test_resnet", part="hand", parts=("hand",), metrics={"epoch": 1})
    path = save_run_model(model, tmp_path / "run", cfg)
    assert path == tmp_path / "run" / "model.safetensors"
    assert json.loads((tmp_path / "run" / "config.json").read_text()) == cfg.to_dict()
    assert load_file(path).keys() == model.state_dict().keys()
    assert not list((tmp_path / "run").glob("*.tmp"))


def test_weights_that_do_not_fit_are_model_errors(tmp_path):
    save_run_model(MuraNet("test_efficientnet"), tmp_path, ModelConfig(arch="test_efficientnet"))
    (tmp_path / "config.json").write_text(json.dumps({"arch": "test_resnet"}))
    with pytest.raises(ModelError, match="does not fit test_resnet"):
        load_run_model(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(ModelError, match="not a readable safetensors file"):
        read_weights(tmp_path / "model.safetensors")
