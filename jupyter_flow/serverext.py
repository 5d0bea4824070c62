"""The Jupyter server extension the JupyterLab extension talks to.

Routes (JSON in, JSON out, under the server's base URL; Jupyter's own token and XSRF
checks apply to every one of them):

    GET  /jupyter-flow/api/status      version, and whether export is available
    GET  /jupyter-flow/api/palette     {kinds: [{kind, colour, builtin}], statuses: {status: colour},
                                        problem, selected}: the workbench's colours
    POST /jupyter-flow/api/validate    {path, text?} -> {valid, problems: [{node, edge, field, message}]}
    POST /jupyter-flow/api/edit        {path, text, edit: {op, ...}} -> {text, what, made, problems}
                                       (the document's new text, comments kept; 400 naming
                                       the op and field when the edit does not fit, 422
                                       with problems when it would break the flow)
    GET  /jupyter-flow/api/schema?kind=K  {kind, schema, config}: the JSON schema of a node
                                       kind's config and a new node's config; without
                                       `kind`, the schema of an edge's settings
    POST /jupyter-flow/api/export      {path, output?} -> {notebook}   (the production notebook)
    POST /jupyter-flow/api/new         {directory, name?, device?, batch_size?} -> {flow, notebook}
    POST /jupyter-flow/api/workbench   {path} -> {notebook, created, runnable}

Every request and reply is a model of `jupyter_flow.edits` and `jupyter_flow.replies`
(from which the file view's TypeScript types are generated); a request that does not fit
its model is a 400 whose `errors` name each field, and a refusal is an `ErrorReply`.
Paths are relative to the server's root directory, with `/` separators, as the
JupyterLab file browser names them; a path that leaves the root is refused. Enabled by
`jupyter-config/jupyter_server_config.d/jupyter_flow.json`, installed with the package.
This module loads no widget and no notebook workbench: the server imports it at start.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any, NoReturn, TypeVar

import tornado.web
from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join
from pydantic import BaseModel

from jupyter_flow.editor import new_node_config
from jupyter_flow.edits import (
    AppliedEdit,
    EditRequest,
    EditRequestError,
    ExportRequest,
    NewFlowRequest,
    WorkbenchRequest,
    apply_edit,
    read_request,
)
from jupyter_flow.errors import FlowError, FlowFileError, FlowValidationError, Problem
from jupyter_flow.nodes.registry import default_registry
from jupyter_flow.palette import PROBLEM_COLOUR, SELECTED_COLOUR, STATUS_COLOURS, palette
from jupyter_flow.replies import (
    EditReply,
    ErrorReply,
    ExportReply,
    FlowProblem,
    NewFlowReply,
    PaletteReply,
    SchemaReply,
    StatusReply,
    WorkbenchReply,
)
from jupyter_flow.spec import EdgeSpec, parse_json
from jupyter_flow.version import __version__ as VERSION

__all__ = ["API_ROOT", "WORKBENCH_MARKER", "is_workbench_notebook", "new_flow_text", "workbench_notebook"]

#: the notebook metadata key that marks a workbench notebook this extension made
WORKBENCH_MARKER = "jupyter_flow_workbench"

API_ROOT = "jupyter-flow/api"
_FLOW_SUFFIX = re.compile(r"\.flow\.(ya?ml|json)$", re.IGNORECASE)
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
#: The largest request body read (a flow document and an edit fit many times over).
MAX_REQUEST_BYTES = 32 * 1024 * 1024
_Request = TypeVar("_Request", bound=BaseModel)


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "jupyter_flow.serverext"}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    web_app = serverapp.web_app
    base = url_path_join(web_app.settings["base_url"], API_ROOT)
    options = {"root": Path(serverapp.root_dir).resolve()}
    routes: list[tuple[str, type[_FlowHandler]]] = [
        ("status", StatusHandler),
        ("palette", PaletteHandler),
        ("validate", ValidateHandler),
        ("edit", EditHandler),
        ("schema", SchemaHandler),
        ("export", ExportHandler),
        ("new", NewFlowHandler),
        ("workbench", WorkbenchHandler),
    ]
    web_app.add_handlers(".*$", [(url_path_join(base, name), handler, options) for name, handler in routes])
    serverapp.log.info("jupyter-flow server extension at %s", base)


# -- what the handlers write ---------------------------------------------------------------
def flow_stem(path: PurePosixPath | Path) -> str:
    """`dir/contract.flow.yaml` -> `contract`."""
    return _FLOW_SUFFIX.sub("", path.name)


def workbench_notebook(flow_file: str) -> dict[str, Any]:
    """A notebook whose one code cell opens `flow_file` (a path relative to the notebook) in
    the workbench."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell(
            f"# Workbench: `{flow_file}`\n\nRun the cell to draw the flow, run it, and inspect every node."
        ),
        nbformat.v4.new_code_cell(f"from jupyter_flow.workbench import Workbench\n\nWorkbench({flow_file!r})"),
    ]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata[WORKBENCH_MARKER] = {"flow": flow_file}
    return nb


