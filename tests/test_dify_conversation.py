"""Conversation variables of imported Dify chat apps persist between the runs of one
conversation (the `conversation_id` input), as Dify keeps them between turns: the corpus's
form-login chat (Form表单聊天Demo) logs a user in on one turn and remembers it on the next,
in this process and in the next `jupyter-flow run`; another conversation starts afresh.
The store's place and bounds are those jupyter_flow.dify.conversation documents."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from test_dify import ScriptedChat, Serve, cli, said_by

from jupyter_flow import Flow, export_dify
from jupyter_flow.dify import conversation, write_import
from jupyter_flow.dify.conversation import MAX_ID_CHARS, MAX_STATE_BYTES, STORE_ENV, ConversationError

CORPUS = Path(__file__).resolve().parent / "fixtures" / "dify" / "corpus"
LOGIN = json.dumps({"username": "svcvit", "password": "secret"})


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "state" / "conversations.sqlite"
    monkeypatch.setenv(STORE_ENV, str(path))
    return path


def test_a_chat_app_keeps_its_conversation_variables_between_runs(tmp_path: Path, serve: Serve, store: Path) -> None:
    model = ScriptedChat(serve, lambda body: f"model: {said_by(body, 'user')}")
    result, target = write_import(CORPUS / "Form表单聊天Demo.yml", tmp_path / "form.flow.yaml", base_url=model.base_url)
    assert result.spec.node("conversation").config["function"] == "jupyter_flow.dify.conversation:load"
    assert result.spec.node("assigner").cache is False  # it writes: never answered from the node cache
    assert any("conversation variable 'user_token': kept between the runs of a conversation" in n for n in result.notes)
    flow = Flow.load(target).validate()

    def turn(query: str, conversation_id: str) -> str:
        run = flow.run({"query": query, "conversation_id": conversation_id})
        assert run.ok, run.error
        return "".join(str(v) for v in (run.flow_outputs or {}).values() if v is not None)

    assert "<form" in turn("hello", "c1")  # not logged in: the login form
    assert turn(LOGIN, "c1") == "登录成功，我们聊点什么？"  # the assigner keeps user_token for c1
    assert turn("讲个笑话", "c1") == "model: 讲个笑话"  # logged in: the model answers
    assert "<form" in turn("讲个笑话", "c2")  # another conversation starts afresh
    assert "<form" in flow.run({"query": "讲个笑话"}).flow_outputs["answer"]  # no id: a conversation of its own
    # the next process reads what this one kept
    done = cli("run", str(target), "--input", "query=再来一个", "--input", "conversation_id=c1")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["answer_2"] == "model: 再来一个"
    with sqlite3.connect(store) as db:
        rows = db.execute("SELECT app, conversation, state FROM flow_conversations").fetchall()
    assert rows == [("Form表单聊天Demo", "c1", '{"user_token": "user_token_test"}')]


def test_the_input_starts_a_conversation_and_the_store_wins_after(tmp_path: Path, store: Path) -> None:
    from test_dify_corpus import ASSIGNER_APP  # the counter cut from 记忆测试's assigners

    app = tmp_path / "count.yml"
    app.write_text(ASSIGNER_APP, encoding="utf-8")
    _, target = write_import(app, tmp_path / "count.flow.yaml")
    flow = Flow.load(target).validate()
    assert flow.run({"query": "+1", "conversation_id": "a", "count": 5}).flow_outputs == {"answer": "before 5, after 6"}
    assert flow.run({"query": "+1", "conversation_id": "a", "count": 5}).flow_outputs == {"answer": "before 6, after 7"}
    assert flow.run({"query": "+1", "conversation_id": "b"}).flow_outputs == {"answer": "before 0, after 1"}


def test_the_store_is_bounded(store: Path) -> None:
    with pytest.raises(ConversationError, match=f"at most {MAX_ID_CHARS} are kept"):
        conversation.save("app", "x" * (MAX_ID_CHARS + 1), {"v": 1}, ["v"])
    with pytest.raises(ConversationError, match=f"at most {MAX_STATE_BYTES:,} are kept"):
        conversation.save("app", "big", {"v": "x" * MAX_STATE_BYTES}, ["v"])
    with pytest.raises(ConversationError, match="not JSON values"):
        conversation.save("app", "odd", {"v": {1, 2}}, ["v"])
    for i in range(5):
        conversation.save("app", f"c{i}", {"v": i}, ["v"], max_conversations=3)
    assert [conversation.load("app", f"c{i}", {"v": None})["v"] for i in range(5)] == [None, None, 2, 3, 4]
    # what went past a bound was not kept
    assert conversation.load("app", "big", {"v": 0}) == {"v": 0}


def test_a_store_that_cannot_be_opened_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("", encoding="utf-8")
    monkeypatch.setenv(STORE_ENV, str(blocker / "conversations.sqlite"))
    with pytest.raises(ConversationError, match=f"cannot open the conversation store .*; set {STORE_ENV}"):
        conversation.load("app", "c1", {"v": 0})


def test_a_served_chat_app_keeps_each_conversations_variables(tmp_path: Path, store: Path) -> None:
    import httpx
    from servers import AsgiServer
    from test_dify_corpus import ASSIGNER_APP

    from jupyter_flow.serve.app import flow_app

    app = tmp_path / "count.yml"
    app.write_text(ASSIGNER_APP, encoding="utf-8")
    _, target = write_import(app, tmp_path / "count.flow.yaml")
    with AsgiServer(flow_app(target)) as srv:
        def turn(conversation_id: str) -> str:
            body = httpx.post(f"{srv.url}/run", json={"query": "+1", "conversation_id": conversation_id}, timeout=30).json()
            return str(body["result"]["answer"])

        assert [turn("a"), turn("a"), turn("b"), turn("a")] == ["before 0, after 1", "before 1, after 2", "before 0, after 1",
                                                                "before 2, after 3"]


TURNS_APP = """
app: {mode: advanced-chat, name: 记忆测试}
kind: app
version: 0.1.5
workflow:
  conversation_variables: []
  graph:
    edges:
    - {source: '1726641382209', sourceHandle: source, target: '1726648676648'}
    - {source: '1726648676648', sourceHandle: 'true', target: first}
    - {source: '1726648676648', sourceHandle: 'false', target: '1726649035816'}
    - {source: '1726649035816', sourceHandle: source, target: later}
    nodes:
    - {id: '1726641382209', data: {type: start, title: 开始, variables: []}}
    - id: '1726648676648'
      data:
        type: if-else
        title: 会话轮数
        cases:
        - case_id: 'true'
          logical_operator: and
          conditions: [{comparison_operator: '=', value: '1', varType: number, variable_selector: [sys, dialogue_count]}]
    - {id: first, data: {type: answer, title: 直接回复, answer: 初次见面}}
    - id: '1726649035816'
      data:
        type: code
        title: 是否需要更新记忆
        code: "\\ndef main(count):\\n    if count%3==0:\\n        return {\\n            \\"result\\": 1,\\n        }\\n    else:\\n        return {\\n            \\"result\\": 0,\\n        }\\n"
        variables: [{value_selector: [sys, dialogue_count], variable: count}]
        outputs: {result: {children: null, type: number}}
    - {id: later, data: {type: answer, title: 直接回复 2, answer: '第{{#sys.dialogue_count#}}轮：{{#1726649035816.result#}}'}}
