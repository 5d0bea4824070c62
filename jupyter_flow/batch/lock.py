"""One batch per output folder at a time: a lock file in the folder, held by the process.

`OUT/.jupyter-flow.lock` is locked with the operating system's file lock (`flock` on
POSIX, `msvcrt.locking` on Windows) and holds the holder's process id, host and start
time. The system drops the lock when the process ends, however it ends, so a lock left
by a killed batch is taken over by the next one (which says so); a second batch while
the first runs fails with BatchLockedError naming the folder and the process, before
anything in the folder is touched.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

from jupyter_flow.batch.items import BatchInputError
from jupyter_flow.errors import Problem

__all__ = ["LOCK_FILE", "BatchLockedError", "FolderLock"]

LOCK_FILE = ".jupyter-flow.lock"


class BatchLockedError(BatchInputError):
    """Another batch is running on the output folder (CLI exit code 2); `holder` is what
    its lock file says (pid, host, started)."""

    def __init__(self, out_dir: Path, holder: dict[str, Any]) -> None:
        self.out_dir = out_dir
        self.holder = holder
        who = f"process {holder.get('pid', '?')}"
        if holder.get("host") and holder.get("host") != socket.gethostname():
            who += f" on {holder['host']}"
        if holder.get("started"):
            who += f", started {holder['started']}"
        super().__init__([Problem(
            f"the output folder {out_dir} is in use by another batch ({who}); nothing was changed: "
            "wait for that batch to end, or give another output folder",
            field="out",
        )])


def _try_lock(fh: IO[str]) -> bool:
    if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
        import msvcrt

        try:
            fh.seek(0)
            msvcrt.locking(fh.fileno(), msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    import fcntl

    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _unlock(fh: IO[str]) -> None:
    if sys.platform == "win32":  # pragma: no cover
        import msvcrt

        fh.seek(0)
        msvcrt.locking(fh.fileno(), msvcrt.LK_UNLCK, 1)
        return
    import fcntl

    fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _holder(text: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return {}
    return data if isinstance(data, dict) else {}


class FolderLock:
    """The lock of one output folder. `acquire()` raises BatchLockedError while another
    process holds it and returns a note when it took over the lock of a process that
    ended without releasing it (None otherwise); `release()` lets it go."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.path = out_dir / LOCK_FILE
        self._fh: IO[str] | None = None

    def acquire(self) -> str | None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        fh = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 - held until release()
        try:
            if not _try_lock(fh):
                fh.seek(0)
                raise BatchLockedError(self.out_dir, _holder(fh.read()))
            fh.seek(0)
            before = _holder(fh.read())
            fh.seek(0)
            fh.truncate()
            fh.write(json.dumps({
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            }) + "\n")
            fh.flush()
        except BaseException:
            fh.close()
            raise
        self._fh = fh
        if before.get("pid"):
            return (f"took over the lock of {self.out_dir} from process {before['pid']}"
                    f"{' (started ' + str(before['started']) + ')' if before.get('started') else ''},"
                    " which ended without releasing it")
        return None

    def release(self) -> None:
        fh, self._fh = self._fh, None
        if fh is None:
            return
        try:
            fh.seek(0)
            fh.truncate()  # an empty lock file: released cleanly, nothing to take over
            fh.flush()
            _unlock(fh)
        finally:
            fh.close()

    def __enter__(self) -> FolderLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
