"""The colours of node kinds and run statuses, computed here and nowhere else.

The notebook workbench draws with these (through `jupyter_flow.workbench.styles`), and the
JupyterLab extension asks the server extension for them (`GET jupyter-flow/api/palette`),
so a node kind, built-in or from a plug-in, has one colour everywhere. No widget imports:
the server extension loads this module.
"""

from __future__ import annotations

import hashlib
from typing import Any

__all__ = [
    "KIND_COLOURS",
    "PROBLEM_COLOUR",
    "SELECTED_COLOUR",
    "SPARE_COLOURS",
    "STATUSES",
    "STATUS_COLOURS",
    "kind_colour",
    "palette",
]

KIND_COLOURS: dict[str, str] = {
    "http": "#4e79a7",
    "inference": "#499894",
    "python": "#59a14f",
    "template": "#76b7b2",
    "switch": "#edc948",
    "vote": "#b07aa1",
    "torch": "#f28e2b",
    "transformers": "#ff9da7",
    "pdf": "#9c755f",
    "rules": "#bab0ac",
    "report": "#8cd17d",
    "llm": "#e15759",
    "coalesce": "#d7b5a6",
    "placeholder": "#79706e",
    "agent": "#6a3d9a",
}
#: The colours kinds from plug-ins get, picked by a hash of the kind's name.
SPARE_COLOURS: tuple[str, ...] = ("#86bcb6", "#d37295", "#a0cbe8", "#ffbe7d", "#d4a6c8", "#b6992d")

#: Run statuses of a node, in the order a run goes through them, and their colours.
STATUS_COLOURS: dict[str, str] = {
    "pending": "#d0d4da",
    "running": "#f5b82e",
    "ok": "#3aa655",
    "error": "#d64541",
    "skipped": "#eeeeee",
    "cancelled": "#9b72cf",
}
STATUSES = tuple(STATUS_COLOURS)
PROBLEM_COLOUR = "#e00000"
SELECTED_COLOUR = "#1f3b73"


def kind_colour(kind: str) -> str:
    """The colour of a node kind; kinds from plug-ins get a stable colour of their own."""
    if kind in KIND_COLOURS:
        return KIND_COLOURS[kind]
    index = int.from_bytes(hashlib.blake2b(kind.encode(), digest_size=2).digest(), "big")
    return SPARE_COLOURS[index % len(SPARE_COLOURS)]


def palette(registry: Any = None) -> list[dict[str, Any]]:
    """`{"kind", "colour", "builtin"}` for every node kind `registry` offers (by default the
    process-wide one: built-in kinds and the `jupyter_flow.nodes` entry points), sorted by
    kind. A kind whose class says `palette = False` (one made by a tool, not by a user) is
    left out; a kind whose class cannot be imported is listed all the same."""
    from jupyter_flow.nodes.registry import NodeRegistry, default_registry

    registry = registry if registry is not None else default_registry()
    builtin = set(NodeRegistry(entry_points_group=None).kinds())
    return [{"kind": kind, "colour": kind_colour(kind), "builtin": kind in builtin}
            for kind in registry.kinds() if _offered(registry, kind)]


def _offered(registry: Any, kind: str) -> bool:
    try:
        cls = registry.get(kind)
    except Exception:  # a plug-in that does not import: still listed, its use reports why
        return True
    return bool(cls.palette)
