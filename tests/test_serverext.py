"""The server extension through a real Jupyter server with its token: validate, edit,
export, new flow, workbench and palette requests, and the installed extensions as
`jupyter` lists them. The server sees a plug-in package installed the way pip leaves one (a
module and a dist-info folder with `jupyter_flow.nodes` entry points), and can import
neither ipywidgets nor the notebook workbench: the server extension needs neither."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import nbformat
import pytest
import yaml
from lab_server import JupyterLab, fixture_flow, flow_with

from jupyter_flow.edits import MAX_ITEMS, MAX_TEXT_CHARS
from jupyter_flow.palette import KIND_COLOURS, STATUS_COLOURS
from jupyter_flow.protocol import ROUTES
from jupyter_flow.replies import EditRefusal, EditReply

pytestmark = pytest.mark.timeout(120)

# `echo` reads a node that does not exist (the shared broken flow), and `mystery` has a kind
# nobody registered.
BROKEN = flow_with(
    "broken.flow.yaml", nodes="  - id: mystery\n    type: no_such_kind\n", edges="  - {from: shout, to: mystery}\n"
)

# Edges that name a missing node and a condition reading a node that is not upstream.
BAD_EDGES = """\
spec_version: 1
name: bad_edges
nodes:
  - id: a
    type: template
    config: {template: "a"}
  - id: b
    type: template
    config: {template: "b"}
edges:
  - {from: start, to: a}
  - {from: a, to: b, when: "{{ b.output.text == 'x' }}"}
  - {from: a, to: ghost}
"""

PLUGIN_NODE = """\
from typing import Any

from jupyter_flow import Node, NodeConfig, NodeContext


class GlowConfig(NodeConfig):
    text: Any


class GlowNode(Node):
    kind = "glow"
    Config = GlowConfig

    async def run(self, inputs: dict[str, Any], ctx: NodeContext) -> dict[str, Any]:
        return {"text": str(inputs["text"])}
"""
# `glow` is a real node class; `gone` names a module that does not exist.
PLUGIN_KINDS = ("glow", "gone")

# Run by the server's interpreter at start: ipywidgets and the notebook workbench are not
# there, as on a server installed without the `workbench` extra's widgets.
NO_WORKBENCH = """\
import sys
from importlib.abc import MetaPathFinder


class NotInstalled(MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "ipywidgets" or name.startswith("jupyter_flow.workbench"):
            raise ModuleNotFoundError(f"{name} is not installed on this server", name=name)
        return None


sys.meta_path.insert(0, NotInstalled())
"""

# A flow document as the file view holds it: comments, and nothing saved yet.
COMMENTED = (Path(__file__).parent / "fixtures" / "flows" / "greet-commented.flow.yaml").read_text(encoding="utf-8")
COMMENTS = ("# kept: a comment at the top", "# kept: the shout node", "# kept: beside echo", "# kept: the wire")


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with a plug-in package and its dist-info, and a `sitecustomize` that keeps
    ipywidgets and the workbench out, for the server's PYTHONPATH."""
    site = tmp_path_factory.mktemp("site")
    (site / "jf_glow").mkdir()
    (site / "jf_glow" / "__init__.py").write_text("")
    (site / "jf_glow" / "nodes.py").write_text(PLUGIN_NODE)
    dist = site / "jf_glow-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: jf-glow\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[jupyter_flow.nodes]\nglow = jf_glow.nodes:GlowNode\ngone = jf_glow.missing:Gone\n")
    (dist / "RECORD").write_text("")
    (site / "sitecustomize.py").write_text(NO_WORKBENCH)
    return site


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("root")
    (root / "flows").mkdir()
    (root / "flows" / "greet.flow.yaml").write_text(fixture_flow("greet_chain.flow.yaml"))
    (root / "flows" / "broken.flow.yaml").write_text(BROKEN)
    (root / "seed.flow.json").write_text(
        json.dumps({
            "nodes": [{"id": "cleaner", "config": {"endpoint": "http://127.0.0.1:9/clean", "output_key": "t"}}],
            "edges": [{"from": "start", "to": "cleaner"}],
        })
    )
    (root / "flows" / "bad_edges.flow.yaml").write_text(BAD_EDGES)
    (root.parent / "secret.flow.yaml").write_text(fixture_flow("greet_chain.flow.yaml"))
    return root


@pytest.fixture(scope="module")
def server(root: Path, plugin_site: Path) -> Iterator[JupyterLab]:
    # the server (not this process) sees the plug-in
    pythonpath = os.pathsep.join(filter(None, [str(plugin_site), os.environ.get("PYTHONPATH")]))
    with JupyterLab(root, env={"PYTHONPATH": pythonpath}) as lab:
        yield lab


