"""``--config`` files: JSON or TOML read into a dict, and checked against the config dataclass they set.

A typo must not be ignored: a key the config has no setting for, at any nesting level, is a usage error naming
the closest valid key, and a value of the wrong type is one too. Both formats become the same dict first, so
everything after the parser is one code path.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import MISSING, Field, fields, is_dataclass
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

from mura_cli.errors import UsageError


def field_default(f: Field[Any]) -> Any:
    """A dataclass field's default value (its factory called), or ``None`` when it has none."""
    if f.default is not MISSING:
        return f.default
    return f.default_factory() if f.default_factory is not MISSING else None


def check_settings(cls: type[Any], data: Mapping[str, Any], source: str, prefix: str = "") -> None:
    """Refuse a key ``cls`` has no field for, at any nesting level, naming the closest valid key.

    Raises:
        UsageError: ``{source}: unknown setting 'transform.rotatoin'; did you mean 'transform.rotation'?``, or a
            nested section (``transform``) that is not a table of settings.
    """
    valid = {f.name: f for f in fields(cls)}
    hints = get_type_hints(cls)
    for key, value in data.items():
        if key not in valid:
            sections = {k: field_default(f) for k, f in valid.items()}
            nested = [f"{k}.{n.name}" for k, d in sections.items() if is_dataclass(d) for n in fields(d)]
            close = difflib.get_close_matches(str(key), [*valid, *nested], n=1)
            hint = f"did you mean '{prefix}{close[0]}'?" if close else f"valid: {', '.join(valid)}"
            raise UsageError(f"{source}: unknown setting '{prefix}{key}'; {hint}")
        default = field_default(valid[key])
        if is_dataclass(default):
            if not isinstance(value, Mapping):
                names = ", ".join(f.name for f in fields(default))
                raise UsageError(f"{source}: '{prefix}{key}' must be a table of settings ({names})")
            check_settings(type(default), value, source, f"{prefix}{key}.")
        elif not _fits(value, hints[key]):
            raise UsageError(f"{source}: '{prefix}{key}' = {value!r}: expected {_type_name(hints[key])}")


_SCALARS = {bool: "true or false", int: "a whole number", float: "a number", str: "text", type(None): "null"}


def _fits(value: Any, hint: Any) -> bool:
    """Whether a JSON/TOML value fits a setting's annotation (an int fits a float; a list fits a tuple)."""
    origin = get_origin(hint)
    if origin is tuple:
        return isinstance(value, list | tuple) and all(_fits(v, get_args(hint)[0]) for v in value)
    if origin is not None:  # X | None
        return any(_fits(value, h) for h in get_args(hint))
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)


def _type_name(hint: Any) -> str:
    if get_origin(hint) is tuple:
        return "a list of numbers"
    args = get_args(hint) or (hint,)
    return " or ".join(_SCALARS.get(h, getattr(h, "__name__", str(h))) for h in args)


def load_config_file(path: str | Path, cls: type[Any] | None = None) -> dict[str, Any]:
    """Read a ``--config`` file as a dict: JSON, or TOML when the name ends in ``.toml``.

    Both formats give the same dict and go through the same checks: with ``cls``, a key it has no setting for
    (a typo, at any nesting level) is a :class:`~mura_cli.errors.UsageError` naming the closest valid key.
    """
    from mura_cli.utils import read_json

    p = Path(path)
    if p.suffix.lower() == ".toml":
        import tomllib

        try:
            data = tomllib.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise UsageError(f"{p}: config file not found") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise UsageError(f"{p}: not valid TOML ({exc}); fix the file") from None
    else:
        data = read_json(p, "settings", missing="{path}: config file not found")
    if cls is not None:
        check_settings(cls, data, f"--config {p}")
    return data
