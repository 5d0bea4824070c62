"""Dify apps in and out. The apps under tests/fixtures/dify are written in Dify's exported
DSL (`app`, `kind: app`, `version`, `workflow.graph`); they are imported, validated and run
against loopback services, a real OpenAI-compatible server and a scripted one, exported
back, and imported again with the same result. The import's report, its refusal to replace
files, tool bindings and placeholders are checked through the real CLI.
tests/test_dify_corpus.py imports the apps of the wild."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from openai_server import OpenAIServer
from servers import LoopbackServer, Reply, Request

from jupyter_flow import Flow, FlowValidationError, export_dify, import_dify
from jupyter_flow.spec import spec_to_dict

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "dify"
Serve = Callable[[dict[str, Any]], LoopbackServer]
Answer = Callable[[dict[str, Any]], Any]


class ScriptedChat:
    """An OpenAI-compatible chat server on loopback (`/v1/chat/completions`) answering each
    request with `answer(body)`: the text, or a message with `tool_calls`; streamed (server
    sent events) when the request asks. `requests` keeps the bodies it received."""

    def __init__(self, serve: Serve, answer: Answer) -> None:
        self.answer = answer
        self.requests: list[dict[str, Any]] = []
        self.server = serve({"/v1/chat/completions": self._reply})
        self.base_url = f"{self.server.url}/v1"

    def _reply(self, req: Request) -> Reply:
        body = req.body
        self.requests.append(body)
        said = self.answer(body)
        message = {"role": "assistant", "content": said} if isinstance(said, str) else {"role": "assistant", "content": None, **said}
        finish = "tool_calls" if message.get("tool_calls") else "stop"
        usage = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
        if body.get("stream"):
            chunks = [{"choices": [{"index": 0, "delta": {"content": message["content"]}, "finish_reason": None}]},
                      {"choices": [{"index": 0, "delta": {}, "finish_reason": finish}], "usage": usage}]
            text = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"
            return Reply(200, text, content_type="text/event-stream")
        return Reply(200, {"id": f"chat-{len(self.requests)}", "object": "chat.completion", "model": body["model"],
                           "choices": [{"index": 0, "message": message, "finish_reason": finish}], "usage": usage})


def said_by(body: dict[str, Any], role: str) -> str:
    """The text of the request's messages of `role`, one after the other."""
    return "\n".join(str(m["content"]) for m in body["messages"] if m["role"] == role)


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("jupyter-flow")
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=120)


def app_at(tmp_path: Path, name: str, server: LoopbackServer | None = None) -> Path:
    """The fixture app, pointed at `server` (the apps name 127.0.0.1:8765 as their service)."""
    text = (FIXTURES / name).read_text(encoding="utf-8")
    if server is not None:
        text = text.replace("http://127.0.0.1:8765", server.url)
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def crm(server_requests: list[Request]) -> dict[str, Any]:
    customers = {"c-vip": {"name": "Ada", "vip": True}, "c-known": {"name": "Bob", "vip": False}}

    def lookup(req: Request) -> Reply:
        server_requests.append(req)
        found = customers.get((req.body or {}).get("customer"))
        return Reply(200, found) if found else Reply(404, {"error": "no such customer"})

    return {"/crm/lookup": lookup}


def test_every_mapped_node_type_imports(tmp_path: Path) -> None:
    flow = import_dify(app_at(tmp_path, "ticket_triage.yml"), tmp_path / "triage.flow.yaml", base_url="http://127.0.0.1:1/v1")
    kinds = {n.id: n.type for n in flow.spec.nodes}
    # a JSON body is read as JSON before it is sent, as Dify does (customer_lookup_body)
    assert kinds == {"customer_lookup_body": "python", "customer_lookup": "http", "known_customer": "switch", "vip_score": "python", "known_reply": "template",
                     "unknown_reply": "template", "summary": "coalesce", "llm": "llm"}
    spec = flow.spec
    # start variables: types, labels and select options kept
    assert spec.inputs["ticket"].type == "text"
    assert spec.inputs["priority"].description == "Priority (one of: low, high)"
    # end node -> declared outputs; if-else handles -> branches; positions -> layout
    assert spec.outputs == {"summary": "{{ summary.output.output }}", "reply": "{{ llm.output.text }}",
                            "status": "{{ customer_lookup.output.status_code }}"}
    assert {(e.source, e.target, e.branch) for e in spec.edges if e.branch} == {
        ("known_customer", "vip_score", "vip"), ("known_customer", "known_reply", "true"), ("known_customer", "unknown_reply", "false")}
    assert spec.layout["llm"].x == 1550
    http = spec.node("customer_lookup")
    assert http.config["headers"]["Authorization"] == "Bearer ${CUSTOMER_LOOKUP_API_KEY}"  # the key itself is not kept
    assert "sk-not-kept" not in (tmp_path / "triage.flow.yaml").read_text()
    assert http.retry is not None and http.retry.max_attempts == 3 and http.timeout_s == 5
    # the code went to a module beside the flow file
    assert spec.node("vip_score").config["function"] == "triage_vip_score:main"
    assert "def main(body: str, priority: str)" in (tmp_path / "triage_vip_score.py").read_text()
    # the flow file says which Dify ids were renamed
    assert "# Dify node '1718000000004' -> vip_score" in (tmp_path / "triage.flow.yaml").read_text()
    flow.validate()


