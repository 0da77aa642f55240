"""How a long inference job reports back while it runs (:class:`Hooks`), and what it reports: the inputs it could
not use (:class:`Failure`, at one of the :data:`STAGES`), written at the end beside the output (:func:`write_errors`).
The CLI draws the hooks; a library caller may ignore them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

STAGES = ("discover", "decode", "sanity", "dicom", "send")
"""Where an input was turned away: ``discover`` (skipped non-images, empty or unreadable entries, link loops),
``decode`` (the file could not be read), ``sanity`` (it decoded to a blank image); or where its result was:
``dicom`` (no DICOM results: its header could not be read), ``send`` (a DICOM result the PACS did not store)."""


@dataclass(frozen=True)
class Failure:
    """An input that could not be used, and why (the message names the file).

    Attributes:
        path: the file.
        reason: a one-line message (names the file).
        stage: one of :data:`STAGES`.
    """

    path: str
    reason: str
    stage: str = "decode"

    @property
    def short_reason(self) -> str:
        """The reason without the leading ``<path>: `` it usually starts with."""
        prefix = f"{self.path}: "
        return self.reason[len(prefix) :] if self.reason.startswith(prefix) else self.reason

    def to_row(self) -> dict[str, Any]:
        return {"path": self.path, "stage": self.stage, "reason": self.short_reason}


def errors_path(out: str | Path) -> Path:
    """Where the errors CSV of an output goes: ``results.csv`` -> ``results.errors.csv`` beside it."""
    p = Path(out)
    return p.with_name(f"{p.stem}.errors.csv")


def _ignore(*_: Any) -> None:
    return None


@dataclass(frozen=True)
class Hooks:
    """How a long job reports back while it runs; the CLI draws these, a library caller may ignore them.

    Attributes:
        on_info: a one-line notice (which model was chosen and why).
        on_warning: a one-line warning (a model used on a body part it never saw).
        on_progress: ``(done, total)`` inputs.
        on_failure: an input that failed; the job goes on.
    """

    on_info: Callable[[str], None] = _ignore
    on_warning: Callable[[str], None] = _ignore
    on_progress: Callable[[int, int], None] = _ignore
    on_failure: Callable[[Failure], None] = _ignore


def write_errors(out: str | Path, failures: Sequence[Failure]) -> Path | None:
    """Write ``failures`` beside ``out`` (``results.csv`` -> ``results.errors.csv``) as ``path,stage,reason``.

    Nothing is written when there is nothing to list or ``out`` is standard output, and a stale file from an
    earlier run is removed (the caller refused an existing one without ``--overwrite`` before the run).

    Returns:
        The CSV written, or ``None``.
    """
    from mura_cli.utils import is_stdout, write_csv

    if is_stdout(out):  # the output went to standard output: failures were named on stderr as they happened
        return None
    target = errors_path(out)
    if not failures:
        target.unlink(missing_ok=True)
        return None
    return write_csv(target, [f.to_row() for f in failures])


__all__ = ["STAGES", "Failure", "Hooks", "errors_path", "write_errors"]