@pytest.fixture
def api(server: JupyterLab) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=f"{server.url}/jupyter-flow/api/", headers={"Authorization": f"token {server.token}"}, timeout=30
    ) as client:
        yield client


def post(api: httpx.Client, route: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    reply = api.post(route, json=body)
    return reply.status_code, reply.json()


def test_requests_without_the_token_are_refused(server: JupyterLab) -> None:
    url = f"{server.url}/jupyter-flow/api/validate"
    reply = httpx.post(url, json={"path": "flows/greet.flow.yaml"})
    assert reply.status_code == 403
    wrong = httpx.post(url, json={"path": "flows/greet.flow.yaml"}, headers={"Authorization": "token nope"})
    assert wrong.status_code == 403
    assert httpx.get(f"{server.url}/jupyter-flow/api/status").status_code == 403
    assert httpx.get(f"{server.url}/jupyter-flow/api/palette").status_code == 403


def test_status_says_export_is_available(api: httpx.Client) -> None:
    reply = api.get("status")
    assert reply.status_code == 200
    assert reply.json()["export"] is True


def test_a_valid_flow_has_no_problems(api: httpx.Client) -> None:
    status, body = post(api, "validate", {"path": "flows/greet.flow.yaml"})
    assert status == 200
    assert body == {"path": "flows/greet.flow.yaml", "valid": True, "nodes": 2, "edges": 2, "problems": []}


def test_the_seed_format_validates(api: httpx.Client) -> None:
    status, body = post(api, "validate", {"path": "seed.flow.json"})
    assert (status, body["valid"], body["nodes"]) == (200, True, 1)


def test_problems_name_their_nodes(api: httpx.Client) -> None:
    status, body = post(api, "validate", {"path": "flows/broken.flow.yaml"})
    assert status == 200 and body["valid"] is False
    by_node = {p["node"]: p for p in body["problems"]}
    assert set(by_node) == {"echo", "mystery"}
    assert "ghost" in by_node["echo"]["message"]
    assert by_node["mystery"]["field"] == "type"
    assert all(list(p) == ["node", "edge", "field", "message"] for p in body["problems"]), body
    assert all(p["edge"] is None for p in body["problems"])


def test_edge_problems_name_the_edge_by_index(api: httpx.Client) -> None:
    status, body = post(api, "validate", {"path": "flows/bad_edges.flow.yaml"})
    assert status == 200 and body["valid"] is False
    by_edge = {p["edge"]: p for p in body["problems"] if p["edge"] is not None}
    assert set(by_edge) == {1, 2}, body
    assert by_edge[1]["field"] == "when" and "'b'" in by_edge[1]["message"]
    assert by_edge[2]["field"] in ("to", None) and "ghost" in by_edge[2]["message"]
    assert not any((p["field"] or "").startswith("edges[") for p in body["problems"]), body


def test_palette_gives_every_kind_the_colour_the_workbench_draws(api: httpx.Client) -> None:
    styles = pytest.importorskip("jupyter_flow.workbench.styles")  # the notebook workbench's colours
    reply = api.get("palette")
    assert reply.status_code == 200
    body = reply.json()
    by_kind = {entry["kind"]: entry for entry in body["kinds"]}
    # kinds from the plug-in's entry points, one of which cannot even be imported
    for kind in PLUGIN_KINDS:
        assert by_kind[kind] == {"kind": kind, "colour": styles.kind_colour(kind), "builtin": False}, body
    for kind, colour in KIND_COLOURS.items():
        if kind == "placeholder":  # made by importers for what they cannot import: not offered
            assert kind not in by_kind, body
            continue
        assert by_kind[kind] == {"kind": kind, "colour": colour, "builtin": True}
    # and any other kind this environment has installed
    assert all(entry["colour"] == styles.kind_colour(kind) for kind, entry in by_kind.items())
    assert body["statuses"] == STATUS_COLOURS == styles.STATUS_COLOURS
    assert body["problem"] == styles.PROBLEM_COLOUR and body["selected"] == styles.SELECTED_COLOUR


def test_unsaved_text_is_validated_instead_of_the_file(api: httpx.Client) -> None:
    fixed = BROKEN.replace("ghost", "shout").replace("no_such_kind", "template\n    config: {template: x}")
    status, body = post(api, "validate", {"path": "flows/broken.flow.yaml", "text": fixed})
    assert (status, body["valid"], body["problems"]) == (200, True, [])
    status, body = post(api, "validate", {"path": "flows/new.flow.yaml", "text": "nodes: [\n  {id: a"})
    assert status == 200 and body["valid"] is False
    assert re.search(r"line \d+, column \d+", body["problems"][0]["message"])


@pytest.mark.parametrize(
    ("path", "status", "words"),
    [
        ("../secret.flow.yaml", 403, "outside"),
        ("flows/../../secret.flow.yaml", 403, "outside"),
        ("flows/greet.yaml", 400, "not a flow file"),
        ("flows/missing.flow.yaml", 404, "no flow file"),
    ],
)
def test_bad_paths_get_clear_errors(api: httpx.Client, path: str, status: int, words: str) -> None:
    got, body = post(api, "validate", {"path": path})
    assert got == status
    assert words in body["message"]


def test_a_body_that_is_not_json_is_a_400(api: httpx.Client) -> None:
    reply = api.post("validate", content=b"{not json")
    assert reply.status_code == 400
    assert "not JSON" in reply.json()["message"]


def test_new_flow_makes_a_flow_and_a_workbench_notebook(api: httpx.Client, root: Path) -> None:
    (root / "made").mkdir()
    status, body = post(api, "new", {"directory": "made", "device": "cuda", "batch_size": 16})
    assert status == 201
    assert body == {"flow": "made/untitled.flow.yaml", "notebook": "made/untitled.ipynb"}
    text = (root / "made" / "untitled.flow.yaml").read_text()
    assert "device: cuda" in text and "max_size: 16" in text
    status, checked = post(api, "validate", {"path": body["flow"]})
    assert checked["valid"] is True, checked
    nb = nbformat.read(root / "made" / "untitled.ipynb", as_version=4)
    nbformat.validate(nb)
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    assert code == ["from jupyter_flow.workbench import Workbench\n\nWorkbench('untitled.flow.yaml')"]
    # a second one does not overwrite the first
    status, again = post(api, "new", {"directory": "made"})
    assert (status, again["flow"]) == (201, "made/untitled1.flow.yaml")
    status, named = post(api, "new", {"directory": "made", "name": "untitled"})
    assert status == 409


def test_new_flow_refuses_bad_settings(api: httpx.Client) -> None:
    assert post(api, "new", {"directory": "", "device": "tpu"})[0] == 400
    assert post(api, "new", {"directory": "", "batch_size": 0})[0] == 400
    assert post(api, "new", {"directory": "nowhere"})[0] == 404
    assert post(api, "new", {"directory": "", "name": "../escape"})[0] == 400


def test_workbench_notebook_is_made_once_beside_the_flow(api: httpx.Client, root: Path) -> None:
    status, body = post(api, "workbench", {"path": "flows/greet.flow.yaml"})
    assert (status, body["notebook"], body["created"]) == (200, "flows/greet.ipynb", True)
    nb = nbformat.read(root / "flows" / "greet.ipynb", as_version=4)
    assert "Workbench('greet.flow.yaml')" in nb.cells[-1].source
    status, body = post(api, "workbench", {"path": "flows/greet.flow.yaml"})
    assert (status, body["created"], body["runnable"]) == (200, False, True)


def test_only_the_workbench_notebook_made_for_a_flow_is_run(api: httpx.Client, root: Path) -> None:
    # "Open in notebook workbench" ran every cell of whatever NAME.ipynb sat beside the flow
    (root / "flows" / "other.flow.yaml").write_text(fixture_flow("greet_chain.flow.yaml"))
    planted = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("import os; os.system('touch pwned')")])
    nbformat.write(planted, str(root / "flows" / "other.ipynb"))
    status, body = post(api, "workbench", {"path": "flows/other.flow.yaml"})
    assert (status, body["created"], body["runnable"]) == (200, False, False)
    marked = nbformat.read(root / "flows" / "greet.ipynb", as_version=4) if (root / "flows" / "greet.ipynb").exists() else None
    if marked is not None:
        assert marked.metadata["jupyter_flow_workbench"] == {"flow": "greet.flow.yaml"}


