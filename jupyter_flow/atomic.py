"""Reading and writing the files people edit (flow files, notebooks): never without bound,
never half there.

`read_bounded` reads a regular file of at most `MAX_FILE_BYTES` (a flow file named on the
command line, served, or an `--inputs` file): a link to `/dev/zero`, a pipe or a file of
gigabytes is refused by name instead of filling the memory.

`write_atomic` writes to a temporary file beside the target, flushes it to disk, and renames
it over the target: a reader (a watching `serve flow`, an editor) sees the old file or the
new one, never a file cut short by a full disk or a crash. It keeps the target's
permissions, and a target that is a symbolic link stays one: the file it points to is
replaced.

`FileStamp` remembers a file as it was read (size, modification time and a digest of its
bytes); `write_atomic(..., unchanged_since=stamp)` refuses, with `FileChangedError`, to
replace a file that someone changed since, unless the caller asks to overwrite.
"""

from __future__ import annotations

import hashlib
import os
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

from jupyter_flow.errors import FlowFileError

__all__ = ["MAX_FILE_BYTES", "FileChangedError", "FileStamp", "read_bounded", "write_atomic"]

#: The most bytes read of one flow file or inputs file.
MAX_FILE_BYTES = 64 * 1024 * 1024


class FileChangedError(FlowFileError):
    """The file changed on disk since it was read (or is not one this write may replace):
    writing would lose those changes. Its message names the file, not an invalid flow."""

    def __init__(self, message: str, *, source: str) -> None:
        super().__init__(message, source=source)
        Exception.__init__(self, f"{source}: {message}")


@dataclass(frozen=True)
class FileStamp:
    """A file as it was read: None fields for a file that did not exist."""

    size: int | None
    digest: str | None

    @classmethod
    def of(cls, path: str | Path) -> FileStamp:
        try:
            data = Path(path).read_bytes()
        except FileNotFoundError:
            return cls(None, None)
        return cls.of_bytes(data)

    @classmethod
    def of_bytes(cls, data: bytes) -> FileStamp:
        return cls(len(data), hashlib.sha256(data).hexdigest())


def read_bounded(path: str | Path, *, max_bytes: int | None = None) -> bytes:
    """The bytes of the regular file at `path` (links followed), at most `max_bytes`
    (default `MAX_FILE_BYTES`). FileNotFoundError when there is none; FlowFileError naming
    the file when it is not a regular file (a device or a pipe may never end) or is larger."""
    limit = MAX_FILE_BYTES if max_bytes is None else max_bytes
    if not stat.S_ISREG(os.stat(path).st_mode):  # before opening: opening a pipe waits for a writer
        raise FlowFileError("cannot read: not a regular file (a device or a pipe may never end)", source=str(path))
    with open(path, "rb") as fh:
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise FlowFileError(f"cannot read: larger than {limit:,} bytes, the most read of one file", source=str(path))
    return data


def write_atomic(path: str | Path, data: str | bytes, *, unchanged_since: FileStamp | None = None) -> Path:
    """Write `data` to `path` whole or not at all (see the module's docstring). With
    `unchanged_since`, refuse when the file on disk is no longer the one that was read.
    Returns `path` as given."""
    given = Path(path)
    target = Path(os.path.realpath(given)) if given.is_symlink() else given
    raw = data.encode("utf-8") if isinstance(data, str) else data
    if unchanged_since is not None and FileStamp.of(target) != unchanged_since:
        raise FileChangedError(
            "changed on disk since it was read: save it under another name, reload it, or overwrite it on purpose",
            source=str(target),
        )
    folder = target.parent if str(target.parent) else Path(".")
    try:
        mode = target.stat().st_mode & 0o7777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise FlowFileError(f"cannot write: {exc.strerror or exc}", source=str(target)) from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(raw)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(exc, OSError):  # a full disk, a read-only folder: the old file is untouched
            raise FlowFileError(f"cannot write: {exc.strerror or exc}; the file on disk is unchanged", source=str(target)) from None
        raise
    try:  # the rename itself reaches the disk with the folder's entry
        dir_fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return given
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)
    return given
