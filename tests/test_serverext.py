"""The server extension through a real Jupyter server with its token: validate, export,
new flow and workbench requests, and the installed extensions as `jupyter` lists them."""

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

sys.path.insert(0, str(Path(__file__).parent / "ui"))

from harness import JupyterLab  # noqa: E402

pytestmark = pytest.mark.timeout(120)

GOOD = """\
spec_version: 1
name: greet
inputs: {text: {type: text, default: hi}}
nodes:
  - id: shout
    type: template
    config: {template: "{{ text | upper }}"}
  - id: echo
    type: template
    config: {template: "{{ shout.output.text }}!"}
edges:
  - {from: start, to: shout}
  - {from: shout, to: echo}
"""

# `echo` reads a node that does not exist, and `mystery` has a kind nobody registered.
BROKEN = """\
spec_version: 1
name: broken
nodes:
  - id: shout
    type: template
    config: {template: "hi"}
  - id: echo
    type: template
    config: {template: "{{ ghost.output.text }}"}
  - id: mystery
    type: no_such_kind
edges:
  - {from: start, to: shout}
  - {from: shout, to: echo}
  - {from: shout, to: mystery}
"""


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("root")
    (root / "flows").mkdir()
    (root / "flows" / "greet.flow.yaml").write_text(GOOD)
    (root / "flows" / "broken.flow.yaml").write_text(BROKEN)
    (root / "seed.flow.json").write_text(
        json.dumps({
            "nodes": [{"id": "cleaner", "config": {"endpoint": "http://127.0.0.1:9/clean", "output_key": "t"}}],
            "edges": [{"from": "start", "to": "cleaner"}],
        })
    )
    (root.parent / "secret.flow.yaml").write_text(GOOD)
    return root


@pytest.fixture(scope="module")
def server(root: Path) -> Iterator[JupyterLab]:
    with JupyterLab(root) as lab:
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
    assert (status, body["created"]) == (200, False)


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


def test_jupyter_lists_both_extensions_enabled() -> None:
    lab = _jupyter("labextension", "list")
    assert re.search(r"jupyter-flow v\S+ enabled\s+OK", lab), lab
    server = _jupyter("server", "extension", "list")
    assert re.search(r"jupyter_flow\.serverext enabled", server), server
    assert re.search(r"jupyter_flow\.serverext\s+OK", server), server