def test_hidden_files_follow_jupyters_policy(api: httpx.Client, root: Path) -> None:
    (root / ".hidden").mkdir(exist_ok=True)
    (root / ".hidden" / "h.flow.yaml").write_text(fixture_flow("greet_chain.flow.yaml"))
    (root / "flows" / ".dot.flow.yaml").write_text(fixture_flow("greet_chain.flow.yaml"))
    for path in (".hidden/h.flow.yaml", "flows/.dot.flow.yaml"):
        for route in ("validate", "workbench", "export"):
            status, body = post(api, route, {"path": path})
            assert status == 404 and "hidden" in json.dumps(body), (route, path, body)


def test_export_writes_a_production_notebook(api: httpx.Client, root: Path) -> None:
    status, body = post(api, "export", {"path": "flows/greet.flow.yaml"})
    assert status == 200, body
    assert body["notebook"] == "flows/greet.production.ipynb"
    nb = nbformat.read(root / body["notebook"], as_version=4)
    nbformat.validate(nb)
    assert any("parameters" in c.metadata.get("tags", []) for c in nb.cells)


def test_exporting_an_invalid_flow_lists_its_problems(api: httpx.Client, root: Path) -> None:
    status, body = post(api, "export", {"path": "flows/broken.flow.yaml"})
    assert status == 400
    assert {p["node"] for p in body["problems"]} >= {"echo", "mystery"}
    assert not (root / "flows" / "broken.production.ipynb").exists()


