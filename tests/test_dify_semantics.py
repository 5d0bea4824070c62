"""Dify semantics an imported app keeps, each on a small app cut from a corpus app
(tests/fixtures/dify/corpus) and run against loopback services: template variables named
like nodes, code nodes' declared outputs, error strategies, a bare start -> answer app,
environment variables' values and types, raw-text bodies. The other points (Dify's text,
JSON in text, memory and sys.*, answers one by one, if-else operators, tools, agents,
classifiers, extractors, lists and documents, iterations) are in test_dify_corpus.py, and
conversation variables kept between runs in test_dify_conversation.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from servers import LoopbackServer, Reply, Request
from test_dify import Serve

from jupyter_flow import Flow, export_dify
from jupyter_flow.dify import write_import
from jupyter_flow.spec import spec_to_dict


def imported(tmp_path: Path, text: str, name: str = "app") -> tuple[Flow, Path]:
    app = tmp_path / f"{name}.yml"
    app.write_text(text, encoding="utf-8")
    _, target = write_import(app, tmp_path / f"{name}.flow.yaml")
    return Flow.load(target).validate(), target


def round_trips(tmp_path: Path, target: Path) -> None:
    """Exported and imported again (in another folder), the flow is the same (but for the
    places Dify needs on its canvas, which these apps, cut short, do not give)."""
    export_dify(Flow.load(target), tmp_path / "back.yml")
    (tmp_path / "again").mkdir()
    _, again = write_import(tmp_path / "back.yml", tmp_path / "again" / target.name)
    first, second = spec_to_dict(Flow.load(target).spec), spec_to_dict(Flow.load(again).spec)
    second.pop("layout", None)
    assert second == first


# -- a template variable named like a node (春联生成器: the couplet's parts into the page) --------------
SHADOW_APP = """
app: {mode: workflow, name: 春联生成器}
kind: app
version: 0.1.5
workflow:
  graph:
    edges:
    - {source: '1', sourceHandle: source, target: couplet}
    - {source: couplet, sourceHandle: source, target: '3'}
    nodes:
    - {id: '1', data: {type: start, title: 开始, variables: [{variable: theme, label: 主题, type: text-input, required: true}]}}
    - id: couplet
      data:
        type: code
        title: 解析
        code: |
          def main(theme: str) -> dict:
              return {"top": theme + "回大地", "bottom": theme + "满人间"}
        variables: [{variable: theme, value_selector: ['1', theme]}]
        outputs: {top: {type: string}, bottom: {type: string}}
    - id: '3'
      data:
        type: template-transform
        title: 页面
        template: '<p>{{ couplet }}</p><p>{{ bottom }}</p>'
        variables: [{variable: couplet, value_selector: [couplet, top]}, {variable: bottom, value_selector: [couplet, bottom]}]
"""


def test_a_template_variable_named_like_a_node_does_not_hide_the_node(tmp_path: Path) -> None:
    flow, target = imported(tmp_path, SHADOW_APP)
    run = flow.run({"theme": "春"})
    assert run.ok, run.error
    assert run.outputs["template_transform"]["text"] == "<p>春回大地</p><p>春满人间</p>"
    round_trips(tmp_path, target)


# -- a code node's declared outputs (Form表单聊天Demo: the login) ----------------------------------------
LOGIN_APP = """
app: {mode: workflow, name: 登录}
kind: app
version: 0.1.5
workflow:
  graph:
    edges:
    - {source: '1729841263487', sourceHandle: source, target: '1731378644337'}
    nodes:
    - {id: '1729841263487', data: {type: start, title: Start, variables: [{variable: input_string, label: 表单, type: paragraph, required: true}]}}
    - id: '1731378644337'
      data:
        type: code
        title: 登录
        code_language: python3
        code: |
          import json

          def main(input_string):
              data = json.loads(input_string)
              RESULT
        variables: [{variable: input_string, value_selector: ['1729841263487', input_string]}]
        outputs: {is_login: {type: number, children: null}, user_token: {type: string, children: null}}
