"""Values kept per object, by the object's identity: for objects whose hash costs more than
what is kept saves (a code object hashes its whole bytecode, an httpx URL its whole text)."""

from __future__ import annotations

from typing import Generic, TypeVar

__all__ = ["ByIdentity"]

V = TypeVar("V")


class ByIdentity(Generic[V]):
    """At most `size` values, each kept for one object; when full, all are let go at once.
    An entry holds its object, so the object's id stays its own while the entry is there.
    Safe to share between threads (one dict operation at a time)."""

    __slots__ = ("_size", "_kept")

    def __init__(self, size: int) -> None:
        self._size = size
        self._kept: dict[int, tuple[object, V]] = {}

    def get(self, obj: object) -> V | None:
        kept = self._kept.get(id(obj))
        return kept[1] if kept is not None and kept[0] is obj else None

    def put(self, obj: object, value: V) -> V:
        if len(self._kept) >= self._size:
            self._kept.clear()
        self._kept[id(obj)] = (obj, value)
        return value
