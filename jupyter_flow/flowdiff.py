"""What changed between two versions of a flow: `jupyter-flow diff A B`.

A and B are flow files (`.flow.yaml`, `.flow.json`) or ``FILE@REV``, the file as it was at a
git revision (``flows/intent.flow.yaml@HEAD~1``, ``x.flow.yaml@main``). The answer lists
nodes added and removed, nodes changed field by field (``config.endpoint``, ``timeout_s``,
``config.messages[0].content``), edges added and removed, and inputs, outputs and flow
settings changed. Positions in ``layout`` are not a change of the flow.

Exit codes follow ``diff``'s: 0 the flows are the same, 1 they differ, 2 a file could not
be read or is not a flow (the message names it).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jupyter_flow.errors import FlowError, FlowFileError
from jupyter_flow.spec import FlowSpec, load_spec, parse_spec_text

__all__ = ["FieldChange", "FlowDiff", "NodeChange", "add_to_cli", "diff_flows", "diff_values", "load_flow_version"]

#: How long `git show` may take to give a file at a revision.
GIT_TIMEOUT_S = 30
_SETTINGS = ("name", "description", "timeout_s", "max_concurrency")


@dataclass(frozen=True)
class FieldChange:
    """One field that differs: its path (``config.endpoint``), the value before and after
    (`MISSING` where the field is absent on one side)."""

    path: str
    before: Any
    after: Any

    def text(self) -> str:
        return f"{self.path}: {_short(self.before)} -> {_short(self.after)}"


class _Missing:
    def __repr__(self) -> str:
        return "(absent)"


MISSING: Any = _Missing()


@dataclass(frozen=True)
class NodeChange:
    node: str
    fields: list[FieldChange]


@dataclass
class FlowDiff:
    """Two flows compared (see the module's docstring)."""

    before: str
    after: str
    nodes_added: list[str] = field(default_factory=list)
    nodes_removed: list[str] = field(default_factory=list)
    nodes_changed: list[NodeChange] = field(default_factory=list)
    edges_added: list[dict[str, Any]] = field(default_factory=list)
    edges_removed: list[dict[str, Any]] = field(default_factory=list)
    inputs: list[FieldChange] = field(default_factory=list)
    outputs: list[FieldChange] = field(default_factory=list)
    settings: list[FieldChange] = field(default_factory=list)

    @property
    def same(self) -> bool:
        return not (self.nodes_added or self.nodes_removed or self.nodes_changed or self.edges_added
                    or self.edges_removed or self.inputs or self.outputs or self.settings)

    def changed_nodes(self) -> set[str]:
        """Nodes added or changed: what a run of the second flow computes anew."""
        return set(self.nodes_added) | {c.node for c in self.nodes_changed}

    def to_dict(self) -> dict[str, Any]:
        def changes(items: list[FieldChange]) -> list[dict[str, Any]]:
            return [{"field": c.path, "before": _plain(c.before), "after": _plain(c.after)} for c in items]

        return {
            "before": self.before, "after": self.after, "same": self.same,
            "nodes": {"added": self.nodes_added, "removed": self.nodes_removed,
                      "changed": {c.node: changes(c.fields) for c in self.nodes_changed}},
            "edges": {"added": self.edges_added, "removed": self.edges_removed},
            "inputs": changes(self.inputs), "outputs": changes(self.outputs), "settings": changes(self.settings),
        }

    def text(self) -> str:
        if self.same:
            return f"{self.before} and {self.after}: the same flow"
        lines = [f"--- {self.before}", f"+++ {self.after}"]
        lines += [f"+ node {n}" for n in self.nodes_added]
        lines += [f"- node {n}" for n in self.nodes_removed]
        for change in self.nodes_changed:
            lines.append(f"~ node {change.node}")
            lines += [f"    {c.text()}" for c in change.fields]
        lines += [f"+ edge {_edge_text(e)}" for e in self.edges_added]
        lines += [f"- edge {_edge_text(e)}" for e in self.edges_removed]
        for title, items in (("input", self.inputs), ("output", self.outputs), ("setting", self.settings)):
            lines += [f"~ {title} {c.text()}" for c in items]
        return "\n".join(lines)


def diff_values(before: Any, after: Any, path: str = "") -> list[FieldChange]:
    """Every leaf that differs between two JSON-like values, with its path."""
    return list(_walk(before, after, path))


def _walk(before: Any, after: Any, path: str) -> Iterator[FieldChange]:
    if isinstance(before, Mapping) and isinstance(after, Mapping):
        for key in list(before) + [k for k in after if k not in before]:
            sub = f"{path}.{key}" if path else str(key)
            yield from _walk(before.get(key, MISSING), after.get(key, MISSING), sub)
    elif isinstance(before, list) and isinstance(after, list) and len(before) == len(after):
        for i, (b, a) in enumerate(zip(before, after)):
            yield from _walk(b, a, f"{path}[{i}]")
    elif before is MISSING or after is MISSING or before != after or type(before) is not type(after):
        yield FieldChange(path or "(value)", before, after)


def _node_body(spec: FlowSpec, index: int) -> dict[str, Any]:
    return spec.nodes[index].model_dump(mode="json", by_alias=True, exclude_defaults=True, exclude={"id"})


def _edge_key(edge: Mapping[str, Any]) -> str:
    return json.dumps(edge, sort_keys=True)


def _edge_text(edge: Mapping[str, Any]) -> str:
    extra = ", ".join(f"{k}: {_short(v)}" for k, v in edge.items() if k not in ("from", "to"))
    return f"{edge.get('from')} -> {edge.get('to')}" + (f" ({extra})" if extra else "")


def diff_flows(before: FlowSpec, after: FlowSpec, *, before_name: str = "before", after_name: str = "after") -> FlowDiff:
    """`before` and `after` compared (see the module's docstring)."""
    out = FlowDiff(before_name, after_name)
    old = {n.id: i for i, n in enumerate(before.nodes)}
    new = {n.id: i for i, n in enumerate(after.nodes)}
    out.nodes_added = [n for n in new if n not in old]
    out.nodes_removed = [n for n in old if n not in new]
    for node_id, i in old.items():
        if node_id in new:
            fields = diff_values(_node_body(before, i), _node_body(after, new[node_id]))
            if fields:
                out.nodes_changed.append(NodeChange(node_id, fields))
    old_edges = {_edge_key(e): e for e in (x.model_dump(mode="json", by_alias=True, exclude_defaults=True) for x in before.edges)}
    new_edges = {_edge_key(e): e for e in (x.model_dump(mode="json", by_alias=True, exclude_defaults=True) for x in after.edges)}
    out.edges_added = [e for k, e in new_edges.items() if k not in old_edges]
    out.edges_removed = [e for k, e in old_edges.items() if k not in new_edges]
    out.inputs = diff_values({k: v.model_dump(mode="json", exclude_defaults=True) for k, v in before.inputs.items()},
                             {k: v.model_dump(mode="json", exclude_defaults=True) for k, v in after.inputs.items()})
    out.outputs = diff_values(dict(before.outputs), dict(after.outputs))
    out.settings = diff_values({k: getattr(before, k) for k in _SETTINGS}, {k: getattr(after, k) for k in _SETTINGS})
    return out


def load_flow_version(ref: str | Path, *, cwd: Path | None = None) -> FlowSpec:
    """A flow file, or ``FILE@REV``: the file as git holds it at revision REV. Never runs
    anything the flow names."""
    text = str(ref)
    path, at, rev = text.rpartition("@")
    if not at or not rev or Path(text).exists():
        return load_spec(text)
    file = Path(path)
    folder = (file.parent if file.parent != Path("") else Path(".")).resolve() if cwd is None else cwd
    try:
        top = _git(["rev-parse", "--show-toplevel"], folder).strip()
        inside = file.resolve().relative_to(Path(top).resolve()).as_posix()
        data = _git(["show", f"{rev}:{inside}"], folder)
    except ValueError:
        raise FlowFileError("is not inside the git work tree it names", source=text) from None
    return parse_spec_text(data, source=text, as_json=file.suffix.lower() == ".json")


def _git(args: list[str], cwd: Path) -> str:
    try:
        proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=GIT_TIMEOUT_S, check=False)
    except FileNotFoundError:
        raise FlowFileError("FILE@REV needs git, which is not installed", source=str(cwd)) from None
    except subprocess.TimeoutExpired:
        raise FlowFileError(f"git {args[0]} took longer than {GIT_TIMEOUT_S} s", source=str(cwd)) from None
    if proc.returncode != 0:
        raise FlowFileError(f"git {' '.join(args)}: {proc.stderr.strip() or 'failed'}", source=str(cwd))
    return proc.stdout


def _plain(value: Any) -> Any:
    return None if value is MISSING else value


def _short(value: Any, limit: int = 80) -> str:
    if value is MISSING:
        return "(absent)"
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _cmd_diff(args: argparse.Namespace) -> int:
    try:
        before, after = load_flow_version(args.before), load_flow_version(args.after)
    except FlowError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    result = diff_flows(before, after, before_name=args.before, after_name=args.after)
    print(json.dumps(result.to_dict(), indent=2, ensure_ascii=False) if args.json else result.text())
    return 0 if result.same else 1


def add_to_cli(sub: Any) -> None:
    p = sub.add_parser("diff", help="what changed between two flow files (FILE or FILE@REV)",
                       description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("before", help="a flow file, or FILE@REV for the file at a git revision")
    p.add_argument("after", help="a flow file, or FILE@REV")
    p.add_argument("--json", action="store_true", help="print the differences as JSON")
    p.set_defaults(fn=_cmd_diff)
