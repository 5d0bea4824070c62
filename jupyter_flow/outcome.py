"""What a run's templates read of a node that is done: its `NodeOutcome`.

The engine puts one in the run's context for each node as it ends (an outcome that is
`ok`, `SKIPPED`, or one with the error), and templates downstream read them:
`{{ n.output.label }}`, `{{ n.status }}`, `{{ n.error.message }}`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from operator import attrgetter
from typing import Any

__all__ = ["SKIPPED", "NodeOutcome"]


class NodeOutcome(Mapping[str, Any]):
    """What templates read of a node that is done: `{{ n.output }}`, `{{ n.status }}`
    (`ok`, `error` or `skipped`) and `{{ n.error }}` (`{type, message}`, or None). A
    read-only mapping of those three keys, so a template reads it as it reads a dict; its
    attributes cannot be set (an outcome never changes: `SKIPPED` is shared).

    Made for every node of every run: its fields are slots its constructor sets, read
    through properties without a setter (a frozen dataclass's constructor would set each
    one through `object.__setattr__`, which costs twice as much)."""

    __slots__ = ("_output", "_status", "_error")

    def __init__(self, output: Any, status: str, error: Mapping[str, str] | None = None) -> None:
        self._output = output
        self._status = status
        self._error = error

    output: Any = property(attrgetter("_output"), doc="the node's outputs")
    status: str = property(attrgetter("_status"), doc="`ok`, `error` or `skipped`")  # type: ignore[assignment]
    error: Mapping[str, str] | None = property(attrgetter("_error"), doc="`{type, message}`, or None")  # type: ignore[assignment]

    def __getitem__(self, key: str) -> Any:
        if key == "output":  # what nearly every template reads
            return self._output
        if key == "status":
            return self._status
        if key == "error":
            return self._error
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter(_KEYS)

    def __len__(self) -> int:
        return len(_KEYS)

    def __repr__(self) -> str:
        return f"NodeOutcome(output={self._output!r}, status={self._status!r}, error={self._error!r})"


_KEYS = ("output", "status", "error")
#: a node that did not run (shared: an outcome never changes)
SKIPPED = NodeOutcome(None, "skipped")
