"""Open and save flow files, keeping the user's comments and key order where possible.

With ruamel.yaml installed, a YAML flow file is read as a round-trip document; saving
merges the edited flow into that document, so comments on nodes, edges and settings that
still exist stay where they were. Without it (or for `.json`), the file is written fresh.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jupyter_flow.atomic import FileStamp, write_atomic
from jupyter_flow.spec import FlowSpec, PathLike, dump_spec, load_spec, parse_spec_text, spec_to_dict

__all__ = ["FlowDocument", "merge_into"]


def _ruamel() -> Any | None:
    try:
        from ruamel.yaml import YAML
    except ImportError:
        return None
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.width = 100
    yaml.indent(mapping=2, sequence=4, offset=2)
    return yaml


def _key_of(item: Any, list_name: str) -> Any:
    if not isinstance(item, Mapping):
        return None
    if list_name == "nodes":
        return item.get("id")
    if list_name == "edges":
        return (item.get("from"), item.get("to"))
    return None


def merge_into(doc: Any, data: Any, *, list_name: str | None = None) -> Any:
    """Make `doc` (a ruamel round-trip node) equal to `data`, changing only what differs,
    so the comments attached to unchanged parts survive. Returns the merged value."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    if isinstance(doc, CommentedMap) and isinstance(data, Mapping):
        for key in [k for k in doc if k not in data]:
            del doc[key]
        for index, (key, value) in enumerate(data.items()):
            if key in doc:
                doc[key] = merge_into(doc[key], value, list_name=key if key in ("nodes", "edges") else None)
            else:
                doc.insert(min(index, len(doc)), key, value)
        return doc
    if isinstance(doc, CommentedSeq) and isinstance(data, list):
        if list_name in ("nodes", "edges"):
            old = {_key_of(item, list_name): item for item in doc}
            merged = [merge_into(old[_key_of(v, list_name)], v) if _key_of(v, list_name) in old else v for v in data]
        elif len(doc) == len(data):
            merged = [merge_into(d, v) for d, v in zip(doc, data)]
        else:
            return data
        _update_seq(doc, merged)
        return doc
    if doc == data and type(doc) is type(data):
        return doc
    if _number(doc) and _number(data) and doc == data:
        return doc  # 60 stays 60 when the layout holds it as 60.0
    if isinstance(doc, str) and isinstance(data, str) and str(doc) == data:
        return doc  # keeps the quoting style ruamel remembered
    return data


class FlowDocument:
    """A flow file on disk: its path and, for YAML, the round-trip document that was read."""

    def __init__(self, path: Path, doc: Any = None, stamp: FileStamp | None = None) -> None:
        self.path = path
        self.doc = doc
        #: the file as it was last read or written here: a save refuses to replace a file
        #: that changed on disk since (someone else's edit), unless told to overwrite
        self.stamp = stamp

    @classmethod
    def open(cls, path: PathLike) -> tuple[FlowSpec, FlowDocument]:
        """Read and validate a flow file (errors name line and column, node and field)."""
        path = Path(path)
        stamp = FileStamp.of(path)
        spec = load_spec(path)
        doc = None
        yaml = _ruamel() if path.suffix.lower() != ".json" else None
        if yaml is not None:
            try:
                doc = yaml.load(path.read_text(encoding="utf-8"))
            except Exception:  # the file validated above; any ruamel quirk only costs the comments
                doc = None
        return spec, cls(path, doc, stamp)

    @classmethod
    def parse(cls, text: str, path: PathLike) -> tuple[FlowSpec, FlowDocument]:
        """Read flow `text` as the content of the file at `path` (an unsaved document, say)."""
        path = Path(path)
        as_json = path.suffix.lower() == ".json"
        spec = parse_spec_text(text, source=str(path), as_json=as_json)
        doc = None
        yaml = _ruamel() if not as_json else None
        if yaml is not None:
            try:
                doc = yaml.load(text)
            except Exception:  # the text validated above; any ruamel quirk only costs the comments
                doc = None
        return spec, cls(path, doc)

    def text(self, spec: FlowSpec) -> str:
        """The file's text for `spec`: merged into the document that was read, so that its
        comments and key order survive, or written fresh when there is none."""
        if self.path.suffix.lower() == ".json":
            return json.dumps(spec_to_dict(spec), indent=2, ensure_ascii=False) + "\n"
        yaml = _ruamel()
        if yaml is None or self.doc is None:
            return dump_spec(spec)
        self.doc = merge_into(self.doc, spec_to_dict(spec))
        buf = io.StringIO()
        yaml.dump(self.doc, buf)
        text = buf.getvalue()
        if FlowSpec.model_validate(_plain(yaml.load(text))) != spec:
            return dump_spec(spec)  # never a text that reads back as another flow
        return text

    def save(self, spec: FlowSpec, path: PathLike | None = None, *, overwrite: bool = False) -> Path:
        """Write the flow (layout included); comments survive when the same file is rewritten.
        The file is replaced whole or not at all (`write_atomic`); a file that changed on
        disk since it was read here is not replaced unless `overwrite` (FileChangedError)."""
        target = Path(path) if path is not None else self.path
        if target.resolve() != self.path.resolve():
            self.path, self.doc, self.stamp = target, None, None
        text = self.text(spec)
        write_atomic(target, text, unchanged_since=None if overwrite else self.stamp)
        self.stamp = FileStamp.of_bytes(text.encode("utf-8"))
        yaml = _ruamel()
        if self.doc is None and yaml is not None and target.suffix.lower() != ".json":
            self.doc = yaml.load(text)
        return target


def _update_seq(doc: Any, merged: list[Any]) -> None:
    """Make `doc` hold `merged` by deleting and inserting entries, not by replacing the
    list: ruamel keeps the comments between entries by position, and shifts them on each
    delete and insert."""
    for i in range(len(doc) - 1, -1, -1):
        if not any(doc[i] is item for item in merged):
            del doc[i]
    for i, item in enumerate(merged):
        if i >= len(doc):
            doc.append(item)
        elif doc[i] is not item:
            doc.insert(i, item)
    if len(doc) != len(merged) or any(a is not b for a, b in zip(doc, merged)):
        doc[:] = merged  # reordered: the comments may move


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, str):
        return str(value)
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    return value
