"""`torch`: run a PyTorch model (TorchScript, a `torch.export` archive, or a factory + weights)."""

from __future__ import annotations

import importlib
import json
import logging
import warnings
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pydantic import model_validator

from jupyter_flow.capture import Capture, check_capturable, first_tensor
from jupyter_flow.errors import NodeError, Problem
from jupyter_flow.expressions import is_template
from jupyter_flow.models import (
    LoadedModel,
    import_torch,
    peak_gpu_memory,
    source_stamp,
)
from jupyter_flow.nodes.base import NodeContext
from jupyter_flow.nodes.local_model import (
    BatchSpec,
    LocalModelConfig,
    LocalModelNode,
    upstream_nodes,
)
from jupyter_flow.sourcecheck import check_callable

__all__ = ["BatchSpec", "LocalModelConfig", "LocalModelNode", "TorchConfig", "TorchNode"]


class TorchConfig(LocalModelConfig):
    model: str | None = None
    factory: str | None = None
    factory_kwargs: dict[str, Any] = {}
    weights: str | None = None
    inputs: Any = None
    outputs: list[str] | None = None
    batched: bool = False

    @model_validator(mode="after")
    def _source(self) -> TorchConfig:
        if (self.model is None) == (self.factory is None):
            raise ValueError("give either `model` (a TorchScript or .pt2 file) or `factory` (module:function) with `weights`")
        if self.weights is not None and self.factory is None:
            raise ValueError("`weights` goes with `factory`; a TorchScript or .pt2 `model` carries its own weights")
        if self.factory is not None and ":" not in self.factory:
            raise ValueError(f"factory {self.factory!r} should read module:function")
        return self