"""


def test_sys_dialogue_count_counts_the_turns_of_a_conversation(tmp_path: Path, store: Path) -> None:
    app = tmp_path / "turns.yml"
    app.write_text(TURNS_APP, encoding="utf-8")
    result, target = write_import(app, tmp_path / "turns.flow.yaml")
    assert result.spec.node("conversation").config["input_mapping"]["turns"] == "{{ inputs.dialogue_count }}"
    flow = Flow.load(target).validate()

    def turn(conversation_id: str | None) -> str:
        run = flow.run({"query": "你好", **({"conversation_id": conversation_id} if conversation_id else {})})
        assert run.ok, run.error
        return "".join(v for v in (run.flow_outputs or {}).values() if v)

    assert [turn("u1"), turn("u1"), turn("u1"), turn("u2"), turn(None)] == ["初次见面", "第2轮：0", "第3轮：1", "初次见面", "初次见面"]
    assert flow.run({"query": "你好", "dialogue_count": 6}).flow_outputs == {"first": None, "later": "第6轮：1"}
    # back to Dify: the count is sys.dialogue_count again
    text = export_dify(flow, tmp_path / "back.yml")
    assert "sys.dialogue_count" in text and "conversation.dialogue_count" not in text


def test_the_store_is_opened_as_the_other_stores_are_in_wal_mode(store: Path) -> None:
    # readers do not wait for a writer: a served chat app's turns read while another turn writes
    conversation.save("app", "c1", {"v": 1}, ["v"])
    with sqlite3.connect(store) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def counter(tmp_path: Path, folder: str) -> Flow:
    from test_dify_corpus import ASSIGNER_APP  # the counter cut from 记忆测试's assigners

    (tmp_path / folder).mkdir()
    app = tmp_path / folder / "count.yml"
    app.write_text(ASSIGNER_APP, encoding="utf-8")
    _, target = write_import(app, tmp_path / folder / "count.flow.yaml")
    return Flow.load(target).validate()


def test_conversations_are_kept_per_flow_file_and_one_flows_clients_cannot_evict_anothers(
        tmp_path: Path, store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # the same app imported twice: same name, two flow files, two sets of conversations
    served, other = counter(tmp_path, "served"), counter(tmp_path, "other")
    assert other.run({"query": "+1", "conversation_id": "real", "count": 5}).flow_outputs == {"answer": "before 5, after 6"}
    assert served.run({"query": "+1", "conversation_id": "real"}).flow_outputs == {"answer": "before 0, after 1"}
    monkeypatch.setenv(conversation.MAX_CONVERSATIONS_ENV, "3")
    for i in range(5):  # a client of the served flow makes up ids
        served.run({"query": "+1", "conversation_id": f"made-up-{i}"})
    assert other.run({"query": "+1", "conversation_id": "real"}).flow_outputs == {"answer": "before 6, after 7"}
    assert served.run({"query": "+1", "conversation_id": "real"}).flow_outputs == {"answer": "before 0, after 1"}  # evicted
    with sqlite3.connect(store) as db:
        per_flow = db.execute("SELECT COUNT(*) FROM flow_conversations GROUP BY flow ORDER BY 1").fetchall()
    assert per_flow == [(1,), (3,)]
    monkeypatch.setenv(conversation.MAX_CONVERSATIONS_ENV, "lots")
    with pytest.raises(ConversationError, match=f"{conversation.MAX_CONVERSATIONS_ENV}='lots'"):
        conversation.save("app", "c1", {"v": 1}, ["v"])
