"""What the node cache and the run history share: an SQLite file opened the same way, its
errors as the store's own error, and the choice a user gives (`cache=`, `history=`) read
the same way.

A store file is opened in autocommit mode (each store begins its own transactions), with a
busy timeout for a writer in another process, in WAL mode (readers do not wait for a
writer), and its schema made if it is not there. Opening it, or using it, fails with the
store's `StoreError` subclass, naming the file; never with sqlite3's traceback.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from jupyter_flow.errors import StoreError

__all__ = ["BUSY_TIMEOUT_S", "data_file", "from_choice", "open_store", "store_errors"]

#: how long a writer waits for another one before giving up
BUSY_TIMEOUT_S = 30.0

S = TypeVar("S")


def data_file(env: str, name: str) -> Path:
    """Where a store file is kept by default: `$env` when set, else
    `$XDG_DATA_HOME/jupyter-flow/name` (`~/.local/share/jupyter-flow/name`)."""
    given = os.environ.get(env)
    if given:
        return Path(given).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "jupyter-flow" / name


def open_store(path: Path, schema: str, *, error: type[StoreError], what: str, relaxed_sync: bool = False,
               any_thread: bool = False) -> sqlite3.Connection:
    """A connection to the store file `path` (its folder made), in WAL mode with `schema`
    made. `relaxed_sync`: commits are not synced one by one (a power cut may lose the last
    ones, never leave a torn one); `any_thread`: the caller hands the connection between
    threads, one at a time. `what` names the store in messages ("node cache")."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=not any_thread)
    except (OSError, sqlite3.Error) as exc:
        raise error(f"cannot open the {what} {path}: {exc}") from None
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while True:
        try:
            # turning a new file to WAL takes its lock without the busy timeout: a second
            # process opening the same new file at that moment is told "locked" at once
            conn.execute("PRAGMA journal_mode=WAL")
            if relaxed_sync:
                conn.execute("PRAGMA synchronous=NORMAL")
            # one write transaction, taken through the busy timeout: two processes making the
            # schema of a new file at once then take turns (statement by statement, one could
            # find its read snapshot stale and fail at once instead of waiting)
            conn.executescript(f"BEGIN IMMEDIATE;\n{schema}\nCOMMIT;")
            return conn
        except sqlite3.DatabaseError as exc:
            if isinstance(exc, sqlite3.OperationalError) and _busy(exc) and time.monotonic() < deadline:
                # the other opener holds it: again, shortly
                if conn.in_transaction:
                    conn.rollback()
                time.sleep(_OPEN_RETRY_S)
                continue
            conn.close()
            raise error(f"the {what} {path} cannot be used: {exc}") from None


#: the pause before a store whose file another process holds is opened again
_OPEN_RETRY_S = 0.05


def _busy(exc: sqlite3.OperationalError) -> bool:
    """Whether `exc` says another connection holds the file (SQLITE_BUSY or SQLITE_LOCKED)."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    return "locked" in str(exc) or "busy" in str(exc)


@contextmanager
def store_errors(conn: sqlite3.Connection, path: Path, *, error: type[StoreError], what: str) -> Iterator[sqlite3.Connection]:
    """`conn` for a block of work: a database error in it rolls back the open transaction
    and leaves as the store's `error`, naming the file."""
    try:
        yield conn
    except sqlite3.DatabaseError as exc:
        if conn.in_transaction:
            conn.rollback()
        raise error(f"the {what} {path} cannot be used: {exc}") from None


def from_choice(choice: Any, kind: type[S], make: Callable[[str | Path | None], S], *, option: str, place: str) -> S | None:
    """The store a user's `choice` names: off (None, False), the default place (True), a
    place (a path), or a store of type `kind` itself; `make` opens one at a path (None: the
    default). `option` and `place` word the error for anything else ("cache", "a folder")."""
    if choice is None or choice is False:
        return None
    if isinstance(choice, kind):
        return choice
    if isinstance(choice, (str, Path)) or choice is True:
        return make(None if choice is True else choice)
    raise TypeError(f"{option} must be True, False, {place} or a {kind.__name__}, not {type(choice).__name__}")
