"""The node cache: a node's result kept across runs and processes, keyed on what it depends on.

The key of a node's result is a digest of the node's kind and the kind's version, its
resolved inputs (the config after its templates are rendered, tensors by content), and its
code identity (`Node.cache_token()`: a python node's function source and module digest, a
model node's weights digest) and nothing else: the node's id and its place in the flow do
not count, so a node that moves or is renamed keeps its results, and a changed node (or one
whose upstream now gives another value) has a new key.

Stored values are JSON with tensors and arrays beside it in safetensors (never pickle): a
value that is neither (a custom object) is not stored, and the node simply runs each time.
Tensors come back on the CPU. Errors and skipped nodes are never stored; a node with
``cache: false`` is never read from or written to the cache.

The store is one SQLite file (WAL mode, one short transaction per write, so processes that
share a folder never corrupt it) with a size limit: past it, the least recently used entries
go. Where: ``--cache DIR`` / ``Flow.run(cache=DIR)``, else ``$JUPYTER_FLOW_CACHE``, else
``$XDG_CACHE_HOME/jupyter-flow`` (``~/.cache/jupyter-flow``). ``jupyter-flow cache info``
and ``jupyter-flow cache clear [--node ID]``.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import math
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

from jupyter_flow.errors import StoreError
from jupyter_flow.sqlite_store import from_choice, open_store, store_errors
from jupyter_flow.values import is_tensor
from jupyter_flow.version import __version__

__all__ = ["CACHE_ENV", "DEFAULT_MAX_BYTES", "CacheChoice", "CacheError", "CacheInfo", "NodeCache", "Uncacheable",
           "add_to_cli", "default_cache_dir", "node_cache", "node_key"]

CACHE_ENV = "JUPYTER_FLOW_CACHE"
#: the store's size limit, values and tensors together
DEFAULT_MAX_BYTES = 2 * 1024**3
#: one entry larger than this is not stored
MAX_ENTRY_BYTES = 256 * 1024**2
_FILE = "nodes.sqlite"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    key TEXT PRIMARY KEY,
    node TEXT,
    kind TEXT,
    created REAL NOT NULL,
    used REAL NOT NULL,
    size INTEGER NOT NULL,
    value TEXT NOT NULL,
    tensors BLOB
);
CREATE INDEX IF NOT EXISTS entries_by_use ON entries (used);
CREATE INDEX IF NOT EXISTS entries_by_node ON entries (node);
"""


class CacheError(StoreError):
    """The cache folder cannot be read or written."""


class Uncacheable(Exception):
    """A value the cache cannot key or store without pickle (a custom object)."""


def default_cache_dir() -> Path:
    given = os.environ.get(CACHE_ENV)
    if given:
        return Path(given).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "jupyter-flow"


