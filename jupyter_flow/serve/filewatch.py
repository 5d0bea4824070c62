"""Following one file for edits, symbolic links included: what a served flow reloads on.

`file_changes(path, stop)` yields whenever the file at `path` may have changed. It
watches the folder of every entry on the way to the file (each symbolic link of a chain,
and the file it ends at), not the file's inode, so that all of these are seen:

- an edit in place, and an editor that writes a new file and renames it over the old;
- a link re-pointed at another file (`ln -sfn v2.flow.yaml current.flow.yaml`, the way
  deployments switch versions), in the link's folder or any other: the watch then moves
  to the new file's folder;
- an edit of the file a link points to, in its own folder;
- a link to a folder on the way re-pointed (`current -> releases/42`, the way release
  tools switch versions).

Only the folders are watched, not their subfolders. Whoever listens reads the file again
through `path` and decides whether its content changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

__all__ = ["MAX_LINKS", "file_changes", "link_chain"]

#: How many symbolic links a chain may have before it is taken as a loop (as the system does).
MAX_LINKS = 40


def link_chain(path: str | os.PathLike[str]) -> tuple[Path, ...]:
    """Each entry on the way from `path` to the file it names, in the terms the folders
    are watched in (their real paths): every symbolic link met, the file's own or a
    folder's on the way (`current -> releases/42`), then the file. At most `MAX_LINKS`
    links are followed (a loop ends there)."""
    pending = list(Path(os.path.abspath(path)).parts)
    current = Path(pending.pop(0))  # the root: real
    entries: list[Path] = []
    while pending:
        name = pending.pop(0)
        if name in ("", "."):
            continue
        if name == "..":
            current = current.parent
            continue
        candidate = current / name  # `current` is real, so this is the entry as the system has it
        if len(entries) < MAX_LINKS and candidate.is_symlink():
            entries.append(candidate)
            try:
                target = Path(os.readlink(candidate))
            except OSError:  # removed meanwhile: what is known so far is watched
                break
            parts = list(target.parts)
            if target.is_absolute():
                current = Path(parts.pop(0))
            pending = parts + pending
            continue
        current = candidate
    return (*entries, current)


async def file_changes(path: str | os.PathLike[str], stop: asyncio.Event, *, step_ms: int = 20) -> AsyncIterator[None]:
    """Yield each time the file at `path`, or a link on the way to it, may have changed,
    until `stop` is set (see the module's docstring)."""
    from watchfiles import awatch

    while not stop.is_set():
        chain = link_chain(path)
        entries = set(chain)
        folders = sorted({str(entry.parent) for entry in chain if entry.parent.is_dir()})
        if not folders:  # nothing there to watch yet: look again shortly
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.5)
            continue

        def ours(change: Any, changed: str, entries: set[Path] = entries) -> bool:
            return Path(changed) in entries

        watcher = awatch(*folders, watch_filter=ours, stop_event=stop, step=step_ms, recursive=False)
        async with contextlib.aclosing(watcher):
            async for _ in watcher:
                yield
                if link_chain(path) != chain:  # re-pointed: watch where it points now
                    break
