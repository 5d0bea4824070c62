"""Tensor capture: forward hooks on named submodules, and handing the tensors back.

``capture: [bert.pooler, classifier]`` names submodules by their dotted path (as in
``model.named_modules()``). During a forward pass each named module's output (its first
tensor when it returns a tuple or a model-output object) is kept, detached. A batched
forward pass is split back per item along the batch dimension; token-level activations
are cut to the item's own tokens, so an item sees what it would have seen alone.

Captured tensors stay live in the node's outputs under ``"captured"`` (the trace JSON
summarizes them); `tensors(result, node_id)` hands them back to a notebook user.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from jupyter_flow.errors import NodeError

if TYPE_CHECKING:
    from jupyter_flow.trace import RunResult

__all__ = ["PER_INPUT", "Capture", "check_capturable", "first_tensor", "merge_items", "tensors", "tokens"]

PER_INPUT = frozenset({"attentions"})  # captures with no batch dimension: kept one per input, never joined


def first_tensor(value: Any) -> Any:
    """The tensor a module produced: itself, the first of a tuple, or the first field of a
    model-output object / dict."""
    import torch

    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, Mapping):
        value = list(value.values())
    if isinstance(value, (tuple, list)):
        for v in value:
            t = first_tensor(v)
            if t is not None:
                return t
    return None


def check_capturable(model: Any, names: Sequence[str], *, node: str | None, field: str = "config.capture") -> dict[str, Any]:
    """The submodules to hook, by name; an unknown name is an error that lists close ones."""
    import torch

    if not names:
        return {}
    if isinstance(model, torch.jit.ScriptModule) or not hasattr(model, "named_modules"):
        raise NodeError(
            f"{field}: capture needs an eager nn.Module; this model is {type(model).__name__} "
            "(TorchScript and torch.export models cannot take forward hooks: load it with `factory` + `weights` instead)",
            node=node,
            retryable=False,
        )
    modules = dict(model.named_modules())
    found: dict[str, Any] = {}
    for name in names:
        if name not in modules:
            close = difflib.get_close_matches(name, [n for n in modules if n], n=5, cutoff=0.5)
            hint = f" (did you mean: {', '.join(close)}?)" if close else ""
            some = ", ".join(n for n in list(modules)[1:9] if n)
            raise NodeError(
                f"{field}: the model has no submodule {name!r}{hint}; its submodules include: {some}, ...",
                node=node,
                retryable=False,
            )
        found[name] = modules[name]
    return found


class Capture:
    """Forward hooks on the given modules for the duration of a ``with`` block."""

    def __init__(self, modules: Mapping[str, Any]) -> None:
        self.modules = dict(modules)
        self.activations: dict[str, Any] = {}
        self._handles: list[Any] = []

    def __enter__(self) -> Capture:
        for name, module in self.modules.items():
            self._handles.append(module.register_forward_hook(self._hook(name)))
        return self

    def _hook(self, name: str) -> Any:
        def hook(_module: Any, _args: Any, output: Any) -> None:
            t = first_tensor(output)
            if t is not None:
                self.activations[name] = t.detach()

        return hook

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def item(self, index: int, batch_size: int, length: int | None = None, padded_length: int | None = None) -> dict[str, Any]:
        """One item's activations, with a batch dimension of 1. `length` cuts a token
        dimension (dim 1, of size `padded_length`) to the item's own tokens."""
        out: dict[str, Any] = {}
        for name, t in self.activations.items():
            if t.dim() == 0 or t.shape[0] != batch_size:
                out[name] = t  # not batched along dim 0: every item sees the whole tensor
                continue
            row = t[index : index + 1]
            if length is not None and row.dim() >= 2 and row.shape[1] == padded_length:
                row = row[:, :length]
            out[name] = row
        return out


def merge_items(items: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Per-item captures joined back: concatenated along dim 0 when the shapes allow it,
    else a list of per-item tensors (always a list for the `PER_INPUT` names)."""
    import torch

    if not items:
        return {}
    merged: dict[str, Any] = {}
    for name in items[0]:
        parts = [it[name] for it in items if name in it]
        if name not in PER_INPUT and all(p.shape[1:] == parts[0].shape[1:] and p.dim() > 0 for p in parts):
            merged[name] = torch.cat(parts, dim=0)
        else:
            merged[name] = parts
    return merged


def tensors(result: RunResult, node_id: str) -> dict[str, Any]:
    """The live tensors a node captured in a run: ``{module path: tensor}``.

    For a node given a list, the items' activations are joined along dim 0 (a list of
    tensors where their shapes differ)."""
    try:
        record = result.records[node_id]
    except KeyError:
        raise KeyError(f"no node {node_id!r} in this run (nodes: {', '.join(result.records)})") from None
    out = record.outputs
    if isinstance(out, Mapping):
        captured = out.get("captured")
        if captured is None:
            raise KeyError(f"node {node_id!r} captured nothing (give it `capture: [module.path, ...]`)")
        return dict(captured)
    if isinstance(out, Sequence) and not isinstance(out, (str, bytes)):
        items = [o["captured"] for o in out if isinstance(o, Mapping) and "captured" in o]
        if not items:
            raise KeyError(f"node {node_id!r} captured nothing (give it `capture: [module.path, ...]`)")
        return merge_items(items)
    raise KeyError(f"node {node_id!r} has no outputs in this run (status: {record.status})")


def tokens(result: RunResult, node_id: str) -> list[list[str]]:
    """The tokens of each input a node captured tensors for (one list per input), as the
    node's record keeps them; [] when it kept none."""
    try:
        record = result.records[node_id]
    except KeyError:
        raise KeyError(f"no node {node_id!r} in this run (nodes: {', '.join(result.records)})") from None
    kept = record.extra.get("tokens")
    return [list(t) for t in kept] if isinstance(kept, list) else []
