"""What a client of a served flow may send and may see.

- Body size and pace: `BodyLimit` (ASGI middleware) answers 413 when `Content-Length` is
  over the limit, and stops a body streamed past it (`BodyTooLarge`, raised where the body
  is read); a body not whole within `--body-timeout` seconds of its first byte is stopped
  too (`BodyTooSlow`, 408): a client that sends half a body and waits holds nothing.
- Files: a `file` input comes as an upload (``multipart/form-data``), written to a private
  temporary folder for the run and deleted after it; or as a path string, accepted only
  inside the folder given with ``--files-root`` (resolved, symlinks included). Without
  that folder a path is refused, so a client cannot have the server read its own files.
- Messages: `Scrubber` replaces every server path in text sent to a client (run errors,
  traces, reload errors) by ``<server path>``, a path inside the files root by the path the
  client used, and an upload by its file name.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jupyter_flow.errors import FlowValidationError, Problem
from jupyter_flow.spec import InputSpec

__all__ = ["DEFAULT_BODY_TIMEOUT_S", "BodyLimit", "BodyRefused", "BodyTooLarge", "BodyTooSlow", "FileInputs", "Scrubber"]

#: The default of `--max-body`: large enough for a contract PDF, small enough to refuse floods.
DEFAULT_MAX_BODY = 8 * 1024 * 1024
#: How deep a request body's JSON may nest (lists and objects), on every route.
MAX_BODY_DEPTH = 100


#: The default of `--body-timeout`: seconds from a body's first read to its last byte.
DEFAULT_BODY_TIMEOUT_S = 30.0


class BodyRefused(Exception):
    """A request body the server stopped reading; `status` is the answer's HTTP status."""

    status = 400


class BodyTooLarge(BodyRefused):
    """A request body went past the limit while it was being read."""

    status = 413

    def __init__(self, limit: int) -> None:
        super().__init__(f"the request body is larger than {limit:,} bytes (the server's --max-body)")
        self.limit = limit


class BodyTooSlow(BodyRefused):
    """A request body was not whole within the server's --body-timeout."""

    status = 408

    def __init__(self, seconds: float) -> None:
        super().__init__(f"the request body did not arrive whole within {seconds:g} s (the server's --body-timeout)")
        self.seconds = seconds


class BodyLimit:
    """ASGI middleware: 413 for a declared `Content-Length` over `limit`; a body streamed
    past it raises `BodyTooLarge` from `receive`, for the route that reads it to answer."""

    def __init__(self, app: Any, limit: int, body_timeout_s: float = DEFAULT_BODY_TIMEOUT_S) -> None:
        self.app = app
        self.limit = limit
        self.body_timeout_s = body_timeout_s

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared > limit or declared < 0:
                    await self._refuse(send, BodyTooLarge(limit) if declared > limit else None)
                    return
        seen = 0
        timeout = self.body_timeout_s
        deadline: float | None = None
        whole = False

        async def counted() -> Any:
            nonlocal seen, deadline, whole
            if whole:  # the body is in: what follows (a disconnect) may take its time
                return await receive()
            loop = asyncio.get_running_loop()
            if deadline is None:
                deadline = loop.time() + timeout
            try:
                message = await asyncio.wait_for(receive(), max(deadline - loop.time(), 0.0))
            except asyncio.TimeoutError:
                raise BodyTooSlow(timeout) from None
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(limit)
                whole = not message.get("more_body", False)
            return message

        await self.app(scope, counted, send)

    @staticmethod
    async def _refuse(send: Any, exc: BodyTooLarge | None) -> None:
        from starlette.responses import JSONResponse

        if exc is None:
            response = JSONResponse({"error": "Content-Length is not a number"}, status_code=400)
        else:
            response = JSONResponse({"error": str(exc)}, status_code=413)
        await response({"type": "http"}, _no_receive, send)


async def _no_receive() -> Any:  # pragma: no cover - responses never read
    return {"type": "http.disconnect"}


# A path: a slash not preceded by a name character, a dot, a colon or a slash (so URLs
# and relative paths stay), then everything up to a space, a quote or a bracket.
_PATH = re.compile(r"(?<![\w.:/~-])/[^\s'\"<>()\[\]{},;]*")


