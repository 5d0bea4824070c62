"""The items of a batch: where they come from, their ids, and the flow they run on.

An item is one run: a stable id and the flow inputs it runs with. Items come from a
folder, a glob pattern, a `.jsonl` file, one file, or a list; `apply_endpoints` points
http nodes at other URLs for the whole batch.

What one item gets wrong fails that item, not the batch: an `id` that cannot be one
(`null`, empty, a list) or inputs nested deeper than `MAX_ITEM_DEPTH` make a refused item
(`BatchItem.problem`), recorded as failed with a message naming its line. Whatever an id
holds, the file name made from it (`trace_name`) stays short enough for any file system.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

from jupyter_flow.errors import FlowError, FlowFileError, FlowValidationError, Problem
from jupyter_flow.spec import check_document

if TYPE_CHECKING:
    from jupyter_flow.flow import Flow

__all__ = [
    "BatchInputError",
    "BatchItem",
    "ItemsSource",
    "MAX_ITEM_BYTES",
    "MAX_ITEM_DEPTH",
    "MAX_NAME_BYTES",
    "apply_endpoints",
    "check_out_dir",
    "collect_items",
    "read_jsonl_items",
    "items_to_run",
    "trace_name",
]

#: A folder, a glob pattern, a `.jsonl` file, one file, or a list of input dicts.
ItemsSource = Union[str, Path, Sequence[Mapping[str, Any]], Sequence["BatchItem"]]

#: How deep one item's inputs (a JSONL line, a dict in a list) may nest, lists and objects
#: counted, as for a request body to a served flow: a deeper item is refused (it fails, the
#: batch goes on), never a crash of the whole batch.
MAX_ITEM_DEPTH = 100
#: The longest file name stem made from an item's id (its trace file), in bytes: a longer
#: id, or one with characters a file name should not hold, keeps a readable beginning and
#: gets a digest of the whole id (file systems take 255 bytes; the id itself is not cut).
MAX_NAME_BYTES = 100
#: The longest line of a JSONL file of items, in bytes: a longer one is a refused item (it
#: fails, naming its line, and the batch goes on), never read whole.
MAX_ITEM_BYTES = 64 * 1024 * 1024
_DIGEST_BYTES = 8  # 16 hex digits: no two ids of a batch end up with one trace name

_GLOB_CHARS = re.compile(r"[*?\[]")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class BatchItem:
    """One run of a batch: a stable `id` and the flow inputs it runs with.

    `problem` says why the item cannot run (an unusable `id`, inputs nested too deep):
    it is then recorded as failed with that message, without running."""

    id: str
    inputs: dict[str, Any]
    source: str | None = None  # where it came from (file path or "FILE.jsonl:LINE")
    problem: str | None = None


class BatchInputError(FlowValidationError):
    """The batch's items or options are wrong (CLI exit code 2): names the file and line,
    the option, or the node."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = list(problems)
        self.source = None
        FlowError.__init__(self, "cannot run the batch: " + "; ".join(str(p) for p in self.problems))


# -- items ----------------------------------------------------------------------------
def _file_input(flow: Flow, input_name: str | None) -> str:
    declared = flow.spec.inputs
    if input_name:
        if declared and input_name not in declared:
            raise BatchInputError(
                [Problem(f"the flow has no input {input_name!r} (it takes: {', '.join(declared)})", field="input_name")]
            )
        return input_name
    files = [name for name, spec in declared.items() if spec.type == "file"]
    if len(files) == 1:
        return files[0]
    if not files and len(declared) == 1:
        return next(iter(declared))
    what = f"file inputs {', '.join(files)}" if files else f"inputs {', '.join(declared) or '(none declared)'}"
    raise BatchInputError(
        [Problem(f"cannot tell which input takes each file (the flow has {what}): name it with --input-name / input_name=",
                 field="inputs")]
    )


def _glob_root(pattern: str) -> Path:
    parts = Path(pattern).parts
    root: list[str] = []
    for part in parts:
        if _GLOB_CHARS.search(part):
            break
        root.append(part)
    return Path(*root) if root else Path(".")


def _glob_parts(text: str) -> tuple[Path, tuple[str, ...]]:
    """A glob pattern's root folder (its parts before the first wildcard) and the parts
    below it."""
    root = _glob_root(text)
    parts = Path(text).parts
    return root, (parts[len(root.parts):] if root != Path(".") else parts)


