"""Shape checks for JSON that comes from disk (a project index, a received export manifest).

``json.loads`` gives whatever the file holds; code that indexes it would fail deep inside with a TypeError or
AttributeError that names neither the file nor the field. These checks fail at the door with both.
"""

from __future__ import annotations

from typing import Any

_KINDS = {dict: "an object ({...})", list: "a list ([...])", str: "a string", int: "a whole number"}


def _type_name(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "true/false", type(None): "null"}.get(
        type(value), type(value).__name__)


def check_object(value: Any, what: str, source: str, fix: str) -> dict[str, Any]:
    """``value`` when it is a JSON object, else a ValueError naming ``source`` and ``what``."""
    if not isinstance(value, dict):
        raise ValueError(f"{source}: {what} should be {_KINDS[dict]}, got {_type_name(value)} ({value!r:.60}); {fix}")
    return value


def check_list(d: dict[str, Any], field: str, source: str, fix: str, of: type = dict) -> list[Any]:
    """``d[field]`` (absent: ``[]``) when it is a list whose entries are all ``of``, else a ValueError."""
    value = d.get(field, [])
    if not isinstance(value, list):
        raise ValueError(f"{source}: '{field}' should be {_KINDS[list]}, got {_type_name(value)} "
                         f"({value!r:.60}); {fix}")
    for n, entry in enumerate(value):
        if not isinstance(entry, of) or (of is int and isinstance(entry, bool)):
            raise ValueError(f"{source}: '{field}' entry {n} should be {_KINDS[of]}, got {_type_name(entry)} "
                             f"({entry!r:.60}); {fix}")
    return value


def check_version(d: dict[str, Any], source: str, fix: str, default: int = 1) -> int:
    """The file's ``format_version`` as an int, else a ValueError naming the file."""
    value = d.get("format_version", default)
    if isinstance(value, bool) or not isinstance(value, (int, str)) or not str(value).strip().isdigit():
        raise ValueError(f"{source}: 'format_version' should be a whole number, got {value!r:.60}; {fix}")
    return int(value)
