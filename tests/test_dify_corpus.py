"""Real Dify apps (tests/fixtures/dify/corpus: 45 apps their authors published, MIT) import
whole and behave as in Dify.

Every app of the corpus imports without a crash, nearly all without `--partial`, and most
validate (the rest wait only for tool bindings). Each Dify behaviour the importer keeps is
checked on a small app cut from a corpus app, run against loopback services: a scripted
OpenAI-compatible chat server and HTTP endpoints. The four apps the corpus README names
run end to end with their outputs checked."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from servers import Reply, Request
from test_dify import ScriptedChat, Serve, said_by

from jupyter_flow import Flow, FlowValidationError, import_dify
from jupyter_flow.dify import write_import

CORPUS = Path(__file__).resolve().parent / "fixtures" / "dify" / "corpus"
APPS = sorted(CORPUS.glob("*.yml"))


def app_file(tmp_path: Path, text: str, name: str = "app.yml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def corpus_app(tmp_path: Path, name: str, replace: dict[str, str] | None = None) -> Path:
    """A corpus app copied into `tmp_path`, with the addresses it calls replaced."""
    text = (CORPUS / name).read_text(encoding="utf-8")
    for old, new in (replace or {}).items():
        text = text.replace(old, new)
    return app_file(tmp_path, text, "app.yml")


# -- the whole corpus -------------------------------------------------------------------------
def _outcome(app: Path, folder: Path) -> tuple[str, list[str]]:
    """How the app imports: `valid`, `imported` (with the problems validate names) or `partial`."""
    try:
        _, target = write_import(app, folder / "app.flow.yaml")
    except FlowValidationError:
        write_import(app, folder / "partial.flow.yaml", partial=True)  # never raises
        return "partial", []
    try:
        Flow.load(target).validate()
    except FlowValidationError as exc:
        return "imported", [p.message for p in exc.problems]
    return "valid", []


def test_every_corpus_app_imports_whole_and_most_validate(tmp_path: Path) -> None:
    assert len(APPS) == 45
    outcomes = {}
    for i, app in enumerate(APPS):
        folder = tmp_path / str(i)
        folder.mkdir()
        outcomes[app.name] = _outcome(app, folder)
    whole = [name for name, (how, _) in outcomes.items() if how != "partial"]
    valid = [name for name, (how, _) in outcomes.items() if how == "valid"]
    # measured: 45 of 45 import without --partial, 33 of 45 validate
    assert len(whole) >= 41, f"{len(whole)} of 45 import whole"
    assert len(valid) >= 33, f"{len(valid)} of 45 validate"
    # what keeps the others from validating is only a Dify tool that needs a binding
    for name, (how, problems) in outcomes.items():
        if how == "imported":
            assert problems and all("stands for a tool of an imported Dify app" in p for p in problems), (name, problems)


def test_sticky_notes_become_comments_and_no_node_is_left_without_an_id(tmp_path: Path) -> None:
    # eight corpus apps crashed the importer on their notes (a node whose type is empty)
    result, target = write_import(CORPUS / "Claude3 Code Translation.yml", tmp_path / "code.flow.yaml")
    text = target.read_text(encoding="utf-8")
    assert "# Note on the Dify canvas:\n#   示例参数：需要翻译的代码文件内容" in text
    assert len(result.sticky_notes) == 3
    assert all(n.id for n in Flow.load(target).spec.nodes)
    assert "note '1720587427200' -> a comment in the flow file" in result.report()


# -- Dify's text: literal apart from its references -------------------------------------------
TEXT_APP = """
app: {mode: advanced-chat, name: Couplets chat}
kind: app
version: 0.1.5
workflow:
  graph:
    edges:
    - {source: '1737014287710', sourceHandle: source, target: '1737014565681'}
    - {source: '1737014565681', sourceHandle: source, target: '1737014291474'}
    - {source: '1737014291474', sourceHandle: source, target: answer}
    nodes:
    - id: '1737014287710'
      data:
        type: start
        title: 开始
        variables:
        - {variable: theme, label: 主题, type: text-input, required: true}
        - {variable: mood, label: 心情, type: text-input, required: false}
    - id: '1737014565681'
      data:
        type: code
        title: Facts
        code_language: python3
        code: |
          def main(theme: str) -> dict:
              return {"meta": {"theme": theme, "年": 2025}, "lines": ["上联", "下联"]}
        variables: [{variable: theme, value_selector: ['1737014287710', theme]}]
        outputs: {meta: {type: object}, lines: {type: 'array[string]'}}
    - id: '1737014291474'
      data:
        type: llm
        title: LLM
        model: {name: qwen-max, provider: tongyi, mode: chat, completion_params: {temperature: 0.7}}
        context: {enabled: false, variable_selector: []}
        memory:
          window: {enabled: false, size: 10}
          query_prompt_template: '{{#sys.query#}} (conversation {{#sys.conversation_id#}})'
        prompt_template:
        - role: system
          text: |-
            主题：{{#1737014287710.theme#}} 心情：[{{#1737014287710.mood#}}]
            以JSON格式返回：{"top": "...", "bottom": "..."}
            Keep {{topic}} and {% raw %} and {#x#} as they are.
            meta: {{#1737014565681.meta#}} lines: {{#1737014565681.lines#}}
    - id: answer
      data: {type: answer, title: 直接回复, answer: '{{#1737014291474.text#}}'}
"""


def test_prompts_are_text_apart_from_references_and_values_print_as_dify_prints_them(tmp_path: Path, serve: Serve) -> None:
    model = ScriptedChat(serve, lambda body: "ok")
    flow = import_dify(app_file(tmp_path, TEXT_APP), tmp_path / "text.flow.yaml", base_url=model.base_url)
    # sys.query and sys.conversation_id are inputs of the flow; the optional ones may be left out
    assert {"query", "conversation_id", "theme", "mood"} <= set(flow.spec.inputs)
    result = flow.run({"theme": "春", "query": "写一副春联"})
    assert result.ok, result.error
    (body,) = model.requests
    assert said_by(body, "system") == (
        "主题：春 心情：[]\n"  # a missing optional input is empty text
        '以JSON格式返回：{"top": "...", "bottom": "..."}\n'
        "Keep {{topic}} and {% raw %} and {#x#} as they are.\n"  # never read as a template
        'meta: {"theme": "春", "年": 2025} lines: ["上联", "下联"]')  # objects and lists as JSON
    # chat memory's query is the user's message when the prompt has none
    assert said_by(body, "user") == "写一副春联 (conversation )"
    assert result.flow_outputs == {"answer": "ok"}


ANSWERS_APP = """
app: {mode: advanced-chat, name: Greeter}
kind: app
version: 0.1.5
workflow:
  graph:
    edges:
    - {source: '1711', sourceHandle: source, target: '1712'}
    - {source: '1712', sourceHandle: 'true', target: answer}
    - {source: answer, sourceHandle: source, target: '1714'}
    - {source: '1714', sourceHandle: source, target: '1715'}
    - {source: '1712', sourceHandle: 'false', target: '1716'}
    nodes:
    - {id: '1711', data: {type: start, title: 开始, variables: []}}
    - id: '1712'
      data:
        type: if-else
        title: 条件分支
        cases:
        - case_id: 'true'
          logical_operator: and
          conditions: [{comparison_operator: contains, value: hi, varType: string, variable_selector: [sys, query]}]
    - {id: answer, data: {type: answer, title: 直接回复, answer: 'Hello {{#sys.query#}}'}}
    - id: '1714'
      data:
        type: llm
        title: LLM
        model: {name: m, provider: openai, mode: chat}
        context: {enabled: false}
        prompt_template: [{role: user, text: '{{#sys.query#}}'}]
    - {id: '1715', data: {type: answer, title: 直接回复 2, answer: '{{#1714.text#}}'}}
    - {id: '1716', data: {type: answer, title: 直接回复 3, answer: Bye}}
"""


def test_answer_nodes_are_kept_one_by_one_as_declared_outputs(tmp_path: Path, serve: Serve) -> None:
    model = ScriptedChat(serve, lambda body: f"model on {said_by(body, 'user')}")
    flow = import_dify(app_file(tmp_path, ANSWERS_APP), tmp_path / "greet.flow.yaml", base_url=model.base_url)
    hi = flow.run({"query": "hi there"})
    assert hi.ok, hi.error
    assert hi.flow_outputs == {"answer": "Hello hi there", "answer_2": "model on hi there", "answer_3": None}
    bye = flow.run({"query": "see you"})
    assert bye.flow_outputs == {"answer": None, "answer_2": None, "answer_3": "Bye"}


OPERATORS_APP = """
app: {mode: workflow, name: Operators}
kind: app
version: 0.1.5
workflow:
  graph:
    edges:
    - {source: '1', sourceHandle: source, target: '2'}
    - {source: '2', sourceHandle: source, target: '3'}
    nodes:
    - {id: '1', data: {type: start, title: Start, variables: [{variable: word, label: Word, type: text-input, required: true}]}}
    - id: '2'
      data:
        type: code
        title: Facts
        code: |
          def main(word: str) -> dict:
              return {"tags": ["news", "tech"], "nothing": None, "word": word}
        variables: [{variable: word, value_selector: ['1', word]}]
        outputs: {tags: {type: 'array[string]'}, nothing: {type: string}, word: {type: string}}
    - id: '3'
      data:
        type: if-else
        title: Checks
        cases:
        - {case_id: exists, conditions: [{comparison_operator: exists, variable_selector: ['2', word]}]}
        - {case_id: not_exists, conditions: [{comparison_operator: not exists, variable_selector: ['2', nothing]}]}
        - {case_id: in, conditions: [{comparison_operator: in, value: [red, blue], variable_selector: ['2', word]}]}
        - {case_id: not_in, conditions: [{comparison_operator: not in, value: [red, blue], variable_selector: ['2', word]}]}
        - {case_id: all_of, conditions: [{comparison_operator: all of, value: [news, tech], variable_selector: ['2', tags]}]}
        - {case_id: empty, conditions: [{comparison_operator: empty, variable_selector: ['2', nothing]}]}
        - {case_id: contains_none, conditions: [{comparison_operator: contains, value: x, variable_selector: ['2', nothing]}]}
"""


def test_if_else_operators_answer_as_in_dify(tmp_path: Path) -> None:
    flow = import_dify(app_file(tmp_path, OPERATORS_APP), tmp_path / "ops.flow.yaml")
    red = flow.run({"word": "red"})
    assert red.ok, red.error
    assert red.outputs["checks"]["matched"] == ["exists", "not_exists", "in", "all_of", "empty"]
    green = flow.run({"word": "green"})
    assert green.outputs["checks"]["matched"] == ["exists", "not_exists", "not_in", "all_of", "empty"]


# -- tools and agents ------------------------------------------------------------------------------
TOOLS_APP = """
app: {mode: workflow, name: Tools}
kind: app
version: 0.1.5
workflow:
  graph:
    edges:
    - {source: '1', sourceHandle: source, target: '1726715181866'}
    - {source: '1', sourceHandle: source, target: '1727437724068'}
    nodes:
    - {id: '1', data: {type: start, title: Start, variables: [{variable: url, label: URL, type: text-input, required: true}]}}
    - id: '1726715181866'
      data:
        type: tool
        title: 获取当前时间
        provider_id: time
        provider_name: time
        provider_type: builtin
        tool_name: current_time
        tool_configurations: {format: '%Y-%m-%d', timezone: Asia/Shanghai}
        tool_parameters: {}
    - id: '1727437724068'
      data:
        type: tool
        title: 网页爬虫
        provider_id: webscraper
        provider_type: builtin
        tool_name: webscraper
        tool_configurations: {generate_summary: null, user_agent: Mozilla/5.0}
        tool_parameters: {url: {type: mixed, value: '{{#1.url#}}'}}
"""


def test_dify_tools_with_a_built_in_match_run_as_tool_nodes(tmp_path: Path, serve: Serve) -> None:
    page = serve({"/page": lambda req: Reply(200, "<html><body><h1>Spring</h1><p>Couplets on doors.</p></body></html>",
                                             content_type="text/html")})
    result, target = write_import(app_file(tmp_path, TOOLS_APP), tmp_path / "tools.flow.yaml")
    flow = Flow.load(target).validate()
    assert flow.spec.node("tool").config == {"tool": "time/current_time", "arguments": {"format": "%Y-%m-%d", "timezone": "Asia/Shanghai"}}
    assert flow.spec.node("tool_2").config["tool"] == "web/page_text"
    assert any("webscraper/webscraper is web/page_text" in line for line in result.approximated)
    run = flow.run({"url": f"{page.url}/page"})
    assert run.ok, run.error
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", run.outputs["tool"]["result"])
    assert "Spring" in run.outputs["tool_2"]["result"] and "Couplets on doors." in run.outputs["tool_2"]["result"]


AGENT_APP = """
app: {mode: advanced-chat, name: Agent}
kind: app
version: 0.1.5
workflow:
  graph:
    edges:
    - {source: '1', sourceHandle: source, target: '1739781971571'}
    - {source: '1739781971571', sourceHandle: source, target: answer}
    nodes:
    - {id: '1', data: {type: start, title: 开始, variables: []}}
    - id: '1739781971571'
      data:
        type: agent
        title: Agent
        agent_strategy_name: function_calling
        agent_strategy_provider_name: langgenius/agent/agent
        agent_parameters:
          instruction: {type: constant, value: 根据用户的需求，调用不同工具，回复用的内容。}
          model: {type: constant, value: {model: gpt-4o-mini, provider: langgenius/openai/openai, mode: chat, completion_params: {}}}
          query: {type: constant, value: '{{#sys.query#}}'}
          maximum_iterations: {type: constant, value: 4}
          tools:
            type: constant
            value:
            - {enabled: true, provider_name: time, tool_name: current_time, type: builtin, parameters: {}, settings: {}}
            - {enabled: false, provider_name: langgenius/openweather/openweather, tool_name: weather, type: builtin}
    - {id: answer, data: {type: answer, title: 直接回复, answer: '{{#1739781971571.text#}}'}}
"""


def test_an_agent_calls_its_bound_tools_in_a_loop(tmp_path: Path, serve: Serve) -> None:
    def script(body: dict[str, Any]) -> Any:
        done = [m for m in body["messages"] if m["role"] == "tool"]
        if not done:
            return {"tool_calls": [{"id": "c1", "type": "function", "function": {"name": "time_current_time", "arguments": "{}"}}]}
        return f"It is {done[0]['content']}"

    model = ScriptedChat(serve, script)
    flow = import_dify(app_file(tmp_path, AGENT_APP), tmp_path / "agent.flow.yaml", base_url=model.base_url)
    agent = flow.spec.node("agent")
    assert agent.type == "agent" and agent.config["tools"] == ["time/current_time"] and agent.config["max_steps"] == 4
    flow.validate()
    result = flow.run({"query": "现在几点？"})
    assert result.ok, result.error
    assert result.flow_outputs is not None and result.flow_outputs["answer"].startswith("It is 20")
    first = model.requests[0]
    assert said_by(first, "system") == "根据用户的需求，调用不同工具，回复用的内容。" and said_by(first, "user") == "现在几点？"
    assert [t["function"]["name"] for t in first["tools"]] == ["time_current_time"]


def test_an_mcp_agent_keeps_its_servers_and_other_strategies_are_approximated(tmp_path: Path) -> None:
    data = yaml.safe_load(AGENT_APP)
    params = data["workflow"]["graph"]["nodes"][1]["data"]["agent_parameters"]
    params["mcp_server"] = {"type": "constant", "value": "https://router.mcp.so/sse/*********"}  # as MCP.yml has it
    result, _ = write_import(app_file(tmp_path, yaml.safe_dump(data, allow_unicode=True)), tmp_path / "mcp.flow.yaml")
    agent = result.spec.node("agent")
    assert agent.config["mcp_servers"] == [{"url": "${AGENT_MCP_URL}", "name": "mcp"}]
    assert "AGENT_MCP_URL" in result.keys  # the app's address had its key taken out: the report asks for it
    tod = yaml.safe_load((CORPUS / "Demo-tod_agent.yml").read_text(encoding="utf-8"))
    result, _ = write_import(app_file(tmp_path, yaml.safe_dump(tod, allow_unicode=True), "tod.yml"), tmp_path / "tod.flow.yaml")
    assert result.spec.node("agent").type == "llm"
    assert any("agent strategy 'TOD'" in line for line in result.approximated)


# -- models that decide and extract ------------------------------------------------------------
CLASSIFIER_APP = """
app: {mode: workflow, name: Intent}
kind: app
version: 0.1.5
workflow:
  graph:
    edges:
    - {source: '1714456604511', sourceHandle: source, target: '1718246909580'}
    - {source: '1718246909580', sourceHandle: '1715846546749', target: '1718246916748'}
    - {source: '1718246909580', sourceHandle: '1715846565625', target: '1718246959048'}
    - {source: '1718246916748', sourceHandle: source, target: '1718852940536'}
    - {source: '1718246959048', sourceHandle: source, target: '1718852940536'}
    - {source: '1718852940536', sourceHandle: source, target: '1719901804452'}
    nodes:
    - {id: '1714456604511', data: {type: start, title: 开始, variables: [{variable: text, label: 文本, type: paragraph, required: true}]}}
    - id: '1718246909580'
      data:
        type: question-classifier
        title: 问题分类器
        classes: [{id: '1715846546749', name: 健康咨询}, {id: '1715846565625', name: 使用帮助}]
        instruction: 与App，运动腕带相关，都属于 **使用帮助** 这个类别
        model: {name: deepseek-chat, provider: deepseek, mode: chat, completion_params: {temperature: 0.1}}
        query_variable_selector: ['1714456604511', text]
    - id: '1718246916748'
      data: {type: template-transform, title: 健康, template: 'health: {{ q }}', variables: [{variable: q, value_selector: ['1714456604511', text]}]}
    - id: '1718246959048'
      data: {type: template-transform, title: 帮助, template: 'help: {{ q }}', variables: [{variable: q, value_selector: ['1714456604511', text]}]}
    - id: '1718852940536'
      data: {type: variable-aggregator, title: 变量聚合器, output_type: string, variables: [['1718246916748', output], ['1718246959048', output]]}
    - id: '1719901804452'
      data: {type: end, title: 结束, outputs: [{variable: reply, value_selector: ['1718852940536', output]}, {variable: class, value_selector: ['1718246909580', class_name]}]}
"""


def test_a_question_classifier_asks_for_json_and_follows_the_class(tmp_path: Path, serve: Serve) -> None:
    model = ScriptedChat(serve, lambda body: '{"class_name": "使用帮助"}' if "腕带" in said_by(body, "user") else "I think 健康咨询.")
    flow = import_dify(app_file(tmp_path, CLASSIFIER_APP), tmp_path / "intent.flow.yaml", base_url=model.base_url)
    flow.validate()
    result = flow.run({"text": "腕带怎么连接？"})
    assert result.ok, result.error
    assert result.flow_outputs == {"reply": "help: 腕带怎么连接？", "class": "使用帮助"}
    assert result["template_transform"].status == "skipped"  # the other class's branch
    schema = model.requests[0]["response_format"]["json_schema"]["schema"]
    assert schema["properties"]["class_name"]["enum"] == ["健康咨询", "使用帮助"]
    assert "**使用帮助**" in said_by(model.requests[0], "system")
    # an answer that is not JSON: the class named in it, as Dify reads it
    other = flow.run({"text": "我睡不好"})
    assert other.flow_outputs == {"reply": "health: 我睡不好", "class": "健康咨询"}


EXTRACTOR_APP = """
app: {mode: workflow, name: Cards}
kind: app
version: 0.1.5
workflow:
  graph:
    edges:
    - {source: '1', sourceHandle: source, target: '1721731782529'}
    nodes:
    - {id: '1', data: {type: start, title: Start, variables: [{variable: text, label: Text, type: paragraph, required: true}]}}
    - id: '1721731782529'
      data:
        type: parameter-extractor
        title: 参数提取器
        model: {name: gpt-4o, provider: openai, mode: chat, completion_params: {temperature: 0.7}}
        query: ['1', text]
        reasoning_mode: prompt
        instruction: 提取卡片内容
        parameters:
        - {name: title, type: string, description: 标题, required: true}
        - {name: count, type: number, description: 数量, required: true}
        - {name: tags, type: 'array[string]', description: 标签, required: false}
"""


def test_a_parameter_extractor_reads_the_json_the_model_answers(tmp_path: Path, serve: Serve) -> None:
    answers = iter(['Here you go:\n```json\n{"title": "春联", "count": "3"}\n```', "no idea"])
    model = ScriptedChat(serve, lambda body: next(answers))
    flow = import_dify(app_file(tmp_path, EXTRACTOR_APP), tmp_path / "cards.flow.yaml", base_url=model.base_url)
    flow.validate()
    good = flow.run({"text": "三副春联"})
    assert good.ok, good.error
    assert good.outputs["parameter_extractor"] == {"title": "春联", "count": 3, "tags": [], "__is_success": 1, "__reason": None}
    schema = model.requests[0]["response_format"]["json_schema"]["schema"]
    assert schema["required"] == ["title", "count"] and schema["properties"]["tags"]["type"] == "array"
    bad = flow.run({"text": "?"})
    assert bad.outputs["parameter_extractor"]["__is_success"] == 0
    assert bad.outputs["parameter_extractor"]["title"] == "" and bad.outputs["parameter_extractor"]["count"] == 0


# -- data: documents, lists, conversation variables, iterations ----------------------------------
FILES_APP = """
app: {mode: advanced-chat, name: Files}
kind: app
version: 0.1.5
workflow:
  graph:
    edges:
    - {source: '1', sourceHandle: source, target: '1729777763543'}
    - {source: '1729777763543', sourceHandle: source, target: '1729777092216'}
    - {source: '1729777092216', sourceHandle: source, target: answer}
    nodes:
    - {id: '1', data: {type: start, title: 开始, variables: []}}
    - id: '1729777763543'
      data:
        type: list-operator
        title: Doc
        variable: [sys, files]
        var_type: 'array[file]'
        item_var_type: file
        filter_by: {enabled: true, conditions: [{comparison_operator: in, key: type, value: [document]}]}
        limit: {enabled: true, size: 2}
        order_by: {enabled: false, key: '', value: asc}
    - id: '1729777092216'
      data: {type: document-extractor, title: 文档提取器, is_array_file: false, variable_selector: ['1729777763543', first_record]}
    - {id: answer, data: {type: answer, title: 直接回复, answer: '{{#1729777092216.text#}}'}}
"""


def test_a_list_operator_picks_the_documents_and_the_pdf_is_read(tmp_path: Path) -> None:
    import pymupdf

    pdf = tmp_path / "report.pdf"
    doc = pymupdf.open()
    doc.new_page().insert_text((72, 72), "Quarterly results are up.")
    doc.save(pdf)
    doc.close()
    (tmp_path / "photo.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    result, target = write_import(app_file(tmp_path, FILES_APP), tmp_path / "files.flow.yaml")
    assert any("read as PDFs" in line for line in result.approximated)
    flow = Flow.load(target).validate()
    run = flow.run({"query": "summarise", "files": [str(tmp_path / "photo.png"), str(pdf)]})
    assert run.ok, run.error
    assert run.outputs["doc"]["result"] == [str(pdf)]
    assert run.flow_outputs is not None and "Quarterly results are up." in run.flow_outputs["answer"]


ASSIGNER_APP = """
app: {mode: advanced-chat, name: Counter}
kind: app
version: 0.1.5
workflow:
  conversation_variables:
  - {id: a1, name: count, value: 0, value_type: number, description: ''}
  graph:
    edges:
    - {source: '1', sourceHandle: source, target: '2'}
    - {source: '2', sourceHandle: source, target: '3'}
    - {source: '3', sourceHandle: source, target: answer}
    nodes:
    - {id: '1', data: {type: start, title: 开始, variables: []}}
    - {id: '2', data: {type: template-transform, title: Before, template: 'before {{ c }}', variables: [{variable: c, value_selector: [conversation, count]}]}}
    - id: '3'
      data:
        type: assigner
        title: 变量赋值
        version: '2'
        items: [{variable_selector: [conversation, count], operation: +=, input_type: constant, value: 1}]
    - {id: answer, data: {type: answer, title: 直接回复, answer: '{{#2.output#}}, after {{#conversation.count#}}'}}
"""


def test_conversation_variables_are_inputs_and_nodes_after_an_assigner_read_its_value(tmp_path: Path) -> None:
    result, target = write_import(app_file(tmp_path, ASSIGNER_APP), tmp_path / "count.flow.yaml")
    assert result.spec.inputs["count"].default == 0
    assert any("conversation variable 'count'" in line for line in result.notes)
    flow = Flow.load(target).validate()
    assert flow.run({"query": "+1"}).flow_outputs == {"answer": "before 0, after 1"}
    assert flow.run({"query": "+1", "count": 5}).flow_outputs == {"answer": "before 5, after 6"}


ITERATION_APP = """
app: {mode: workflow, name: 全书翻译}
kind: app
version: 0.1.5
workflow:
  graph:
    edges:
    - {source: '1711067409646', sourceHandle: source, target: '1717916867969'}
    - {source: '1717916867969', sourceHandle: source, target: '1717916955547'}
    - {source: 1717916955547start0, sourceHandle: source, target: '1717916961837', data: {isInIteration: true}}
    - {source: '1717916955547', sourceHandle: source, target: '1717917057450'}
    - {source: '1717917057450', sourceHandle: source, target: '1711068257370'}
    nodes:
    - {id: '1711067409646', data: {type: start, title: 开始, variables: [{variable: input_text, label: 输入文本, type: paragraph, required: true}]}}
    - id: '1717916867969'
      data:
        type: code
        title: 分块
        code: |
          def main(input_text: str) -> dict:
              return {"chunks": input_text.split("|")}
        variables: [{variable: input_text, value_selector: ['1711067409646', input_text]}]
        outputs: {chunks: {type: 'array[string]'}}
    - id: '1717916955547'
      data: {type: iteration, title: 迭代, iterator_selector: ['1717916867969', chunks], output_selector: ['1717916961837', text],
             output_type: 'array[string]', start_node_id: 1717916955547start0}
    - {id: 1717916955547start0, parentId: '1717916955547', type: custom-iteration-start, data: {type: iteration-start, isInIteration: true, title: ''}}
    - id: '1717916961837'
      parentId: '1717916955547'
      data:
        type: llm
        title: 直接翻译
        isInIteration: true
        iteration_id: '1717916955547'
        model: {name: gpt-4o, provider: openai, mode: chat}
        context: {enabled: false}
        prompt_template:
        - {role: system, text: "翻译 {{#1717916955547.item#}} ({{#1717916955547.index#}}) of {{#1711067409646.input_text#}}"}
    - {id: '1717917057450', data: {type: template-transform, title: 模板, template: "{{ t | join(' ') }}", variables: [{variable: t, value_selector: ['1717916955547', output]}]}}
    - {id: '1711068257370', data: {type: end, title: 结束, outputs: [{variable: final, value_selector: ['1717917057450', output]}]}}
"""


def test_an_iteration_runs_its_inside_once_per_item(tmp_path: Path, serve: Serve) -> None:
    model = ScriptedChat(serve, lambda body: said_by(body, "system").split(" of ")[0].replace("翻译 ", "T:"))
    result, target = write_import(app_file(tmp_path, ITERATION_APP), tmp_path / "book.flow.yaml", base_url=model.base_url)
    loop = result.spec.node("iteration")
    assert loop.type == "map" and loop.config["flow"] == "book_iteration.flow.yaml"
    assert loop.config["inputs"] == {"input_text": "{{ inputs.input_text }}"}  # what the inside reads of the outside
    assert (tmp_path / "book_iteration.flow.yaml").is_file()
    flow = Flow.load(target).validate()
    run = flow.run({"input_text": "one|two|three"})
    assert run.ok, run.error
    assert run.flow_outputs == {"final": "T:one (0) T:two (1) T:three (2)"}
    assert said_by(model.requests[0], "system").endswith("of one|two|three")


# -- the four apps the corpus README names, end to end ---------------------------------------------------
def test_translation_workflow_runs_each_branch(tmp_path: Path, serve: Serve) -> None:
    def script(body: dict[str, Any]) -> str:
        system = said_by(body, "system")
        step = ("translation" if "specializing in translation from" in system else "edit" if "translation editing" in system
                else "suggest")
        return f"<{step}>"

    model = ScriptedChat(serve, script)
    flow = import_dify(corpus_app(tmp_path, "translation_workflow.yml"), tmp_path / "translate.flow.yaml", base_url=model.base_url)
    flow.validate()
    inputs = {"source_lang": "English", "target_lang": "Chinese", "source_text": "Spring is here."}
    result = flow.run(inputs)
    assert result.ok, result.error
    assert result.flow_outputs == {"output": "<edit>"}
    assert result["expert_suggestions"].status == "ok" and result["expert_suggestions_with_country"].status == "skipped"
    last = said_by(model.requests[-1], "user")
    assert "Spring is here." in last and "<translation>" in last and "<suggest>" in last  # each step's answer reached the next
    with_country = flow.run({**inputs, "country": "Taiwan"})
    assert with_country["expert_suggestions"].status == "skipped" and with_country["expert_suggestions_with_country"].status == "ok"
    assert "Taiwan" in said_by(model.requests[-2], "user") + said_by(model.requests[-2], "system")


def test_chart_demo_fetches_the_data_and_answers_a_chart(tmp_path: Path, serve: Serve) -> None:
    seen: list[Request] = []

    def climate(req: Request) -> Reply:
        seen.append(req)
        months = [{"month": m, "maxTemp": 10 + m, "minTemp": m, "rainfall": 50 + m} for m in (1, 2)]
        return Reply(200, {"code": 0, "data": {"beginYear": 1991, "endYear": 2020, "data": months}})

    server = serve({"/api/climate": climate})
    app = corpus_app(tmp_path, "chart_demo.yml", {"https://weather.cma.cn": server.url})
    flow = import_dify(app, tmp_path / "chart.flow.yaml")
    flow.validate()
    result = flow.run({"query": "北京的天气"})
    assert result.ok, result.error
    assert seen[0].method == "GET" and seen[0].path == "/api/climate?stationid=58367"
    answer = result.flow_outputs["answer"] if result.flow_outputs else ""
    assert answer.startswith("```echarts\n") and answer.endswith("\n```")
    chart = json.loads(answer.removeprefix("```echarts\n").removesuffix("\n```"))
    assert chart["xAxis"]["data"] == ["1月", "2月"] and chart["series"][2]["data"] == [51, 52]
    assert chart["title"]["subtext"] == "1991年-2020年月平均气温和降水"


COUPLET = '好的，这是春联：{"top": "春回大地千山秀", "bottom": "日照神州万里明", "banner": "国泰民安", "summary": "春"} 祝您新年快乐'


@pytest.mark.parametrize(("app", "inputs", "summary"), [
    ("春联生成器.yml", {"theme": "春天", "count": "七言"}, None),
    ("春联生成器 (“福”到了版本).yml", {"theme": "春天", "count": "七言", "enabled_summary": "开启"}, "春"),
    ("春联生成器 (“福”到了版本).yml", {"theme": "春天", "count": "七言"}, "福"),
])
def test_spring_couplets_are_parsed_from_the_models_json_into_the_page(tmp_path: Path, serve: Serve, app: str, inputs: dict[str, str],
                                                                       summary: str | None) -> None:
    model = ScriptedChat(serve, lambda body: COUPLET)
    flow = import_dify(corpus_app(tmp_path, app), tmp_path / "couplet.flow.yaml", base_url=model.base_url)
    flow.validate()
    result = flow.run(inputs)
    assert result.ok, result.error
    page = result.flow_outputs["output"] if result.flow_outputs else ""
    assert "安民泰国" in page and "春回大地千山秀" in page and "日照神州万里明" in page  # the banner reversed, as the app writes it
    if summary is not None:
        assert f">{summary}</span>" in page
    system = said_by(model.requests[0], "system")
    assert "主题：春天\n上下联字数：七言" in system and '{\n "top": (上联' in system  # the prompt's JSON example stays text