class TorchNode(LocalModelNode):
    """Run a PyTorch model on tensors from templates.

    `inputs` is one template (one positional argument), a list (positional arguments) or a
    mapping (keyword arguments). By default each input is one example (no batch dimension)
    and the outputs are that example's; with `batched: true` dim 0 of every input indexes
    examples and the outputs keep it. The output is ``{"output": tensor}``, or named tensors
    for a model that returns a tuple (named by `outputs`) or a dict, plus ``"captured"``.
    """

    kind = "torch"
    Config = TorchConfig
    config: TorchConfig

    # -- static checks ---------------------------------------------------------------
    def problems(self) -> list[Problem]:
        c = self.config
        found: list[Problem] = []
        for fname in ("model", "weights"):
            value = getattr(c, fname)
            if value is not None and not is_template(value) and not self.local_path(value).exists():
                found.append(Problem(f"no such file: {self.where(value)}", node=self.id, field=f"config.{fname}"))
        if c.factory is not None:  # found without importing it: validation runs no code of the flow's
            why = check_callable(c.factory)
            if why is not None:
                found.append(Problem(f"cannot use {c.factory}: {why}", node=self.id, field="config.factory"))
        if c.capture and c.model is not None:
            found.append(Problem("capture needs an eager model: TorchScript and .pt2 models take no forward hooks "
                                 "(use `factory` + `weights`)", node=self.id, field="config.capture"))
        return found

    # -- loading -----------------------------------------------------------------------
    def describe_source(self) -> str:
        c = self.config
        if c.model is not None:
            return str(self.local_path(c.model))
        return c.factory + (f" + {self.local_path(c.weights)}" if c.weights else "")  # type: ignore[operator]

    def stamp(self) -> Any:
        c = self.config
        return source_stamp(*(self.local_path(v) for v in (c.model, c.weights) if v is not None))

    def model_key(self, device: str, dtype: Any) -> tuple[Any, ...]:
        c = self.config
        return ("torch", self.describe_source(), json.dumps(c.factory_kwargs, sort_keys=True, default=str), device, str(dtype))

    def load(self, device: str, dtype: Any) -> Any:
        c = self.config
        if c.model is not None:
            module = _load_file(self.local_path(c.model), device, node=self.id, given=self.where(c.model))
        else:
            weights = (self.local_path(c.weights), self.where(c.weights)) if c.weights is not None else None
            module = _load_factory(c.factory, c.factory_kwargs, weights, node=self.id)  # type: ignore[arg-type]
            module = module.to(device)
        if dtype is not None:
            module = module.to(dtype)
        if hasattr(module, "eval"):
            try:
                module.eval()
            except (NotImplementedError, RuntimeError):  # exported modules refuse train/eval switches
                pass
        return module

    # -- running -----------------------------------------------------------------------
    def batch_key(self) -> tuple[Any, ...]:
        return (tuple(self.config.capture), tuple(self.config.outputs or ()))

    def batch_function(self, entry: LoadedModel) -> Callable[[list[Any]], list[Any]]:
        torch = import_torch()
        module = entry.obj
        device = entry.device
        hooks = check_capturable(module, self.config.capture, node=self.id) if self.config.capture else {}
        names = self.config.outputs
        node_id = self.id

        def run(items: list[tuple[tuple[Any, ...], dict[str, Any]]]) -> list[dict[str, Any]]:
            groups: dict[Any, list[int]] = {}
            for i, (args, kwargs) in enumerate(items):
                sig = (tuple((tuple(a.shape), a.dtype) for a in args), tuple((k, tuple(v.shape), v.dtype) for k, v in kwargs.items()))
                groups.setdefault(sig, []).append(i)
            out: list[dict[str, Any]] = [{} for _ in items]
            for index in groups.values():
                first_args, first_kwargs = items[index[0]]
                stacked = [torch.stack([items[i][0][p] for i in index]).to(device) for p in range(len(first_args))]
                batch_kwargs = {k: torch.stack([items[i][1][k] for i in index]).to(device) for k in first_kwargs}
                with entry.lock, torch.inference_mode(), peak_gpu_memory(device) as mem, Capture(hooks) as cap:
                    try:
                        result = module(*stacked, **batch_kwargs)
                    except torch.OutOfMemoryError:
                        raise
                    except (RuntimeError, TypeError, ValueError, AssertionError) as exc:
                        # only the callers whose inputs look like this fail, not the whole batch
                        shapes = [list(a.shape[1:]) for a in stacked] + [f"{k}={list(v.shape[1:])}" for k, v in batch_kwargs.items()]
                        dtypes = [str(a.dtype).replace("torch.", "") for a in [*stacked, *batch_kwargs.values()]]
                        failed = _ShapeError(node_id, shapes, dtypes, exc)
                        for i in index:
                            out[i] = {"_error": failed}
                        continue
                named = _name_outputs(result, names, node=node_id)
                n = len(index)
                for row, i in enumerate(index):
                    item = {k: (v[row] if _is_batched(v, n) else v) for k, v in named.items()}
                    if hooks:
                        item["captured"] = {k: t[row] if t.dim() and t.shape[0] == n else t for k, t in cap.activations.items()}
                    if "peak_bytes" in mem:
                        item["_peak_gpu_memory"] = mem["peak_bytes"]
                    out[i] = item
            return out

        return run

    async def run(self, inputs: dict[str, Any], ctx: NodeContext) -> Any:
        torch = import_torch()
        device, dtype = self.resolved(ctx)
        upstream = self.spec.config.get("inputs")
        args_raw, kwargs_raw = _arguments(inputs.get("inputs"), upstream)
        model_dtype = dtype or torch.float32
        args = [self._tensor(v, f"config.inputs[{i}]", model_dtype, ctx, _pick(upstream, i)) for i, v in enumerate(args_raw)]
        kwargs = {k: self._tensor(v, f"config.inputs.{k}", model_dtype, ctx, _pick(upstream, k)) for k, v in kwargs_raw.items()}
        if self.config.batched:
            sizes = {int(t.shape[0]) if t.dim() else -1 for t in [*args, *kwargs.values()]}
            if len(sizes) != 1 or -1 in sizes:
                raise NodeError("config.inputs: with `batched: true` every input needs the same size in dim 0 "
                                f"(got {sorted(sizes)})", node=self.id, retryable=False)
            n = sizes.pop()
            items = [(tuple(a[j] for a in args), {k: v[j] for k, v in kwargs.items()}) for j in range(n)]
        else:
            items = [(tuple(args), kwargs)]
        results = await self.forward(items, ctx)
        values = [r.value for r in results]
        for value in values:
            exc = value.get("_error")
            if exc is not None:
                ups = upstream_nodes(upstream, ctx.result.records)
                source = f" from node {', '.join(repr(u) for u in ups)}" if ups else ""
                raise NodeError(f"config.inputs: the model rejected the input{source} of shape {', '.join(map(str, exc.shapes))} "
                                f"(dtype {', '.join(exc.dtypes)}; per example, without the batch dimension): {exc.cause}",
                                node=self.id, retryable=False)
        if not self.config.batched:
            return values[0]
        merged: dict[str, Any] = {}
        for key in values[0]:
            if key == "captured":
                merged[key] = {k: torch.stack([v[key][k] for v in values]) for k in values[0][key]}
            else:
                merged[key] = torch.stack([v[key] for v in values])
        return merged

    def _tensor(self, value: Any, field: str, dtype: Any, ctx: NodeContext, raw: Any) -> Any:
        torch = import_torch()
        if isinstance(value, torch.Tensor):
            t = value.detach()
        else:
            try:
                t = torch.as_tensor(value)
            except (TypeError, ValueError, RuntimeError) as exc:
                ups = upstream_nodes(raw, ctx.result.records)
                source = f" (from node {', '.join(repr(u) for u in ups)})" if ups else ""
                raise NodeError(f"{field}: expected a tensor, a (nested) list of numbers or a number, got "
                                f"{type(value).__name__}{source}: {exc}", node=self.id, retryable=False) from None
        if t.is_floating_point() and t.dtype != dtype:
            t = t.to(dtype)
        return t.cpu() if t.device.type != "cpu" else t


