"""`python`: call a Python function, importable (`module:function`) or registered from a notebook."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import sys
import types
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from contextvars import ContextVar
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar

from jupyter_flow.errors import NodeError, Problem
from jupyter_flow.identity import ByIdentity
from jupyter_flow.nodes.base import Node, NodeConfig, NodeContext
from jupyter_flow.sourcecheck import beside_module, check_callable

__all__ = ["FunctionRegistry", "PythonNode", "default_functions", "register_function"]

F = TypeVar("F", bound=Callable[..., Any])


class FunctionRegistry(MutableMapping[str, Callable[..., Any]]):
    """Functions that `python` nodes may name without a module (registered from a notebook)."""

    def __init__(self) -> None:
        self._fns: dict[str, Callable[..., Any]] = {}
        self._snapshot: Mapping[str, Callable[..., Any]] | None = None

    def __getitem__(self, name: str) -> Callable[..., Any]:
        return self._fns[name]

    def __setitem__(self, name: str, fn: Callable[..., Any]) -> None:
        if not callable(fn):
            raise TypeError(f"{name!r}: {fn!r} is not callable")
        self._fns[name] = fn
        self._snapshot = None

    def __delitem__(self, name: str) -> None:
        del self._fns[name]
        self._snapshot = None

    def __iter__(self) -> Iterator[str]:
        return iter(self._fns)

    def __len__(self) -> int:
        return len(self._fns)

    def snapshot(self) -> Mapping[str, Callable[..., Any]]:
        """The functions registered now, read-only (what one run calls; the same one for
        every run until the next registration)."""
        if self._snapshot is None:
            self._snapshot = MappingProxyType(dict(self._fns))
        return self._snapshot


#: The functions of the run in progress (the flow's own over the registered ones), so that
#: cache keys follow the function a run actually calls.
run_functions: ContextVar[Mapping[str, Callable[..., Any]] | None] = ContextVar("run_functions", default=None)
#: The flow file of the run in progress (`Flow.source`; None for a flow made from text), for
#: functions that keep state per flow file (`jupyter_flow.dify.conversation`).
run_source: ContextVar[Path | None] = ContextVar("run_source", default=None)


@lru_cache(maxsize=1)
def default_functions() -> FunctionRegistry:
    """The process-wide function registry, created on first use."""
    return FunctionRegistry()


def register_function(fn: F | None = None, *, name: str | None = None) -> Any:
    """Register a function for `python` nodes; usable as `@register_function` or
    `@register_function(name="clean")`. Re-registering replaces it (the next run uses it)."""

    def deco(f: F) -> F:
        default_functions()[name or f.__name__] = f
        return f

    return deco(fn) if fn is not None else deco


class PythonConfig(NodeConfig):
    function: str
    input_mapping: dict[str, Any] = {}
    blocking: bool | None = None


def _beside(module_name: str, base_dir: Path | None) -> Any:
    """The module `module_name.py` in the flow file's folder, loaded from that file (again
    when the file changed), or None when there is no such file. Runs the module: only a
    run calls this, never validation (see `problems`)."""
    path = beside_module(module_name, base_dir)
    if path is None:
        return None
    try:
        stamp = path.stat().st_mtime_ns
    except OSError:
        return None
    key = f"_jupyter_flow_beside.{hashlib.blake2b(str(path.resolve()).encode(), digest_size=6).hexdigest()}.{module_name}"
    module = sys.modules.get(key)
    if module is not None and getattr(module, "__jupyter_flow_stamp__", None) == stamp:
        return module
    spec = importlib.util.spec_from_file_location(key, path)
    if spec is None or spec.loader is None:
        return None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.__jupyter_flow_stamp__ = stamp  # type: ignore[attr-defined]
    sys.modules[key] = module
    return module


def _import(target: str, base_dir: Path | None = None) -> Callable[..., Any]:
    """`module:callable`; a `module.py` beside the flow file wins over one on the path."""
    module_name, _, attr = target.partition(":")
    module = _beside(module_name, base_dir) or importlib.import_module(module_name)
    obj: Any = module
    for part in attr.split("."):
        obj = getattr(obj, part)
    if not callable(obj):
        raise TypeError(f"{target} is not callable")
    return obj


class PythonNode(Node):
    """Call `function` with `input_mapping` as keyword arguments.

    Output: the returned dict, or `{"result": value}` for anything else. Async functions are
    awaited on the loop; plain functions run in a worker thread unless `blocking: false`.
    """

    kind = "python"
    Config = PythonConfig
    config: PythonConfig

    def _resolve(self, registered: Any) -> Callable[..., Any]:
        name = self.config.function
        if name in registered:
            return registered[name]
        if ":" in name:
            try:
                return _import(name, self.base_dir)
            except Exception as exc:
                raise NodeError(f"cannot import function {name!r}: {type(exc).__name__}: {exc}", node=self.id, retryable=False) from exc
        raise NodeError(
            f"no function registered as {name!r}; register it with "
            "jupyter_flow.register_function or name it as 'module:function'",
            node=self.id,
            retryable=False,
        )

    def problems(self) -> list[Problem]:
        """A `module:function` whose module or function cannot be found, found without
        importing it: validating a flow runs none of its code (see `jupyter_flow.sourcecheck`)."""
        name = self.config.function
        if ":" in name and name not in default_functions():
            why = check_callable(name, base_dir=self.base_dir)
            if why is not None:
                return [Problem(f"cannot use {name!r}: {why}", node=self.id, field="config.function")]
        return []

    def describe(self) -> str:
        if self.spec.description or self.spec.title:
            return super().describe()
        return f"calls `{self.config.function}`"

    #: the read-only functions of a run the token was last taken from, and the function
    #: found there (`cache_token`: every run takes the token of every python node)
    _token_from: tuple[Mapping[str, Callable[..., Any]], Callable[..., Any]] | None = None

    def cache_token(self) -> str:
        registered = run_functions.get() or default_functions()
        last = self._token_from
        if last is not None and last[0] is registered and type(registered) is MappingProxyType:
            fn = last[1]  # the same run's functions, which cannot change: the same function
        else:
            try:
                fn = self._resolve(registered)
            except NodeError:
                return ""
            self._token_from = (registered, fn)
        return _function_token(fn)

    async def run(self, inputs: dict[str, Any], ctx: NodeContext) -> Any:
        fn = self._resolve(ctx.functions)
        kwargs = inputs.get("input_mapping") or {}
        if _is_async(fn):
            value = await fn(**kwargs)
        elif self.config.blocking is False:
            value = fn(**kwargs)
        else:
            value = await ctx.run_blocking(fn, **kwargs)
        if isinstance(value, dict):
            return value
        if inspect.isawaitable(value):
            value = await value
        return value if isinstance(value, dict) else {"result": value}


#: a function's code, defaults and keyword defaults when its token was taken, and the token
_function_tokens: ByIdentity[tuple[Any, Any, Any, str]] = ByIdentity(4096)
_SCALARS = (str, int, float, complex, bool, bytes, type(None))


def _function_token(fn: Any) -> str:
    """What a function does: its code (`_code_token`) and its defaults. Every run of a flow
    takes it for each python node (a later run may reuse the outputs), so it is kept while
    the function, its code and its defaults are the same objects and the defaults cannot
    change in place (scalars only); other defaults are read each time."""
    try:  # a Python function (without a call to getattr per name)
        code, defaults, kwdefaults = fn.__code__, fn.__defaults__, fn.__kwdefaults__
    except AttributeError:
        code = getattr(fn, "__code__", None)
        if code is None:
            return _code_token(repr(fn))
        defaults, kwdefaults = getattr(fn, "__defaults__", None), getattr(fn, "__kwdefaults__", None)
    kept = _function_tokens.get(fn)
    if kept is not None and kept[0] is code and kept[1] is defaults and kept[2] is kwdefaults:
        return kept[3]
    token = _code_token(code) + hashlib.blake2b(repr((defaults, kwdefaults)).encode(), digest_size=4).hexdigest()
    if kwdefaults is None and (defaults is None or all(isinstance(d, _SCALARS) for d in defaults)):
        _function_tokens.put(fn, (code, defaults, kwdefaults, token))
    return token


@lru_cache(maxsize=4096)
def _code_token(code: Any) -> str:
    """A digest of what a function's code does (taken once per code object: an edit makes a
    new one), the same in every process: see `_code_bytes`."""
    data = _code_bytes(code) if not isinstance(code, str) else code.encode()
    return hashlib.blake2b(data, digest_size=8).hexdigest()


def _code_bytes(code: types.CodeType) -> bytes:
    """The bytecode, the names it reads (`len` and `abs` give the same bytecode) and the
    constants, nested code (comprehensions, lambdas, inner functions) by what it does, not
    by its address in this process."""
    parts = [code.co_code, repr(code.co_names).encode()]
    parts += [_const_bytes(const) for const in code.co_consts]
    return b"\0".join(parts)


def _const_bytes(const: Any) -> bytes:
    if isinstance(const, types.CodeType):
        return _code_bytes(const)
    if isinstance(const, tuple):
        return b"(" + b",".join(_const_bytes(c) for c in const) + b")"
    if isinstance(const, frozenset):  # its order changes with the process's string hashing
        return b"{" + b",".join(sorted(_const_bytes(c) for c in const)) + b"}"
    return repr(const).encode()


@lru_cache(maxsize=4096)
def _is_async(fn: Callable[..., Any]) -> bool:
    return inspect.iscoroutinefunction(fn)