def _glob_files(root: Path, pattern: Sequence[str]) -> list[Path]:
    """The files under `root` whose path below it matches `pattern` (glob parts, `**` for
    any number of folders; names starting with a dot only when the part does too).

    Symbolic links to folders are followed, but never into a folder already visited, so
    a link loop (`a/up -> ..`) neither repeats files nor hangs."""
    found: list[Path] = []
    visited: set[tuple[int, int]] = set()
    recursive = "**" in pattern
    for folder, dirs, names in os.walk(root, followlinks=True):
        try:
            st = os.stat(folder)
        except OSError:
            dirs[:] = []
            continue
        if (st.st_dev, st.st_ino) in visited:
            dirs[:] = []
            continue
        visited.add((st.st_dev, st.st_ino))
        here = Path(folder)
        depth = len(here.relative_to(root).parts)
        if not recursive and depth >= len(pattern) - 1:
            dirs[:] = []  # deeper folders cannot match
        dirs.sort()
        for name in names:
            path = here / name
            if _match(path.relative_to(root).parts, tuple(pattern)) and path.is_file():
                found.append(path)
    return sorted(found)


def _match(parts: tuple[str, ...], pattern: tuple[str, ...]) -> bool:
    if not pattern:
        return not parts
    head, rest = pattern[0], pattern[1:]
    if head == "**":
        return any(_match(parts[i:], rest) for i in range(len(parts) + 1) if all(not p.startswith(".") for p in parts[:i]))
    if not parts or (parts[0].startswith(".") and not head.startswith(".")):
        return False
    return fnmatch.fnmatchcase(parts[0], head) and _match(parts[1:], rest)


def _jsonl_lines(path: Path) -> Iterator[tuple[int, str | None]]:
    """Each line of a JSONL file with its number, read one at a time (never the whole file,
    nor more than `MAX_ITEM_BYTES` of a line: a longer line is None). Newlines end lines,
    nothing else (U+2028 or U+0085 in a string is JSON text); a BOM opening the file, as
    editors on Windows write, is not part of the first line."""
    try:
        with open(path, "rb") as fh:
            number = 0
            while raw := fh.readline(MAX_ITEM_BYTES + 1):
                number += 1
                if len(raw) > MAX_ITEM_BYTES and not raw.endswith(b"\n"):
                    while (rest := fh.readline(1 << 20)) and not rest.endswith(b"\n"):
                        pass  # the rest of the line is not kept
                    yield number, None
                    continue
                if number == 1:
                    raw = raw.removeprefix(b"\xef\xbb\xbf")
                try:
                    yield number, raw.decode("utf-8").removesuffix("\n").removesuffix("\r")
                except UnicodeDecodeError as exc:
                    raise BatchInputError([Problem(f"{path}:{number}: not UTF-8 text ({exc.reason} at byte {exc.start})",
                                                   field="inputs")]) from None
    except OSError as exc:
        raise BatchInputError([Problem(f"cannot read {path}: {exc}", field="inputs")]) from None


def read_jsonl_items(path: Path) -> list[BatchItem]:
    """The items of a `.jsonl` file, one per non-empty line (see `_item`); a line that is not
    a JSON object, or an id used twice, is a BatchInputError naming the line."""
    items: list[BatchItem] = []
    seen: dict[str, int] = {}
    for number, line in _jsonl_lines(path):
        where = f"{path}:{number}"
        if line is None:  # too long to read: refused as itself, the others run
            items.append(BatchItem(f"line-{number}", {}, where, f"{where}: longer than {MAX_ITEM_BYTES:,} bytes"))
            seen[f"line-{number}"] = number
            continue
        if not line.strip():
            continue
        twice = None
        try:
            data = json.loads(line, object_pairs_hook=_unique_keys)
        except json.JSONDecodeError as exc:
            raise BatchInputError([Problem(f"{where}: not JSON (column {exc.colno}: {exc.msg})", field="inputs")]) from None
        except _KeyTwice as exc:  # which of the two values was meant? this item is refused, the rest run
            data, twice = {}, f"{where}: key {exc.args[0]!r} is given twice in one object"
        except RecursionError:  # deeper than the parser goes: this item is refused, the rest run
            data = None
        if data is not None and not isinstance(data, dict):
            raise BatchInputError([Problem(f"{where}: each line must be a JSON object of inputs", field="inputs")])
        item = _item(data, f"line-{number}", where, "leave it out to use the line number")
        if twice is not None:
            item = replace(item, inputs={}, problem=twice)
        if item.id in seen:
            raise BatchInputError(
                [Problem(f"{where}: id {item.id!r} is used again (first on line {seen[item.id]})", field="inputs")]
            )
        seen[item.id] = number
        items.append(item)
    return items