# -- keys ------------------------------------------------------------------------------------
def _canonical(value: Any, tensors: list[Any] | None = None) -> Any:
    """`value` as plain JSON data for a key (`tensors` None) or for storage (tensors are
    appended to `tensors` and replaced by a reference). Raises `Uncacheable`."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return {"$float": repr(value)}
    if isinstance(value, Mapping):
        if not all(isinstance(k, str) for k in value):
            raise Uncacheable("a mapping with keys that are not text")
        return {("$" + k if k.startswith("$") else k): _canonical(v, tensors) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_canonical(v, tensors) for v in value]
    if isinstance(value, (bytes, bytearray)):
        if tensors is None:
            return {"$bytes": hashlib.sha256(value).hexdigest()}
        return {"$bytes": base64.b64encode(bytes(value)).decode()}
    if is_tensor(value):
        kind = "torch" if type(value).__module__.startswith("torch") else "numpy"
        if tensors is None:
            return {"$tensor": _tensor_digest(value, kind)}
        tensors.append((kind, value))
        return {"$tensor": len(tensors) - 1, "kind": kind}
    raise Uncacheable(f"a value of type {type(value).__name__}")


def _tensor_digest(value: Any, kind: str) -> str:
    if kind == "torch":
        import torch

        host = value.detach().to("cpu").contiguous()
        shape, dtype = list(host.shape), str(host.dtype)
        raw = (host.to(torch.float32) if host.dtype == torch.bfloat16 else host).numpy().tobytes()  # bf16 -> fp32 is exact
    else:
        import numpy as np

        array = np.ascontiguousarray(value)
        raw, shape, dtype = array.tobytes(), list(array.shape), str(array.dtype)
    return hashlib.sha256(json.dumps([shape, dtype]).encode() + raw).hexdigest()


def node_key(kind: str, inputs: Any, code: str = "") -> str:
    """The cache key of a node's result (see the module's docstring). Raises `Uncacheable`
    for inputs that hold a custom object (its content cannot be known)."""
    body = json.dumps([kind, __version__, code, _canonical(inputs)], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(body.encode()).hexdigest()


# -- values ----------------------------------------------------------------------------------
def _pack(value: Any) -> tuple[str, bytes | None]:
    """`value` as JSON text plus its tensors in safetensors: through torch's side when any
    tensor is a torch one (numpy arrays are then stored as torch tensors and come back as
    arrays), else through numpy's."""
    tensors: list[tuple[str, Any]] = []
    skeleton = json.dumps(_canonical(value, tensors), separators=(",", ":"))
    if not tensors:
        return skeleton, None
    if any(kind == "torch" for kind, _ in tensors):
        import torch
        from safetensors.torch import save as save_torch

        return skeleton, b"T" + save_torch({str(i): t.detach().to("cpu").contiguous() if kind == "torch"
                                            else torch.from_numpy(t.copy()) for i, (kind, t) in enumerate(tensors)})
    import numpy as np
    from safetensors.numpy import save as save_numpy

    return skeleton, b"N" + save_numpy({str(i): np.ascontiguousarray(t) for i, (_, t) in enumerate(tensors)})


def _unpack(skeleton: str, blob: bytes | None) -> Any:
    arrays: dict[str, Any] = {}
    if blob and blob[:1] == b"T":
        from safetensors.torch import load as load_torch

        arrays = load_torch(blob[1:])
    elif blob:
        from safetensors.numpy import load as load_numpy

        arrays = load_numpy(blob[1:])

    def build(node: Any) -> Any:
        if isinstance(node, list):
            return [build(v) for v in node]
        if not isinstance(node, dict):
            return node
        if "$tensor" in node and set(node) <= {"$tensor", "kind"}:
            array = arrays[str(node["$tensor"])]
            torch_side = type(array).__module__.startswith("torch")
            return array.numpy() if torch_side and node.get("kind") == "numpy" else array
        if set(node) == {"$bytes"}:
            return base64.b64decode(node["$bytes"])
        if set(node) == {"$float"}:
            return float(node["$float"])
        return {(k[1:] if k.startswith("$$") else k): build(v) for k, v in node.items()}

    return build(json.loads(skeleton))


# -- the store -------------------------------------------------------------------------------
@dataclass(frozen=True)
class CacheInfo:
    path: Path
    entries: int
    bytes: int
    max_bytes: int
    nodes: dict[str, int]

    def text(self) -> str:
        lines = [f"node cache {self.path}: {self.entries} entries, {self.bytes / 2**20:.1f} MB of {self.max_bytes / 2**20:.0f} MB"]
        lines += [f"  {node}: {count}" for node, count in sorted(self.nodes.items())]
        return "\n".join(lines)


_MISS = object()


