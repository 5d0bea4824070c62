"""Model residency: a process-wide cache of loaded models, keyed by source, device and dtype.

A model is loaded once and shared by every node and every run that names the same
source on the same device with the same dtype. Nodes never hold a model themselves: they
look it up by key at each run, so `release_models()` really frees the memory (CUDA memory
included) and the next run loads it again. `loaded_models()` lists what is resident,
where, and how much memory it holds.

Also here: device and dtype resolution (``auto|cpu|cuda|cuda:N``, ``float32|float16|
bfloat16``) with errors that say how to fall back, and peak-memory measurement.
"""

from __future__ import annotations

import gc
import os
import threading
import time
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from jupyter_flow.errors import MissingDependencyError, NodeError

__all__ = [
    "DTYPES",
    "LoadedModel",
    "ModelCache",
    "ModelList",
    "default_cache",
    "import_torch",
    "loaded_models",
    "module_bytes",
    "release_models",
    "replica_devices",
    "resolve_device",
    "resolve_dtype",
    "source_stamp",
]

DTYPES = ("float32", "float16", "bfloat16")


def import_torch(feature: str = "local model nodes", extra: str = "torch") -> Any:
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - the extra is installed in CI
        raise MissingDependencyError("torch", extra, feature) from exc
    return torch


# -- devices and dtypes -----------------------------------------------------------------
def resolve_device(requested: str | None, *, node: str | None = None, field: str = "config.device") -> str:
    """``auto`` -> ``cuda`` when available else ``cpu``; ``cuda``/``cuda:N`` checked to exist."""
    torch = import_torch()
    name = (requested or "auto").strip().lower()
    if name == "auto":
        return "cuda:0" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return "cpu"
    if name == "cuda" or name.startswith("cuda:"):
        index_text = name.partition(":")[2] or "0"
        if not index_text.isdigit():
            raise NodeError(f"{field}: {requested!r} is not a device (use auto, cpu, cuda or cuda:N)", node=node, retryable=False)
        if not torch.cuda.is_available():
            why = "this torch build has no CUDA support" if torch.version.cuda is None else "no CUDA device is visible"
            raise NodeError(
                f"{field}: {requested!r} was requested but CUDA is not available here ({why}, torch {torch.__version__}); "
                "use `device: auto` or `device: cpu`, or run with settings={'device': 'cpu'}",
                node=node,
                retryable=False,
            )
        index = int(index_text)
        count = torch.cuda.device_count()
        if index >= count:
            raise NodeError(
                f"{field}: {requested!r} was requested but only {count} CUDA device(s) are visible (cuda:0..cuda:{count - 1})",
                node=node,
                retryable=False,
            )
        return f"cuda:{index}"
    raise NodeError(f"{field}: {requested!r} is not a device (use auto, cpu, cuda or cuda:N)", node=node, retryable=False)