@pytest.mark.parametrize(("customer", "summary", "status"), [
    ("c-vip", "VIP Ada (high)", 200),
    ("c-known", "Known customer c-known: printer on fire", 200),
    ("c-nobody", "Unknown customer (404): printer on fire", 404),
])
def test_imported_app_runs_each_branch(tmp_path: Path, serve: Serve, openai_server: OpenAIServer, monkeypatch: pytest.MonkeyPatch,
                                       customer: str, summary: str, status: int) -> None:
    seen: list[Request] = []
    server = serve(crm(seen))
    monkeypatch.setenv("CUSTOMER_LOOKUP_API_KEY", "sk-crm")
    flow = import_dify(app_at(tmp_path, "ticket_triage.yml", server), tmp_path / "triage.flow.yaml",
                       base_url=openai_server.base_url, model=openai_server.model)
    result = flow.run({"ticket": "printer on fire", "priority": "high", "customer": customer})
    assert result.ok, result.error
    assert result.flow_outputs is not None
    assert result.flow_outputs["summary"] == summary
    assert result.flow_outputs["status"] == status
    assert isinstance(result.flow_outputs["reply"], str) and result.outputs["llm"]["usage"]["completion_tokens"] == 8
    (req,) = seen
    headers = {k.lower(): v for k, v in req.headers.items()}
    assert headers["authorization"] == "Bearer sk-crm" and headers["x-priority"] == "high"
    assert headers["content-type"] == "application/json" and req.path == "/crm/lookup?lang=en"
    assert req.body == {"customer": customer, "priority": "high"}


def test_round_trip_gives_the_same_flow_and_the_same_answers(tmp_path: Path, serve: Serve) -> None:
    server = serve(crm([]))
    first_dir, second_dir = tmp_path / "first", tmp_path / "second"
    first_dir.mkdir()
    second_dir.mkdir()
    for app in ("ticket_triage.yml", "support_chat.yml"):
        name = f"{app.split('_')[0]}.flow.yaml"
        first = import_dify(app_at(tmp_path, app, server), first_dir / name, base_url="http://127.0.0.1:9/v1")
        exported = export_dify(first, second_dir / app)
        data = yaml.safe_load(exported)
        assert data["kind"] == "app" and data["version"] and data["workflow"]["graph"]["nodes"]
        second = import_dify(second_dir / app, second_dir / name, base_url="http://127.0.0.1:9/v1")
        assert spec_to_dict(second.spec) == spec_to_dict(first.spec), app
    assert (first_dir / "ticket_vip_score.py").read_text() == (second_dir / "ticket_vip_score.py").read_text()
    # an answer node went to Dify as an answer node again
    chat = yaml.safe_load((second_dir / "support_chat.yml").read_text())
    assert chat["app"]["mode"] == "advanced-chat"
    assert [n["data"]["type"] for n in chat["workflow"]["graph"]["nodes"]].count("answer") == 1


def test_round_tripped_app_answers_as_the_first_import(tmp_path: Path, serve: Serve, monkeypatch: pytest.MonkeyPatch) -> None:
    server = serve(crm([]))
    monkeypatch.setenv("CUSTOMER_LOOKUP_API_KEY", "k")
    first = import_dify(app_at(tmp_path, "ticket_triage.yml", server), tmp_path / "a.flow.yaml", base_url="http://127.0.0.1:9/v1")
    export_dify(first, tmp_path / "again.yml")
    second = import_dify(tmp_path / "again.yml", tmp_path / "b.flow.yaml", base_url="http://127.0.0.1:9/v1")
    for customer in ("c-vip", "c-known", "c-nobody"):
        inputs = {"ticket": "t", "priority": "low", "customer": customer}
        # without its llm node (that needs a server): up to the summary, which every branch feeds
        answers = [_without_llm(f, inputs) for f in (first, second)]
        assert answers[0] == answers[1]


