"""Published reference numbers for ``mura benchmark``: the data file ``references.json`` and a display view.

The numbers are facts from the sources named in the file, each measured on the set it names (often the
hidden MURA test set), never on the user's data. The file is read with :mod:`importlib.resources`, so it
works from an installed wheel.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

REFERENCES_FILE = "references.json"


def load_references() -> dict[str, Any]:
    """The whole data file: ``{"schema", "notes", "sources": {id: {"citation", "url", ...}}, "entries": [...]}``.

    Each entry is ``{"source": id, "set", "level", "model", "part", "metrics": {name: value}, "checked"}``;
    metric names are those of :data:`mura_cli.scoring.METRIC_NAMES`, parts are lower-case MURA parts or ``"all"``.
    """
    text = resources.files("mura_cli.report").joinpath(REFERENCES_FILE).read_text(encoding="utf-8")
    return json.loads(text)


def _part_name(part: str) -> str:
    name = part.strip().lower()
    return name[3:] if name.startswith("xr_") else name


def reference_rows(part: str | None = None) -> list[dict[str, Any]]:
    """One display row per published figure of ``part``, in file order.

    Args:
        part: a body part (``"elbow"``, ``"XR_ELBOW"``) or ``"all"`` for the overall figures; None for every part.

    Returns:
        ``[{"source", "url", "set", "level", "part", "model", "metric", "value", "checked"}]``; ``source`` is the
        citation, ``set`` what the figure was measured on. Empty for a part without published figures.
    """
    refs = load_references()
    wanted = None if part is None else _part_name(part)
    return [
        {
            "source": refs["sources"][entry["source"]]["citation"],
            "url": refs["sources"][entry["source"]].get("url"),
            "set": entry["set"],
            "level": entry["level"],
            "part": entry["part"],
            "model": entry["model"],
            "metric": metric,
            "value": value,
            "checked": entry["checked"],
        }
        for entry in refs["entries"]
        if wanted is None or entry["part"] == wanted
        for metric, value in entry["metrics"].items()
    ]