def is_workbench_notebook(path: Path, flow_file: str) -> bool:
    """Whether the notebook at `path` is the workbench this extension made for `flow_file`
    (its marker names it): only such a notebook is ever run by "Open in notebook workbench";
    any other notebook of that name is opened and left alone."""
    import nbformat

    try:
        nb = nbformat.read(str(path), as_version=4)
    except Exception:  # not a notebook we can read: certainly not ours
        return False
    marker = nb.metadata.get(WORKBENCH_MARKER)
    return isinstance(marker, dict) and marker.get("flow") == flow_file


def new_flow_text(name: str, *, device: str = "auto", batch_size: int = 8) -> str:
    """The starting flow of "New model flow": one template node that runs as is, and a model
    node (commented out) carrying the user's default device and batch size."""
    return f"""\
spec_version: 1
name: {name}
description: A new flow. Add nodes below, or edit it in the workbench notebook beside this file.
inputs:
  text: {{type: text, default: "Hello from jupyter-flow"}}
nodes:
  - id: echo
    type: template
    config: {{template: "You said: {{{{ text }}}}"}}
  # A local model node with your default device and batch size:
  # - id: classify
  #   type: transformers
  #   config:
  #     model: models/my-classifier
  #     task: text-classification
  #     text: "{{{{ text }}}}"
  #     device: {device}
  #     batch: {{max_size: {batch_size}, max_wait_ms: 5}}
edges:
  - {{from: start, to: echo}}
"""


# -- handlers ---------------------------------------------------------------------------------
class _FlowHandler(APIHandler):
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
        if not _FLOW_SUFFIX.search(api_path):
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


class StatusHandler(_FlowHandler):
    @tornado.web.authenticated
    def get(self) -> None:
        self.reply(StatusReply(version=VERSION, export=True))


class PaletteHandler(_FlowHandler):
    """The colour of every node kind the registry knows (plug-ins included) and of every run
    status, as the notebook workbench draws them: the JupyterLab view colours nothing itself."""

    @tornado.web.authenticated
    async def get(self) -> None:
        # Listing kinds reads the installed packages' entry points: off the server's loop.
        kinds = await asyncio.to_thread(palette)
        self.reply(PaletteReply.model_validate(
            {"kinds": kinds, "statuses": STATUS_COLOURS, "problem": PROBLEM_COLOUR, "selected": SELECTED_COLOUR}
        ))


class ValidateHandler(_FlowHandler):
    """Every problem of a flow file (or of unsaved `text` for it), each naming its node."""

    @tornado.web.authenticated
    async def post(self) -> None:
        data = self.body()
        text = self.field(data, "text", required=False)
        path = self.flow_file(data, must_exist=text is None)
        source = self.api_path(path)
        try:
            if text is None:
                text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise tornado.web.HTTPError(400, f"cannot read '{source}': {exc}") from None
        # Checking node configs may import node modules (torch...): off the server's loop.
        counts, problems = await asyncio.to_thread(_check, text, path, source)
        self.reply({"path": source, "valid": not problems, **counts, "problems": [p.to_dict() for p in problems]})


