"""The sink protocol: a new output is a class with ``add`` and ``close``; predict and localize feed every sink."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np

from mura_cli.config import TransformConfig
from mura_cli.config_infer import LocalizeConfig, PredictConfig
from mura_cli.engine.hooks import Failure
from mura_cli.engine.serving.load import LoadedModel, Model, ModelChoice
from mura_cli.engine.serving.localize import run_localize
from mura_cli.engine.serving.predict import ImagePrediction, Localization
from mura_cli.engine.serving.screen import run_predict
from mura_cli.engine.serving.sinks import Sink, SinkContext, Written
from mura_cli.models.checkpoint import ModelConfig

from synth import make_studies


class Brightness:
    """A NumPy backend (no torch): the logit is the mean brightness, the map the image itself, 4x4-pooled."""

    name = "brightness"

    def __call__(self, images: Any, with_cam: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
        grey = np.asarray(images)[:, 0]
        maps = grey.reshape(len(grey), grey.shape[1] // 4, 4, grey.shape[2] // 4, 4).mean(axis=(2, 4))
        return grey.mean(axis=(1, 2)), maps if with_cam else None


MODEL = Model(
    (LoadedModel("bright", Brightness(), ModelConfig(arch="bright", transform=TransformConfig(size=32))),),
    ModelChoice(("bright",), "test"),
    "cpu",
)


class Recorder:
    """A custom sink: remembers what it was handed, and names one failure when it closes."""

    def __init__(self) -> None:
        self.added: list[tuple[ImagePrediction, Localization | None]] = []
        self.context: SinkContext | None = None

    def add(self, prediction: ImagePrediction, localization: Localization | None = None) -> None:
        self.added.append((prediction, localization))

    def close(self, context: SinkContext) -> Written:
        self.context = context
        return Written(failures=(Failure("somewhere", "somewhere: not sent (test)", "send"),))


def test_a_custom_sink_receives_every_scored_prediction(tmp_path: Path) -> None:
    xrays = make_studies(tmp_path / "xrays", images=5)
    (tmp_path / "broken.png").write_bytes(b"not a png")
    paths = (str(xrays), str(tmp_path / "broken.png"))
    recorder = Recorder()
    sink: Sink = recorder  # the protocol, checked by mypy where this is type-checked
    out = tmp_path / "studies.csv"
    report = run_predict(PredictConfig(paths=paths, out=str(out), workers=0), model=MODEL, sinks=[sink])
    assert [p for p, _ in recorder.added] == list(report.predictions) and report.predictions
    assert all(loc is None for _, loc in recorder.added)
    assert recorder.context is not None and recorder.context.studies == report.studies
    with open(report.errors or "", newline="") as f:  # a sink's failures join the job's errors CSV
        assert [r["path"] for r in csv.DictReader(f)] == [str(tmp_path / "broken.png"), "somewhere"]

    boxes = Recorder()
    located = run_localize(LocalizeConfig(paths=paths, out="", workers=0), model=MODEL, sinks=[boxes])
    assert [loc for _, loc in boxes.added] == list(located.localizations) and located.localizations
    assert [p.path for p, _ in boxes.added] == [p.path for p in located.run.predictions]
    assert all(p.cam is not None for p, _ in boxes.added)  # a sink sees the map (the job drops it after)