class NodeCache:
    """Node results in one SQLite file under `folder` (see the module's docstring)."""

    def __init__(self, folder: str | Path | None = None, *, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.folder = Path(folder).expanduser() if folder is not None else default_cache_dir()
        self.max_bytes = max_bytes
        self.hits = 0
        self.misses = 0
        # one connection, opened on first use and kept (opening one and checking the schema
        # costs more than a lookup), used by one thread at a time; a forked process opens its own
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._pid = 0

    def __getstate__(self) -> dict[str, Any]:
        return {"folder": self.folder, "max_bytes": self.max_bytes}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["folder"], max_bytes=state["max_bytes"])  # type: ignore[misc]

    @property
    def path(self) -> Path:
        return self.folder / _FILE

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            if self._conn is None or self._pid != os.getpid():
                # a commit in WAL mode without a sync of its own stays whole; a power cut
                # may only lose the last entries, which a cache can afford
                self._conn = open_store(self.path, _SCHEMA, error=CacheError, what="node cache", relaxed_sync=True, any_thread=True)
                self._pid = os.getpid()
            with store_errors(self._conn, self.path, error=CacheError, what="node cache") as conn:
                yield conn

    def close(self) -> None:
        """Close the connection (the next use opens it again)."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def get(self, key: str) -> Any:
        """The stored value, or `MISS` (compare with `NodeCache.MISS`)."""
        with self._db() as db:
            row = db.execute("SELECT value, tensors FROM entries WHERE key = ?", (key,)).fetchone()
            if row is None:
                self.misses += 1
                return _MISS
            db.execute("UPDATE entries SET used = ? WHERE key = ?", (time.time(), key))
        self.hits += 1
        return _unpack(row[0], row[1])

    MISS = _MISS

    def put(self, key: str, value: Any, *, node: str = "", kind: str = "") -> bool:
        """Store `value`; False when it cannot be stored without pickle or is too large."""
        try:
            skeleton, blob = _pack(value)
        except Uncacheable:
            return False
        size = len(skeleton) + len(blob or b"")
        if size > min(MAX_ENTRY_BYTES, self.max_bytes):
            return False
        now = time.time()
        with self._db() as db:
            db.execute("BEGIN IMMEDIATE")
            db.execute("INSERT OR REPLACE INTO entries VALUES (?, ?, ?, ?, ?, ?, ?, ?)", (key, node, kind, now, now, size, skeleton, blob))
            total = db.execute("SELECT COALESCE(SUM(size), 0) FROM entries").fetchone()[0]
            if total > self.max_bytes:  # the least recently used go first
                for old_key, old_size in db.execute("SELECT key, size FROM entries ORDER BY used").fetchall():
                    if total <= self.max_bytes:
                        break
                    if old_key != key:
                        db.execute("DELETE FROM entries WHERE key = ?", (old_key,))
                        total -= old_size
            db.execute("COMMIT")
        return True

    def clear(self, *, node: str | None = None) -> int:
        """Remove every entry (or those a node stored); returns how many."""
        with self._db() as db:
            cur = db.execute("DELETE FROM entries" + (" WHERE node = ?" if node is not None else ""), (node,) if node is not None else ())
            count = cur.rowcount
            if node is None:
                db.execute("VACUUM")
        return count

    def info(self) -> CacheInfo:
        with self._db() as db:
            entries, size = db.execute("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM entries").fetchone()
            nodes = dict(db.execute("SELECT node, COUNT(*) FROM entries GROUP BY node").fetchall())
        return CacheInfo(self.path, entries, size, self.max_bytes, nodes)


#: what `Flow.run(cache=...)` takes: off (False, None), the default folder (True), a folder, or a cache
CacheChoice = Union[bool, str, Path, NodeCache, None]


def node_cache(choice: CacheChoice) -> NodeCache | None:
    """The node cache `choice` names (see `CacheChoice`); None when it is off."""
    return from_choice(choice, NodeCache, NodeCache, option="cache", place="a folder")


def _cmd_info(args: argparse.Namespace) -> int:
    info = NodeCache(args.dir).info()
    print(json.dumps({"path": str(info.path), "entries": info.entries, "bytes": info.bytes, "max_bytes": info.max_bytes,
                      "nodes": info.nodes}, indent=2) if args.json else info.text())
    return 0


def _cmd_clear(args: argparse.Namespace) -> int:
    count = NodeCache(args.dir).clear(node=args.node)
    print(f"removed {count} entries" + (f" of node {args.node}" if args.node else ""))
    return 0



def add_to_cli(sub: Any) -> None:
    cache = sub.add_parser("cache", help="the node cache: info, clear")
    cache.add_argument("--dir", default=None, help=f"the cache folder (default: ${CACHE_ENV}, else ~/.cache/jupyter-flow)")
    verbs = cache.add_subparsers(dest="verb", required=True)
    p = verbs.add_parser("info", help="entries, size and limit, entries per node")
    p.add_argument("--json", action="store_true")
    p.set_defaults(fn=_cmd_info)
    p = verbs.add_parser("clear", help="remove every entry, or one node's")
    p.add_argument("--node", help="only what this node id stored")
    p.set_defaults(fn=_cmd_clear)