class EditHandler(_FlowHandler):
    """One edit of a flow document's (unsaved) text, with the workbench's editor: the new
    text with the document's comments kept, and the problems of the flow it holds. The
    file itself is not touched: the browser puts the text into its document, and saves it
    through the contents API like any file."""

    @tornado.web.authenticated
    async def post(self) -> None:
        request = self.read(EditRequest)
        path = self.flow_file(request.path, must_exist=False)
        source = self.api_path(path)
        try:
            # reading, validating and writing YAML of a big flow: off the server's loop
            done, counts, problems = await asyncio.to_thread(_edit, request, path, source)
        except EditRequestError as exc:
            self.refuse(exc, source)
        except FlowValidationError as exc:
            return self.invalid(path, exc.problems, f"not applied: {exc}", status=422)
        self.reply(EditReply(path=source, text=done.text, what=done.what, made=done.made, **counts,
                             problems=[FlowProblem.of(p) for p in problems]))


class SchemaHandler(_FlowHandler):
    """What the file view's form shows: the JSON schema of a node kind's config (pydantic's
    `model_json_schema()`), or of an edge's settings."""

    @tornado.web.authenticated
    async def get(self) -> None:
        kind = self.get_query_argument("kind", None)
        try:
            payload = await asyncio.to_thread(_schema, kind)
        except KeyError:
            raise tornado.web.HTTPError(404, f"no node kind {kind!r}") from None
        except (ImportError, AttributeError, TypeError) as exc:
            raise tornado.web.HTTPError(501, f"the node kind {kind!r} cannot be loaded: {exc}") from None
        self.reply(payload)


class ExportHandler(_FlowHandler):
    """Write the production (papermill) notebook of a flow beside it, or at `output`."""

    @tornado.web.authenticated
    async def post(self) -> None:
        request = self.read(ExportRequest)
        path = self.flow_file(request.path)
        from jupyter_flow.export import export_notebook

        output = request.output
        target = self.local(output) if output else path.with_name(f"{flow_stem(path)}.production.ipynb")
        if target.suffix != ".ipynb":
            raise tornado.web.HTTPError(400, f"'{output}' is not a notebook path (*.ipynb)")
        try:
            written = await asyncio.to_thread(export_notebook, path, target)
        except FlowValidationError as exc:
            return self.invalid(path, exc.problems, f"cannot export '{self.api_path(path)}': the flow is invalid")
        except FlowError as exc:
            raise tornado.web.HTTPError(400, f"cannot export '{self.api_path(path)}': {exc}") from None
        self.reply(ExportReply(path=self.api_path(path), notebook=self.api_path(Path(written))))


class NewFlowHandler(_FlowHandler):
    """Create `NAME.flow.yaml` and `NAME.ipynb` (a workbench bound to it) in `directory`."""

    @tornado.web.authenticated
    async def post(self) -> None:
        import nbformat

        request = self.read(NewFlowRequest)
        directory = self.local(request.directory or "")
        if not directory.is_dir():
            raise tornado.web.HTTPError(404, f"no directory '{request.directory}'")
        name = request.name
        if name is not None:
            name = _FLOW_SUFFIX.sub("", name)
            if not _NAME.match(name):
                raise tornado.web.HTTPError(400, f"'name' {name!r}: use letters, digits, '_', '-' and '.'")
            if (directory / f"{name}.flow.yaml").exists() or (directory / f"{name}.ipynb").exists():
                raise tornado.web.HTTPError(409, f"'{name}.flow.yaml' or '{name}.ipynb' exists already")
        else:
            name = _free_name(directory)
        flow_path = directory / f"{name}.flow.yaml"
        notebook_path = directory / f"{name}.ipynb"
        text = new_flow_text(name, device=request.device, batch_size=request.batch_size)
        flow_path.write_text(text, encoding="utf-8")
        nbformat.write(workbench_notebook(flow_path.name), str(notebook_path))
        self.reply(NewFlowReply(flow=self.api_path(flow_path), notebook=self.api_path(notebook_path)), status=201)