def replica_devices(requested: str | None) -> list[str]:
    """The devices to hold a replica on: every visible GPU for ``auto`` when there are
    several, else just the resolved device."""
    torch = import_torch()
    if (requested or "auto").strip().lower() == "auto" and torch.cuda.is_available() and torch.cuda.device_count() > 1:
        return [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    return [resolve_device(requested)]


def resolve_dtype(name: str | None, *, node: str | None = None, field: str = "config.dtype") -> Any:
    """A torch dtype from its name; None stays None (keep the model's own dtype)."""
    if name is None:
        return None
    torch = import_torch()
    if name not in DTYPES:
        raise NodeError(f"{field}: {name!r} is not a dtype (use one of {', '.join(DTYPES)})", node=node, retryable=False)
    return getattr(torch, name)


def module_bytes(module: Any) -> int:
    """Bytes held by a module's parameters and buffers (0 for things that are not modules)."""
    total = 0
    seen: set[int] = set()
    for getter in ("parameters", "buffers"):
        fn = getattr(module, getter, None)
        if fn is None:
            continue
        try:
            tensors = list(fn())
        except Exception:  # some compiled modules do not list them
            continue
        for t in tensors:
            if id(t) in seen:
                continue
            seen.add(id(t))
            total += t.numel() * t.element_size()
    return total


@contextmanager
def peak_gpu_memory(device: str) -> Iterator[dict[str, int]]:
    """Measure the peak CUDA memory allocated on `device` inside the block (no-op on CPU)."""
    box: dict[str, int] = {}
    if not device.startswith("cuda"):
        yield box
        return
    torch = import_torch()
    torch.cuda.reset_peak_memory_stats(device)
    try:
        yield box
    finally:
        box["peak_bytes"] = int(torch.cuda.max_memory_allocated(device))


def source_stamp(*paths: str | Path | None) -> tuple[Any, ...]:
    """Sizes and mtimes of files (for a directory: of the files directly in it), so that a
    model saved again at the same place is loaded again. Cheap enough to check every run."""
    stamp: list[Any] = []
    for path in paths:
        if path is None:
            continue
        try:
            if os.path.isdir(path):
                with os.scandir(path) as it:
                    stamp.append(sorted((e.name, e.stat().st_size, e.stat().st_mtime_ns) for e in it if e.is_file()))
            else:
                st = os.stat(path)
                stamp.append((st.st_size, st.st_mtime_ns))
        except OSError:
            stamp.append(None)
    return tuple(map(repr, stamp))


# -- the cache --------------------------------------------------------------------------
@dataclass
class LoadedModel:
    """One resident model. `obj` is whatever the loader returned (a module, or a bundle)."""

    key: tuple[Hashable, ...]
    kind: str
    source: str
    device: str
    dtype: str
    obj: Any
    stamp: Hashable = None
    memory_bytes: int = 0
    load_s: float = 0.0
    loaded_at: float = field(default_factory=time.time)
    last_used: float = field(default_factory=time.time)
    hits: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)  # one forward pass at a time
    _batchers_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    batchers: dict[Hashable, Any] = field(default_factory=dict, repr=False)

    def batcher(self, key: Hashable, make: Callable[[], Any]) -> Any:
        """The micro-batcher for `key` on this model, made on first use and closed on release."""
        with self._batchers_lock:
            found = self.batchers.get(key)
            if found is None or found.closed:
                found = self.batchers[key] = make()
            return found

    def share_batcher(self, key: Hashable, batcher: Any) -> None:
        """Hold a batcher that another entry made (one that also runs this model, as a
        replica), so that releasing this model stops it too."""
        with self._batchers_lock:
            self.batchers[key] = batcher

    def close(self) -> None:
        for batcher in list(self.batchers.values()):
            batcher.close()
        self.batchers.clear()
        self.obj = None

    def describe(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "source": self.source,
            "device": self.device,
            "dtype": self.dtype,
            "memory_mb": round(self.memory_bytes / 2**20, 3),
            "load_s": round(self.load_s, 3),
            "hits": self.hits,
            "loaded_at": self.loaded_at,
            "last_used": self.last_used,
            "batchers": len(self.batchers),
        }


class ModelList(list[dict[str, Any]]):
    """What `loaded_models()` returns: a list of dicts that shows as a table in a notebook."""

    def total_mb(self) -> float:
        return round(sum(m["memory_mb"] for m in self), 3)

    def _repr_markdown_(self) -> str:
        if not self:
            return "_no models loaded_"
        rows = ["| kind | source | device | dtype | memory (MB) | hits |", "|---|---|---|---|---|---|"]
        for m in self:
            rows.append(f"| {m['kind']} | `{m['source']}` | {m['device']} | {m['dtype']} | {m['memory_mb']:.2f} | {m['hits']} |")
        return "\n".join(rows)


