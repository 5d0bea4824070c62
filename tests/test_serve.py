"""Flows and models served over HTTP, driven with httpx against real uvicorn servers."""

from __future__ import annotations

import os
import textwrap
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families
from servers import AsgiServer, Reply

from jupyter_flow.serve.app import flow_app

GREET = """\
spec_version: 1
name: greet
inputs:
  name: {type: text}
nodes:
  - id: hello
    type: template
    config: {template: "%s {{ name }}"}
"""


def write(path: Path, text: str) -> None:
    # a distinct mtime for every write, so the watcher never misses an edit
    previous = path.stat().st_mtime_ns if path.exists() else time.time_ns() - 10**9
    path.write_text(text)
    os.utime(path, ns=(previous + 10**8, previous + 10**8))


def metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def test_flow_service_runs_and_keeps_traces(tmp_path: Path) -> None:
    path = tmp_path / "greet.flow.yaml"
    write(path, GREET % "Hello")
    with AsgiServer(flow_app(path)) as srv, httpx.Client(base_url=srv.url) as client:
        r = client.post("/run", json={"name": "Ada"})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["outputs"]["hello"] == {"text": "Hello Ada"}
        trace = client.get(f"/runs/{body['run_id']}").json()
        assert trace["status"] == "ok"
        assert trace["nodes"][0]["node"] == "hello"
        assert trace["nodes"][0]["inputs"]["template"] == "Hello Ada"
        # inputs wrapped in {"inputs": ...} work too
        assert client.post("/run", json={"inputs": {"name": "Bo"}}).json()["outputs"]["hello"]["text"] == "Hello Bo"
        assert client.get("/runs/nope").status_code == 404
        health = client.get("/health").json()
        assert health["status"] == "ok" and health["flow"] == "greet" and health["reload_error"] is None
        metrics = client.get("/metrics").text
        assert metric(metrics, "jupyter_flow_requests_total", route="/run", status="200") == 2


def test_bad_requests_get_422_naming_the_field(tmp_path: Path) -> None:
    path = tmp_path / "greet.flow.yaml"
    write(path, GREET % "Hello")
    with AsgiServer(flow_app(path)) as srv, httpx.Client(base_url=srv.url) as client:
        missing = client.post("/run", json={})
        assert missing.status_code == 422
        assert missing.json()["problems"][0]["field"] == "inputs.name"
        wrong = client.post("/run", json={"name": 42})
        assert wrong.status_code == 422 and "name" in wrong.json()["error"]
        unknown = client.post("/run", json={"name": "x", "color": "red"})
        assert unknown.status_code == 422 and "inputs.color" in unknown.json()["error"]
        garbage = client.post("/run", content=b"{not json", headers={"content-type": "application/json"})
        assert garbage.status_code == 422
        assert client.post("/run", json={"name": "still serving"}).status_code == 200


def test_failing_node_gives_500_and_the_service_keeps_serving(tmp_path: Path, serve) -> None:
    calls = Counter()

    def flaky(req):
        calls["n"] += 1
        return Reply(500, {"error": "model exploded"}) if req.body["text"] == "boom" else Reply(200, {"label": "ok"})

    backend = serve({"/predict": flaky})
    path = tmp_path / "remote.flow.yaml"
    write(path, textwrap.dedent(f"""\
        name: remote
        inputs: {{text: {{type: text}}}}
        nodes:
          - id: model
            type: http
            config: {{endpoint: "{backend.url}/predict", input_mapping: {{text: "{{{{ text }}}}"}}}}
        """))
    with AsgiServer(flow_app(path)) as srv, httpx.Client(base_url=srv.url) as client:
        bad = client.post("/run", json={"text": "boom"})
        assert bad.status_code == 500
        assert bad.json()["node"] == "model" and "HTTP 500" in bad.json()["error"]
        assert client.get(f"/runs/{bad.json()['run_id']}").json()["status"] == "error"
        good = client.post("/run", json={"text": "fine"})
        assert good.status_code == 200 and good.json()["outputs"]["model"] == {"label": "ok"}
        metrics = client.get("/metrics").text
        assert metric(metrics, "jupyter_flow_errors_total", node="model", type="RemoteError") == 1


