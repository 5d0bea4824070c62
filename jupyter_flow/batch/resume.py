"""Resuming a batch: which items the output folder already has, and from which flow.

Every result line carries `flow_digest`, a digest of the flow that made it (its spec
without node positions: `jupyter_flow.history.flow_digest`, the digest the run history
keeps). A resume adds to an output folder only results of the same flow: when some of its
lines came from another version of the flow (or carry no digest, written before results
had one), `resume_results` refuses with `FlowChangedError`, naming how many and what to
do, before anything runs. The inputs given to every item (`--input`) and the endpoint
overrides (`--endpoint`) count as part of the flow: a line made with them carries
`overrides` (a digest of each value, by input name and by node id; see `override_digests`),
and a resume with other values is refused the same way, naming the input or node. With
`rerun_changed` those lines and their traces are moved to `OUT/earlier-<time>/` (never
deleted) and their items run again with this flow.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from jupyter_flow.atomic import write_atomic
from jupyter_flow.batch.items import BatchInputError
from jupyter_flow.batch.results import RESULTS_FILE, TRACES_DIR, earlier_folder, read_result_lines
from jupyter_flow.errors import Problem

__all__ = ["FlowChangedError", "override_digests", "resume_results"]


class FlowChangedError(BatchInputError):
    """The output folder holds results of another version of the flow (CLI exit code 2):
    resuming would mix them with this one's. `stale` are the ids of those results."""

    def __init__(self, out_dir: Path, digest: str, stale: Sequence[str], unknown: int, changes: Sequence[str] = ()) -> None:
        self.out_dir = out_dir
        self.stale = list(stale)
        self.changes = list(changes) or [_FLOW_CHANGED]
        shown = ", ".join(_short(s) for s in self.stale[:5]) + (f" and {len(self.stale) - 5} more" if len(self.stale) > 5 else "")
        why = (f"{unknown} of them carry no flow digest (written by an older jupyter-flow)" if unknown == len(self.stale)
               else f"they were made {_joined(self.changes)}" + (f" ({unknown} carry no flow digest)" if unknown else ""))
        super().__init__([Problem(
            f"{out_dir / RESULTS_FILE} holds {len(self.stale)} result(s) ({shown}) that this flow (digest {digest}) did not "
            f"make: {why}; resuming would mix results of two flows, so nothing was run. Run again with --rerun-changed "
            "(rerun_changed=True) to run those items with this flow (their old results are moved to an earlier-* "
            "folder), leave out --resume to start over, or give another output folder",
            field="resume",
        )])


_FLOW_CHANGED = "by another version of the flow"
_MAX_NAMED = 5  # changes named in a message; the rest are counted


def override_digests(common_inputs: Mapping[str, Any], endpoints: Mapping[str, str]) -> dict[str, dict[str, str]] | None:
    """What a result line records of the inputs given to every item and the endpoint
    overrides: a digest of each value (never the value: an input or a URL may hold a
    secret), by input name and node id; None when there are neither."""
    found = {part: {str(key): _digest(value) for key, value in given.items()}
             for part, given in (("inputs", common_inputs), ("endpoints", endpoints)) if given}
    return found or None


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _changes(record: Mapping[str, Any], digest: str, overrides: Mapping[str, Mapping[str, str]] | None) -> list[str]:
    """How the flow and overrides that made `record` differ from these (empty: the same)."""
    changes = [] if record.get("flow_digest") == digest else [_FLOW_CHANGED]
    theirs = record.get("overrides")
    theirs = theirs if isinstance(theirs, Mapping) else {}
    ours = overrides or {}
    for part, words, flag in (("inputs", "common input", "--input"), ("endpoints", "endpoint override of node", "--endpoint")):
        a, b = theirs.get(part), ours.get(part)
        a = a if isinstance(a, Mapping) else {}
        b = b or {}
        changes += [f"with another {words} {key!r} ({flag})" for key in sorted(set(a) | set(b), key=str) if a.get(key) != b.get(key)]
    return changes


def _joined(changes: Sequence[str]) -> str:
    named = " and ".join(changes[:_MAX_NAMED])
    return named + (f" and {len(changes) - _MAX_NAMED} more change(s)" if len(changes) > _MAX_NAMED else "")


def _short(item_id: str) -> str:
    return repr(item_id) if len(item_id) <= 60 else repr(item_id[:57] + "...")


def resume_results(out_dir: Path, digest: str, *, rerun_changed: bool,
                   overrides: Mapping[str, Mapping[str, str]] | None = None) -> tuple[set[str], list[str]]:
    """The ids `out_dir` has results of this flow (and these `override_digests`) for (a
    line torn by a crash is cut), and notes for the user; see the module's docstring. The
    caller holds the folder's lock."""
    (out_dir / TRACES_DIR).mkdir(parents=True, exist_ok=True)
    lines = read_result_lines(out_dir, repair=True)
    found = [_changes(record, digest, overrides) for _, record in lines]
    ours = [not changes for changes in found]
    stale = [record for (_, record), same in zip(lines, ours) if not same]
    if not stale:
        return {str(record["id"]) for _, record in lines}, []
    changes = list(dict.fromkeys(change for each in found for change in each))
    if not rerun_changed:
        unknown = sum(1 for record in stale if not record.get("flow_digest"))
        raise FlowChangedError(out_dir, digest, [str(record["id"]) for record in stale], unknown, changes)
    moved = _move_aside(out_dir, lines, ours)
    kept = {str(record["id"]) for (_, record), same in zip(lines, ours) if same}
    return kept, [f"{len(stale)} result(s) made {_joined(changes)} were moved to {moved}; their items run again"]


def _move_aside(out_dir: Path, lines: list[tuple[bytes, dict[str, Any]]], ours: list[bool]) -> Path:
    """Write the lines that are not `ours` (and move their traces) to a new earlier-*
    folder, then replace results.jsonl by the lines that are: a crash in between leaves
    the stale lines in both places, never in neither."""
    moved = earlier_folder(out_dir)
    stale = [line for line, same in zip(lines, ours) if not same]
    write_atomic(moved / RESULTS_FILE, b"".join(raw for raw, _ in stale))
    traces = moved / TRACES_DIR
    traces.mkdir()
    for _, record in stale:
        name = record.get("trace")
        if not isinstance(name, str):
            continue
        path = out_dir / name
        if path.parent == out_dir / TRACES_DIR and path.is_file():
            os.replace(path, traces / path.name)
    write_atomic(out_dir / RESULTS_FILE, b"".join(raw for (raw, _), same in zip(lines, ours) if same))
    return moved
