"""Resumable screening: a journal of what ``mura predict`` has scored, beside its output.

Every scored frame and every failed file is appended to ``<out>.partial.jsonl`` as it happens (one JSON line,
flushed). A run that finishes writes its outputs and removes the journal; a run that is killed leaves it, and
``mura predict ... --resume`` reads it back, skips every file it holds, scores the rest and writes the same
CSV an uninterrupted run writes (rows in input order, probabilities as first computed). The first line
records the model's weights hash and the settings that change a probability, so a journal is never resumed
with another model.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mura_cli.engine.hooks import Failure
from mura_cli.errors import UsageError

SUFFIX = ".partial.jsonl"


def journal_path(out: str | Path) -> Path:
    """``results.csv`` -> ``results.csv.partial.jsonl``."""
    p = Path(out)
    return p.with_name(p.name + SUFFIX)


class Journal:
    """The journal of one predict run at ``path``; ``resume`` reads an earlier one back.

    Raises:
        UsageError: a journal is there and ``resume`` is not set (the message names both ways on).
    """

    def __init__(self, path: Path, *, resume: bool, overwrite: bool = False) -> None:
        self.path = path
        self.header: dict[str, Any] | None = None
        self.frames: dict[str, list[dict[str, Any]]] = {}
        self.failures: dict[str, list[Failure]] = {}
        if path.exists() and not (resume or overwrite):
            raise UsageError(
                f"{path}: an interrupted run left this journal; add --resume to continue it, or --overwrite to "
                "start over"
            )
        if resume and path.exists():
            self._read()
        self._file: Any = None

    def _read(self) -> None:
        lines = self.path.read_text(encoding="utf-8").splitlines()
        for line in lines:
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:  # the line being written when the run was killed
                continue
            kind = entry.pop("kind", None)
            if kind == "header":
                self.header = entry
            elif kind == "frame":
                self.frames.setdefault(entry["path"], []).append(entry)
            elif kind == "failure":
                self.failures.setdefault(entry["path"], []).append(Failure(**entry))

    def start(self, header: dict[str, Any]) -> None:
        """Check ``header`` (weights and settings) against the journal's, then open it for appending.

        Raises:
            UsageError: the journal was written with another model or other settings.
        """
        if self.header is not None and self.header != header:
            raise UsageError(
                f"{self.path}: written with another model or other settings; --resume needs the same ones, "
                "or --overwrite to start over"
            )
        fresh = self.header is None
        if fresh:
            self.frames, self.failures = {}, {}
        self._file = open(self.path, "w" if fresh else "a", encoding="utf-8")  # noqa: SIM115 (closed in close())
        if fresh:
            self._write({"kind": "header", **header})

    def done(self, path: str) -> bool:
        """Whether ``path`` was finished: it failed, or all its frames were scored."""
        frames = self.frames.get(path, [])
        return path in self.failures or (bool(frames) and len(frames) >= int(frames[0]["frames"]))

    def _write(self, entry: dict[str, Any]) -> None:
        self._file.write(json.dumps(entry, ensure_ascii=False) + "\n")
        self._file.flush()

    def record_frame(self, fields: dict[str, Any], frames: int) -> None:
        """One scored frame: ``fields`` are the prediction's (no map, no pixels), ``frames`` the file's count."""
        entry = {**fields, "frames": frames}
        self.frames.setdefault(entry["path"], []).append(entry)
        self._write({"kind": "frame", **entry})

    def record_failure(self, failure: Failure) -> None:
        self.failures.setdefault(failure.path, []).append(failure)
        self._write({"kind": "failure", "path": failure.path, "reason": failure.reason, "stage": failure.stage})

    def restored(self, paths: Sequence[str]) -> tuple[list[dict[str, Any]], list[Failure]]:
        """The frames and failures already journalled for ``paths`` that are done."""
        frames = [f for p in paths if self.done(p) for f in self.frames.get(p, [])]
        failures = [f for p in paths if self.done(p) for f in self.failures.get(p, [])]
        return frames, failures

    def close(self, *, remove: bool) -> None:
        """Close the journal; ``remove`` it once the outputs are written."""
        if self._file is not None:
            self._file.close()
            self._file = None
        if remove:
            self.path.unlink(missing_ok=True)


__all__ = ["SUFFIX", "Journal", "journal_path"]