class _ShapeError(Exception):
    def __init__(self, node: str, shapes: list[Any], dtypes: list[str], cause: Exception) -> None:
        self.node, self.shapes, self.dtypes = node, shapes, dtypes
        lines = [line.strip() for line in str(cause).strip().splitlines() if line.strip()]
        # a TorchScript error is a traceback of the scripted code; its last line says what is wrong
        self.cause = " ".join((lines[-1] if len(lines) > 1 else " ".join(lines)).split())[:400]
        super().__init__(self.cause)


def positional(spec_inputs: Any) -> bool:
    """A list of templates in the flow file is a list of positional arguments; any other
    list is one argument (a list of numbers)."""
    return isinstance(spec_inputs, list) and bool(spec_inputs) and all(is_template(v) for v in spec_inputs)


def _arguments(raw: Any, spec_inputs: Any) -> tuple[list[Any], dict[str, Any]]:
    if raw is None:
        return [], {}
    if isinstance(raw, Mapping):
        return [], dict(raw)
    if positional(spec_inputs):
        return list(raw), {}
    return [raw], {}


def _pick(raw: Any, key: Any) -> Any:
    if isinstance(raw, Mapping):
        return raw.get(key)
    if positional(raw) and isinstance(key, int):
        return raw[key]
    return raw


def _is_batched(value: Any, n: int) -> bool:
    return hasattr(value, "shape") and getattr(value, "dim", lambda: 0)() > 0 and value.shape[0] == n