def _without_llm(flow: Flow, inputs: dict[str, Any]) -> dict[str, Any]:
    data = spec_to_dict(flow.spec)
    data["nodes"] = [n for n in data["nodes"] if n["type"] != "llm"]
    data["edges"] = [e for e in data["edges"] if "llm" not in (e["from"], e["to"])]
    data["outputs"] = {k: v for k, v in data["outputs"].items() if "llm" not in v}
    trimmed = Flow.from_dict(data, source=flow.source)
    result = trimmed.run(inputs)
    assert result.flow_outputs is not None
    return result.flow_outputs


def test_chat_app_with_answer_context_and_sys_query(tmp_path: Path, serve: Serve) -> None:
    def kb(req: Request) -> Reply:
        form = dict(pair.split("=") for pair in req.raw.decode().split("&"))
        return Reply(200, f"Doc about {form['q']} (top {form['top']})", content_type="text/plain") if form["q"] != "down" else Reply(503, "")

    server = serve({"/kb/search": kb})
    model = ScriptedChat(serve, lambda body: f"Answer from: {said_by(body, 'system')}")
    flow = import_dify(app_at(tmp_path, "support_chat.yml", server), tmp_path / "chat.flow.yaml", base_url=model.base_url, model="m")
    assert list(flow.spec.inputs) == ["query", "conversation_id"]  # a chat app's sys.query and sys.conversation_id
    messages = flow.spec.node("answerer").config["messages"]
    assert messages[0]["content"] == "Use this context:\n{{ knowledge_base.output.body | as_text }}"  # {{#context#}}
    result = flow.run({"query": "printers"})
    assert result.ok, result.error
    assert result.flow_outputs == {"answer": "Answer from: Use this context:\nDoc about printers (top 3)"}
    assert "Doc about printers (top 3)" in result["answerer"].inputs["messages"][0]["content"]
    down = flow.run({"query": "down"})
    assert down.ok, down.error
    assert down.flow_outputs == {"answer": "Sorry, the knowledge base answered 503."}
    assert down["answerer"].status == "skipped"


# A JavaScript code node and a loop (both from the apps of the wild): nothing here runs them.
UNIMPORTABLE = """
app: {mode: workflow, name: Loops and JavaScript}
kind: app
version: 0.1.5
workflow:
  graph:
    edges:
    - {source: '1', sourceHandle: source, target: '2'}
    - {source: '2', sourceHandle: source, target: '3'}
    - {source: '3', sourceHandle: source, target: '4'}
    nodes:
    - {id: '1', data: {type: start, title: Start, variables: [{variable: text, label: Text, type: paragraph, required: true}]}}
    - id: '2'
      data:
        type: code
        title: Count words
        code_language: javascript
        code: "function main({text}) { return {count: text.split(' ').length} }"
        variables: [{variable: text, value_selector: ['1', text]}]
        outputs: {count: {type: number}}
    - {id: '3', data: {type: loop, title: Again, loop_count: 3}}
    - {id: '4', data: {type: end, title: End, outputs: [{variable: count, value_selector: ['2', count]}]}}
"""


def test_unimportable_nodes_are_listed_by_id_and_type(tmp_path: Path) -> None:
    app = tmp_path / "loops.yml"
    app.write_text(UNIMPORTABLE)
    with pytest.raises(FlowValidationError) as info:
        import_dify(app, tmp_path / "loops.flow.yaml")
    by_node = {p.node: p.message for p in info.value.problems}
    assert "needs a JavaScript runtime; rewrite it as Python" in by_node["2"]
    assert "'loop'" in by_node["3"]
    assert not (tmp_path / "loops.flow.yaml").exists()

    done = cli("import-dify", str(app), "-o", str(tmp_path / "loops.flow.yaml"))
    assert done.returncode == 2, done.stderr
    assert "'2'" in done.stderr and "JavaScript" in done.stderr and "'3'" in done.stderr and "Traceback" not in done.stderr