def _jupyter(*args: str) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("JUPYTER_CONFIG_DIR", "JUPYTER_DATA_DIR")}
    done = subprocess.run(
        [sys.executable, "-m", "jupyter", *args], capture_output=True, text=True, timeout=60, env=env
    )
    return re.sub(r"\x1b\[[0-9;]*m", "", done.stdout + done.stderr)


# -- edits of a flow document ---------------------------------------------------------------------
def edit(api: httpx.Client, text: str, change: Any, path: str = "flows/greet.flow.yaml") -> tuple[int, dict[str, Any]]:
    return post(api, "edit", {"path": path, "text": text, "edit": change})


def test_every_edit_op_applies_through_the_server_and_keeps_the_comments(api: httpx.Client, root: Path) -> None:
    on_disk = (root / "flows" / "greet.flow.yaml").read_text()
    steps: list[tuple[dict[str, Any], Any]] = [
        ({"op": "add_node", "kind": "template", "position": {"x": 300, "y": 40}}, "template_1"),
        ({"op": "add_edge", "from": "echo", "to": "template_1"}, 2),
        ({"op": "set_config", "node": "template_1", "config": {"template": "{{ echo.output.text }}"}}, "template_1"),
        ({"op": "replace_edge", "index": 2, "body": "label: then"}, None),
        ({"op": "move", "positions": {"echo": {"x": 120.5, "y": 80}}}, None),
        ({"op": "settings", "body": {"name": "greet", "description": "says hi"}}, None),
        ({"op": "replace_node", "node": "template_1", "body": {"id": "bye", "type": "template", "config": {"template": "bye"}}}, "bye"),
        ({"op": "remove", "nodes": ["bye"]}, None),
    ]
    text = COMMENTED
    for change, made in steps:
        status, body = edit(api, text, change)
        assert status == 200, (change, body)
        reply = EditReply.model_validate(body)  # what the file view's generated types say
        assert (reply.made, reply.problems) == (made, []), (change, body)
        assert reply.text != text, change
        text = reply.text
    data = yaml.safe_load(text)
    assert data["description"] == "says hi" and data["layout"] == {"echo": {"x": 120.5, "y": 80.0}}
    assert [n["id"] for n in data["nodes"]] == ["shout", "echo"]
    for comment in COMMENTS:
        assert comment in text, text
    assert (root / "flows" / "greet.flow.yaml").read_text() == on_disk  # the browser saves, not the edit


def test_a_move_to_nan_is_refused_and_the_document_stays_as_it_was(api: httpx.Client) -> None:
    # JSON.stringify never writes NaN, but any other client can: Python's json does
    raw = json.dumps({"path": "flows/greet.flow.yaml", "text": COMMENTED,
                      "edit": {"op": "move", "positions": {"shout": {"x": float("nan"), "y": 1}}}})
    assert "NaN" in raw
    reply = api.post("edit", content=raw, headers={"Content-Type": "application/json"})
    assert reply.status_code == 200, reply.text  # a refusal is an answer the view shows
    error = EditRefusal.model_validate(reply.json())
    assert error.applied is False
    assert error.op == "move" and [e.field for e in error.errors] == ["positions.shout.x"]
    assert "finite" in error.message and "text" not in reply.json()
    # the document the view holds is untouched, and a good move on it keeps every comment
    status, body = edit(api, COMMENTED, {"op": "move", "positions": {"shout": {"x": 5, "y": 1}}})
    assert status == 200
    assert all(comment in body["text"] for comment in COMMENTS), body["text"]