class _KeyTwice(ValueError):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    body: dict[str, Any] = {}
    for key, value in pairs:
        if key in body:
            raise _KeyTwice(key)
        body[key] = value
    return body


def _item(data: dict[str, Any] | None, fallback: str, where: str, without: str, *, id_is_input: bool = False) -> BatchItem:
    """One item of a JSONL line or a list from its data (None: too deep to read), taking
    its `id` field unless the flow has an input of that name. An item that cannot run is
    refused (see `BatchItem.problem`) under its own id when it has a usable one, else under
    `fallback`; its inputs are then left out of its record."""
    if data is None:
        return BatchItem(fallback, {}, where, f"{where}: nested more than {MAX_ITEM_DEPTH} levels deep")
    data = dict(data)
    item_id, problem = fallback, None
    if "id" in data and not id_is_input:
        value = data.pop("id")
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            kind = "null" if value is None else type(value).__name__
            problem = f"{where}: `id` must be a non-empty string or a number, not {kind} ({without})"
        elif not str(value).strip():
            problem = f"{where}: `id` is empty ({without})"
        else:
            item_id = str(value)
    try:
        check_document(data, source=where, max_depth=MAX_ITEM_DEPTH, max_values=sys.maxsize)
    except FlowFileError as exc:
        problem = f"{where}: " + "; ".join(p.message for p in exc.problems)
    if problem is not None:
        return BatchItem(item_id, {}, where, problem)
    return BatchItem(item_id, data, where)


def collect_items(flow: Flow, source: ItemsSource, *, input_name: str | None = None) -> list[BatchItem]:
    """The items of a batch, in a stable order.

    - a folder: one item per file in it (hidden files left out), its path given to the
      flow's file input (the single `type: file` input, or `input_name`); id = file name;
    - a glob pattern (`inbox/**/*.pdf`): likewise; id = path relative to the pattern's root;
    - a `.jsonl` file: one item per line, a JSON object of inputs; id = its `id` field
      (a non-empty string or a number), else `line-N`;
    - any other file: one item, that file;
    - a list of dicts (id = their `id` key, else `item-N`) or of BatchItem.

    A line or dict whose `id` is null, empty or not a string or number, or whose inputs
    nest deeper than `MAX_ITEM_DEPTH`, is a refused item (it fails, naming the line; the
    others run). A line that is not a JSON object, or an id used twice, refuses the batch.
    """
    if not isinstance(source, (str, Path)):
        entries: Sequence[Mapping[str, Any] | BatchItem] = source
        items = []
        for n, entry in enumerate(entries, start=1):
            if isinstance(entry, BatchItem):
                items.append(entry)
            else:
                item = _item(dict(entry), f"item-{n}", f"item {n}", "leave it out to use the item's number",
                             id_is_input="id" in flow.spec.inputs)
                items.append(BatchItem(item.id, item.inputs, None, item.problem))
        if not items:
            raise BatchInputError([Problem("no items to run (an empty list)", field="inputs")])
        items = [_writable_id(i) for i in items]
        _check_unique(items)
        return items
    text = str(source)
    path = Path(text).expanduser()
    if path.is_dir():
        name = _file_input(flow, input_name)
        files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
        items = [BatchItem(p.name, {name: str(p.resolve())}, str(p)) for p in files]
    elif path.is_file() and path.suffix.lower() == ".jsonl":
        items = read_jsonl_items(path)
    elif path.is_file():
        name = _file_input(flow, input_name)
        items = [BatchItem(path.name, {name: str(path.resolve())}, str(path))]
    elif _GLOB_CHARS.search(text):
        name = _file_input(flow, input_name)
        root, pattern = _glob_parts(text)
        files = _glob_files(root, pattern)
        items = [BatchItem(p.relative_to(root).as_posix() if p.is_relative_to(root) else p.as_posix(),
                           {name: str(p.resolve())}, str(p)) for p in files]
    else:
        raise BatchInputError([Problem(f"{text}: no such folder or file, and not a glob pattern", field="inputs")])
    if not items:
        raise BatchInputError([Problem(f"{text}: no items to run (no files, or no lines)", field="inputs")])
    items = [_writable_id(i) for i in items]
    _check_unique(items)
    return items


