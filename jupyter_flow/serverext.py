"""The Jupyter server extension the JupyterLab extension talks to.

Routes (JSON in, JSON out, under the server's base URL; Jupyter's own token and XSRF
checks apply to every one of them):

    GET  /jupyter-flow/api/status      version, and whether export is available
    GET  /jupyter-flow/api/palette     {kinds: [{kind, colour, builtin}], statuses: {status: colour},
                                        problem, selected}: the workbench's colours
    POST /jupyter-flow/api/validate    {path, text?} -> {valid, problems: [{node, edge, field, message}]}
    POST /jupyter-flow/api/edit        {path, text, edit: {op, ...}} -> {text, what, made, problems}
                                       (the document's new text, comments kept; 422 with
                                       problems when the edit is refused)
    GET  /jupyter-flow/api/schema?kind=K  {kind, schema, config}: the JSON schema of a node
                                       kind's config and a new node's config; without
                                       `kind`, the schema of an edge's settings
    POST /jupyter-flow/api/export      {path, output?} -> {notebook}   (the production notebook)
    POST /jupyter-flow/api/new         {directory, name?, device?, batch_size?} -> {flow, notebook}
    POST /jupyter-flow/api/workbench   {path} -> {notebook, created}

Paths are relative to the server's root directory, with `/` separators, as the
JupyterLab file browser names them; a path that leaves the root is refused. Enabled by
`jupyter-config/jupyter_server_config.d/jupyter_flow.json`, installed with the package.
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path, PurePosixPath
from typing import Any

import tornado.web
from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join

from jupyter_flow.errors import FlowError, FlowValidationError, Problem
from jupyter_flow.palette import PROBLEM_COLOUR, SELECTED_COLOUR, STATUS_COLOURS, palette

__all__ = ["API_ROOT", "new_flow_text", "workbench_notebook"]

API_ROOT = "jupyter-flow/api"
_FLOW_SUFFIX = re.compile(r"\.flow\.(ya?ml|json)$", re.IGNORECASE)
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
_DEVICES = ("auto", "cpu", "cuda")


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
    return nb


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
        try:
            data = json.loads(self.request.body or b"{}")
        except ValueError as exc:
            raise tornado.web.HTTPError(400, f"the request body is not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise tornado.web.HTTPError(400, "the request body must be a JSON object")
        return data

    def field(self, data: dict[str, Any], name: str, *, required: bool = True) -> str | None:
        value = data.get(name)
        if value is None and not required:
            return None
        if not isinstance(value, str) or (required and not value.strip()):
            raise tornado.web.HTTPError(400, f"'{name}' must be a non-empty string")
        return value

    def local(self, api_path: str) -> Path:
        """The file behind an API path; refuses paths that leave the root directory."""
        rel = PurePosixPath(api_path.strip("/"))
        target = (self.root / rel).resolve()
        if target != self.root and not target.is_relative_to(self.root):
            raise tornado.web.HTTPError(403, f"'{api_path}' is outside the server's root directory")
        return target

    def api_path(self, path: Path) -> str:
        return path.resolve().relative_to(self.root).as_posix()

    def flow_file(self, data: dict[str, Any], *, must_exist: bool = True) -> Path:
        api_path = self.field(data, "path")
        assert api_path is not None
        if not _FLOW_SUFFIX.search(api_path):
            raise tornado.web.HTTPError(400, f"'{api_path}' is not a flow file (*.flow.yaml or *.flow.json)")
        path = self.local(api_path)
        if must_exist and not path.is_file():
            raise tornado.web.HTTPError(404, f"no flow file '{api_path}'")
        return path

    def reply(self, payload: dict[str, Any], status: int = 200) -> None:
        self.set_status(status)
        self.finish(json.dumps(payload))

    def invalid(self, path: Path, problems: list[Problem], message: str) -> None:
        self.reply(
            {"message": message, "path": self.api_path(path), "problems": [p.to_dict() for p in problems]},
            status=400,
        )


class StatusHandler(_FlowHandler):
    @tornado.web.authenticated
    def get(self) -> None:
        from jupyter_flow import __version__

        self.reply({"version": __version__, "export": True})


class PaletteHandler(_FlowHandler):
    """The colour of every node kind the registry knows (plug-ins included) and of every run
    status, as the notebook workbench draws them: the JupyterLab view colours nothing itself."""

    @tornado.web.authenticated
    async def get(self) -> None:
        # Listing kinds reads the installed packages' entry points: off the server's loop.
        kinds = await asyncio.to_thread(palette)
        self.reply({"kinds": kinds, "statuses": STATUS_COLOURS, "problem": PROBLEM_COLOUR, "selected": SELECTED_COLOUR})


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
        data = self.body()
        text = data.get("text")
        if not isinstance(text, str):
            raise tornado.web.HTTPError(400, "'text' must be the flow document's text")
        edit = data.get("edit")
        if not isinstance(edit, dict):
            raise tornado.web.HTTPError(400, "'edit' must be an object with an 'op'")
        path = self.flow_file(data, must_exist=False)
        source = self.api_path(path)
        try:
            # reading, validating and writing YAML of a big flow: off the server's loop
            done, counts, problems = await asyncio.to_thread(_edit, text, path, source, edit)
        except FlowValidationError as exc:
            return self.reply(
                {"message": f"not applied: {exc}", "path": source, "problems": [p.to_dict() for p in exc.problems]},
                status=422,
            )
        self.reply({"path": source, "text": done.text, "what": done.what, "made": done.made, **counts,
                    "problems": [p.to_dict() for p in problems]})


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
        except ImportError as exc:
            raise tornado.web.HTTPError(501, f"the node kind {kind!r} cannot be loaded: {exc}") from None
        self.reply(payload)


class ExportHandler(_FlowHandler):
    """Write the production (papermill) notebook of a flow beside it, or at `output`."""

    @tornado.web.authenticated
    async def post(self) -> None:
        data = self.body()
        path = self.flow_file(data)
        from jupyter_flow.export import export_notebook

        output = self.field(data, "output", required=False)
        target = self.local(output) if output else path.with_name(f"{flow_stem(path)}.production.ipynb")
        if target.suffix != ".ipynb":
            raise tornado.web.HTTPError(400, f"'{output}' is not a notebook path (*.ipynb)")
        try:
            written = await asyncio.to_thread(export_notebook, path, target)
        except FlowValidationError as exc:
            return self.invalid(path, exc.problems, f"cannot export '{self.api_path(path)}': the flow is invalid")
        except FlowError as exc:
            raise tornado.web.HTTPError(400, f"cannot export '{self.api_path(path)}': {exc}") from None
        self.reply({"path": self.api_path(path), "notebook": self.api_path(Path(written))})


class NewFlowHandler(_FlowHandler):
    """Create `NAME.flow.yaml` and `NAME.ipynb` (a workbench bound to it) in `directory`."""

    @tornado.web.authenticated
    async def post(self) -> None:
        import nbformat

        data = self.body()
        directory = self.local(self.field(data, "directory", required=False) or "")
        if not directory.is_dir():
            raise tornado.web.HTTPError(404, f"no directory '{data.get('directory')}'")
        device = data.get("device", "auto")
        if device not in _DEVICES:
            raise tornado.web.HTTPError(400, f"'device' must be one of {', '.join(_DEVICES)}, got {device!r}")
        batch_size = data.get("batch_size", 8)
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise tornado.web.HTTPError(400, f"'batch_size' must be a positive integer, got {batch_size!r}")
        name = self.field(data, "name", required=False)
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
        flow_path.write_text(new_flow_text(name, device=device, batch_size=batch_size), encoding="utf-8")
        nbformat.write(workbench_notebook(flow_path.name), str(notebook_path))
        self.reply({"flow": self.api_path(flow_path), "notebook": self.api_path(notebook_path)}, status=201)


class WorkbenchHandler(_FlowHandler):
    """The workbench notebook of a flow file: `NAME.ipynb` beside it, made when missing."""

    @tornado.web.authenticated
    async def post(self) -> None:
        import nbformat

        path = self.flow_file(self.body())
        notebook_path = path.with_name(f"{flow_stem(path)}.ipynb")
        created = not notebook_path.exists()
        if created:
            nbformat.write(workbench_notebook(path.name), str(notebook_path))
        self.reply({"path": self.api_path(path), "notebook": self.api_path(notebook_path), "created": created})


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


def _edit(text: str, path: Path, source: str, edit: dict[str, Any]) -> tuple[Any, dict[str, int], list[Problem]]:
    from jupyter_flow.workbench.textedit import edit_text

    done = edit_text(text, path, edit)
    counts, problems = _check(done.text, path, source)
    return done, counts, problems


def _schema(kind: str | None) -> dict[str, Any]:
    from jupyter_flow.workbench.textedit import form_schema, new_node_config

    if kind is None:
        from jupyter_flow.spec import EdgeSpec

        schema = EdgeSpec.model_json_schema(by_alias=True)
        for end in ("from", "to"):
            schema.get("properties", {}).pop(end, None)
        schema["required"] = []
        return {"kind": None, "schema": form_schema(schema), "config": {}}
    from jupyter_flow.nodes.registry import default_registry
    config_model = default_registry().get(kind).Config
    return {"kind": kind, "schema": form_schema(config_model.model_json_schema()), "config": new_node_config(kind)}


def _free_name(directory: Path) -> str:
    for i in range(1000):
        name = "untitled" if i == 0 else f"untitled{i}"
        if not (directory / f"{name}.flow.yaml").exists() and not (directory / f"{name}.ipynb").exists():
            return name
    raise tornado.web.HTTPError(409, f"no free 'untitled' name left in '{directory.name}'")