def _name_outputs(result: Any, names: list[str] | None, *, node: str) -> dict[str, Any]:
    import torch

    if isinstance(result, torch.Tensor):
        return {(names[0] if names else "output"): result}
    if isinstance(result, Mapping):
        return {str(k): v for k, v in result.items()}
    if isinstance(result, (tuple, list)):
        if names is None:
            return {f"output_{i}": v for i, v in enumerate(result)}
        if len(names) != len(result):
            raise NodeError(f"config.outputs names {len(names)} outputs but the model returned {len(result)}",
                            node=node, retryable=False)
        return dict(zip(names, result))
    t = first_tensor(result)
    if t is None:
        raise NodeError(f"the model returned {type(result).__name__}, not tensors", node=node, retryable=False)
    return {"output": t}


def _import_factory(target: str) -> Callable[..., Any]:
    module_name, _, attr = target.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    if not callable(obj):
        raise TypeError(f"{target} is not callable")
    return obj


def _load_factory(factory: str, kwargs: dict[str, Any], weights: tuple[Path, str] | None, *, node: str) -> Any:
    """The factory's module with the weights loaded; `weights` is (resolved path, the
    path as the flow gives it) for messages."""
    torch = import_torch()
    try:
        fn = _import_factory(factory)
    except Exception as exc:
        raise NodeError(f"config.factory: cannot import {factory}: {type(exc).__name__}: {exc}", node=node, retryable=False) from exc
    module = fn(**kwargs)
    if not isinstance(module, torch.nn.Module):
        raise NodeError(f"config.factory: {factory} returned {type(module).__name__}, not a torch.nn.Module", node=node, retryable=False)
    if weights is None:
        return module
    path, weights_text = weights
    if not path.is_file():
        raise NodeError(f"config.weights: no such file: {weights_text}", node=node, retryable=False)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        else:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
            if isinstance(state, Mapping) and "state_dict" in state and isinstance(state["state_dict"], Mapping):
                state = state["state_dict"]
    except Exception as exc:
        raise NodeError(f"config.weights: cannot read {weights_text}: the file is corrupt or not a weights file "
                        f"({type(exc).__name__}: {exc})", node=node, retryable=False) from exc
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        text = " ".join(str(exc).split())[:600]
        raise NodeError(f"config.weights: {weights_text} does not fit the model {factory} builds: {text}", node=node, retryable=False) from exc
    return module


def _load_file(path: Path, device: str, *, node: str, given: str) -> Any:
    torch = import_torch()
    if not path.exists():
        raise NodeError(f"config.model: no such file: {given}", node=node, retryable=False)
    if path.is_dir():
        raise NodeError(f"config.model: {path} is a directory; a `torch` node takes a TorchScript (.pt) or "
                        "torch.export (.pt2) file (a transformers model directory goes to a `transformers` node)",
                        node=node, retryable=False)
    if path.suffix == ".pt2":
        export_log = logging.getLogger("torch.export")
        level = export_log.level
        export_log.setLevel(logging.ERROR)  # a bad file is reported below, once, without torch's traceback
        try:
            program = torch.export.load(str(path))
        except Exception as exc:
            raise NodeError(f"config.model: cannot load {path} as a torch.export archive: the file is corrupt or "
                            f"not a .pt2 archive ({type(exc).__name__}: {exc})", node=node, retryable=False) from exc
        finally:
            export_log.setLevel(level)
        if device != "cpu":
            from torch.export.passes import move_to_device_pass

            program = move_to_device_pass(program, device)
        return program.module()
    try:
        with warnings.catch_warnings():  # TorchScript is deprecated upstream, still supported here
            warnings.simplefilter("ignore", DeprecationWarning)
            return torch.jit.load(str(path), map_location=device)
    except Exception as exc:
        hint = ""
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                if not any(n.endswith("/code/__torch__.py") or "/code/" in n for n in zf.namelist()):
                    hint = " It looks like weights saved with torch.save: give `factory` (module:function) and `weights` instead."
        raise NodeError(f"config.model: cannot load {path} as TorchScript: the file is corrupt or not a TorchScript "
                        f"program ({type(exc).__name__}: {' '.join(str(exc).split())[:300]}).{hint}",
                        node=node, retryable=False) from exc
