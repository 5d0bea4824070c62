"""How the workbench's state tells its views what changed: topics, notices, observers.

A user action changes the state, then the state notifies its observers once, with every
topic the action touched (an `open` changes the flow, the selection, the runs and the file
at once: one notification). A view subscribes to the topics it draws and redraws from the
state; it never receives the data itself, so what it draws is what the state holds.

Topics:
- ``flow``: the spec, its problems or the undo/redo history changed.
- ``selection``: the selected node or edge (re-selecting counts, to show it again).
- ``wiring``: wiring mode went on or off, or its source node changed.
- ``run``: a run started, finished or was cancelled, or the runs were cleared.
- ``record``: a node's record changed during a run (`Change.nodes` says which).
- ``inputs``: the inputs for the next run changed.
- ``notice``: the state has something to say (`WorkbenchState.notice`).
- ``file``: the flow's file changed (opened, saved elsewhere).
- ``history``: the runs listed from the run history, or the comparison shown, changed.
- ``evaluation``: the evaluation shown changed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Literal

from jupyter_flow.errors import Problem

__all__ = ["TOPICS", "Change", "Listener", "Notice", "Observers", "Place", "Topic"]

Topic = Literal["flow", "selection", "wiring", "run", "record", "inputs", "notice", "file", "history", "evaluation"]
TOPICS: frozenset[Topic] = frozenset(("flow", "selection", "wiring", "run", "record", "inputs", "notice", "file", "history",
                                      "evaluation"))

#: Which group of controls a notice concerns, so that it shows next to them: the edit
#: toolbar, the settings' Apply, the run bar, the inspector's "To variable", the file bar,
#: the History tab, the Evaluation tab.
Place = Literal["edit", "settings", "run", "inspect", "files", "history", "evaluation"]


@dataclass(frozen=True)
class Notice:
    """What the last action reported: a sentence for the user, whether it is an error,
    where it belongs, and the problems of a refused edit (each with its node and field)."""

    text: str
    place: Place = "edit"
    error: bool = False
    problems: tuple[Problem, ...] = ()


@dataclass(frozen=True)
class Change:
    """One notification: the topics an action changed, and the nodes whose run record changed."""

    topics: frozenset[Topic]
    nodes: frozenset[str] = frozenset()

    def __contains__(self, topic: object) -> bool:
        return topic in self.topics


Listener = Callable[[Change], None]


@dataclass
class _Subscription:
    listener: Listener
    topics: frozenset[Topic]


@dataclass
class Observers:
    """The listeners of a state, and its notice. Changes are collected while an action runs
    (actions nest, so an action that calls another notifies once) and sent when it ends."""

    #: what the last action reported
    notice: Notice | None = None
    _subscriptions: list[_Subscription] = field(default_factory=list)
    _depth: int = 0
    _topics: set[Topic] = field(default_factory=set)
    _nodes: set[str] = field(default_factory=set)

    def subscribe(self, listener: Listener, topics: Iterable[Topic] = TOPICS) -> Callable[[], None]:
        """Call `listener` after each action that changed one of `topics`; returns the
        function that ends the subscription."""
        subscription = _Subscription(listener, frozenset(topics))
        self._subscriptions.append(subscription)

        def unsubscribe() -> None:
            if subscription in self._subscriptions:
                self._subscriptions.remove(subscription)

        return unsubscribe

    def mark(self, *topics: Topic, nodes: Iterable[str] = ()) -> None:
        """Note what changed; sent when the outermost action ends (at once outside one)."""
        self._topics.update(topics)
        self._nodes.update(nodes)
        if self._depth == 0:
            self._send()

    def say(self, text: str, *, place: Place, error: bool = False, problems: Iterable[Problem] = ()) -> None:
        """Set the notice (what the action reports, and where)."""
        self.notice = Notice(text, place=place, error=error, problems=tuple(problems))
        self.mark("notice")

    @contextmanager
    def action(self, *topics: Topic) -> Iterator[None]:
        """One user action: what it changes (`topics`, and what it marks) is sent once, when
        the outermost action ends, whether it ends well or raises."""
        self._depth += 1
        try:
            self.mark(*topics)
            yield
        finally:
            self._depth -= 1
            if self._depth == 0:
                self._send()

    def _send(self) -> None:
        if not self._topics:
            return
        change = Change(frozenset(self._topics), frozenset(self._nodes))
        self._topics, self._nodes = set(), set()
        for subscription in list(self._subscriptions):
            if subscription.topics & change.topics:
                subscription.listener(change)