def test_partial_import_keeps_placeholders_the_plan_reports(tmp_path: Path) -> None:
    app = tmp_path / "loops.yml"
    app.write_text(UNIMPORTABLE)
    done = cli("import-dify", str(app), "-o", str(tmp_path / "loops.flow.yaml"), "--partial")
    assert done.returncode == 0, done.stderr
    assert "Placeholders" in done.stderr and "JavaScript" in done.stderr
    flow = Flow.load(tmp_path / "loops.flow.yaml")
    with pytest.raises(FlowValidationError) as info:
        flow.validate()
    by_node = {p.node: p for p in info.value.problems}
    assert set(by_node) == {"count_words", "again"}
    assert "'code'" in by_node["count_words"].message and by_node["count_words"].field == "type"
    # what Dify had is kept, its references written as templates here
    assert flow.spec.node("count_words").config["data"]["code"].startswith("function main")
    assert cli("validate", str(tmp_path / "loops.flow.yaml")).returncode == 2


def test_partial_import_never_crashes_on_settings_it_does_not_expect(tmp_path: Path) -> None:
    # every node type with data cut short or of the wrong shape: each becomes a placeholder naming the Dify node
    kinds = ["llm", "http-request", "code", "if-else", "tool", "agent", "question-classifier", "parameter-extractor",
             "knowledge-retrieval", "document-extractor", "list-operator", "assigner", "iteration", "template-transform"]
    nodes = [{"id": "1", "data": {"type": "start", "variables": []}}]
    nodes += [{"id": str(10 + i), "data": {"type": kind, "title": kind, "variables": "oops", "cases": [{"conditions": 3}],
                                           "tool_parameters": [1], "agent_parameters": 5, "classes": "x", "parameters": 7,
                                           "dataset_ids": 1, "items": {"a": 1}, "url": None}} for i, kind in enumerate(kinds)]
    nodes.append({"id": "99", "data": {"type": "", "text": "a sticky note"}})
    app = tmp_path / "broken.yml"
    app.write_text(yaml.safe_dump({"app": {"name": "broken", "mode": "workflow"}, "kind": "app", "version": "0.1.5",
                                   "workflow": {"graph": {"nodes": nodes, "edges": []}}}))
    done = cli("import-dify", str(app), "-o", str(tmp_path / "broken.flow.yaml"), "--partial")
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    flow = Flow.load(tmp_path / "broken.flow.yaml")
    assert all(n.id for n in flow.spec.nodes)
    with pytest.raises(FlowValidationError):
        flow.validate()
    assert "# Note on the Dify canvas:\n#   a sticky note" in (tmp_path / "broken.flow.yaml").read_text()


def test_cli_import_run_and_export(tmp_path: Path, serve: Serve) -> None:
    server = serve(crm([]))
    app = app_at(tmp_path, "ticket_triage.yml", server)
    done = cli("import-dify", str(app), "-o", str(tmp_path / "triage.flow.yaml"), "--llm-base-url", "http://127.0.0.1:9/v1")
    assert done.returncode == 0, done.stderr
    assert "triage.flow.yaml" in done.stdout
    # the report: what each Dify node became, the keys to set, the files written
    assert "code '1718000000004' (VIP score) -> vip_score (python)" in done.stderr
    assert "CUSTOMER_LOOKUP_API_KEY" in done.stderr and "triage_vip_score.py" in done.stderr
    assert cli("validate", str(tmp_path / "triage.flow.yaml")).returncode == 0
    done = cli("export-dify", str(tmp_path / "triage.flow.yaml"), "-o", str(tmp_path / "back.yml"))
    assert done.returncode == 0, done.stderr
    back = yaml.safe_load((tmp_path / "back.yml").read_text())
    types = sorted(n["data"]["type"] for n in back["workflow"]["graph"]["nodes"])
    assert types == sorted(["start", "http-request", "if-else", "code", "template-transform", "template-transform",
                            "variable-aggregator", "llm", "end"])


def test_files_already_there_are_replaced_only_with_force(tmp_path: Path) -> None:
    app = app_at(tmp_path, "ticket_triage.yml")
    target = tmp_path / "triage.flow.yaml"
    assert cli("import-dify", str(app), "-o", str(target)).returncode == 0
    (tmp_path / "triage_vip_score.py").write_text("# my edits\n")
    done = cli("import-dify", str(app), "-o", str(target))
    assert done.returncode == 2
    assert "will not replace" in done.stderr and "triage_vip_score.py" in done.stderr and "--force" in done.stderr
    assert (tmp_path / "triage_vip_score.py").read_text() == "# my edits\n"  # nothing was written
    done = cli("import-dify", str(app), "-o", str(target), "--force")
    assert done.returncode == 0, done.stderr
    assert f"{tmp_path / 'triage_vip_score.py'} (replaced the file that was there)" in done.stderr
    assert "def main" in (tmp_path / "triage_vip_score.py").read_text()


