"""What every workbench view builds its controls with: buttons whose actions never leave a
traceback, and the line beside a group of controls where what they did is said.

An action that cannot be done has already said why (the state's notice) when it raises a
`FlowError`; anything else it raises is said where the control is. Each group of controls
has a `FeedbackLine` for its `Place`: a notice shows on the line of its place, and every
other line is cleared, so only the latest message shows, next to what caused it.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any

from jupyter_flow.errors import FlowError
from jupyter_flow.workbench.actions import WorkbenchActions
from jupyter_flow.workbench.events import Change, Notice, Place
from jupyter_flow.workbench.state import WorkbenchState

__all__ = ["FeedbackLine", "button", "guarded", "notice_html"]


def guarded(actions: WorkbenchActions, place: Place, action: Callable[[], Any]) -> None:
    """Run a control's action; a failure is said at `place`, never raised into the widget."""
    try:
        action()
    except FlowError:
        pass  # the state has said why
    except Exception as exc:  # a control must never leave a traceback in the log
        actions.report(f"{type(exc).__name__}: {exc}", place=place)


def button(actions: WorkbenchActions, text: str, icon: str, action: Callable[[], Any], css: str, *,
           place: Place = "edit", style: str = "", tooltip: str = "") -> Any:
    """A button (CSS class `css`) that runs `action` guarded; never narrower than its text:
    a bar that runs out of room wraps instead."""
    import ipywidgets as w

    widget = w.Button(description=text, icon=icon, button_style=style, tooltip=tooltip,
                      layout=w.Layout(width="auto", flex="0 0 auto"))
    widget.add_class(css)
    widget.on_click(lambda _b: guarded(actions, place, action))
    return widget


def notice_html(notice: Notice) -> str:
    colour = "#b00000" if notice.error else "#225522"
    body = html.escape(notice.text).replace("\n", "<br>")
    return f"<div style='color:{colour};white-space:pre-wrap;line-height:1.3'>{'&#9888; ' if notice.error else ''}{body}</div>"


class FeedbackLine:
    """Where the notices of one place show (an HTML widget, CSS class `jf-PLACE-feedback`)."""

    def __init__(self, state: WorkbenchState, place: Place, *, grow: str = "1 1 200px") -> None:
        import ipywidgets as w

        self.state, self.place = state, place
        self.widget = w.HTML("", layout=w.Layout(flex=grow, min_width="0"))
        self.widget.add_class("jf-feedback")
        self.widget.add_class(f"jf-{place}-feedback")
        state.subscribe(self._changed, ("notice",))

    def _changed(self, _change: Change) -> None:
        notice = self.state.notice
        self.widget.value = notice_html(notice) if notice is not None and notice.place == self.place else ""
