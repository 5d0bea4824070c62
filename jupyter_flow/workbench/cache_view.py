"""The inspector's node-cache line: where the cache is, and "Clear cache for this node"."""

from __future__ import annotations

import html

from jupyter_flow.workbench.actions import WorkbenchActions
from jupyter_flow.workbench.controls import button
from jupyter_flow.workbench.events import Change
from jupyter_flow.workbench.state import WorkbenchState

__all__ = ["CacheBar"]


class CacheBar:
    """"Clear cache for this node" (enabled with a node selected and the cache on), and the
    cache's folder; what it did shows on the inspector's line."""

    def __init__(self, state: WorkbenchState, actions: WorkbenchActions) -> None:
        import ipywidgets as w

        self.state = state
        self.clear_button = button(actions, "Clear cache for this node", "eraser", lambda: actions.clear_cache(), "jf-clear-cache",
                                   place="inspect", tooltip="Remove this node's stored results: its next run computes it again")
        self.where = w.HTML(layout=w.Layout(flex="1 1 200px", min_width="0"))
        self.where.add_class("jf-cache-where")
        self.widget = w.HBox([self.clear_button, self.where], layout=w.Layout(flex_flow="row wrap", align_items="center"))
        self.widget.add_class("jf-cache-bar")
        state.subscribe(self._changed, ("selection", "file"))
        self.draw()

    def _changed(self, _change: Change) -> None:
        self.draw()

    def draw(self) -> None:
        cache = self.state.iteration.cache
        selected = self.state.selected
        self.clear_button.disabled = cache is None or selected is None or selected[0] != "node"
        if cache is None:
            self.where.value = "<small><i>node cache off (<code>Workbench(..., cache=True)</code>)</i></small>"
        else:
            self.where.value = f"<small>node cache: <code>{html.escape(str(cache.folder))}</code></small>"
