"""The `llm` node against a real OpenAI-compatible server (`transformers serve` with a
tiny GPT-2 made for the session), and against loopback servers that fail or stall."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from openai_server import OpenAIServer
from servers import Reply, Request

from jupyter_flow import Flow, FlowRunError, FlowValidationError, RunResult


def failed(flow: Flow, inputs: dict[str, Any]) -> RunResult:
    with pytest.raises(FlowRunError) as info:
        flow.run(inputs)
    assert info.value.result is not None
    return info.value.result


def llm_flow(base_url: str, model: str, **config: Any) -> Flow:
    extra = config.pop("_node", {})
    node = {"id": "ask", "type": "llm",
            "config": {"base_url": base_url, "model": model, "max_tokens": 6, "temperature": 0,
                       "messages": [{"role": "system", "content": "You answer in one word."},
                                    {"role": "user", "content": "{{ question }}"}], **config}}
    node.update(extra)
    return Flow.from_dict({"inputs": {"question": {"type": "text"}}, "outputs": {"answer": "{{ ask.output.text }}"},
                           "nodes": [node]})


def test_streaming_answer_has_text_usage_and_time_to_first_token(openai_server: OpenAIServer) -> None:
    result = llm_flow(openai_server.base_url, openai_server.model).run({"question": "hi?"})
    assert result.ok, result.error
    out = result.outputs["ask"]
    assert isinstance(out["text"], str) and out["text"]
    assert out["finish_reason"] == "length"
    assert out["usage"]["completion_tokens"] == 6
    extra = result["ask"].extra
    assert extra["stream"] is True and extra["ttft_s"] > 0
    assert "partial_text" not in extra  # the whole text is the output once the answer is in
    assert result.flow_outputs == {"answer": out["text"]}


def test_non_streaming_answer(openai_server: OpenAIServer) -> None:
    result = llm_flow(openai_server.base_url, openai_server.model, stream=False).run({"question": "hi?"})
    assert result.ok, result.error
    out = result.outputs["ask"]
    assert out["finish_reason"] == "length" and out["usage"]["completion_tokens"] == 6
    assert len(out["text"]) == 6  # one character per token with this tokenizer
    assert "ttft_s" not in result["ask"].extra


def test_prompt_goes_to_the_completions_endpoint(openai_server: OpenAIServer) -> None:
    flow = Flow.from_dict({"nodes": [{"id": "ask", "type": "llm", "config": {
        "base_url": openai_server.base_url, "model": openai_server.model, "prompt": "Once", "max_tokens": 3, "stream": False}}]})
    result = flow.run({})
    assert result.ok, result.error
    assert result.outputs["ask"]["usage"]["completion_tokens"] == 3


def test_partial_text_is_visible_while_the_answer_streams(openai_server: OpenAIServer) -> None:
    flow = llm_flow(openai_server.base_url, openai_server.model, max_tokens=40)
    records: dict[str, Any] = {}
    seen: list[str] = []

    async def main() -> Any:
        task = asyncio.ensure_future(flow.arun({"question": "tell me more"}, on_event=lambda ev: records.update(ev.result.records)))
        while not task.done():  # what the workbench inspector reads while the node runs
            await asyncio.sleep(0.002)
            partial = records["ask"].extra.get("partial_text") if "ask" in records else None
            if partial:
                seen.append(partial)
        return task.result()

    result = asyncio.run(main())
    assert result.ok, result.error
    text = result.outputs["ask"]["text"]
    assert seen, "no partial text was seen while streaming"
    assert all(text.startswith(s) for s in seen)
    assert any(len(s) < len(text) for s in seen)


def test_wrong_model_names_the_server_s_reason_and_is_not_retried(openai_server: OpenAIServer) -> None:
    result = failed(llm_flow(openai_server.base_url, "no-such-model"), {"question": "hi"})
    assert "HTTP 400" in result.error and "no-such-model" in result.error
    assert result["ask"].attempts == 1


def test_server_errors_are_retried_with_the_shared_policy(serve: Any) -> None:
    calls: list[Request] = []

    def chat(req: Request) -> Reply:
        calls.append(req)
        if len(calls) == 1:
            return Reply(503, {"error": {"message": "model is loading"}})
        if len(calls) == 2:
            return Reply(429, {"error": {"message": "slow down"}})
        return Reply(200, {"choices": [{"message": {"role": "assistant", "content": "fine"}, "finish_reason": "stop"}],
                           "usage": {"completion_tokens": 1}})

    server = serve({"/v1/chat/completions": chat})
    flow = llm_flow(f"{server.url}/v1", "m", stream=False, _node={"retry": {"max_attempts": 3, "backoff_s": 0.01}})
    result = flow.run({"question": "hi"})
    assert result.ok, result.error
    assert result.outputs["ask"] == {"text": "fine", "finish_reason": "stop", "usage": {"completion_tokens": 1}}
    assert result["ask"].attempts == 3
    assert "model is loading" in result["ask"].extra["attempt_errors"][0]


def test_a_server_that_keeps_failing_fails_the_node_with_its_message(serve: Any) -> None:
    server = serve({"/v1/chat/completions": lambda req: Reply(500, {"error": {"message": "CUDA out of memory"}})})
    result = failed(llm_flow(f"{server.url}/v1", "m", _node={"retry": {"max_attempts": 2, "backoff_s": 0}}), {"question": "hi"})
    assert "HTTP 500" in result.error and "CUDA out of memory" in result.error
    assert result["ask"].attempts == 2


def test_a_stalled_server_times_out(serve: Any) -> None:
    server = serve({"/v1/chat/completions": lambda req: Reply(200, {"choices": []}, delay_s=3)})
    flow = llm_flow(f"{server.url}/v1", "m", _node={"timeout_s": 0.5, "retry": {"max_attempts": 1}})
    result = failed(flow, {"question": "hi"})
    assert "ask" in result.error and "0.5" in result.error


def test_api_key_comes_from_the_environment(serve: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []

    def chat(req: Request) -> Reply:
        seen.append({k.lower(): v for k, v in req.headers.items()}.get("authorization", ""))
        return Reply(200, "data: {\"choices\": [{\"delta\": {\"content\": \"ok\"}, \"finish_reason\": \"stop\"}]}\n\ndata: [DONE]\n\n",
                     content_type="text/event-stream")

    server = serve({"/v1/chat/completions": chat})
    flow = llm_flow(f"{server.url}/v1", "m", api_key_env="TEST_LLM_KEY")
    missing = failed(flow, {"question": "hi"})
    assert "TEST_LLM_KEY" in missing.error
    monkeypatch.setenv("TEST_LLM_KEY", "sk-test")
    result = flow.run({"question": "hi"})
    assert result.ok, result.error
    assert result.outputs["ask"]["text"] == "ok"
    assert seen == ["Bearer sk-test"]


def test_config_mistakes_are_named_before_the_run() -> None:
    with pytest.raises(FlowValidationError) as info:
        Flow.from_dict({"nodes": [{"id": "ask", "type": "llm", "config": {"base_url": "http://x/v1", "model": "m"}}]}).validate()
    assert "ask" in str(info.value) and "messages" in str(info.value)
    with pytest.raises(FlowValidationError) as info:
        Flow.from_dict({"nodes": [{"id": "ask", "type": "llm", "config": {
            "base_url": "http://x/v1", "model": "m", "messages": [{"content": "hi"}]}}]}).validate()
    assert "role" in str(info.value)


# -- streams cut short, chunks that are not the protocol's, answers without end ---------------


def sse(*chunks: Any, done: bool = True) -> str:
    import json

    lines = [f"data: {c if isinstance(c, str) else json.dumps(c)}\n\n" for c in chunks]
    return "".join(lines) + ("data: [DONE]\n\n" if done else "")


def piece(text: str, finish_reason: str | None = None) -> dict[str, Any]:
    return {"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": finish_reason}]}


def streaming(serve: Any, body: str) -> Flow:
    server = serve({"/v1/chat/completions": lambda req: Reply(200, body, content_type="text/event-stream")})
    return llm_flow(f"{server.url}/v1", "m", _node={"retry": {"max_attempts": 1}})


def test_a_stream_cut_short_is_a_node_error_not_an_answer(serve: Any) -> None:
    result = failed(streaming(serve, sse(piece("The cap"), done=False)), {"question": "hi"})
    assert result["ask"].error.type == "RemoteError"  # type: ignore[union-attr]
    assert "the stream ended before the answer was complete" in result.error, result.error
    assert "node 'ask'" in result.error


@pytest.mark.parametrize("done", [True, False])
def test_a_stream_that_says_it_finished_is_an_answer(serve: Any, done: bool) -> None:
    # some servers end with a finish_reason and no [DONE]
    result = streaming(serve, sse(piece("Par"), piece("is", "stop"), done=done)).run({"question": "hi"})
    assert result.ok, result.error
    assert result.outputs["ask"]["text"] == "Paris" and result.outputs["ask"]["finish_reason"] == "stop"


@pytest.mark.parametrize(("chunk", "problem"), [
    ([1, 2], "not an object"),
    ({"choices": "abc"}, "`choices`"),
    ({"choices": ["abc"]}, "`choices[0]`"),
    ({"choices": [{"delta": "abc"}]}, "`choices[0].delta`"),
    ({"choices": [{"delta": {"content": 5}}]}, "`choices[0].delta.content`"),
    ({"choices": [{"text": ["a"]}]}, "`choices[0].text`"),
    ({"choices": [{"delta": {"content": "a"}, "finish_reason": 3}]}, "`choices[0].finish_reason`"),
])
def test_a_malformed_chunk_is_a_node_error_naming_its_problem(serve: Any, chunk: Any, problem: str) -> None:
    result = failed(streaming(serve, sse(piece("ok "), chunk, piece("x", "stop"))), {"question": "hi"})
    error = result["ask"].error
    assert error is not None and error.type == "RemoteError", error
    assert "chunk" in error.message and problem in error.message, error.message
    assert "AttributeError" not in error.message and "TypeError" not in error.message


def endless_stream(conn: Any) -> None:
    import json

    conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n")
    line = f"data: {json.dumps(piece('word '))}\n\n".encode() * 200
    while True:
        conn.sendall(line)


def test_an_endless_stream_stops_at_max_response_bytes() -> None:
    from servers import RawServer

    server = RawServer(endless_stream)
    try:
        flow = llm_flow(server.url.rsplit("/", 1)[0] + "/v1", "m", max_response_bytes=200_000, _node={"timeout_s": 60})
        result = failed(flow, {"question": "hi"})
    finally:
        server.close()
    error = result["ask"].error
    assert error is not None and error.type == "RemoteError", error
    assert "200000" in error.message and "max_response_bytes" in error.message and "/v1/chat/completions" in error.message, error.message
    assert result["ask"].attempts == 1


def test_a_whole_answer_over_max_response_bytes_is_refused(serve: Any) -> None:
    answer = {"choices": [{"message": {"role": "assistant", "content": "x" * 5000}, "finish_reason": "stop"}]}
    server = serve({"/v1/chat/completions": lambda req: Reply(200, answer)})
    result = failed(llm_flow(f"{server.url}/v1", "m", stream=False, max_response_bytes=1000), {"question": "hi"})
    assert "max_response_bytes" in result.error and "1000" in result.error and "Content-Length" in result.error, result.error
