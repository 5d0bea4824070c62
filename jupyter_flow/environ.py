"""Reading environment variables on hot paths: every run checks the tracing variables and
every HTTP call expands the `${VAR}` in its endpoint, so that a notebook that sets them
later is heard at once. `os.environ.get` encodes the name and decodes the value on each
call; these read the process environment's own store and decode a value once per change.
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["any_set", "get"]

#: the process environment's own store (bytes on POSIX), kept current by `os.environ`
_DATA: Any = getattr(os.environ, "_data", None)
_ENCODE_KEY: Any = getattr(os.environ, "encodekey", None)
_DECODE_VALUE: Any = getattr(os.environ, "decodevalue", None)
if not (isinstance(_DATA, dict) and callable(_ENCODE_KEY) and callable(_DECODE_VALUE)):  # pragma: no cover
    _DATA = None  # an environment mapping without CPython's layout: os.environ.get every time

#: name -> its key in the store, and the last stored value seen with its decoded text
_KEYS: dict[str, Any] = {}
_SEEN: dict[str, tuple[Any, str]] = {}
#: names -> their keys in the store (`any_set`)
_KEY_TUPLES: dict[tuple[str, ...], tuple[Any, ...]] = {}


def _key(name: str) -> Any:
    key = _KEYS.get(name)
    if key is None:
        key = _KEYS[name] = _ENCODE_KEY(name)
    return key


def get(name: str) -> str | None:
    """`os.environ.get(name)`, as it is now."""
    if _DATA is None:  # pragma: no cover
        return os.environ.get(name)
    stored = _DATA.get(_key(name))
    if stored is None:
        return None
    seen = _SEEN.get(name)
    if seen is not None and seen[0] is stored:
        return seen[1]
    value: str = _DECODE_VALUE(stored)
    _SEEN[name] = (stored, value)
    return value


def any_set(names: tuple[str, ...]) -> bool:
    """Whether any of `names` is set now."""
    if _DATA is None:  # pragma: no cover
        return any(name in os.environ for name in names)
    keys = _KEY_TUPLES.get(names)
    if keys is None:
        keys = _KEY_TUPLES[names] = tuple(_key(name) for name in names)
    for key in keys:
        if key in _DATA:
            return True
    return False
