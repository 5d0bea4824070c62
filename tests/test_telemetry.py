"""OpenTelemetry traces, sent to a real OTLP receiver on loopback (the bodies decoded with
`opentelemetry-proto`): a span per run and per node, `traceparent` reaching the model
service behind an `http` node, a served flow continuing its caller's trace. Flows run in
`jupyter-flow` processes, as users run them, with the standard OTEL_* environment."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from servers import LoopbackServer, Reply, free_port

pytest.importorskip("opentelemetry.sdk")
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest  # noqa: E402

Serve = Callable[[dict[str, Any]], LoopbackServer]
EXE = Path(sys.executable).with_name("jupyter-flow")


def receiver(serve: Serve) -> LoopbackServer:
    return serve({"/v1/traces": lambda req: Reply(200, b"", content_type="application/x-protobuf")})


def spans(otlp: LoopbackServer) -> list[dict[str, Any]]:
    """Every span the receiver got, as dicts with ids in hex and attributes as plain values."""
    found = []
    for req in otlp.requests:
        message = ExportTraceServiceRequest()
        message.ParseFromString(req.raw)
        for resource in message.resource_spans:
            service = {a.key: a.value.string_value for a in resource.resource.attributes}.get("service.name")
            for scope in resource.scope_spans:
                for span in scope.spans:
                    attrs = {a.key: getattr(a.value, a.value.WhichOneof("value")) for a in span.attributes}
                    found.append({"name": span.name, "trace": span.trace_id.hex(), "id": span.span_id.hex(),
                                  "parent": span.parent_span_id.hex(), "attrs": attrs, "status": span.status.code,
                                  "message": span.status.message, "service": service})
    return found


def env_for(otlp: LoopbackServer) -> dict[str, str]:
    return {**os.environ, "OTEL_EXPORTER_OTLP_ENDPOINT": otlp.url, "OTEL_SERVICE_NAME": "contracts",
            "OTEL_BSP_SCHEDULE_DELAY": "50"}


def write_flow(path: Path, model_url: str) -> Path:
    path.write_text(yaml.safe_dump({
        "name": "review", "inputs": {"text": {"type": "text"}},
        "nodes": [
            {"id": "classify", "type": "http", "config": {"endpoint": model_url, "input_mapping": {"text": "{{ text }}"},
                                                          "output_mapping": {"label": "{{ response.label }}"}}},
            {"id": "flaky", "type": "python", "config": {"function": "json:loads", "input_mapping": {"s": "not json"}},
             "on_error": "continue"},
            {"id": "report", "type": "template", "config": {"template": "{{ classify.output.label }}"}},
        ],
        "edges": [{"from": "start", "to": "classify"}, {"from": "start", "to": "flaky"}, {"from": "classify", "to": "report"}],
    }, sort_keys=False))
    return path


def test_a_run_is_one_trace_with_a_span_per_node(serve: Serve, tmp_path: Path) -> None:
    otlp = receiver(serve)
    model = serve({"/predict": lambda req: Reply(200, {"label": "payment"})})
    flow = write_flow(tmp_path / "review.flow.yaml", model.url + "/predict")
    proc = subprocess.run([str(EXE), "run", str(flow), "--input", "text=pay in 30 days"], capture_output=True, text=True,
                          timeout=120, env=env_for(otlp))
    assert proc.returncode == 0, proc.stderr
    found = spans(otlp)
    assert {s["trace"] for s in found} == {found[0]["trace"]}  # one trace
    by_name = {s["name"]: s for s in found}
    assert set(by_name) == {"flow review", "node classify", "node flaky", "node report"}
    run = by_name["flow review"]
    assert run["parent"] == "" and run["service"] == "contracts" and run["attrs"]["jupyter_flow.flow"] == "review"
    for name in ("node classify", "node flaky", "node report"):
        assert by_name[name]["parent"] == run["id"]
    classify = by_name["node classify"]["attrs"]
    assert classify["jupyter_flow.node.kind"] == "http" and classify["jupyter_flow.node.status"] == "ok"
    assert classify["jupyter_flow.node.attempts"] == 1
    flaky = by_name["node flaky"]
    assert flaky["attrs"]["jupyter_flow.node.status"] == "error" and flaky["status"] == 2  # STATUS_CODE_ERROR
    assert flaky["attrs"]["error.type"] and "Expecting value" in flaky["message"]
    assert flaky["message"] == flaky["attrs"]["jupyter_flow.node.error"]
    # the model service got the traceparent of its node's span
    (call,) = model.requests
    version, trace_id, parent_id, _flags = call.headers["traceparent"].split("-")
    assert (trace_id, parent_id) == (run["trace"], by_name["node classify"]["id"])


def test_no_traces_and_no_opentelemetry_import_when_not_configured(serve: Serve, tmp_path: Path) -> None:
    model = serve({"/predict": lambda req: Reply(200, {"label": "payment"})})
    flow = write_flow(tmp_path / "review.flow.yaml", model.url + "/predict")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    code = ("import sys; from jupyter_flow import Flow; "
            f"Flow.load({str(flow)!r}).run({{'text': 'x'}}); "
            "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
    assert "traceparent" not in model.requests[0].headers


def test_a_served_flow_continues_the_callers_trace(serve: Serve, tmp_path: Path) -> None:
    otlp = receiver(serve)
    model = serve({"/predict": lambda req: Reply(200, {"label": "payment"})})
    flow = write_flow(tmp_path / "review.flow.yaml", model.url + "/predict")
    port = free_port()
    proc = subprocess.Popen([str(EXE), "serve", "flow", str(flow), "--port", str(port)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env_for(otlp))
    caller_trace, caller_span = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "the served flow did not come up"
            time.sleep(0.2)
        answer = httpx.post(f"http://127.0.0.1:{port}/run", json={"text": "pay"}, timeout=60,
                            headers={"traceparent": f"00-{caller_trace}-{caller_span}-01"})
        assert answer.status_code == 200, answer.text
        run_id = answer.headers["x-run-id"]
        assert run_id == answer.json()["run_id"]
        deadline = time.monotonic() + 30
        while not any(s["name"] == "flow review" for s in spans(otlp)):
            assert time.monotonic() < deadline, "no run span arrived"
            time.sleep(0.1)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    by_name = {s["name"]: s for s in spans(otlp)}
    run = by_name["flow review"]
    assert run["trace"] == caller_trace and run["parent"] == caller_span
    assert run["attrs"]["jupyter_flow.run_id"] == run_id
    assert model.requests[0].headers["traceparent"].split("-")[1] == caller_trace


def test_tracing_follows_the_environment_as_it_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    # read on every run: a notebook that sets OTEL_* after import gets traces from then on
    from jupyter_flow import telemetry

    for name in [k for k in os.environ if k.startswith("OTEL_")]:
        monkeypatch.delenv(name)
    assert not telemetry.enabled()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    assert telemetry.enabled()
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert not telemetry.enabled()
    monkeypatch.delenv("OTEL_SDK_DISABLED")
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT")
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    assert telemetry.enabled()
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    assert not telemetry.enabled()


def test_a_collector_that_never_answers_does_not_hold_a_command_line_run(tmp_path: Path) -> None:
    # the OTLP exporter's own default (10 s, with retries) held every `jupyter-flow run` 15 s
    import socket
    import threading

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(50)
    held: list[Any] = []
    threading.Thread(target=lambda: [held.append(listener.accept()) for _ in range(50)], daemon=True).start()
    flow = tmp_path / "f.flow.yaml"
    flow.write_text(yaml.safe_dump({"nodes": [{"id": "t", "type": "template", "config": {"template": "hi"}}]}))

    def cli_seconds(env: dict[str, str]) -> float:
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "jupyter_flow.cli", "run", str(flow)], env=env, capture_output=True,
                              text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        return time.perf_counter() - t0

    plain = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    baseline = cli_seconds(plain)
    stalled = cli_seconds({**plain, "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{listener.getsockname()[1]}"})
    listener.close()
    print(f"without a collector {baseline:.1f} s, with one that never answers {stalled:.1f} s")
    assert stalled - baseline < 8  # at most the export timeout and the exit flush (2 s each), not 15 s
