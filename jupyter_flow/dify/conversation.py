"""Dify's conversation variables, kept between the runs of one conversation.

In Dify a chat app's conversation variables live as long as the conversation: an assigner
node writes them, and the next turn reads what it wrote. An imported chat app does the same
through two functions its `python` nodes call: `load` (the `conversation` node, first in
the flow) reads the values a conversation has, and `jupyter_flow.dify.functions.assign`
saves what an assigner writes. A conversation is named by the flow's `conversation_id`
input; a run without one is a conversation of its own (nothing is read or kept), and the
variables' inputs give the values a new conversation starts with.

Where: one SQLite file, `$JUPYTER_FLOW_CONVERSATIONS` when set, else
`$XDG_DATA_HOME/jupyter-flow/conversations.sqlite` (`~/.local/share/...`), keyed by the
app's name and the conversation id; runs in several processes share it. Bounds: ids up
to `MAX_ID_CHARS` characters, the values of one conversation up to `MAX_STATE_BYTES` of
JSON, and the `MAX_CONVERSATIONS` most recently written conversations of all apps (older ones
are forgotten first).
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterable, Mapping
from contextlib import closing
from pathlib import Path
from typing import Any

from jupyter_flow.errors import FlowError

__all__ = ["MAX_CONVERSATIONS", "MAX_ID_CHARS", "MAX_STATE_BYTES", "STORE_ENV", "ConversationError", "load", "save", "store_path"]

STORE_ENV = "JUPYTER_FLOW_CONVERSATIONS"
MAX_ID_CHARS = 256
MAX_STATE_BYTES = 1024 * 1024
MAX_CONVERSATIONS = 10_000
#: where the turns of a conversation are counted, beside its variables (no Dify variable has this name)
_TURNS = "sys.dialogue_count"
_NO_TURNS: Any = object()
_SCHEMA = ("CREATE TABLE IF NOT EXISTS conversations (app TEXT NOT NULL, conversation TEXT NOT NULL, state TEXT NOT NULL, "
           "used REAL NOT NULL, PRIMARY KEY (app, conversation))")


class ConversationError(FlowError):
    """A conversation's state cannot be read or kept (an id too long, values too big or not
    JSON, a store that cannot be opened)."""


def store_path() -> Path:
    """The SQLite file conversations are kept in (see the module docstring)."""
    given = os.environ.get(STORE_ENV)
    if given:
        return Path(given).expanduser()
    data_home = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data_home) / "jupyter-flow" / "conversations.sqlite"


def _key(conversation_id: Any) -> str | None:
    if conversation_id is None or conversation_id == "":
        return None
    key = str(conversation_id)
    if len(key) > MAX_ID_CHARS:
        raise ConversationError(f"the conversation id is {len(key):,} characters; at most {MAX_ID_CHARS} are kept")
    return key


def _open() -> sqlite3.Connection:
    path = store_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(path, timeout=10, isolation_level=None)
        db.execute("PRAGMA busy_timeout = 10000")
        db.execute(_SCHEMA)
    except (OSError, sqlite3.Error) as exc:
        raise ConversationError(f"cannot open the conversation store {path} ({exc}); set {STORE_ENV} to another file") from None
    return db


def load(app: str, conversation_id: Any = None, initial: Mapping[str, Any] | None = None, turns: Any = _NO_TURNS) -> dict[str, Any]:
    """The conversation variables of `conversation_id` in `app`: the values kept for it,
    for the names of `initial`, else the value `initial` gives (a new conversation, or
    a run without an id). Given `turns`, also `dialogue_count` as Dify counts it: the runs
    of the conversation, this one included (kept); without an id, `turns` itself, else 1."""
    values = dict(initial or {})
    key = _key(conversation_id)
    if key is None:
        if turns is not _NO_TURNS:
            values["dialogue_count"] = int(turns) if turns not in (None, "") else 1
        return values
    kept = _state(app, key, count=turns is not _NO_TURNS)
    values.update({name: kept[name] for name in values if name in kept})
    if turns is not _NO_TURNS:
        values["dialogue_count"] = int(kept[_TURNS])
    return values


def _state(app: str, key: str, *, count: bool) -> dict[str, Any]:
    """What is kept for the conversation; with `count`, its turns go up by one (kept)."""
    try:
        with closing(_open()) as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                row = db.execute("SELECT state FROM conversations WHERE app = ? AND conversation = ?", (app, key)).fetchone()
                kept: dict[str, Any] = json.loads(row[0]) if row else {}
                if count:
                    kept[_TURNS] = int(kept.get(_TURNS) or 0) + 1
                    _write(db, app, key, json.dumps(kept, ensure_ascii=False), MAX_CONVERSATIONS)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
    except sqlite3.Error as exc:
        raise ConversationError(f"cannot read conversation {key!r} from {store_path()}: {exc}") from None
    return kept


def save(app: str, conversation_id: Any, values: Mapping[str, Any], names: Iterable[str], *,
         max_conversations: int = MAX_CONVERSATIONS) -> None:
    """Keep `values[name]` for each of `names` as the conversation's (its other variables
    stay as they were); nothing without a conversation id. Past `max_conversations`, the
    conversations written longest ago are forgotten."""
    key = _key(conversation_id)
    if key is None:
        return
    wanted = {name: values[name] for name in names if name in values}
    if not wanted:
        return
    try:
        with closing(_open()) as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                row = db.execute("SELECT state FROM conversations WHERE app = ? AND conversation = ?", (app, key)).fetchone()
                state = {**(json.loads(row[0]) if row else {}), **wanted}
                try:
                    text = json.dumps(state, ensure_ascii=False, allow_nan=False)
                except (TypeError, ValueError) as exc:
                    raise ConversationError(f"conversation variables {', '.join(map(repr, wanted))}: not JSON values ({exc})") from None
                if len(text.encode("utf-8")) > MAX_STATE_BYTES:
                    raise ConversationError(f"the variables of conversation {key!r} would take {len(text.encode('utf-8')):,} bytes; "
                                            f"at most {MAX_STATE_BYTES:,} are kept")
                _write(db, app, key, text, max_conversations)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
    except sqlite3.Error as exc:
        raise ConversationError(f"cannot keep conversation {key!r} in {store_path()}: {exc}") from None


def _write(db: sqlite3.Connection, app: str, key: str, text: str, max_conversations: int) -> None:
    db.execute("INSERT OR REPLACE INTO conversations VALUES (?, ?, ?, ?)", (app, key, text, time.time()))
    db.execute("DELETE FROM conversations WHERE rowid IN (SELECT rowid FROM conversations ORDER BY used DESC "
               "LIMIT -1 OFFSET ?)", (max_conversations,))
