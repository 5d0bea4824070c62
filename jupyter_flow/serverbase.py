"""What every route of the server extension shares: the JSON body read within its bound
and as its request model, paths kept inside the server's root, and replies as JSON."""

from __future__ import annotations

import json
import re
from pathlib import Path, PurePosixPath
from typing import Any, NoReturn, TypeVar

import tornado.web
from jupyter_server.base.handlers import APIHandler
from pydantic import BaseModel

from jupyter_flow.edits import EditRequestError, read_request
from jupyter_flow.errors import FlowFileError, Problem
from jupyter_flow.replies import ErrorReply, FlowProblem
from jupyter_flow.spec import parse_json

__all__ = ["FLOW_SUFFIX", "MAX_REQUEST_BYTES", "FlowHandler", "flow_stem"]

FLOW_SUFFIX = re.compile(r"\.flow\.(ya?ml|json)$", re.IGNORECASE)
#: The largest request body read (a flow document and an edit fit many times over).
MAX_REQUEST_BYTES = 32 * 1024 * 1024
_Request = TypeVar("_Request", bound=BaseModel)


def flow_stem(path: PurePosixPath | Path) -> str:
    """`dir/contract.flow.yaml` -> `contract`."""
    return FLOW_SUFFIX.sub("", path.name)



class FlowHandler(APIHandler):
    """Shared parts: the JSON body, paths inside the root, errors as JSON."""

    root: Path

    def initialize(self, root: Path) -> None:
        self.root = root

    def body(self) -> dict[str, Any]:
        if len(self.request.body) > MAX_REQUEST_BYTES:
            raise tornado.web.HTTPError(413, f"the request body is larger than {MAX_REQUEST_BYTES:,} bytes")
        try:
            data = parse_json(self.request.body or b"{}", source="the request body")
        except FlowFileError as exc:
            raise tornado.web.HTTPError(400, f"the request body is not JSON: {exc.problems[0].message}") from None
        if not isinstance(data, dict):
            raise tornado.web.HTTPError(400, "the request body must be a JSON object")
        return data

    def read(self, model: type[_Request]) -> _Request:
        """The request body as `model`; a body that does not fit is answered with a 400
        naming each field (and the edit's op)."""
        data = self.body()
        try:
            return read_request(model, data)
        except EditRequestError as exc:
            path = data.get("path")
            self.refuse(exc, path if isinstance(path, str) else None)

    def refuse(self, error: EditRequestError, path: str | None = None) -> NoReturn:
        self.reply(error.reply(path), status=400)
        raise tornado.web.Finish()

    def field(self, data: dict[str, Any], name: str, *, required: bool = True) -> str | None:
        value = data.get(name)
        if value is None and not required:
            return None
        if not isinstance(value, str) or (required and not value.strip()):
            raise tornado.web.HTTPError(400, f"'{name}' must be a non-empty string")
        return value

    def local(self, api_path: str) -> Path:
        """The file behind an API path; refuses paths that leave the root directory."""
        if "\x00" in api_path:
            raise tornado.web.HTTPError(400, "a path may not hold a NUL character")
        rel = PurePosixPath(api_path.strip("/"))
        target = (self.root / rel).resolve()
        if target != self.root and not target.is_relative_to(self.root):
            raise tornado.web.HTTPError(403, f"'{api_path}' is outside the server's root directory")
        if not self.allow_hidden and any(part.startswith(".") for part in (*rel.parts, *target.relative_to(self.root).parts)):
            # Jupyter's own rule (ContentsManager.allow_hidden): a hidden file is not there
            raise tornado.web.HTTPError(404, f"'{api_path}' is hidden")
        return target

    @property
    def allow_hidden(self) -> bool:
        return bool(getattr(self.contents_manager, "allow_hidden", False))

    def api_path(self, path: Path) -> str:
        return path.resolve().relative_to(self.root).as_posix()

    def flow_file(self, data: dict[str, Any] | str, *, must_exist: bool = True) -> Path:
        """The flow file named by `data`'s `path` (or by the path given)."""
        api_path = data if isinstance(data, str) else self.field(data, "path")
        assert api_path is not None
        if not FLOW_SUFFIX.search(api_path):
            raise tornado.web.HTTPError(400, f"'{api_path}' is not a flow file (*.flow.yaml or *.flow.json)")
        path = self.local(api_path)
        if must_exist and not path.is_file():
            raise tornado.web.HTTPError(404, f"no flow file '{api_path}'")
        return path

    def reply(self, payload: BaseModel | dict[str, Any], status: int = 200) -> None:
        self.set_status(status)
        if isinstance(payload, BaseModel):
            self.finish(payload.model_dump_json(by_alias=True))
        else:
            self.finish(json.dumps(payload))

    def invalid(self, path: Path, problems: list[Problem], message: str, status: int = 400) -> None:
        problem_list = [FlowProblem.of(p) for p in problems]
        self.reply(ErrorReply(message=message, path=self.api_path(path), problems=problem_list), status=status)