class ModelCache:
    """Loaded models by key; loads each key once even when many threads ask at the same time.

    With `freeze_gc` (the default) the objects alive after a load (the model, the libraries
    behind it) are moved out of the cycle collector's sight with `gc.freeze()`: a model
    library brings hundreds of thousands of long-lived objects, and a full collection that
    walks them all stalls every thread for a tenth of a second, over and over while runs
    allocate. Releasing models gives them back to the collector (`gc.unfreeze()`) before
    collecting, so released models are freed.
    """

    def __init__(self, *, freeze_gc: bool = True) -> None:
        self._entries: dict[tuple[Hashable, ...], LoadedModel] = {}
        self._loading: dict[tuple[Hashable, ...], threading.Lock] = {}
        self._lock = threading.Lock()
        self.loads = 0
        self.freeze_gc = freeze_gc

    def get(
        self,
        key: tuple[Hashable, ...],
        load: Callable[[], Any],
        *,
        kind: str,
        source: str,
        device: str,
        dtype: str,
        stamp: Hashable = None,
        memory: Callable[[Any], int] = module_bytes,
    ) -> LoadedModel:
        """The entry for `key`, loading it with `load()` on a miss (or when `stamp` changed)."""
        entry = self.lookup(key, stamp)
        if entry is not None:
            return entry
        with self._lock:
            gate = self._loading.setdefault(key, threading.Lock())
        with gate:
            with self._lock:
                entry = self._entries.get(key)
                if entry is not None and entry.stamp == stamp:
                    entry.hits += 1
                    entry.last_used = time.time()
                    return entry
                stale = self._entries.pop(key, None)
            if stale is not None:
                stale_device = stale.device
                stale.close()
                del stale
                self._free({stale_device})
            t0 = time.perf_counter()
            obj = load()
            entry = LoadedModel(key, kind, source, device, dtype, obj, stamp, memory(obj), time.perf_counter() - t0)
            with self._lock:
                self._entries[key] = entry
                self.loads += 1
                self._loading.pop(key, None)
            if self.freeze_gc:
                gc.freeze()  # cheap: no collection, the young objects are just moved aside
            return entry

    def lookup(self, key: tuple[Hashable, ...], stamp: Hashable = None) -> LoadedModel | None:
        """The entry for `key` if it is loaded and current (a hit), else None; never loads."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry.stamp != stamp:
                return None
            entry.hits += 1
            entry.last_used = time.time()
            return entry

    def entries(self) -> list[LoadedModel]:
        with self._lock:
            return list(self._entries.values())

    def release(self, source: str | Path | None = None, *, device: str | None = None) -> int:
        """Drop models (all, or those of `source` and/or `device`); returns how many."""
        wanted = None if source is None else _norm_source(source)
        with self._lock:
            chosen = [
                k
                for k, e in self._entries.items()
                if (wanted is None or e.source == wanted) and (device is None or e.device == device)
            ]
            dropped = [self._entries.pop(k) for k in chosen]
        devices = {e.device for e in dropped}
        for entry in dropped:
            entry.close()
        del dropped
        self._free(devices)
        return len(chosen)

    def _free(self, devices: set[str]) -> None:
        """Collect what released models left behind (frozen objects included) and hand
        cached CUDA memory back; what is still loaded is frozen again."""
        gc.unfreeze()
        gc.collect()
        for device in devices:
            if device.startswith("cuda"):
                import torch

                if torch.cuda.is_initialized():
                    torch.cuda.empty_cache()
        if self.freeze_gc and self._entries:
            gc.freeze()

    def __len__(self) -> int:
        return len(self._entries)


def _norm_source(source: str | Path) -> str:
    text = str(source)
    if ":" in text and not Path(text).exists() and "/" not in text.partition(":")[0]:
        return text  # a `module:function` factory
    return str(Path(text).expanduser().resolve())


@lru_cache(maxsize=1)
def default_cache() -> ModelCache:
    """The process-wide model cache, created on first use."""
    return ModelCache()


def loaded_models() -> ModelList:
    """What is loaded: kind, source, device, dtype, memory (MB), load time, hits."""
    return ModelList(e.describe() for e in default_cache().entries())


def release_models(source: str | Path | None = None, *, device: str | None = None) -> int:
    """Release loaded models (all by default) and the memory they hold; returns how many."""
    return default_cache().release(source, device=device)