@dataclass
class Scrubber:
    """Replaces server paths in text for a client (see the module's docstring)."""

    files_root: Path | None = None
    uploads: dict[str, str] = field(default_factory=dict)  # real folder -> shown prefix

    def text(self, text: str) -> str:
        """A message (an error, a traceback): every server path replaced."""
        return _PATH.sub(self._replace, text)

    def value(self, value: Any, *, messages: bool = False, _depth: int = 0) -> Any:
        """JSON-like `value` (outputs, a trace) with the uploads and files root shown as the
        client knows them; with `messages`, or under an `error` key, every server path
        replaced too. Outputs are otherwise left alone (an HTML report has `</p>`s)."""
        if _depth > 200:
            return value
        if isinstance(value, str):
            if "/" not in value:
                return value
            return self.text(value) if messages else self._known(value)
        if isinstance(value, Mapping):
            return {k: self.value(v, messages=messages or k == "error", _depth=_depth + 1) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.value(v, messages=messages, _depth=_depth + 1) for v in value]
        return value

    def _known(self, text: str) -> str:
        for folder, shown in self.uploads.items():
            text = text.replace(folder + "/", shown)
        if self.files_root is not None:
            text = text.replace(str(self.files_root) + "/", "")
        return text

    def _replace(self, match: re.Match[str]) -> str:
        path = match.group(0)
        for folder, shown in self.uploads.items():
            if path == folder or path.startswith(folder + "/"):
                return shown + path[len(folder) :].lstrip("/")
        root = str(self.files_root) if self.files_root is not None else None
        if root and (path == root or path.startswith(root + "/")):
            return path[len(root) :].lstrip("/") or "."
        return "<server path>"


class FileInputs:
    """The `file` inputs of one request: uploads saved to a private folder, path strings
    confined to the files root. `close()` deletes the uploads."""

    def __init__(self, declared: Mapping[str, InputSpec], files_root: Path | None) -> None:
        self.names = {name for name, spec in declared.items() if spec.type == "file"}
        self.files_root = files_root.resolve() if files_root is not None else None
        self.folder: Path | None = None
        self.scrubber = Scrubber(self.files_root)

    def confine(self, inputs: Mapping[str, Any]) -> dict[str, Any]:
        """`inputs` with each `file` input given as a string checked and made absolute."""
        out = dict(inputs)
        problems: list[Problem] = []
        for name in sorted(self.names & set(inputs)):
            value = inputs[name]
            if value is None or not isinstance(value, str) or self._is_upload(value):
                continue
            if self.files_root is None:
                problems.append(Problem(
                    "this server takes files as uploads: send the request as multipart/form-data with the file "
                    f"in the field '{name}' (paths on the server are accepted only when it runs with --files-root)",
                    field=f"inputs.{name}",
                ))
                continue
            target = (self.files_root / value).resolve()
            if not target.is_relative_to(self.files_root):
                problems.append(Problem(
                    "the path is outside the folder this server reads files from; give a path inside it "
                    f"(relative to it), or upload the file as multipart/form-data in the field '{name}'",
                    field=f"inputs.{name}",
                ))
                continue
            out[name] = str(target)
        if problems:
            raise FlowValidationError(problems)
        return out

    def _is_upload(self, value: str) -> bool:
        return self.folder is not None and value.startswith(str(self.folder) + "/")

    def save(self, field_name: str, filename: str | None, source: Any) -> str:
        """Write an uploaded file (a binary file object) to the private folder; its path."""
        if self.folder is None:
            self.folder = Path(tempfile.mkdtemp(prefix="jupyter-flow-upload-"))  # mode 0700
            self.scrubber.uploads[str(self.folder)] = ""
        safe = re.sub(r"[^\w.-]", "_", Path(filename or "").name).lstrip(".") or "upload"
        folder = self.folder / re.sub(r"[^\w-]", "_", field_name)
        folder.mkdir(exist_ok=True)
        target = folder / safe
        with target.open("wb") as out:
            shutil.copyfileobj(source, out, 1024 * 1024)
        return str(target)

    def close(self) -> None:
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None
