"""The options of a batch, checked once: the local and the Ray engine read the same value.

`run_batch(..., concurrency=8, resume=True)` and the other entry points take these as
keyword arguments (users call them so) and build one `BatchOptions`; everything below
them passes that value on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from jupyter_flow.batch.items import BatchInputError
from jupyter_flow.errors import Problem

__all__ = ["BatchOptions"]

_EMPTY: Mapping[str, Any] = MappingProxyType({})


def _frozen(value: Any, name: str, problems: list[Problem]) -> Mapping[str, Any]:
    """`value` (a mapping with string keys, or None) as a read-only mapping."""
    if value is None:
        return _EMPTY
    if not isinstance(value, Mapping):
        problems.append(Problem(f"must be a mapping (a dict), not {type(value).__name__}", field=name))
        return _EMPTY
    for key in value:
        if not isinstance(key, str) or not key:
            problems.append(Problem(f"keys must be non-empty strings, not {key!r}", field=name))
    return MappingProxyType(dict(value))


@dataclass(frozen=True)
class BatchOptions:
    """How a batch runs.

    - `concurrency`: items run at once (at least 1); on Ray, at once in each replica;
    - `resume`: keep the results already in the output folder and skip their items;
      without it earlier results there are replaced;
    - `fail_fast`: stop at the first failed item (BatchStoppedError names it and the node);
    - `progress`: True (a tqdm bar on stderr), "auto" (tqdm.auto: a widget in Jupyter),
      False or None (no bar), or a tqdm-like class;
    - `input_name`: the input each file's path goes to, for a folder or glob of files
      (default: the flow's single file input);
    - `settings`: given to every run (e.g. `{"device": "cuda"}`);
    - `endpoints`: http node endpoints to use instead of the flow's, by node id;
    - `common_inputs`: inputs given to every item (an item's own inputs win).

    Invalid values raise BatchInputError naming the field.
    """

    concurrency: int = 4
    resume: bool = False
    fail_fast: bool = False
    progress: Any = True
    input_name: str | None = None
    settings: Mapping[str, Any] = field(default_factory=dict)
    endpoints: Mapping[str, str] = field(default_factory=dict)
    common_inputs: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        problems: list[Problem] = []
        if isinstance(self.concurrency, bool) or not isinstance(self.concurrency, int):
            problems.append(Problem(f"must be a whole number, not {self.concurrency!r}", field="concurrency"))
        elif self.concurrency < 1:
            problems.append(Problem(f"must be at least 1, not {self.concurrency}", field="concurrency"))
        for name in ("resume", "fail_fast"):
            if not isinstance(getattr(self, name), bool):
                problems.append(Problem(f"must be True or False, not {getattr(self, name)!r}", field=name))
        if not (self.progress in (True, False, None, "auto") or callable(self.progress)):
            problems.append(
                Problem(f"must be True, False, 'auto' or a tqdm-like class, not {self.progress!r}", field="progress")
            )
        if self.input_name is not None and (not isinstance(self.input_name, str) or not self.input_name):
            problems.append(Problem(f"must be an input's name, not {self.input_name!r}", field="input_name"))
        object.__setattr__(self, "settings", _frozen(self.settings, "settings", problems))
        object.__setattr__(self, "endpoints", _frozen(self.endpoints, "endpoints", problems))
        object.__setattr__(self, "common_inputs", _frozen(self.common_inputs, "common_inputs", problems))
        if problems:
            raise BatchInputError(problems)