def until(check, timeout_s: float = 10.0):
    """Poll `check()` until it gives something true (a reload is taken in the background)."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


def test_hot_reload_takes_good_edits_and_rejects_bad_ones(tmp_path: Path) -> None:
    path = tmp_path / "greet.flow.yaml"
    write(path, GREET % "Hello")
    with AsgiServer(flow_app(path, settle_s=0.1)) as srv, httpx.Client(base_url=srv.url) as client:
        def greeting(name: str) -> str:
            return client.post("/run", json={"name": name}).json()["outputs"]["hello"]["text"]

        assert greeting("A") == "Hello A"
        write(path, GREET % "Hi")
        assert until(lambda: greeting("A") == "Hi A")
        # an edit that references a node that does not exist: rejected, last good flow serves
        write(path, (GREET % "Hi").replace("{{ name }}", "{{ ghost.output.x }}"))
        assert until(lambda: client.get("/health").json()["status"] == "degraded")
        r = client.post("/run", json={"name": "A"})
        assert r.status_code == 200 and r.json()["outputs"]["hello"]["text"] == "Hi A"
        health = client.get("/health").json()
        assert "ghost" in health["reload_error"] and "hello" in health["reload_error"]
        assert str(tmp_path) not in health["reload_error"] and health["source"] == "greet.flow.yaml"
        assert health["reload_error"].startswith("greet.flow.yaml: ")
        # broken YAML too
        write(path, "nodes: [\n")
        assert until(lambda: "line" in (client.get("/health").json()["reload_error"] or ""))
        assert greeting("B") == "Hi B"
        # fixing the file heals the service; the background watcher picks it up without a request
        write(path, GREET % "Hey")
        assert until(lambda: client.get("/health").json()["status"] == "ok")
        assert client.get("/health").json()["reload_error"] is None
        assert greeting("C") == "Hey C"
        metrics = client.get("/metrics").text
        assert metric(metrics, "jupyter_flow_reloads_total", outcome="rejected") == 2
        assert metric(metrics, "jupyter_flow_reloads_total", outcome="ok") == 2


CANARY = """\
name: canary
inputs: {user: {type: text}}
nodes:
  - id: pick
    type: template
    config: {template: "stable"}
    variants:
      - {id: stable, weight: 0.8}
      - {id: canary, weight: 0.2, config: {template: "canary"}}
    variant_key: "{{ user }}"