class WorkbenchHandler(_FlowHandler):
    """The workbench notebook of a flow file: `NAME.ipynb` beside it, made when missing."""

    @tornado.web.authenticated
    async def post(self) -> None:
        import nbformat

        path = self.flow_file(self.read(WorkbenchRequest).path)
        notebook_path = path.with_name(f"{flow_stem(path)}.ipynb")
        created = not notebook_path.exists()
        if created:
            nbformat.write(workbench_notebook(path.name), str(notebook_path))
        runnable = created or await asyncio.to_thread(is_workbench_notebook, notebook_path, path.name)
        self.reply(WorkbenchReply(path=self.api_path(path), notebook=self.api_path(notebook_path), created=created, runnable=runnable))


def _check(text: str, path: Path, source: str) -> tuple[dict[str, int], list[Problem]]:
    """Node and edge counts and every problem of flow `text` (the file at `path`)."""
    from jupyter_flow.flow import Flow
    from jupyter_flow.spec import parse_spec_text

    try:
        spec = parse_spec_text(text, source=source, as_json=path.suffix.lower() == ".json")
    except FlowValidationError as exc:
        return {"nodes": 0, "edges": 0}, exc.problems
    counts = {"nodes": len(spec.nodes), "edges": len(spec.edges)}
    try:
        return counts, Flow(spec, source=path).problems()
    except FlowValidationError as exc:
        return counts, exc.problems


def _edit(request: EditRequest, path: Path, source: str) -> tuple[AppliedEdit, dict[str, int], list[Problem]]:
    done = apply_edit(request.text, path, request.edit)
    counts, problems = _check(done.text, path, source)
    return done, counts, problems


def _schema(kind: str | None) -> SchemaReply:
    if kind is None:
        schema = EdgeSpec.model_json_schema(by_alias=True)
        for end in ("from", "to"):
            schema.get("properties", {}).pop(end, None)
        schema["required"] = []
        return SchemaReply.model_validate({"kind": None, "schema": form_schema(schema), "config": {}})
    config_model = default_registry().get(kind).Config
    return SchemaReply.model_validate(
        {"kind": kind, "schema": form_schema(config_model.model_json_schema()), "config": new_node_config(kind)}
    )


def form_schema(schema: Mapping[str, Any]) -> dict[str, Any]:
    """A pydantic JSON schema as a form shows it well: an optional field (`anyOf` with
    `null`) as its one type, and a field of any type as text (a value a form cannot hold,
    a mapping say, is edited in the YAML tab)."""
    out = dict(schema)
    props: dict[str, Any] = {}
    for name, prop in (schema.get("properties") or {}).items():
        prop = dict(prop)
        options = [o for o in prop.get("anyOf", []) if o.get("type") != "null"]
        if "anyOf" in prop and len(options) == 1:
            prop.pop("anyOf")
            prop.update(options[0])
        if "default" in prop and prop["default"] is None:
            del prop["default"]
        if not any(k in prop for k in ("type", "anyOf", "oneOf", "allOf", "$ref", "enum", "const")):
            prop["type"] = "string"
        props[name] = prop
    out["properties"] = props
    return out


def _free_name(directory: Path) -> str:
    for i in range(1000):
        name = "untitled" if i == 0 else f"untitled{i}"
        if not (directory / f"{name}.flow.yaml").exists() and not (directory / f"{name}.ipynb").exists():
            return name
    raise tornado.web.HTTPError(409, f"no free 'untitled' name left in '{directory.name}'")