SEARCH_TOOLS = '''
def search(query: str) -> str:
    """Search the web.

    Args:
        query: what to look for
    """
    return f"results for {query}"
'''


def test_unbound_tool_is_named_by_validate_and_bound_with_tools(tmp_path: Path, serve: Serve, monkeypatch: pytest.MonkeyPatch) -> None:
    # docs_search: a knowledge retrieval, then a Dify tool (Google search) no tool here matches
    seen: list[Request] = []

    def retrieval(req: Request) -> Reply:
        seen.append(req)
        return Reply(200, {"records": [{"content": "Printers need paper.", "score": 0.9, "title": "printing.md", "metadata": {}}]})

    kb = serve({"/retrieval": retrieval})
    monkeypatch.setenv("DIFY_KNOWLEDGE_API_URL", kb.url)
    monkeypatch.setenv("DIFY_KNOWLEDGE_API_KEY", "kb-key")
    app = app_at(tmp_path, "docs_search.yml")
    done = cli("import-dify", str(app), "-o", str(tmp_path / "docs.flow.yaml"))
    assert done.returncode == 0, done.stderr
    assert "google/google_search has no counterpart" in done.stderr and "--tools" in done.stderr
    assert "DIFY_KNOWLEDGE_API_URL" in done.stderr and "DIFY_KNOWLEDGE_API_KEY" in done.stderr
    checked = cli("validate", str(tmp_path / "docs.flow.yaml"))
    assert checked.returncode == 2
    assert "'google'" in checked.stderr and "dify/google/google_search" in checked.stderr
    assert "--tools BINDINGS.yaml holding the line `google/google_search: provider/tool`" in checked.stderr

    (tmp_path / "searchtools.py").write_text(SEARCH_TOOLS)
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "bindings.yaml").write_text("google/google_search: python/searchtools:search\n")
    flow = import_dify(app, tmp_path / "docs.flow.yaml", tools=tmp_path / "bindings.yaml", force=True)
    flow.validate()
    result = flow.run({"question": "printer jams"})
    assert result.ok, result.error
    assert result.outputs["google"] == {"result": "results for printer jams"}
    # Dify's External Knowledge API: knowledge_id, query and retrieval_setting, the key as a bearer token
    (req,) = seen
    assert req.body == {"knowledge_id": "abc", "query": "printer jams", "retrieval_setting": {"top_k": 4}}
    assert {k.lower(): v for k, v in req.headers.items()}["authorization"] == "Bearer kb-key"
    assert "Printers need paper." in result.flow_outputs["text"]


def test_a_bindings_file_that_is_wrong_is_named(tmp_path: Path) -> None:
    (tmp_path / "bindings.yaml").write_text("google/google_search: {tool: web/page_text, colour: red}\n")
    done = cli("import-dify", str(app_at(tmp_path, "docs_search.yml")), "-o", str(tmp_path / "d.flow.yaml"), "--tools",
               str(tmp_path / "bindings.yaml"))
    assert done.returncode == 2
    assert "bindings.yaml" in done.stderr and "'colour'" in done.stderr and "Traceback" not in done.stderr


def test_run_prints_declared_outputs(tmp_path: Path) -> None:
    flow = tmp_path / "hello.flow.yaml"
    flow.write_text(yaml.safe_dump({"inputs": {"name": {"type": "string"}}, "outputs": {"greeting": "{{ hi.output.text }}"},
                                    "nodes": [{"id": "hi", "type": "template", "config": {"template": "hello {{ name }}"}}]}))
    done = cli("run", str(flow), "--input", "name=Ada")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"greeting": "hello Ada"}


def test_export_refuses_kinds_dify_lacks_by_name(tmp_path: Path) -> None:
    flow = tmp_path / "vote.flow.yaml"
    flow.write_text(yaml.safe_dump({"nodes": [
        {"id": "a", "type": "template", "config": {"template": "x"}},
        {"id": "pick", "type": "vote", "config": {"inputs": ["{{ a.output.text }}"]}}],
        "edges": [{"from": "a", "to": "pick"}]}))
    done = cli("export-dify", str(flow), "-o", str(tmp_path / "out.yml"))
    assert done.returncode == 2
    assert "'pick'" in done.stderr and "'vote'" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "out.yml").exists()


