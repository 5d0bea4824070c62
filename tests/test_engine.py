"""The engine as a user meets it: flows against real loopback servers that answer, fail,
stall and count; wall times prove overlap (generously), traces prove what happened."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from servers import LoopbackServer, Reply, Request

from jupyter_flow import Flow, FlowRunError, FlowTimeoutError, RunEvent, RunResult, register_function
from jupyter_flow.nodes.python import default_functions

Serve = Callable[[dict[str, Any]], LoopbackServer]


def http(node_id: str, url: str, **extra: Any) -> dict[str, Any]:
    config = {"endpoint": url, **extra.pop("config", {})}
    return {"id": node_id, "type": "http", "config": config, **extra}


def tpl(node_id: str, text: str) -> dict[str, Any]:
    return {"id": node_id, "type": "template", "config": {"template": text}}


def echo(req: Request) -> Reply:
    return Reply(200, {"echo": req.body})


class Gauge:
    """A route that holds each request for `hold_s` and remembers the most requests it
    held at once."""

    def __init__(self, hold_s: float) -> None:
        self.hold_s = hold_s
        self.now = 0
        self.peak = 0
        self.lock = threading.Lock()

    def __call__(self, req: Request) -> Reply:
        with self.lock:
            self.now += 1
            self.peak = max(self.peak, self.now)
        time.sleep(self.hold_s)
        with self.lock:
            self.now -= 1
        return Reply(200, {"ok": True, "body": req.body})


def flaky(failures: int, status: int = 500) -> Callable[[Request], Reply]:
    calls = {"n": 0}

    def route(req: Request) -> Reply:
        calls["n"] += 1
        if calls["n"] <= failures:
            return Reply(status, {"error": f"failure {calls['n']}"})
        return Reply(200, {"label": "ok", "call": calls["n"]})

    return route


# -- concurrency -------------------------------------------------------------------


def test_parallel_branches_overlap(serve: Serve) -> None:
    gauge = Gauge(0.3)
    server = serve({"/slow": gauge})
    nodes = [http(f"b{i}", f"{server.url}/slow", config={"input_mapping": {"i": i}}) for i in range(4)]
    flow = Flow.from_dict({"nodes": [*nodes, tpl("join", "{{ b0.output.ok }}{{ b3.output.ok }}")],
                           "edges": [{"from": f"b{i}", "to": "join"} for i in range(4)]})
    result = flow.run()
    assert result.status == "ok" and result.outputs["join"] == {"text": "TrueTrue"}
    assert gauge.peak == 4  # the four calls were in the server at once
    # every branch started before any branch ended
    records = [result[f"b{i}"] for i in range(4)]
    assert max(r.started_at for r in records) < min(r.ended_at for r in records)  # type: ignore[operator]
    assert sorted(req.body["i"] for req in server.requests) == [0, 1, 2, 3]


def test_blocking_python_nodes_run_off_the_loop() -> None:
    def nap(i: int) -> dict[str, Any]:
        time.sleep(0.3)
        return {"i": i, "thread": threading.current_thread().name}

    flow = Flow.from_dict(
        {"nodes": [{"id": f"n{i}", "type": "python", "config": {"function": "nap", "input_mapping": {"i": i}}} for i in range(4)]},
        functions={"nap": nap},
    )
    result = flow.run()
    assert {result.outputs[f"n{i}"]["i"] for i in range(4)} == {0, 1, 2, 3}
    assert all(result.outputs[f"n{i}"]["thread"] != "MainThread" for i in range(4))
    # they overlapped: every nap started before any ended
    records = [result[f"n{i}"] for i in range(4)]
    assert max(r.started_at for r in records) < min(r.ended_at for r in records)  # type: ignore[operator]


def test_max_concurrency_bounds_overlap(serve: Serve) -> None:
    gauge = Gauge(0.15)
    server = serve({"/slow": gauge})
    flow = Flow.from_dict({"max_concurrency": 2, "nodes": [http(f"b{i}", f"{server.url}/slow") for i in range(6)]})
    t0 = time.perf_counter()
    result = flow.run()
    wall = time.perf_counter() - t0
    assert result.status == "ok" and len(server.requests) == 6
    assert gauge.peak == 2
    assert wall >= 3 * 0.15 * 0.9  # six calls, two at a time


# -- conditions, skips, error handling ----------------------------------------------


def test_conditional_edges_and_skip_propagation(serve: Serve) -> None:
    server = serve({"/classify": lambda req: Reply(200, {"label": "spam", "score": 0.9}), "/echo": echo})
    flow = Flow.from_dict(
        {
            "nodes": [
                http("clf", f"{server.url}/classify"),
                http("ham_path", f"{server.url}/echo", config={"input_mapping": {"why": "ham"}}),
                http("after_ham", f"{server.url}/echo", config={"input_mapping": {"why": "after ham"}}),
                http("spam_path", f"{server.url}/echo", config={"input_mapping": {"why": "spam"}}),
                # one incoming edge active (spam_path), one from a skipped node (after_ham)
                tpl("join", "{{ spam_path.output.echo.why }}|{{ after_ham.status }}"),
            ],
            "edges": [
                {"from": "start", "to": "clf"},
                {"from": "clf", "to": "ham_path", "when": "{{ clf.output.label == 'ham' }}"},
                {"from": "ham_path", "to": "after_ham"},
                {"from": "clf", "to": "spam_path", "when": "clf.output.label == 'spam' and clf.output.score > 0.5"},
                {"from": "after_ham", "to": "join"},
                {"from": "spam_path", "to": "join"},
            ],
        }
    )
    result = flow.run()
    status = {nid: r.status for nid, r in result.records.items()}
    assert status == {"clf": "ok", "ham_path": "skipped", "after_ham": "skipped", "spam_path": "ok", "join": "ok"}
    assert result.outputs["join"] == {"text": "spam|skipped"}
    assert [req.body for req in server.requests if req.path == "/echo"] == [{"why": "spam"}]
    assert "ham_path" not in result.outputs


def test_false_condition_on_a_start_edge_skips_the_entry_node(serve: Serve) -> None:
    server = serve({"/echo": echo})
    flow = Flow.from_dict(
        {
            "inputs": {"mode": {"type": "string"}},
            "nodes": [http("fast", f"{server.url}/echo"), http("slow", f"{server.url}/echo")],
            "edges": [{"from": "start", "to": "fast", "when": "mode == 'fast'"}, {"from": "start", "to": "slow", "when": "mode == 'slow'"}],
        }
    )
    result = flow.run({"mode": "slow"})
    assert (result["fast"].status, result["slow"].status) == ("skipped", "ok")
    assert len(server.requests) == 1


def test_retries_count_attempts_in_the_trace(serve: Serve) -> None:
    server = serve({"/flaky": flaky(2)})
    flow = Flow.from_dict({"nodes": [http("clf", f"{server.url}/flaky", retry={"max_attempts": 4, "backoff_s": 0.01})]})
    result = flow.run()
    record = result["clf"]
    assert record.status == "ok" and record.attempts == 3
    assert result.outputs["clf"] == {"label": "ok", "call": 3}
    assert len(record.extra["attempt_errors"]) == 2 and "500" in record.extra["attempt_errors"][0]
    assert len(server.requests) == 3
    assert '"attempts": 3' in result.to_json()


def test_retries_run_out(serve: Serve) -> None:
    server = serve({"/down": flaky(100, 503)})
    flow = Flow.from_dict({"nodes": [http("clf", f"{server.url}/down", retry={"max_attempts": 3, "backoff_s": 0.01})]})
    with pytest.raises(FlowRunError, match="503") as info:
        flow.run()
    result = info.value.result
    assert result is not None and result["clf"].status == "error" and result["clf"].attempts == 3
    assert len(server.requests) == 3


@pytest.mark.parametrize("status", [400, 404, 422])
def test_client_errors_are_not_retried(serve: Serve, status: int) -> None:
    server = serve({"/bad": flaky(100, status)})
    flow = Flow.from_dict({"nodes": [http("clf", f"{server.url}/bad", retry={"max_attempts": 5, "backoff_s": 0.01})]})
    result = flow.run(raise_on_error=False)
    assert result.status == "error" and result["clf"].attempts == 1
    assert len(server.requests) == 1
    assert str(status) in result["clf"].error.message  # type: ignore[union-attr]


def test_node_timeout_stops_a_stalling_call(serve: Serve) -> None:
    server = serve({"/stall": lambda req: Reply(200, {"late": True}, delay_s=6)})
    flow = Flow.from_dict({"nodes": [http("slow", f"{server.url}/stall", timeout_s=0.3)]})
    t0 = time.perf_counter()
    result = flow.run(raise_on_error=False)
    assert time.perf_counter() - t0 < 4  # the stall lasts 6 s
    record = result["slow"]
    assert record.status == "error" and "0.3" in record.error.message  # type: ignore[union-attr]
    assert result.status == "error" and "slow" in (result.error or "")


def test_node_timeout_applies_to_python_nodes_and_is_retried() -> None:
    calls: list[int] = []

    async def sometimes_slow(n: int) -> dict[str, Any]:
        calls.append(n)
        if len(calls) == 1:
            await asyncio.sleep(5)
        return {"n": n}

    flow = Flow.from_dict(
        {"nodes": [{"id": "p", "type": "python", "timeout_s": 0.2, "retry": {"max_attempts": 2},
                    "config": {"function": "sometimes_slow", "input_mapping": {"n": 7}}}]},
        functions={"sometimes_slow": sometimes_slow},
    )
    result = flow.run()
    assert result["p"].attempts == 2 and result.outputs["p"] == {"n": 7}
    assert "timeout_s=0.2" in result["p"].extra["attempt_errors"][0]


def test_flow_timeout_cancels_running_nodes(serve: Serve) -> None:
    server = serve({"/stall": lambda req: Reply(200, {"late": True}, delay_s=6), "/echo": echo})
    flow = Flow.from_dict(
        {
            "timeout_s": 0.4,
            "nodes": [http("quick", f"{server.url}/echo"), http("stuck", f"{server.url}/stall"), tpl("after", "{{ stuck.output.late }}")],
            "edges": [{"from": "stuck", "to": "after"}],
        }
    )
    t0 = time.perf_counter()
    with pytest.raises(FlowTimeoutError, match="timeout_s=0.4") as info:
        flow.run()
    assert time.perf_counter() - t0 < 4  # the stall lasts 6 s
    result = info.value.result
    assert result is not None and result.status == "timeout"
    assert "stuck" in str(info.value)
    assert {nid: r.status for nid, r in result.records.items()} == {"quick": "ok", "stuck": "cancelled", "after": "skipped"}
    assert result.outputs == {"quick": {"echo": None}}


def test_on_error_continue_keeps_the_run_going(serve: Serve) -> None:
    server = serve({"/boom": flaky(100, 500), "/echo": echo})
    flow = Flow.from_dict(
        {
            "nodes": [
                http("broken", f"{server.url}/boom", on_error="continue"),
                http("sibling", f"{server.url}/echo"),
                tpl("needs_broken", "{{ broken.output }}"),
            ],
            "edges": [{"from": "broken", "to": "needs_broken"}],
        }
    )
    result = flow.run()
    assert result.status == "ok"
    assert result["broken"].status == "error" and "500" in result["broken"].error.message  # type: ignore[union-attr]
    assert result["sibling"].status == "ok"
    assert result["needs_broken"].status == "skipped"


def test_on_error_default_publishes_the_default(serve: Serve) -> None:
    server = serve({"/boom": flaky(100, 500)})
    flow = Flow.from_dict(
        {
            "nodes": [
                http("clf", f"{server.url}/boom", on_error="default", default={"label": "unknown"}),
                tpl("report", "label={{ clf.output.label }} error={{ clf.error.type }}"),
            ],
            "edges": [{"from": "clf", "to": "report"}],
        }
    )
    result = flow.run()
    assert result["clf"].status == "ok" and result["clf"].defaulted
    assert result.outputs["clf"] == {"label": "unknown"}
    assert result.outputs["report"] == {"text": "label=unknown error=RemoteError"}
    assert result["clf"].error is not None  # the failure stays visible in the trace


def test_error_edges_route_failures(serve: Serve) -> None:
    server = serve({"/boom": flaky(100, 500), "/alert": echo})
    flow = Flow.from_dict(
        {
            "nodes": [
                http("clf", f"{server.url}/boom"),
                http("alert", f"{server.url}/alert", config={"input_mapping": {"failed": "{{ clf.error.message }}"}}),
                tpl("normal", "{{ clf.output }}"),
            ],
            "edges": [{"from": "clf", "to": "alert", "on": "error"}, {"from": "clf", "to": "normal"}],
        }
    )
    result = flow.run()
    assert result.status == "ok"
    assert {nid: r.status for nid, r in result.records.items()} == {"clf": "error", "alert": "ok", "normal": "skipped"}
    (alert_request,) = [r for r in server.requests if r.path == "/alert"]
    assert "500" in alert_request.body["failed"]


def test_error_edge_is_not_taken_on_success(serve: Serve) -> None:
    server = serve({"/ok": echo})
    flow = Flow.from_dict(
        {
            "nodes": [http("clf", f"{server.url}/ok"), tpl("alert", "failed"), tpl("normal", "fine")],
            "edges": [{"from": "clf", "to": "alert", "on": "error"}, {"from": "clf", "to": "normal"}],
        }
    )
    result = flow.run()
    assert (result["alert"].status, result["normal"].status) == ("skipped", "ok")


def test_failure_stops_the_run_and_cancels_the_rest(serve: Serve) -> None:
    server = serve({"/boom": flaky(100, 500), "/stall": lambda req: Reply(200, {}, delay_s=6)})
    flow = Flow.from_dict({"nodes": [http("broken", f"{server.url}/boom"), http("slow", f"{server.url}/stall")]})
    t0 = time.perf_counter()
    with pytest.raises(FlowRunError, match="node 'broken'") as info:
        flow.run()
    assert time.perf_counter() - t0 < 4  # the stall lasts 6 s
    result = info.value.result
    assert result is not None and result.status == "error"
    assert (result["broken"].status, result["slow"].status) == ("error", "cancelled")


# -- cancellation and events ------------------------------------------------------------


def test_cancellation_from_the_caller(serve: Serve) -> None:
    server = serve({"/stall": lambda req: Reply(200, {}, delay_s=6)})
    seen: dict[str, Any] = {"cancelled_inside": False}

    async def wait_forever() -> dict[str, Any]:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            seen["cancelled_inside"] = True
            raise
        return {}

    flow = Flow.from_dict(
        {
            "nodes": [
                http("remote", f"{server.url}/stall"),
                {"id": "local", "type": "python", "config": {"function": "wait_forever"}},
                tpl("after", "{{ remote.output }}"),
            ],
            "edges": [{"from": "remote", "to": "after"}],
        },
        functions={"wait_forever": wait_forever},
    )
    events: list[RunEvent] = []

    async def main() -> None:
        started = asyncio.Event()

        def on_event(event: RunEvent) -> None:
            events.append(event)
            if event.kind == "node_started" and event.node == "local":
                started.set()

        task = asyncio.create_task(flow.arun(on_event=on_event))
        await asyncio.wait_for(started.wait(), 5)
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        leftovers = [t for t in asyncio.all_tasks() if t.get_name().startswith("jupyter-flow:")]
        assert leftovers == []

    t0 = time.perf_counter()
    asyncio.run(main())
    assert time.perf_counter() - t0 < 4  # the stall lasts 6 s
    assert seen["cancelled_inside"]
    result = events[-1].result
    assert events[-1].kind == "run_finished" and result.status == "cancelled"
    assert {nid: r.status for nid, r in result.records.items()} == {"remote": "cancelled", "local": "cancelled", "after": "skipped"}


def test_events_arrive_in_a_sane_order(serve: Serve) -> None:
    server = serve({"/echo": echo})
    flow = Flow.from_dict(
        {
            "nodes": [http("a", f"{server.url}/echo"), http("b", f"{server.url}/echo"), tpl("c", "{{ a.output }}{{ b.output }}"),
                      tpl("never", "x")],
            "edges": [{"from": "a", "to": "c"}, {"from": "b", "to": "c"}, {"from": "c", "to": "never", "when": "false"}],
        }
    )
    events: list[tuple[str, str | None, str | None]] = []

    async def on_event(event: RunEvent) -> None:  # async callbacks are awaited
        events.append((event.kind, event.node, event.record.status if event.record else event.result.status))

    asyncio.run(flow.arun(on_event=on_event))
    kinds = [k for k, _, _ in events]
    assert kinds[0] == "run_started" and kinds[-1] == "run_finished" and events[-1][2] == "ok"
    assert kinds.count("run_started") == kinds.count("run_finished") == 1
    pos = {(k, n): i for i, (k, n, _) in enumerate(events)}
    for node in ("a", "b", "c"):
        assert pos[("node_started", node)] < pos[("node_finished", node)]
    assert pos[("node_finished", "a")] < pos[("node_started", "c")]
    assert pos[("node_finished", "b")] < pos[("node_started", "c")]
    assert ("node_started", "never") not in pos
    assert events[pos[("node_finished", "never")]][2] == "skipped"
    assert all(status == "ok" for k, n, status in events if k == "node_finished" and n != "never")


def test_a_broken_event_callback_does_not_break_the_run() -> None:
    flow = Flow.from_dict({"nodes": [tpl("a", "hi")]})

    def on_event(event: RunEvent) -> None:
        raise RuntimeError("UI bug")

    assert flow.run(on_event=on_event).outputs == {"a": {"text": "hi"}}


# -- reuse and rerun -------------------------------------------------------------------------


def test_reuse_reruns_only_what_changed(serve: Serve) -> None:
    server = serve({"/embed": lambda req: Reply(200, {"vec": [len(req.body["text"])]}), "/score": echo})
    flow = Flow.from_dict(
        {
            "inputs": {"text": {"type": "string"}, "mode": {"type": "string", "default": "a"}},
            "nodes": [
                http("embed", f"{server.url}/embed", config={"input_mapping": {"text": "{{ text }}"}}),
                http("score", f"{server.url}/score", config={"input_mapping": {"vec": "{{ embed.output.vec }}", "mode": "{{ mode }}"}}),
            ],
            "edges": [{"from": "embed", "to": "score"}],
        }
    )
    first = flow.run({"text": "hello"})
    assert len(server.requests) == 2 and not any(r.cached for r in first.records.values())

    same = flow.run({"text": "hello"}, reuse=first)
    assert len(server.requests) == 2  # nothing was called again
    assert all(r.cached and r.status == "ok" and r.attempts == 0 for r in same.records.values())
    assert same.outputs == first.outputs

    # only `score` reads `mode`: `embed` stays cached
    changed = flow.run({"text": "hello", "mode": "b"}, reuse=same)
    assert (changed["embed"].cached, changed["score"].cached) == (True, False)
    assert [r.path for r in server.requests[2:]] == ["/score"]
    assert changed.outputs["score"] == {"echo": {"vec": [5], "mode": "b"}}

    # a new text changes `embed`, whose new output changes `score`'s inputs
    new_text = flow.run({"text": "hello world", "mode": "b"}, reuse=changed)
    assert not new_text["embed"].cached and not new_text["score"].cached
    assert new_text.outputs["score"] == {"echo": {"vec": [11], "mode": "b"}}


def test_rerun_forces_a_node_and_its_downstream(serve: Serve) -> None:
    server = serve({"/a": echo, "/b": echo, "/c": echo})
    flow = Flow.from_dict(
        {
            "nodes": [http("a", f"{server.url}/a"), http("b", f"{server.url}/b"), http("c", f"{server.url}/c")],
            "edges": [{"from": "a", "to": "b"}, {"from": "b", "to": "c"}],
        }
    )
    first = flow.run()
    again = flow.run(reuse=first, rerun="b")
    assert {nid: r.cached for nid, r in again.records.items()} == {"a": True, "b": False, "c": False}
    assert [r.path for r in server.requests[3:]] == ["/b", "/c"]
    # the results of a rerun can be reused in turn
    third = flow.run(reuse=again)
    assert all(r.cached for r in third.records.values()) and len(server.requests) == 5


def test_rerun_of_an_unknown_node_is_a_validation_error() -> None:
    flow = Flow.from_dict({"nodes": [tpl("a", "x")]})
    with pytest.raises(Exception, match="rerun") as info:
        flow.run(rerun="ghost")
    assert "ghost" in str(info.value)


def test_reregistered_function_is_picked_up_by_reuse() -> None:
    name = "engine_test_scale"
    flow = Flow.from_dict({"nodes": [{"id": "scale", "type": "python", "config": {"function": name, "input_mapping": {"x": 3}}}]})
    try:

        @register_function(name=name)
        def scale_v1(x: int) -> int:
            return x * 2

        first = flow.run()
        assert first.outputs["scale"] == {"result": 6}
        assert flow.run(reuse=first)["scale"].cached

        @register_function(name=name)
        def scale_v2(x: int) -> int:
            return x * 10

        second = flow.run(reuse=first)
        assert not second["scale"].cached and second.outputs["scale"] == {"result": 30}
    finally:
        default_functions().pop(name, None)


def test_reregistered_flow_function_is_picked_up_by_reuse() -> None:
    flow = Flow.from_dict({"nodes": [{"id": "scale", "type": "python", "config": {"function": "scale", "input_mapping": {"x": 3}}}]})
    flow.register("scale", lambda x: x * 2)
    first = flow.run()
    assert first.outputs["scale"] == {"result": 6}
    assert flow.run(reuse=first)["scale"].cached
    flow.register("scale", lambda x: x * 10)
    second = flow.run(reuse=first)
    assert not second["scale"].cached and second.outputs["scale"] == {"result": 30}


def test_failed_and_defaulted_nodes_are_not_reused(serve: Serve) -> None:
    server = serve({"/boom": flaky(1, 500)})
    flow = Flow.from_dict({"nodes": [http("clf", f"{server.url}/boom", on_error="default", default={"label": "?"})]})
    first = flow.run()
    assert first["clf"].defaulted
    second = flow.run(reuse=first)
    assert not second["clf"].cached and second.outputs["clf"] == {"label": "ok", "call": 2}


# -- running inside an event loop --------------------------------------------------------------


def test_run_works_inside_a_running_event_loop(serve: Serve) -> None:
    server = serve({"/echo": echo})
    flow = Flow.from_dict({"nodes": [http("a", f"{server.url}/echo", config={"input_mapping": {"q": "{{ q }}"}})]})

    async def notebook_cell() -> RunResult:
        asyncio.get_running_loop()  # as in a Jupyter kernel, a loop is already running
        return flow.run({"q": "from a cell"})

    result = asyncio.run(notebook_cell())
    assert result.outputs["a"] == {"echo": {"q": "from a cell"}}


def test_run_inside_a_loop_raises_the_flow_error() -> None:
    flow = Flow.from_dict({"nodes": [{"id": "p", "type": "python", "config": {"function": "nope_not_registered"}}]})

    async def cell() -> None:
        with pytest.raises(FlowRunError, match="nope_not_registered"):
            flow.run()

    asyncio.run(cell())


def test_reuse_compares_tensor_inputs_by_content() -> None:
    import torch

    calls: list[int] = []

    def first(t: Any) -> dict[str, Any]:
        calls.append(1)
        return {"v": t.flatten()[0].item()}

    flow = Flow.from_dict({"nodes": [{"id": "n", "type": "python", "config": {"function": "first", "input_mapping": {"t": "{{ t }}"}}}]},
                          functions={"first": first})
    base = flow.run({"t": torch.ones(2, 3)})
    assert flow.run({"t": torch.ones(2, 3)}, reuse=base)["n"].cached  # an equal tensor, another object
    assert flow.run({"t": torch.ones(3, 2).T}, reuse=base)["n"].cached  # same content, not contiguous
    changed = flow.run({"t": torch.full((2, 3), 2.0)}, reuse=base)
    assert not changed["n"].cached and changed.outputs["n"] == {"v": 2.0}
    assert not flow.run({"t": torch.ones(2, 3, dtype=torch.float64)}, reuse=base)["n"].cached
    assert len(calls) == 3


def test_template_failing_at_run_time_names_node_and_field(serve: Serve) -> None:
    server = serve({"/p": lambda req: Reply(200, {"label": "x"})})
    flow = Flow.from_dict({
        "nodes": [http("clf", f"{server.url}/p"), tpl("report", "{{ clf.output.score * 100 }}")],
        "edges": [{"from": "clf", "to": "report"}],
    })
    with pytest.raises(FlowRunError) as info:
        flow.run()
    message = str(info.value)
    assert "node 'report'" in message and "field 'config.template'" in message and "'score'" in message
    assert message.count("node 'report'") == 1  # named once, not wrapped twice


def _shadow_flow(url: str) -> Flow:
    clf = http("clf", f"{url}/fast")
    clf["variants"] = [{"id": "v1", "weight": 1}, {"id": "v2", "weight": 0, "config": {"endpoint": f"{url}/slow"}}]
    clf["shadow"] = True
    return Flow.from_dict({"nodes": [clf, tpl("after", "{{ clf.output.label }}")], "edges": [{"from": "clf", "to": "after"}]})


def test_a_slow_shadow_never_holds_up_the_primary_or_its_downstream(serve: Serve) -> None:
    server = serve({"/fast": lambda req: Reply(200, {"label": "fast"}),
                    "/slow": lambda req: Reply(200, {"label": "slow"}, delay_s=1.0)})
    result = _shadow_flow(server.url).run()
    after, clf = result["after"], result["clf"]
    # downstream started before the shadow ended, and the primary's latency is its own
    assert after.started_at - clf.started_at < 0.8
    assert clf.duration_s < 0.8
    assert clf.shadow["v2"]["outputs"] == {"label": "slow"} and clf.shadow["v2"]["duration_s"] >= 1.0
    assert clf.shadow["v1"]["outputs"] == {"label": "fast"} and clf.shadow["v1"]["duration_s"] < 0.8


def test_without_waiting_for_shadows_the_run_returns_first(serve: Serve) -> None:
    server = serve({"/fast": lambda req: Reply(200, {"label": "fast"}),
                    "/slow": lambda req: Reply(200, {"label": "slow"}, delay_s=1.0)})

    async def go() -> tuple[float, RunResult]:
        t0 = time.perf_counter()
        result = await _shadow_flow(server.url).arun(wait_for_shadows=False)
        returned = time.perf_counter() - t0
        assert result.outputs["after"] == {"text": "fast"}
        assert result.background and result["clf"].shadow is None
        await asyncio.gather(*result.background)
        return returned, result

    returned, result = asyncio.run(go())
    assert returned < 0.8
    assert result["clf"].shadow["v2"]["outputs"] == {"label": "slow"}


# -- a chain runs in one task: what that must not change -------------------------------------


def test_each_chained_node_is_cancelled_with_the_task_that_runs_it() -> None:
    # a1 -> a2 (long) and b1 -> b2 (fails after 0.5 s). The event callback holds a1's task
    # in its `node_finished` while b1's goes on: a2 must still run in a1's task, the task the
    # run knows it by, so that the failure of b2 cancels a2 rather than waiting for it.
    async def quick() -> dict[str, bool]:
        return {"ok": True}

    async def long() -> dict[str, bool]:
        await asyncio.sleep(30)
        return {"ok": True}

    async def fails() -> dict[str, bool]:
        await asyncio.sleep(0.5)  # a2 is running by then
        raise ValueError("b2 broke")

    flow = Flow.from_dict({"nodes": [
        {"id": "a1", "type": "python", "config": {"function": "quick"}},
        {"id": "a2", "type": "python", "config": {"function": "long"}},
        {"id": "b1", "type": "python", "config": {"function": "quick"}},
        {"id": "b2", "type": "python", "config": {"function": "fails"}},
    ], "edges": [{"from": "a1", "to": "a2"}, {"from": "b1", "to": "b2"}]},
        functions={"quick": quick, "long": long, "fails": fails})
    order: list[str] = []

    async def on_event(event: RunEvent) -> None:
        if event.kind == "node_started" and event.record is not None:
            order.append(event.record.node)
        if event.kind == "node_finished" and event.record is not None and event.record.node == "a1":
            await asyncio.sleep(0.1)

    t0 = time.perf_counter()
    result = asyncio.run(flow.arun(on_event=on_event, raise_on_error=False))
    elapsed = time.perf_counter() - t0
    assert result.status == "error" and "b2 broke" in (result.error or "")
    assert result["a2"].status == "cancelled", result["a2"]
    assert elapsed < 15, f"the run waited {elapsed:.1f} s for a node it should have cancelled"
    assert order.index("a2") > order.index("a1")


def test_a_long_chain_runs_every_node_in_order_and_fan_outs_still_run_at_once() -> None:
    async def step(x: int) -> dict[str, int]:
        return {"x": x + 1}

    running: list[int] = []
    peak: list[int] = [0]

    async def slow(x: int) -> dict[str, int]:
        running.append(x)
        peak[0] = max(peak[0], len(running))
        await asyncio.sleep(0.2)
        running.remove(x)
        return {"x": x}

    nodes = [{"id": f"n{i}", "type": "python",
              "config": {"function": "step", "input_mapping": {"x": "{{ x }}" if i == 0 else f"{{{{ n{i - 1}.output.x }}}}"}}}
             for i in range(200)]
    nodes += [{"id": f"f{j}", "type": "python", "config": {"function": "slow", "input_mapping": {"x": j}}} for j in range(8)]
    edges = [{"from": f"n{i - 1}", "to": f"n{i}"} for i in range(1, 200)] + [{"from": "n199", "to": f"f{j}"} for j in range(8)]
    flow = Flow.from_dict({"inputs": {"x": {"type": "integer", "default": 0}}, "nodes": nodes, "edges": edges},
                          functions={"step": step, "slow": slow})
    result = flow.run()
    assert result["n199"].outputs == {"x": 200}
    assert all(result[f"f{j}"].status == "ok" for j in range(8))
    assert peak[0] == 8  # the fan-out after the chain ran at once, not one after another


def test_a_chain_of_nodes_that_never_wait_still_meets_the_flow_deadline() -> None:
    # sync nodes on the loop (`blocking: false`) hold it 0.2 s each; the chain runs in one
    # task, which must still give the flow's deadline its turn between them
    def hold(x: int) -> dict[str, int]:
        time.sleep(0.2)
        return {"x": x + 1}

    nodes = [{"id": f"n{i}", "type": "python", "config": {"function": "hold", "blocking": False,
              "input_mapping": {"x": 0 if i == 0 else f"{{{{ n{i - 1}.output.x }}}}"}}} for i in range(10)]
    flow = Flow.from_dict({"timeout_s": 1, "nodes": nodes, "edges": [{"from": f"n{i - 1}", "to": f"n{i}"} for i in range(1, 10)]},
                          functions={"hold": hold})
    result = flow.run(raise_on_error=False)
    assert result.status == "timeout", result.status
    ran = [nid for nid, record in result.records.items() if record.status == "ok"]
    assert 3 <= len(ran) < 10, ran
    assert all(result[f"n{i}"].status in ("skipped", "cancelled") for i in range(len(ran) + 1, 10))


def test_the_next_node_of_a_chain_does_not_wait_for_an_awaiting_event_callback() -> None:
    async def step(x: int) -> dict[str, int]:
        return {"x": x + 1}

    flow = Flow.from_dict({"nodes": [
        {"id": "a", "type": "python", "config": {"function": "step", "input_mapping": {"x": 0}}},
        {"id": "b", "type": "python", "config": {"function": "step", "input_mapping": {"x": "{{ a.output.x }}"}}},
    ], "edges": [{"from": "a", "to": "b"}]}, functions={"step": step})
    b_started = asyncio.Event()
    saw: list[str] = []

    async def on_event(event: RunEvent) -> None:
        if event.kind == "node_started" and event.record is not None and event.record.node == "b":
            b_started.set()
        if event.kind == "node_finished" and event.record is not None and event.record.node == "a":
            try:  # the callback for a's end waits until b has started: b must not wait for it
                await asyncio.wait_for(b_started.wait(), 10)
                saw.append("b started while a's callback waited")
            except asyncio.TimeoutError:
                saw.append("b waited for a's callback")

    result = asyncio.run(flow.arun(on_event=on_event))
    assert result["b"].outputs == {"x": 2}
    assert saw == ["b started while a's callback waited"]


def test_a_kind_that_keeps_its_own_deadline_reports_its_own_timeout() -> None:
    from jupyter_flow import Node, NodeRegistry

    class Gives(Node):
        kind = "gives-up"
        keeps_own_deadline = True

        async def run(self, inputs: dict[str, Any], ctx: Any) -> Any:
            raise TimeoutError("the device did not answer within 0.1 s")

    registry = NodeRegistry()
    registry.register(Gives)
    for limit in (None, 2):
        flow = Flow.from_dict({"max_concurrency": limit, "nodes": [{"id": "a", "type": "gives-up", "timeout_s": 5}]}, registry=registry)
        result = flow.run(raise_on_error=False)
        assert result["a"].error is not None and "did not answer within 0.1 s" in result["a"].error.message, result["a"].error


def test_a_node_outcome_offers_its_output_status_and_error_and_nothing_else() -> None:
    seen: dict[str, Any] = {}

    def keep(whole: Any, status: str, failed: Any) -> dict[str, Any]:
        seen.update(whole=whole, status=status, failed=failed)
        return {"ok": True}

    flow = Flow.from_dict({
        "nodes": [
            tpl("a", "hi"),
            {"id": "bad", "type": "python", "config": {"function": "nowhere"}},
            {"id": "keep", "type": "python", "config": {"function": "keep", "blocking": False, "input_mapping": {
                "whole": "{{ a }}", "status": "{{ a['status'] }}", "failed": "{{ bad.error }}"}}},
            tpl("peek", "{{ a.__class__ }}"),
        ],
        "edges": [{"from": "a", "to": "bad"}, {"from": "bad", "to": "keep", "on": "error"}, {"from": "a", "to": "peek"}],
    })
    flow.register("keep", keep)
    result = flow.run(raise_on_error=False)
    assert dict(seen["whole"]) == {"output": {"text": "hi"}, "status": "ok", "error": None}
    assert seen["status"] == "ok" and seen["failed"]["type"] == "NodeError"
    assert "no function registered as 'nowhere'" in seen["failed"]["message"]
    with pytest.raises(AttributeError):  # what a node is given of another cannot be changed
        seen["whole"].status = "error"
    # the sandbox's rules hold for what a run offers templates: no way to its class
    assert result["peek"].status == "error" and "unsafe" in result["peek"].error.message  # type: ignore[union-attr]


def test_a_node_s_outcome_is_a_read_only_mapping() -> None:
    """What templates read of a node that is done reads as a dict and cannot be changed
    (the outcome of every skipped node is one shared object)."""
    from jupyter_flow.outcome import SKIPPED, NodeOutcome

    outcome = NodeOutcome({"label": "x"}, "ok")
    assert dict(outcome) == {"output": {"label": "x"}, "status": "ok", "error": None}
    assert outcome["output"] is outcome.output and "status" in outcome and len(outcome) == 3
    assert outcome == {"output": {"label": "x"}, "status": "ok", "error": None}
    for name in ("output", "status", "error", "other"):
        with pytest.raises(AttributeError):
            setattr(outcome, name, 1)
    with pytest.raises(AttributeError):
        SKIPPED.status = "ok"
    assert SKIPPED.status == "skipped" and SKIPPED.output is None
    assert repr(outcome) == "NodeOutcome(output={'label': 'x'}, status='ok', error=None)"