@pytest.mark.parametrize(
    ("change", "op", "field"),
    [
        ({"op": "remove", "edges": 5}, "remove", "edges"),
        ({"op": "remove", "nodes": ["ghost"]}, "remove", "nodes.0"),
        ({"op": "remove", "edges": [9]}, "remove", "edges.0"),
        ({"op": "add_edge", "from": "shout"}, "add_edge", "to"),
        ({"op": "set_config", "node": "shout", "config": "template: x"}, "set_config", "config"),
        ({"op": "move", "positions": {"shout": {"x": "1", "y": 2}}}, "move", "positions.shout.x"),
        ({"op": "explode"}, "explode", "op"),
        ({"kind": "template"}, None, "op"),
        ("add_node", None, "edit"),
        ({"op": "remove", "nodes": ["shout"] * (MAX_ITEMS + 1)}, "remove", "nodes"),
        ({"op": "settings", "body": "x" * (MAX_TEXT_CHARS + 1)}, "settings", "body"),
    ],
)
def test_an_edit_that_does_not_fit_is_refused_naming_its_op_and_field(
    api: httpx.Client, change: Any, op: str | None, field: str
) -> None:
    status, body = edit(api, COMMENTED, change)
    assert status == 200, body  # not a failed request: the browser would log it as an error
    error = EditRefusal.model_validate(body)
    assert error.applied is False and "text" not in body
    assert error.op == op and [e.field for e in error.errors] == [field], body
    assert error.problems and error.problems[0].field == field  # shown by the view like any problem


def test_an_edit_that_would_break_the_graph_is_refused_with_its_problems(api: httpx.Client) -> None:
    status, body = edit(api, COMMENTED, {"op": "add_edge", "from": "echo", "to": "shout"})
    assert status == 200
    error = EditRefusal.model_validate(body)
    assert error.applied is False and "cycle" in error.message and error.problems


@pytest.mark.parametrize("route", ["edit", "validate", "export", "workbench"])
def test_a_nul_byte_in_a_path_is_a_400(api: httpx.Client, route: str) -> None:
    body: dict[str, Any] = {"path": "flows/gr\x00eet.flow.yaml"}
    if route in ("edit", "validate"):
        body["text"] = COMMENTED
    if route == "edit":
        body["edit"] = {"op": "remove"}
    status, reply = post(api, route, body)
    # the edit route answers every refusal with a 200 and `applied: false`
    assert (status, reply.get("applied")) == ((200, False) if route == "edit" else (400, None)), reply
    assert "NUL" in reply["message"]


def test_every_route_answers_what_its_reply_model_says(api: httpx.Client, root: Path) -> None:
    (root / "replies").mkdir()
    (root / "replies" / "a.flow.yaml").write_text(COMMENTED)
    gets = {"status": "status", "palette": "palette", "schema": "schema?kind=template",
            "lastrun": "lastrun?path=replies/a.flow.yaml", "folder": "folder?path=replies/a.flow.yaml"}
    posts = {
        "run": {"path": "replies/a.flow.yaml", "inputs": {}},
        "validate": {"path": "replies/a.flow.yaml"},
        "edit": {"path": "replies/a.flow.yaml", "text": COMMENTED, "edit": {"op": "remove", "edges": [1]}},
        "export": {"path": "replies/a.flow.yaml"},
        "new": {"directory": "replies", "name": "b"},
        "workbench": {"path": "replies/a.flow.yaml"},
    }
    started = api.post("run", json=posts["run"]).json()["run"]
    gets["runstate"] = f"runstate?run={started}&after=0&wait=0"
    posts["cancel"] = {"run": started}
    assert set(gets) | set(posts) == set(ROUTES)
    for route, (_request, reply_model) in ROUTES.items():
        reply = api.get(gets[route]) if route in gets else api.post(route, json=posts[route])
        assert reply.status_code in (200, 201), (route, reply.text)
        reply_model.model_validate(reply.json())  # no field missing, none the model lacks
    assert api.get("schema?kind=glow").json()["schema"]["properties"]["text"]["type"] == "string"


def test_jupyter_lists_both_extensions_enabled() -> None:
    lab = _jupyter("labextension", "list")
    assert re.search(r"jupyter-flow v\S+ enabled\s+OK", lab), lab
    server = _jupyter("server", "extension", "list")
    assert re.search(r"jupyter_flow\.serverext enabled", server), server
    assert re.search(r"jupyter_flow\.serverext\s+OK", server), server