"""


def test_canary_split_is_weighted_and_sticky(tmp_path: Path) -> None:
    path = tmp_path / "canary.flow.yaml"
    write(path, CANARY)
    n = 400
    with AsgiServer(flow_app(path)) as srv, httpx.Client(base_url=srv.url, limits=httpx.Limits(max_connections=16)) as client:
        with ThreadPoolExecutor(16) as pool:
            texts = list(pool.map(lambda i: client.post("/run", json={"user": f"user-{i}"}).json()["outputs"]["pick"]["text"], range(n)))
        share = texts.count("canary") / n
        assert 0.14 <= share <= 0.26, share
        # the same key always lands on the same variant
        for i in range(20):
            again = client.post("/run", json={"user": f"user-{i}"}).json()["outputs"]["pick"]["text"]
            assert again == texts[i]
        metrics = client.get("/metrics").text
        canary = metric(metrics, "jupyter_flow_variant_requests_total", node="pick", variant="canary", role="primary")
        stable = metric(metrics, "jupyter_flow_variant_requests_total", node="pick", variant="stable", role="primary")
        assert canary + stable == n + 20
        assert metric(metrics, "jupyter_flow_variant_seconds_count", node="pick", variant="canary", role="primary") == canary


def shadow_flow(folder: Path, url: str, *, downstream: bool = False) -> Path:
    """Node `clf` answers from `url`/v1 and shadows `url`/v2; `after` (if asked) reads it."""
    text = textwrap.dedent(f"""\
        name: shadow
        inputs: {{text: {{type: text}}}}
        nodes:
          - id: clf
            type: http
            config: {{endpoint: "{url}/v1", input_mapping: {{text: "{{{{ text }}}}"}}}}
            variants:
              - {{id: v1, weight: 1}}
              - {{id: v2, weight: 0, config: {{endpoint: "{url}/v2"}}}}
            shadow: true
        """)
    if downstream:
        text += textwrap.dedent("""\
              - id: after
                type: template
                config: {template: "{{ clf.output.label }}"}
            edges:
              - {from: clf, to: after}
            """)
    path = folder / "shadow.flow.yaml"
    write(path, text)
    return path


def test_shadow_runs_the_other_variant_and_records_both(tmp_path: Path, serve) -> None:
    seen = Counter()

    def model(name):
        def route(req):
            seen[name] += 1
            return Reply(200, {"label": f"{name}:{req.body['text']}"}, delay_s=0.05 if name == "v2" else 0.0)

        return route

    backend = serve({"/v1": model("v1"), "/v2": model("v2")})
    path = shadow_flow(tmp_path, backend.url)
    with AsgiServer(flow_app(path)) as srv, httpx.Client(base_url=srv.url) as client:
        r = client.post("/run", json={"text": "hi"}).json()
        assert r["outputs"]["clf"] == {"label": "v1:hi"}  # the primary answers
        deadline = time.monotonic() + 10
        while True:  # the shadow's result joins the trace when it ends
            node = client.get(f"/runs/{r['run_id']}").json()["nodes"][0]
            if node["shadow"] or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        assert node["variant"] == "v1"
        assert node["shadow"]["v1"]["outputs"] == {"label": "v1:hi"}
        assert node["shadow"]["v2"]["outputs"] == {"label": "v2:hi"}
        assert node["shadow"]["v2"]["duration_s"] >= 0.05
        assert seen == {"v1": 1, "v2": 1}
        metrics = client.get("/metrics").text
        assert metric(metrics, "jupyter_flow_variant_requests_total", node="clf", variant="v2", role="shadow") == 1


def test_bearer_token_protects_everything_but_health(tmp_path: Path) -> None:
    path = tmp_path / "greet.flow.yaml"
    write(path, GREET % "Hello")
    with AsgiServer(flow_app(path, token="s3cret")) as srv, httpx.Client(base_url=srv.url) as client:
        assert client.get("/health").status_code == 200
        assert client.post("/run", json={"name": "x"}).status_code == 401
        assert client.post("/run", json={"name": "x"}, headers={"authorization": "Bearer wrong"}).status_code == 401
        ok = client.post("/run", json={"name": "x"}, headers={"authorization": "Bearer s3cret"})
        assert ok.status_code == 200
        assert client.get("/metrics").status_code == 401


def test_serve_cli_rejects_an_invalid_flow_with_exit_2(tmp_path: Path) -> None:
    import subprocess
    import sys

    path = tmp_path / "bad.flow.yaml"
    path.write_text((GREET % "Hi").replace("{{ name }}", "{{ ghost.output }}"))
    proc = subprocess.run([sys.executable, "-m", "jupyter_flow.cli", "serve", "flow", str(path), "--port", "0"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "ghost" in proc.stderr and "Traceback" not in proc.stderr


def test_a_stalled_shadow_does_not_delay_the_answer(tmp_path: Path, serve) -> None:
    def primary(req):
        return Reply(200, {"label": "fast"})

    def stalled(req):
        return Reply(200, {"label": "slow"}, delay_s=1.5)

    backend = serve({"/v1": primary, "/v2": stalled})
    path = shadow_flow(tmp_path, backend.url, downstream=True)
    with AsgiServer(flow_app(path)) as srv, httpx.Client(base_url=srv.url, timeout=30) as client:
        t0 = time.perf_counter()
        r = client.post("/run", json={"text": "hi"})
        elapsed = time.perf_counter() - t0
        assert r.status_code == 200 and r.json()["outputs"]["after"] == {"text": "fast"}
        assert elapsed < 1.2, elapsed  # the 1.5 s shadow did not hold the answer back
        trace = client.get(f"/runs/{r.json()['run_id']}").json()
        clf = next(n for n in trace["nodes"] if n["node"] == "clf")
        assert clf["duration_s"] < 1.0  # the primary's own latency, not the shadow's
        deadline = time.monotonic() + 10
        while not clf["shadow"] and time.monotonic() < deadline:
            time.sleep(0.05)
            clf = next(n for n in client.get(f"/runs/{r.json()['run_id']}").json()["nodes"] if n["node"] == "clf")
        assert clf["shadow"]["v2"]["outputs"] == {"label": "slow"}
        assert clf["shadow"]["v2"]["duration_s"] >= 1.5
        assert clf["shadow"]["v1"]["duration_s"] < 1.0
        metrics = client.get("/metrics").text
        assert metric(metrics, "jupyter_flow_variant_requests_total", node="clf", variant="v2", role="shadow") == 1
