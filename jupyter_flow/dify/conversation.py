"""Dify's conversation variables, kept between the runs of one conversation.

In Dify a chat app's conversation variables live as long as the conversation: an assigner
node writes them, and the next turn reads what it wrote. An imported chat app does the same
through two functions its `python` nodes call: `load` (the `conversation` node, first in
the flow) reads the values a conversation has, and `jupyter_flow.dify.functions.assign`
saves what an assigner writes. A conversation is named by the flow's `conversation_id`
input; a run without one is a conversation of its own (nothing is read or kept), and the
variables' inputs give the values a new conversation starts with.

Where: one SQLite file, `$JUPYTER_FLOW_CONVERSATIONS` when set, else
`$XDG_DATA_HOME/jupyter-flow/conversations.sqlite` (`~/.local/share/...`), opened as the
node cache and run history are (`jupyter_flow.sqlite_store`: WAL, a busy timeout), keyed
by the app's name, the flow file that runs it (a digest of its resolved path: the same app
imported twice keeps two sets of conversations; a flow made from text has none) and the
conversation id; runs in several processes share it. Bounds: ids up to `MAX_ID_CHARS`
characters, the values of one conversation up to `MAX_STATE_BYTES` of JSON, and the
`MAX_CONVERSATIONS` (`$JUPYTER_FLOW_MAX_CONVERSATIONS`) most recently written
conversations of each app and flow file (older ones are forgotten first): whoever sends
conversation ids to a served chat app can make up new ones and push out that app's older
conversations, never another flow file's, so a served chat app should take conversation
ids from a front end it trusts. (Conversations kept by versions keyed by the app's name
alone, in the table `conversations`, are not read.)
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

from jupyter_flow.errors import FlowError, StoreError
from jupyter_flow.nodes.python import run_source
from jupyter_flow.sqlite_store import data_file, open_store

__all__ = ["MAX_CONVERSATIONS", "MAX_CONVERSATIONS_ENV", "MAX_ID_CHARS", "MAX_STATE_BYTES", "STORE_ENV", "ConversationError",
           "load", "save", "store_path"]

STORE_ENV = "JUPYTER_FLOW_CONVERSATIONS"
MAX_ID_CHARS = 256
MAX_STATE_BYTES = 1024 * 1024
MAX_CONVERSATIONS = 10_000
MAX_CONVERSATIONS_ENV = "JUPYTER_FLOW_MAX_CONVERSATIONS"
#: where the turns of a conversation are counted, beside its variables (no Dify variable has this name)
_TURNS = "sys.dialogue_count"
_NO_TURNS: Any = object()
_SCHEMA = ("CREATE TABLE IF NOT EXISTS flow_conversations (app TEXT NOT NULL, flow TEXT NOT NULL, conversation TEXT NOT NULL, "
           "state TEXT NOT NULL, used REAL NOT NULL, PRIMARY KEY (app, flow, conversation));\n"
           "CREATE INDEX IF NOT EXISTS flow_conversations_used ON flow_conversations (app, flow, used);")


class ConversationError(FlowError):
    """A conversation's state cannot be read or kept (an id too long, values too big or not
    JSON, a store that cannot be opened)."""


def store_path() -> Path:
    """The SQLite file conversations are kept in (see the module docstring)."""
    return data_file(STORE_ENV, "conversations.sqlite")


def _key(conversation_id: Any) -> str | None:
    if conversation_id is None or conversation_id == "":
        return None
    key = str(conversation_id)
    if len(key) > MAX_ID_CHARS:
        raise ConversationError(f"the conversation id is {len(key):,} characters; at most {MAX_ID_CHARS} are kept")
    return key


def _open() -> sqlite3.Connection:
    try:
        return open_store(store_path(), _SCHEMA, error=StoreError, what="conversation store")
    except StoreError as exc:
        raise ConversationError(f"{exc}; set {STORE_ENV} to another file") from None


def _flow() -> str:
    """The flow file of the run in progress, as a digest of its resolved path ('' for none)."""
    source = run_source.get()
    if source is None:
        return ""
    return hashlib.sha256(str(source.resolve()).encode("utf-8", "surrogatepass")).hexdigest()[:16]


def _limit(given: int | None) -> int:
    """The conversations kept of one app and flow file: `given`, else the environment's, else MAX_CONVERSATIONS."""
    if given is not None:
        return given
    raw = os.environ.get(MAX_CONVERSATIONS_ENV, "").strip()
    if not raw:
        return MAX_CONVERSATIONS
    try:
        limit = int(raw)
    except ValueError:
        limit = 0
    if limit < 1:
        raise ConversationError(f"{MAX_CONVERSATIONS_ENV}={raw!r}: expected a whole number of conversations, at least 1")
    return limit


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
    kept = _state(app, _flow(), key, count=turns is not _NO_TURNS)
    values.update({name: kept[name] for name in values if name in kept})
    if turns is not _NO_TURNS:
        values["dialogue_count"] = int(kept[_TURNS])
    return values