"""
LOGIN = json.dumps({"username": "svcvit", "password": "x"})


@pytest.mark.parametrize(("result", "error"), [
    ('return {"is_login": 1, "user_token": data["username"]}', None),
    ('return {"is_login": 1, "user_token": None}', None),  # Dify lets any output be empty
    ('return [1, "token"]', "main returned list; a Dify code node returns a dict of its outputs (is_login, user_token)"),
    ('return {"is_login": 1}', "main returned no 'user_token': the code node declares it as an output"),
    ('return {"is_login": 1, "user_token": "t", "admin": True}', "main returned 'admin', which the code node does not declare"),
    ('return {"is_login": "yes", "user_token": "t"}', "output 'is_login' is str ('yes'); the code node declares number"),
    ('return {"is_login": True, "user_token": "t"}', "output 'is_login' is bool ('True'); the code node declares number"),
])
def test_a_code_nodes_answer_is_checked_against_the_outputs_it_declares(tmp_path: Path, result: str, error: str | None) -> None:
    flow, target = imported(tmp_path, LOGIN_APP.replace("RESULT", result))
    run = flow.run({"input_string": LOGIN}, raise_on_error=False)
    if error is None:
        assert run.ok, run.error
        assert run.outputs["code"]["is_login"] == 1
    else:
        assert not run.ok
        assert error in str(run.error) and "node 'code'" in str(run.error)
    round_trips(tmp_path, target)
    # the module is the app's code and the check import added: the code goes back to Dify as it was
    back = yaml.safe_load((tmp_path / "back.yml").read_text(encoding="utf-8"))
    code = next(n["data"]["code"] for n in back["workflow"]["graph"]["nodes"] if n["data"]["type"] == "code")
    assert "checked_outputs" not in code and result in code


# -- error strategies (chart_demo: the weather service) ---------------------------------------------------
STRATEGY_APP = """
app: {mode: advanced-chat, name: chart_demo}
kind: app
version: 0.1.5
workflow:
  graph:
    edges:
    - {source: '1', sourceHandle: source, target: '1727597212356'}
    - {source: '1727597212356', sourceHandle: source, target: ok}
    - {source: '1727597212356', sourceHandle: fail-branch, target: failed}
    - {source: '1', sourceHandle: source, target: '1727597300000'}
    - {source: '1727597300000', sourceHandle: source, target: fallback}
    nodes:
    - {id: '1', data: {type: start, title: 开始, variables: []}}
    - id: '1727597212356'
      data:
        type: http-request
        title: 气候数据
        method: get
        url: URL/api/climate
        authorization: {type: no-auth, config: null}
        headers: ''
        params: 'stationid:58367'
        body: {type: none, data: []}
        timeout: {max_connect_timeout: 0, max_read_timeout: 5, max_write_timeout: 0}
        error_strategy: fail-branch
    - {id: ok, data: {type: answer, title: 直接回复, answer: '数据：{{#1727597212356.body#}}'}}
    - {id: failed, data: {type: answer, title: 失败, answer: '气象服务不可用（{{#1727597212356.error_type#}}）'}}
    - id: '1727597300000'
      data:
        type: http-request
        title: 备用数据
        method: get
        url: URL/api/climate
        authorization: {type: no-auth, config: null}
        headers: ''
        params: ''
        body: {type: none, data: []}
        timeout: {max_connect_timeout: 0, max_read_timeout: 5, max_write_timeout: 0}
        error_strategy: default-value
        default_value: [{key: body, type: string, value: '{"data": []}'}, {key: status_code, type: number, value: 0}]
    - {id: fallback, data: {type: answer, title: 备用, answer: '备用：{{#1727597300000.body#}} {{#1727597300000.status_code#}}'}}
"""


def test_error_strategies_take_the_fail_branch_or_answer_the_default_values(tmp_path: Path, serve: Serve) -> None:
    server = serve({"/api/climate": lambda req: Reply(200, {"code": 0})})
    flow, target = imported(tmp_path, STRATEGY_APP.replace("URL", server.url), "up")
    assert flow.spec.node("http_request_2").on_error == "default"
    assert [e.on for e in flow.spec.edges if e.source == "http_request" and e.target == "failed"] == ["error"]
    up = flow.run({"query": "北京"})
    assert up.ok, up.error
    assert up.flow_outputs == {"ok": '数据：{"code": 0}', "failed": None, "fallback": '备用：{"code": 0} 200'}
    (tmp_path / "down").mkdir()
    down_flow, _ = imported(tmp_path / "down", STRATEGY_APP.replace("URL", "http://127.0.0.1:9"), "down")  # nothing listens there
    down = down_flow.run({"query": "北京"}, raise_on_error=False)
    assert down.ok, down.error  # a failure Dify's app handles is no failure of the run
    assert down.flow_outputs is not None
    assert down.flow_outputs["ok"] is None and down.flow_outputs["failed"].startswith("气象服务不可用（") and "Error" in down.flow_outputs["failed"]
    assert down.flow_outputs["fallback"] == '备用：{"data": []} 0'
    round_trips(tmp_path, target)


# -- a bare start -> answer app (Form表单聊天Demo: the answer after a login) --------------------------------
BARE_APP = """
app: {mode: advanced-chat, name: Form表单聊天Demo}
kind: app
version: 0.1.5
workflow:
  graph:
    edges:
    - {source: '1729841263487', sourceHandle: source, target: '1731379313752'}
    nodes:
    - {id: '1729841263487', data: {type: start, title: Start, variables: []}}
    - {id: '1731379313752', data: {type: answer, title: 直接回复 3, answer: 登录成功，我们聊点什么？}}