def test_not_a_dify_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "x.yml"
    path.write_text("nodes: []\n")
    done = cli("import-dify", str(path), "-o", str(tmp_path / "x.flow.yaml"))
    assert done.returncode == 2 and "not a Dify app" in done.stderr


GREETER = {"inputs": {"name": {"type": "string"}}, "outputs": {"greeting": "{{ hi.output.text }}", "name": "{{ name }}"},
           "nodes": [{"id": "hi", "type": "template", "config": {"template": "hello {{ name }}"}}]}


def test_declared_outputs_in_served_flows_batch_records_and_exported_notebooks(tmp_path: Path) -> None:
    import httpx
    from servers import AsgiServer

    from jupyter_flow import run_batch
    from jupyter_flow.export import notebook_for
    from jupyter_flow.serve.app import flow_app

    path = tmp_path / "greeter.flow.yaml"
    path.write_text(yaml.safe_dump(GREETER))
    with AsgiServer(flow_app(path)) as srv:
        body = httpx.post(f"{srv.url}/run", json={"name": "Ada"}, timeout=30).json()
    assert body["result"] == {"greeting": "hello Ada", "name": "Ada"}
    assert body["outputs"] == {"hi": {"text": "hello Ada"}}  # the answer's other fields stay as they are

    items = tmp_path / "items.jsonl"
    items.write_text('{"name": "Ada"}\n{"name": "Bob"}\n')
    run_batch(Flow.load(path), items, tmp_path / "out", progress=False)
    records = [json.loads(line) for line in (tmp_path / "out" / "results.jsonl").read_text().splitlines()]
    assert sorted(r["result"]["greeting"] for r in records) == ["hello Ada", "hello Bob"]

    cells = [c.source for c in notebook_for(Flow.load(path)).cells]
    assert any("r.get(\"result\")" in c for c in cells)


def test_flows_without_declared_outputs_answer_as_before(tmp_path: Path) -> None:
    import httpx
    from servers import AsgiServer

    from jupyter_flow.serve.app import flow_app

    data = {k: v for k, v in GREETER.items() if k != "outputs"}
    path = tmp_path / "plain.flow.yaml"
    path.write_text(yaml.safe_dump(data))
    result = Flow.load(path).run({"name": "Ada"})
    assert result.flow_outputs is None and "flow_outputs" not in result.to_dict()
    with AsgiServer(flow_app(path)) as srv:
        body = httpx.post(f"{srv.url}/run", json={"name": "Ada"}, timeout=30).json()
    assert set(body) == {"run_id", "outputs"}


def test_imported_code_is_announced_and_runs_only_when_the_flow_runs(tmp_path: Path) -> None:
    # A Dify app's code node becomes Python with the user's rights: `import-dify` says so
    # and names the module; importing and validating run none of it.
    marker = tmp_path / "code-ran"
    data = yaml.safe_load((FIXTURES / "ticket_triage.yml").read_text(encoding="utf-8"))
    (code_node,) = [n for n in data["workflow"]["graph"]["nodes"] if n["data"]["type"] == "code"]
    code_node["data"]["code"] = f"open({str(marker)!r}, 'w').write('ran')\n" + code_node["data"]["code"]
    app = tmp_path / "triage.yml"
    app.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")

    done = cli("import-dify", str(app), "-o", str(tmp_path / "triage.flow.yaml"))
    assert done.returncode == 0, done.stderr
    module = tmp_path / "triage_vip_score.py"
    assert f"1 code node became Python that runs with your rights: review {module}" in done.stderr
    assert cli("validate", str(tmp_path / "triage.flow.yaml")).returncode == 0
    (tmp_path / "again").mkdir()
    with pytest.warns(UserWarning, match="1 code node became Python that runs with your rights"):
        flow = import_dify(app, tmp_path / "again" / "triage.flow.yaml")
    flow.validate()
    assert not marker.exists()
    # the marker is live: the module writes it as soon as Python imports it (as a run does)
    subprocess.run([sys.executable, "-c", "import triage_vip_score"], cwd=tmp_path, check=True, timeout=60)
    assert marker.read_text() == "ran"
