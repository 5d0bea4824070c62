"""The options of a batch, checked once: the local and the Ray engine read the same value.

`run_batch(..., concurrency=8, resume=True)` and the other entry points take these as
keyword arguments (users call them so) and build one `BatchOptions`; everything below
them passes that value on.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from jupyter_flow.batch.items import BatchInputError
from jupyter_flow.cache import CacheChoice, NodeCache, node_cache
from jupyter_flow.errors import Problem
from jupyter_flow.history import HistoryChoice, RunHistory, run_history

__all__ = ["BatchOptions", "allowed_failures", "parse_max_failures"]

_EMPTY: Mapping[str, Any] = MappingProxyType({})
_EVERY_ITEM = 2**62  # "100%": every item may fail


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


def parse_max_failures(value: int | float | str | None) -> int | float:
    """`max_failures` as a count (an int) or a share of the items (a float below 1).

    Takes a whole number (`3`, `"3"`), a percentage (`"5%"`) or a fraction (`0.05`);
    raises ValueError saying what it takes otherwise."""
    expected = "a whole number of items (e.g. 3) or a share of them (e.g. '5%' or 0.05)"
    if value is None:
        return 0
    if isinstance(value, bool):
        raise ValueError(f"must be {expected}, not {value!r}")
    if isinstance(value, str):
        text = value.strip()
        try:
            if text.endswith("%"):
                share = float(text[:-1]) / 100
                if not 0 <= share <= 1:
                    raise ValueError
                return share if share < 1 else _EVERY_ITEM
            value = int(text) if text.lstrip("+-").isdigit() else float(text)  # "0.05", as the message offers
        except ValueError:
            raise ValueError(f"must be {expected}, not {value!r}") from None
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"must be 0 or more, not {value}")
        return value
    if isinstance(value, float) and 0 <= value < 1:
        return value
    if isinstance(value, float) and value.is_integer() and value >= 1:
        return int(value)
    raise ValueError(f"must be {expected}, not {value!r}")


def allowed_failures(max_failures: int | float, total: int) -> int:
    """How many of `total` items may fail under `max_failures` (see `parse_max_failures`)."""
    if isinstance(max_failures, float):
        return math.floor(max_failures * total + 1e-9)
    return max_failures


@dataclass(frozen=True)
class BatchOptions:
    """How a batch runs.

    - `concurrency`: items run at once (at least 1); on Ray, at once in each replica;
    - `resume`: keep the results already in the output folder and skip their items;
      without it earlier results there are moved aside. Results of another version of
      the flow refuse the resume (see `jupyter_flow.batch.resume`);
    - `rerun_changed`: resume, running again the items whose results another version
      of the flow made (their old results are moved aside);
    - `fail_fast`: stop at the first failed item (BatchStoppedError names it and the node);
    - `progress`: True (a tqdm bar on stderr), "auto" (tqdm.auto: a widget in Jupyter),
      False or None (no bar), or a tqdm-like class;
    - `input_name`: the input each file's path goes to, for a folder or glob of files
      (default: the flow's single file input);
    - `settings`: given to every run (e.g. `{"device": "cuda"}`);
    - `endpoints`: http node endpoints to use instead of the flow's, by node id;
    - `common_inputs`: inputs given to every item (an item's own inputs win);
    - `max_failures`: how many failed items the batch accepts and still counts as a
      success: a number (0: none, the default), or a share of the items as `"5%"` or a
      fraction below 1 (`0.05`); see `BatchSummary.succeeded`;
    - `cache`: every item's run goes through this node cache (True: the default folder, a
      folder, or a `NodeCache`; on Ray each replica opens the same folder);
    - `history`: every item's run is recorded in this run history (True: the default
      file, a file, or a `RunHistory`).

    Invalid values raise BatchInputError naming the field.
    """

    concurrency: int = 4
    resume: bool = False
    rerun_changed: bool = False
    fail_fast: bool = False
    progress: Any = True
    input_name: str | None = None
    settings: Mapping[str, Any] = field(default_factory=dict)
    endpoints: Mapping[str, str] = field(default_factory=dict)
    common_inputs: Mapping[str, Any] = field(default_factory=dict)
    max_failures: int | float | str = 0
    cache: CacheChoice = None
    history: HistoryChoice = None

    def node_cache(self) -> NodeCache | None:
        return self.cache if isinstance(self.cache, NodeCache) else None

    def run_history(self) -> RunHistory | None:
        return self.history if isinstance(self.history, RunHistory) else None

    def __post_init__(self) -> None:
        problems: list[Problem] = []
        try:
            object.__setattr__(self, "max_failures", parse_max_failures(self.max_failures))
        except ValueError as exc:
            problems.append(Problem(str(exc), field="max_failures"))
        if isinstance(self.concurrency, bool) or not isinstance(self.concurrency, int):
            problems.append(Problem(f"must be a whole number, not {self.concurrency!r}", field="concurrency"))
        elif self.concurrency < 1:
            problems.append(Problem(f"must be at least 1, not {self.concurrency}", field="concurrency"))
        for name in ("resume", "rerun_changed", "fail_fast"):
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
        try:
            object.__setattr__(self, "cache", node_cache(self.cache))
        except TypeError as exc:
            problems.append(Problem(str(exc), field="cache"))
        try:
            object.__setattr__(self, "history", run_history(self.history))
        except TypeError as exc:
            problems.append(Problem(str(exc), field="history"))
        if problems:
            raise BatchInputError(problems)