"""


def test_a_bare_start_to_answer_app_runs(tmp_path: Path) -> None:
    flow, target = imported(tmp_path, BARE_APP)
    assert [n.type for n in flow.spec.nodes] == ["template"]
    run = flow.run({"query": "你好"})
    assert run.ok, run.error
    assert run.flow_outputs == {"answer": "登录成功，我们聊点什么？"}
    round_trips(tmp_path, target)


# -- environment variables keep their values and types (完蛋！我被LLM包围了！: the leaderboard's top_n) ----------
ENV_APP = """
app: {mode: workflow, name: 排行}
kind: app
version: 0.1.5
workflow:
  environment_variables:
  - {description: '', id: 81051d42-e73b-4d85-8d5d-59eed29f488c, name: top_n, selector: [env, top_n], value: 50, value_type: number}
  - {description: '', id: 81051d42-e73b-4d85-8d5d-59eed29f4000, name: api_key, value: '', value_type: secret}
  graph:
    edges:
    - {source: '1', sourceHandle: source, target: '2'}
    nodes:
    - {id: '1', data: {type: start, title: 开始, variables: []}}
    - id: '2'
      data:
        type: code
        title: 排行
        code: |
          def main(n: int, key: str) -> dict:
              return {"shown": n + 1, "kind": type(n).__name__, "key": key or ""}
        variables: [{variable: n, value_selector: [env, top_n]}, {variable: key, value_selector: [env, api_key]}]
        outputs: {shown: {type: number}, kind: {type: string}, key: {type: string}}
"""


def test_environment_variables_keep_their_values_and_types(tmp_path: Path) -> None:
    flow, _ = imported(tmp_path, ENV_APP)
    assert flow.spec.inputs["top_n"].type == "number" and flow.spec.inputs["top_n"].default == 50
    assert flow.spec.inputs["api_key"].default is None and flow.spec.inputs["api_key"].is_required  # a secret is never copied
    run = flow.run({"api_key": "k"})
    assert run.ok, run.error
    assert run.outputs["code"] == {"shown": 51, "kind": "int", "key": "k"}
    assert flow.run({"top_n": 3, "api_key": "k2"}).outputs["code"] == {"shown": 4, "kind": "int", "key": "k2"}


# -- raw-text bodies go as text (runLLMCode: the sandbox call) ----------------------------------------------
RAW_APP = """
app: {mode: workflow, name: runLLMCode}
kind: app
version: 0.1.5
workflow:
  graph:
    edges:
    - {source: '1', sourceHandle: source, target: '1733305706063'}
    nodes:
    - {id: '1', data: {type: start, title: 开始, variables: [{variable: code, label: code, type: paragraph, required: true}]}}
    - id: '1733305706063'
      data:
        type: http-request
        title: sandbox 执行代码
        method: post
        url: URL/v1/sandbox/run
        authorization: {type: no-auth, config: null}
        headers: X-Api-Key:dify-sandbox
        params: ''
        body:
          type: raw-text
          data: [{id: key-value-707, key: '', type: text, value: "run {{#1.code#}} as {language: python3}"}]
        timeout: {max_connect_timeout: 0, max_read_timeout: 0, max_write_timeout: 0}
"""


def sandbox_server(serve: Serve) -> tuple[LoopbackServer, list[Request]]:
    """A loopback stand-in for Dify's code sandbox, and the requests it was sent."""
    seen: list[Request] = []

    def sandbox(req: Request) -> Reply:
        seen.append(req)
        return Reply(200, {"code": 0, "data": {"stdout": "2\n"}})

    return serve({"/v1/sandbox/run": sandbox}), seen


def test_raw_text_bodies_go_as_text(tmp_path: Path, serve: Serve) -> None:
    server, seen = sandbox_server(serve)
    flow, target = imported(tmp_path, RAW_APP.replace("URL", server.url))
    run = flow.run({"code": "print(1 + 1)"})
    assert run.ok, run.error
    assert seen[0].raw == b"run print(1 + 1) as {language: python3}"
    assert seen[0].headers["Content-Type"].startswith("text/plain") and seen[0].headers["X-Api-Key"] == "dify-sandbox"
    assert run.outputs["sandbox"]["status_code"] == 200
    round_trips(tmp_path, target)



