"""Captured tensors to files: ``jupyter-flow run FLOW --capture NODE:NAME --save-tensors DIR``.

`add_captures` asks nodes for more captures than their flow file names (a module path,
or ``attentions`` on a `transformers` node); `save_tensors` writes what a run captured
as safetensors files, one per node and name (``NODE.NAME.safetensors``), with
``index.json`` listing each file's tensors (key, shape, dtype) and the node's tokens.
A tensor captured for a whole list of inputs is stored under the key ``tensor``; one
kept per input (attentions, or activations whose lengths differ) under ``input_0``,
``input_1``, ...
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jupyter_flow.errors import FlowValidationError, Problem

if TYPE_CHECKING:
    from jupyter_flow.flow import Flow
    from jupyter_flow.trace import RunResult

__all__ = ["INDEX", "add_captures", "captured_names", "parse_captures", "save_tensors"]

INDEX = "index.json"


def parse_captures(values: Iterable[str], flag: str = "--capture") -> list[tuple[str, str]]:
    """``NODE:NAME`` strings as pairs; a malformed one raises ValueError naming it."""
    pairs: list[tuple[str, str]] = []
    for value in values:
        node, sep, name = value.partition(":")
        if not sep or not node.strip() or not name.strip():
            raise ValueError(f"{flag} {value!r}: expected NODE:NAME (a node id, then a module path or `attentions`)")
        pairs.append((node.strip(), name.strip()))
    return pairs


def add_captures(flow: Flow, pairs: Sequence[tuple[str, str]]) -> Flow:
    """The flow with each node's `capture` list extended by the requested names. A node
    that is not in the flow, or whose kind captures nothing, is a validation error."""
    from jupyter_flow.flow import Flow as FlowClass
    from jupyter_flow.spec import spec_from_dict, spec_to_dict

    if not pairs:
        return flow
    data = spec_to_dict(flow.spec)
    nodes = {n["id"]: n for n in data.get("nodes", [])}
    problems: list[Problem] = []
    for node_id, name in pairs:
        node = nodes.get(node_id)
        if node is None:
            problems.append(Problem(f"--capture {node_id}:{name}: no node {node_id!r} in the flow (nodes: {', '.join(nodes)})",
                                    node=node_id, field="config.capture"))
            continue
        kind = node.get("type") or ""
        try:
            fields = flow.registry.get(kind).Config.model_fields
        except (KeyError, ImportError, AttributeError):
            fields = {}
        if "capture" not in fields:
            problems.append(Problem(f"--capture {node_id}:{name}: node {node_id!r} is a {kind or 'typeless'} node, which "
                                    "captures no tensors (local model nodes do: torch, transformers)",
                                    node=node_id, field="config.capture"))
            continue
        config = node.setdefault("config", {})
        capture = list(config.get("capture") or [])
        if name not in capture:
            capture.append(name)
        config["capture"] = capture
    if problems:
        raise FlowValidationError(problems)
    return FlowClass(spec_from_dict(data), source=flow.source, registry=flow.registry, functions=flow.functions)


def captured_names(flow: Flow) -> list[tuple[str, str]]:
    """Every (node, name) the flow's nodes capture (`capture:` in their configs)."""
    pairs: list[tuple[str, str]] = []
    for node in flow.spec.nodes:
        capture = node.config.get("capture") if isinstance(node.config, dict) else None
        if isinstance(capture, list):
            pairs += [(node.id, str(name)) for name in capture]
    return pairs


def _file_name(node: str, name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", f"{node}.{name}") + ".safetensors"


def save_tensors(result: RunResult, pairs: Sequence[tuple[str, str]], folder: str | Path) -> dict[str, Any]:
    """Write the requested captures of `result` into `folder` (made if missing); returns
    the index also written there. A capture the run did not produce (a skipped node) is
    listed under ``"missing"`` with the reason."""
    import torch
    from safetensors.torch import save_file

    from jupyter_flow.capture import tokens

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    index: dict[str, Any] = {"flow": result.flow, "run_id": result.run_id, "files": [], "missing": []}
    for node, name in dict.fromkeys(pairs):
        try:
            value = result.tensors(node).get(name)
        except KeyError as exc:
            index["missing"].append({"node": node, "name": name, "reason": str(exc.args[0] if exc.args else exc)})
            continue
        if value is None:
            index["missing"].append({"node": node, "name": name, "reason": f"node {node!r} captured no {name!r} in this run"})
            continue
        parts = {"tensor": value} if not isinstance(value, list) else {f"input_{i}": v for i, v in enumerate(value)}
        tensors = {k: (v if isinstance(v, torch.Tensor) else torch.as_tensor(v)).detach().cpu().contiguous()
                   for k, v in parts.items()}
        file = _file_name(node, name)
        save_file(tensors, str(out / file), metadata={"node": node, "name": name})
        index["files"].append({
            "node": node,
            "name": name,
            "file": file,
            "tensors": {k: {"shape": list(t.shape), "dtype": str(t.dtype).replace("torch.", "")} for k, t in tensors.items()},
            "tokens": tokens(result, node),
        })
    (out / INDEX).write_text(json.dumps(index, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return index
