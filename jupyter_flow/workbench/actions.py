"""What the workbench's views may ask: one method per user action.

The views (graph, toolbar, panels, bars) read the state to draw it and send what the user
did through `WorkbenchActions`; they hold no flow logic of their own. `WorkbenchState`
is the implementation; a test can hand a view anything else that has these methods.
Each action reports what it did as the state's notice; one that cannot be done also
raises `FlowValidationError` (a view's button catches it: the notice already says why).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, Protocol

from jupyter_flow.spec import PathLike
from jupyter_flow.trace import RunResult
from jupyter_flow.workbench.events import Place

__all__ = ["Selection", "WorkbenchActions"]

#: What is selected: ("node", node id) or ("edge", "source->target"); None is the flow.
Selection = tuple[Literal["node", "edge"], str]


class WorkbenchActions(Protocol):
    # -- selecting and wiring -------------------------------------------------------
    def select(self, node_id: str | None) -> None: ...

    def select_edge(self, key: str) -> None: ...

    def click_node(self, node_id: str) -> None: ...

    def set_wiring(self, on: bool) -> None: ...

    # -- editing ---------------------------------------------------------------------
    def add_node(self, kind: str, node_id: str | None = None, config: Mapping[str, Any] | None = None,
                 position: tuple[float, float] | None = None, **fields: Any) -> str: ...

    def delete_selected(self) -> None: ...

    def apply_settings(self, text: str) -> None: ...

    def move(self, node_id: str, x: float, y: float) -> bool: ...

    def undo(self) -> str | None: ...

    def redo(self) -> str | None: ...

    # -- running ---------------------------------------------------------------------
    def set_input(self, name: str, value: Any) -> None: ...

    def set_inputs(self, values: Mapping[str, Any]) -> None: ...

    def run(self, inputs: Mapping[str, Any] | None = None, *, rerun: str | None = None) -> asyncio.Task[RunResult | None]: ...

    def run_from(self, node_id: str | None = None, inputs: Mapping[str, Any] | None = None) -> asyncio.Task[RunResult | None]: ...

    def cancel(self) -> bool: ...

    def to_variable(self, node_id: str | None = None, name: str | None = None, what: str = "outputs") -> str: ...

    # -- change, run, compare -------------------------------------------------------
    def clear_cache(self, node_id: str | None = None) -> int: ...

    def compare(self, before: str | None = None, after: str | None = None) -> Any: ...

    def clear_marks(self) -> None: ...

    # -- files -----------------------------------------------------------------------
    def open(self, path: PathLike) -> None: ...

    def save(self, path: PathLike | None = None) -> Path: ...

    def export_notebook(self, path: PathLike | None = None) -> Path: ...

    # -- what a control could not do -------------------------------------------------
    def report(self, text: str, *, place: Place, error: bool = True) -> None: ...
