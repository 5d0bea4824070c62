"""The Jupyter server extension the JupyterLab extension talks to.

Routes (JSON in, JSON out, under the server's base URL; Jupyter's own token and XSRF
checks apply to every one of them):

    GET  /jupyter-flow/api/status      version, and whether export is available
    GET  /jupyter-flow/api/palette     {kinds: [{kind, colour, builtin}], statuses: {status: colour},
                                        problem, selected}: the workbench's colours
    POST /jupyter-flow/api/validate    {path, text?} -> {valid, problems: [{node, edge, field, message}]}
    POST /jupyter-flow/api/edit        {path, text, edit: {op, ...}} -> {applied: true, text, what, made,
                                       problems} (the document's new text, comments kept), or
                                       {applied: false, message, op, errors, problems} when the
                                       edit does not fit or would break the flow (a 200 too:
                                       a refusal is an answer the view shows)
    GET  /jupyter-flow/api/schema?kind=K  {kind, schema, config}: the JSON schema of a node
                                       kind's config and a new node's config; without
                                       `kind`, the schema of an edge's settings
    POST /jupyter-flow/api/export      {path, output?} -> {notebook}   (the production notebook)
    POST /jupyter-flow/api/new         {directory, name?, device?, batch_size?} -> {flow, notebook}
    POST /jupyter-flow/api/workbench   {path} -> {notebook, created, runnable}
    POST /jupyter-flow/api/run         {path, inputs, cache?, timeout_s?} -> a run and its first events
    GET  /jupyter-flow/api/runstate?run=ID&after=N   its events from the N-th on (waits for news)
    POST /jupyter-flow/api/cancel      {run} -> the run, stopping
    GET  /jupyter-flow/api/lastrun?path=P   the flow file's last run in the run history, or null,
                                       and its run going on here (active)
    GET  /jupyter-flow/api/folder?path=P    the size of the flow file's folder (is it small enough
                                       for Schedule… to copy into every job by default?)

Runs go to a process of their own (`jupyter_flow.viewruns`, `jupyter_flow.filerun`): this
server never runs a flow nor imports the Python it names. Every request and reply is a
model of `jupyter_flow.protocol`, `jupyter_flow.edits` and `jupyter_flow.replies` (from
which the file view's TypeScript types are generated); a request that does not fit its
model is a 400 whose `errors` name each field, and a refusal is an `ErrorReply`. Paths are
relative to the server's root directory, with `/` separators, as the JupyterLab file
browser names them; a path that leaves the root is refused. Enabled by
`jupyter-config/jupyter_server_config.d/jupyter_flow.json`, installed with the package.
This module loads no widget and no notebook workbench: the server imports it at start.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import tornado.web
from jupyter_server.utils import url_path_join

from jupyter_flow.atomic import FileChangedError, read_bounded
from jupyter_flow.editor import new_node_config
from jupyter_flow.edits import AppliedEdit, EditRequestError, apply_edit, read_request
from jupyter_flow.errors import FlowError, FlowFileError, FlowValidationError, Problem
from jupyter_flow.nodes.registry import default_registry
from jupyter_flow.palette import PROBLEM_COLOUR, SELECTED_COLOUR, STATUS_COLOURS, palette
from jupyter_flow.protocol import EditRequest, ExportRequest, NewFlowRequest, WorkbenchRequest
from jupyter_flow.replies import (
    EditRefusal,
    EditReply,
    ExportReply,
    FlowProblem,
    FolderReply,
    NewFlowReply,
    PaletteReply,
    SchemaReply,
    StatusReply,
    WorkbenchReply,
)
from jupyter_flow.serverbase import FLOW_SUFFIX, FlowHandler, flow_stem
from jupyter_flow.serverruns import RUNS_SETTING, CancelHandler, LastRunHandler, RunHandler, RunStateHandler
from jupyter_flow.spec import EdgeSpec
from jupyter_flow.version import __version__ as VERSION
from jupyter_flow.viewruns import ViewRuns

__all__ = ["API_ROOT", "WORKBENCH_MARKER", "is_workbench_notebook", "new_flow_text", "workbench_notebook"]

#: the notebook metadata key that marks a workbench notebook this extension made
WORKBENCH_MARKER = "jupyter_flow_workbench"

API_ROOT = "jupyter-flow/api"
#: Schedule… runs on a copy of the flow's folder by default only when it has at most these
SMALL_FOLDER_FILES = 2_000
SMALL_FOLDER_BYTES = 50 * 1024 * 1024
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "jupyter_flow.serverext"}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    web_app = serverapp.web_app
    base = url_path_join(web_app.settings["base_url"], API_ROOT)
    options = {"root": Path(serverapp.root_dir).resolve()}
    runs = web_app.settings[RUNS_SETTING] = ViewRuns()
    atexit.register(runs.kill_all)  # runs end with the server (and notice when it is killed)
    routes: list[tuple[str, type[FlowHandler]]] = [
        ("status", StatusHandler),
        ("palette", PaletteHandler),
        ("validate", ValidateHandler),
        ("edit", EditHandler),
        ("schema", SchemaHandler),
        ("export", ExportHandler),
        ("new", NewFlowHandler),
        ("workbench", WorkbenchHandler),
        ("run", RunHandler),
        ("runstate", RunStateHandler),
        ("cancel", CancelHandler),
        ("lastrun", LastRunHandler),
        ("folder", FolderHandler),
    ]
    web_app.add_handlers(".*$", [(url_path_join(base, name), handler, options) for name, handler in routes])
    serverapp.log.info("jupyter-flow server extension at %s", base)


# -- what the handlers write ---------------------------------------------------------------
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
class StatusHandler(FlowHandler):
    @tornado.web.authenticated
    def get(self) -> None:
        self.reply(StatusReply(version=VERSION, export=True))


class PaletteHandler(FlowHandler):
    """The colour of every node kind the registry knows (plug-ins included) and of every run
    status, as the notebook workbench draws them: the JupyterLab view colours nothing itself."""

    @tornado.web.authenticated
    async def get(self) -> None:
        # Listing kinds reads the installed packages' entry points: off the server's loop.
        kinds = await asyncio.to_thread(palette)
        self.reply(PaletteReply.model_validate(
            {"kinds": kinds, "statuses": STATUS_COLOURS, "problem": PROBLEM_COLOUR, "selected": SELECTED_COLOUR}
        ))


class ValidateHandler(FlowHandler):
    """Every problem of a flow file (or of unsaved `text` for it), each naming its node."""

    @tornado.web.authenticated
    async def post(self) -> None:
        data = self.body()
        text = self.field(data, "text", required=False)
        path = self.flow_file(data, must_exist=text is None)
        source = self.api_path(path)
        try:
            if text is None:  # off the loop, and bounded: the file may be large
                text = (await asyncio.to_thread(read_bounded, path)).decode("utf-8")
        except FlowFileError as exc:
            raise tornado.web.HTTPError(400, f"cannot read '{source}': {exc.problems[0].message}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise tornado.web.HTTPError(400, f"cannot read '{source}': {exc}") from None
        # Checking node configs may import node modules (torch...): off the server's loop.
        counts, problems = await asyncio.to_thread(_check, text, path, source)
        self.reply({"path": source, "valid": not problems, **counts, "problems": [p.to_dict() for p in problems]})


class EditHandler(FlowHandler):
    """One edit of a flow document's (unsaved) text, with the workbench's editor: the new
    text with the document's comments kept, and the problems of the flow it holds. The
    file itself is not touched: the browser puts the text into its document, and saves it
    through the contents API like any file. An edit that does not fit, or would break the
    flow, is answered `EditRefusal` (status 200: the view shows why, nothing failed)."""

    @tornado.web.authenticated
    async def post(self) -> None:
        data = self.body()
        try:
            request = read_request(EditRequest, data)
        except EditRequestError as exc:
            path = data.get("path")
            return self._refused(exc.reply(path if isinstance(path, str) else None).model_dump())
        path = self.flow_file(request.path, must_exist=False)
        source = self.api_path(path)
        try:
            # reading, validating and writing YAML of a big flow: off the server's loop
            done, counts, problems = await asyncio.to_thread(_edit, request, path, source)
        except EditRequestError as exc:
            return self._refused(exc.reply(source).model_dump())
        except FlowValidationError as exc:
            return self._refused({"message": f"not applied: {exc}", "path": source,
                                  "problems": [FlowProblem.of(p).model_dump() for p in exc.problems]})
        self.reply(EditReply(applied=True, path=source, text=done.text, what=done.what, made=done.made, **counts,
                             problems=[FlowProblem.of(p) for p in problems]))

    def _refused(self, fields: dict[str, Any]) -> None:
        fields.pop("reason", None)
        self.reply(EditRefusal.model_validate({**fields, "applied": False}))


class SchemaHandler(FlowHandler):
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


class ExportHandler(FlowHandler):
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
        except FileChangedError as exc:  # a notebook edited since it was exported, or not an export: kept
            return self.invalid(path, exc.problems, f"cannot export '{self.api_path(path)}': "
                                f"'{self.api_path(target)}' was not replaced", status=409)
        except FlowValidationError as exc:
            return self.invalid(path, exc.problems, f"cannot export '{self.api_path(path)}': the flow is invalid")
        except FlowError as exc:
            raise tornado.web.HTTPError(400, f"cannot export '{self.api_path(path)}': {exc}") from None
        self.reply(ExportReply(path=self.api_path(path), notebook=self.api_path(Path(written))))


class FolderHandler(FlowHandler):
    """The size of a flow file's folder, so that Schedule… offers to run on a copy of it only
    when the copy is small (see `folder_size`)."""

    @tornado.web.authenticated
    async def get(self) -> None:
        path = self.flow_file(self.get_query_argument("path", ""))
        files, size, complete = await asyncio.to_thread(folder_size, path.parent)
        small = complete and files <= SMALL_FOLDER_FILES and size <= SMALL_FOLDER_BYTES
        folder = self.api_path(path.parent)
        self.reply(FolderReply(path=folder if folder != "." else "", files=files, bytes=size, complete=complete,
                               small=small, small_files=SMALL_FOLDER_FILES, small_bytes=SMALL_FOLDER_BYTES))


def folder_size(folder: Path, *, max_files: int = SMALL_FOLDER_FILES, max_bytes: int = SMALL_FOLDER_BYTES,
                max_s: float = 2.0) -> tuple[int, int, bool]:
    """The files below `folder` and their bytes, counted as a copy of it would take them
    (hidden ones, and what links point to); counting stops past `max_files` files,
    `max_bytes` bytes, `max_s` seconds or 10 times `max_files` folders (complete: False)."""
    deadline = time.monotonic() + max_s
    files = size = folders = 0
    for here, _dirs, names in os.walk(folder, followlinks=True):
        folders += 1
        for name in names:
            with contextlib.suppress(OSError):
                size += os.stat(os.path.join(here, name)).st_size
            files += 1
        if files > max_files or size > max_bytes or folders > 10 * max_files or time.monotonic() > deadline:
            return files, size, False
    return files, size, True


class NewFlowHandler(FlowHandler):
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
            name = FLOW_SUFFIX.sub("", name)
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


class WorkbenchHandler(FlowHandler):
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