def _writable_id(item: BatchItem) -> BatchItem:
    """The item with an id that `results.jsonl` holds as it is: a lone surrogate (from a
    file name that is not UTF-8, or a `\\udc80` escape in JSON) becomes `\\udc80` text,
    as the results writer writes it, so resume and the summary find the item again."""
    try:
        item.id.encode("utf-8")
    except UnicodeEncodeError:
        return replace(item, id=item.id.encode("utf-8", "backslashreplace").decode("utf-8"))
    return item


def _check_unique(items: Sequence[BatchItem]) -> None:
    seen: set[str] = set()
    for item in items:
        if item.id in seen:
            raise BatchInputError([Problem(f"two items have the id {item.id!r}", field="inputs")])
        seen.add(item.id)


def items_to_run(
    flow: Flow,
    source: ItemsSource,
    *,
    input_name: str | None = None,
    common_inputs: Mapping[str, Any] | None = None,
) -> list[BatchItem]:
    """The items a batch runs: `source` collected (see `collect_items`), each given
    `common_inputs` under its own (an item's own inputs win)."""
    items = collect_items(flow, source, input_name=input_name)
    if common_inputs:
        items = [replace(i, inputs={**common_inputs, **i.inputs}) for i in items]
    return items


def trace_name(item_id: str) -> str:
    """A file name for an item's trace: the id made safe, bounded to `MAX_NAME_BYTES`,
    with a digest of the whole id when it had to change. The same id always gets the same
    name."""
    safe = _UNSAFE.sub("_", item_id).strip("._") or "item"  # ASCII only: one byte per character
    if safe != item_id or len(safe) > MAX_NAME_BYTES:
        digest = hashlib.blake2b(item_id.encode("utf-8", "surrogatepass"), digest_size=_DIGEST_BYTES).hexdigest()
        safe = f"{safe[: MAX_NAME_BYTES - len(digest) - 1]}-{digest}"
    return f"{safe}.json"


def check_out_dir(source: ItemsSource, out_dir: str | Path) -> None:
    """Refuse an output folder that the items are read from: a folder of inputs that is
    the output folder or holds it, or a glob whose matches could reach into it (a later
    batch would take the results, traces and summaries as documents)."""
    if not isinstance(source, (str, Path)):
        return
    text = str(source)
    path = Path(text).expanduser()
    out = Path(out_dir).expanduser().resolve()
    if path.is_dir():
        root = path.resolve()
        if out == root or out.is_relative_to(root):
            what = "is" if out == root else "is inside"
            raise BatchInputError([Problem(
                f"the output folder {out_dir} {what} the folder of inputs {text}: its results would be read as "
                "documents; give --out a folder outside the inputs", field="out_dir")])
    elif not path.is_file() and _GLOB_CHARS.search(text):
        top, pattern = _glob_parts(text)
        root = top.resolve()
        if out != root and not out.is_relative_to(root):
            return
        below = len(out.relative_to(root).parts)
        if "**" in pattern or len(pattern) > below:
            raise BatchInputError([Problem(
                f"the output folder {out_dir} is where the pattern {text} finds inputs: its results would be read "
                "as documents; give --out a folder the pattern does not reach", field="out_dir")])


# -- endpoint overrides ---------------------------------------------------------------
def apply_endpoints(flow: Flow, endpoints: Mapping[str, str] | None) -> Flow:
    """A copy of `flow` whose http nodes named in `endpoints` call the given URLs."""
    if not endpoints:
        return flow
    problems = []
    changes = {}
    for node_id, url in endpoints.items():
        if node_id not in flow.node_ids:
            problems.append(Problem(f"no such node (the flow has: {', '.join(flow.node_ids)})", node=node_id, field="endpoints"))
            continue
        kind = flow.spec.node(node_id).type
        change = flow.registry.get(kind).endpoint_changes(str(url)) if kind in flow.registry else None
        if change is None:
            problems.append(Problem(f"is a '{kind}' node, not an http node", node=node_id, field="endpoints"))
        else:
            changes[node_id] = change
    if problems:
        raise BatchInputError(problems)
    for node_id, change in changes.items():
        flow = flow.with_config(node_id, change)
    return flow
