"""What a run's templates read of a node that is done: its `NodeOutcome`.

The engine puts one in the run's context for each node as it ends (`ok`, `SKIPPED`, or
an outcome with the error), and templates downstream read them: `{{ n.output.label }}`,
`{{ n.status }}`, `{{ n.error.message }}`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["SKIPPED", "NodeOutcome", "ok"]


@dataclass(frozen=True, slots=True, eq=False)
class NodeOutcome(Mapping[str, Any]):
    """What templates read of a node that is done: `{{ n.output }}`, `{{ n.status }}`
    (`ok`, `error` or `skipped`) and `{{ n.error }}` (`{type, message}`, or None). A
    read-only mapping of those three keys, so a template reads it as it reads a dict."""

    output: Any
    status: str
    error: Mapping[str, str] | None = None

    def __getitem__(self, key: str) -> Any:
        if key == "output":  # what nearly every template reads
            return self.output
        if key == "status":
            return self.status
        if key == "error":
            return self.error
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter(_KEYS)

    def __len__(self) -> int:
        return len(_KEYS)


_KEYS = ("output", "status", "error")
#: a node that did not run (shared: an outcome never changes)
SKIPPED = NodeOutcome(None, "skipped")


#: the setters of an outcome's slots, which `ok` calls (a frozen class's own `__init__`
#: goes through `object.__setattr__` for each field, which costs twice as much)
_SET_OUTPUT, _SET_STATUS, _SET_ERROR = (vars(NodeOutcome)[name].__set__ for name in _KEYS)


def ok(output: Any) -> NodeOutcome:
    """`NodeOutcome(output, "ok")`, made for every node of every run."""
    outcome: NodeOutcome = object.__new__(NodeOutcome)
    _SET_OUTPUT(outcome, output)
    _SET_STATUS(outcome, "ok")
    _SET_ERROR(outcome, None)
    return outcome