# -- file variables are objects with Dify's fields (File_read: the size of the file given) ------------------
FILE_APP = """
app: {mode: workflow, name: File_read}
kind: app
version: 0.1.5
workflow:
  graph:
    edges:
    - {source: '1733304372042', sourceHandle: source, target: '1733304400929'}
    - {source: '1733304400929', sourceHandle: source, target: '1733304425429'}
    nodes:
    - id: '1733304372042'
      data:
        type: start
        title: 开始
        variables:
        - {variable: File, label: File, type: file, required: true, allowed_file_types: [document, image, audio, video]}
    - id: '1733304400929'
      data:
        type: code
        title: 获取文件路径
        code: |
          def main(filesize: int, name: str) -> dict:
              return {"file_path": f"{name}: {filesize} bytes"}
        variables:
        - {variable: filesize, value_selector: ['1733304372042', File, size]}
        - {variable: name, value_selector: ['1733304372042', File, name]}
        outputs: {file_path: {type: string}}
    - id: '1733304425429'
      data:
        type: end
        title: 结束
        outputs:
        - {variable: file_path, value_selector: ['1733304400929', file_path]}
        - {variable: kind, value_selector: ['1733304372042', File, type]}
        - {variable: extension, value_selector: ['1733304372042', File, extension]}
        - {variable: url, value_selector: ['1733304372042', File, url]}
"""


def test_file_variables_are_objects_with_difys_fields(tmp_path: Path) -> None:
    data = tmp_path / "sales.csv"
    data.write_text("month,total\n1,10\n", encoding="utf-8")
    flow, target = imported(tmp_path, FILE_APP)
    run = flow.run({"File": str(data)})
    assert run.ok, run.error
    assert run.flow_outputs == {"file_path": "sales.csv: 17 bytes", "kind": "document", "extension": ".csv", "url": str(data)}
    round_trips(tmp_path, target)


# -- JSON bodies are JSON (runLLMCode: the sandbox call, its code put into the body as it is) ----------------
JSON_APP = RAW_APP.replace("type: raw-text", "type: json").replace(
    'value: "run {{#1.code#}} as {language: python3}"', """value: '{"code":{{#1.code#}},"language":"python3"}'""")


def test_json_bodies_are_sent_as_json_and_refused_when_they_are_not(tmp_path: Path, serve: Serve) -> None:
    server, seen = sandbox_server(serve)
    flow, target = imported(tmp_path, JSON_APP.replace("URL", server.url))
    good = flow.run({"code": json.dumps("print(1 + 1)")})  # the app expects the code as a JSON string
    assert good.ok, good.error
    assert seen[0].body == {"code": "print(1 + 1)", "language": "python3"}
    assert seen[0].headers["Content-Type"] == "application/json"
    bad = flow.run({"code": "print(1 + 1)"}, raise_on_error=False)  # Dify refuses this body: so does the flow
    assert not bad.ok and len(seen) == 1
    assert "the JSON body is not JSON once its references are filled in" in str(bad.error) and "sandbox_body" in str(bad.error)
    round_trips(tmp_path, target)
    back = yaml.safe_load((tmp_path / "back.yml").read_text(encoding="utf-8"))
    (http,) = [n["data"] for n in back["workflow"]["graph"]["nodes"] if n["data"]["type"] == "http-request"]
    assert http["body"]["type"] == "json" and http["body"]["data"][0]["value"] == '{"code":{{#start.code#}},"language":"python3"}'


# -- a reference inside a JSON string is filled in as that string's text, never as JSON of its own ----------
QUOTED_APP = RAW_APP.replace("type: raw-text", "type: json").replace(
    'value: "run {{#1.code#}} as {language: python3}"', """value: '{"code": "run {{#1.code#}}", "language":"python3"}'""")


def test_a_reference_inside_a_json_string_cannot_add_keys_to_the_body(tmp_path: Path, serve: Serve) -> None:
    server, seen = sandbox_server(serve)
    flow, target = imported(tmp_path, QUOTED_APP.replace("URL", server.url))
    attack = '", "admin": true, "x": "'
    run = flow.run({"code": attack})
    assert run.ok, run.error
    assert seen[0].body == {"code": f"run {attack}", "language": "python3"}  # no "admin" key
    # a reference standing as a whole value must be one JSON value: text that adds keys is refused
    whole, _ = imported(tmp_path, JSON_APP.replace("URL", server.url), name="whole")
    bad = whole.run({"code": '1, "admin": true'}, raise_on_error=False)
    assert not bad.ok and len(seen) == 1 and "one JSON value" in str(bad.error)
    assert whole.run({"code": json.dumps({"a": [1, 2]})}).ok and seen[1].body == {"code": {"a": [1, 2]}, "language": "python3"}
    round_trips(tmp_path, target)
    back = yaml.safe_load((tmp_path / "back.yml").read_text(encoding="utf-8"))
    (http,) = [n["data"] for n in back["workflow"]["graph"]["nodes"] if n["data"]["type"] == "http-request"]
    assert http["body"]["data"][0]["value"] == '{"code": "run {{#start.code#}}", "language":"python3"}'