def _state(app: str, flow: str, key: str, *, count: bool) -> dict[str, Any]:
    """What is kept for the conversation; with `count`, its turns go up by one (kept)."""
    limit = _limit(None) if count else 0
    with _transaction(f"cannot read conversation {key!r} from {store_path()}") as db:
        row = db.execute(_READ, (app, flow, key)).fetchone()
        kept: dict[str, Any] = json.loads(row[0]) if row else {}
        if count:
            kept[_TURNS] = int(kept.get(_TURNS) or 0) + 1
            _write(db, app, flow, key, json.dumps(kept, ensure_ascii=False), limit)
    return kept


def save(app: str, conversation_id: Any, values: Mapping[str, Any], names: Iterable[str], *,
         max_conversations: int | None = None) -> None:
    """Keep `values[name]` for each of `names` as the conversation's (its other variables
    stay as they were); nothing without a conversation id. Past `max_conversations` (by
    default `$JUPYTER_FLOW_MAX_CONVERSATIONS`, else MAX_CONVERSATIONS) of this app and flow
    file, the conversations written longest ago are forgotten."""
    key = _key(conversation_id)
    if key is None:
        return
    wanted = {name: values[name] for name in names if name in values}
    if not wanted:
        return
    limit, flow = _limit(max_conversations), _flow()
    with _transaction(f"cannot keep conversation {key!r} in {store_path()}") as db:
        row = db.execute(_READ, (app, flow, key)).fetchone()
        state = {**(json.loads(row[0]) if row else {}), **wanted}
        try:
            text = json.dumps(state, ensure_ascii=False, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ConversationError(f"conversation variables {', '.join(map(repr, wanted))}: not JSON values ({exc})") from None
        if len(text.encode("utf-8")) > MAX_STATE_BYTES:
            raise ConversationError(f"the variables of conversation {key!r} would take {len(text.encode('utf-8')):,} bytes; "
                                    f"at most {MAX_STATE_BYTES:,} are kept")
        _write(db, app, flow, key, text, limit)


@contextmanager
def _transaction(failed: str) -> Iterator[sqlite3.Connection]:
    """The store, opened, in a write transaction committed at the end of the block (rolled
    back on any error); an SQLite error leaves as ConversationError saying `failed`."""
    try:
        with closing(_open()) as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
    except sqlite3.Error as exc:
        raise ConversationError(f"{failed}: {exc}") from None


_READ = "SELECT state FROM flow_conversations WHERE app = ? AND flow = ? AND conversation = ?"


def _write(db: sqlite3.Connection, app: str, flow: str, key: str, text: str, max_conversations: int) -> None:
    db.execute("INSERT OR REPLACE INTO flow_conversations VALUES (?, ?, ?, ?, ?)", (app, flow, key, text, time.time()))
    db.execute("DELETE FROM flow_conversations WHERE rowid IN (SELECT rowid FROM flow_conversations WHERE app = ? AND flow = ? "
               "ORDER BY used DESC LIMIT -1 OFFSET ?)", (app, flow, max_conversations))
