"""Served flows under hostile clients: files confined to a folder or uploaded, no server
path in any answer, bounded bodies and history, health that says little to strangers,
and a flow file rewritten under load never served half-written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from processes import stop
from servers import AsgiServer, Reply, Request, free_port
from test_serve import metric

from jupyter_flow.serve.app import flow_app, model_app
from jupyter_flow_examples.samples import make_contract_pdf

ROOT = Path(__file__).resolve().parents[1]
DEPLOYED = ROOT / "images" / "pytorch-cuda" / "contract-review.flow.yaml"

PDF_FLOW = """\
spec_version: 1
name: read
inputs:
  document: {type: file}
nodes:
  - id: extract
    type: pdf
    config: {source: "{{ document }}"}
"""

GREET = """\
name: greet
inputs: {name: {type: text}}
nodes:
  - id: hello
    type: template
    config: {template: "Hello {{ name }}"}
"""


def secret_pdf(folder: Path) -> Path:
    import pymupdf

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "secret.pdf"
    doc = pymupdf.open()
    doc.new_page().insert_text((72, 72), "TOP SECRET launch codes 0000")
    doc.save(path)
    return path


@pytest.fixture
def served_cli(tmp_path: Path) -> Iterator[object]:
    """Start `jupyter-flow serve flow FLOW ARGS...` as a user does; stopped after the test."""
    procs: list[subprocess.Popen[str]] = []

    def start(flow: Path, *args: str, env: dict[str, str] | None = None) -> str:
        port = free_port()
        exe = Path(sys.executable).with_name("jupyter-flow")
        proc = subprocess.Popen([str(exe), "serve", "flow", str(flow), "--port", str(port), *args],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env={**os.environ, **(env or {})}, cwd=tmp_path)
        procs.append(proc)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()[0]
            try:
                httpx.get(url + "/health", timeout=1)
                return url
            except httpx.TransportError:
                time.sleep(0.1)
        raise AssertionError("the service did not start")

    yield start
    for proc in procs:
        stop(proc)


def test_the_secret_pdf_request_is_refused_and_reveals_no_path(tmp_path: Path, served_cli) -> None:
    secret = secret_pdf(tmp_path / "private")
    flow = tmp_path / "app" / "read.flow.yaml"
    flow.parent.mkdir()
    flow.write_text(PDF_FLOW)
    url = served_cli(flow, "--token-env", "API_TOKEN", env={"API_TOKEN": "s3cret"})
    auth = {"authorization": "Bearer s3cret"}
    for probe in (str(secret), "../private/secret.pdf", "/root/.ssh/id_rsa", "/etc", str(tmp_path)):
        r = httpx.post(url + "/run", json={"document": probe}, headers=auth, timeout=30)
        assert r.status_code == 422, r.text
        assert "SECRET" not in r.text and "multipart/form-data" in r.text
        for path in (str(tmp_path), "/root", "/etc", "private"):
            assert path not in r.text.replace(probe, ""), (path, r.text)
    # /health tells a stranger only whether the service is up
    assert httpx.get(url + "/health").json() == {"status": "ok"}
    health = httpx.get(url + "/health", headers=auth).json()
    assert health["source"] == "read.flow.yaml" and str(tmp_path) not in json.dumps(health)
    # the fast event loop and parser, both installed with the serve extra
    print("server:", health["server"])
    assert health["server"] == {"loop": "uvloop", "http": "httptools"}


def test_paths_are_read_only_inside_files_root_symlinks_included(tmp_path: Path) -> None:
    root = tmp_path / "contracts"
    readable = secret_pdf(root)
    outside = secret_pdf(tmp_path / "private")
    (root / "link.pdf").symlink_to(outside)
    (root / "up").symlink_to(tmp_path / "private")
    flow = tmp_path / "read.flow.yaml"
    flow.write_text(PDF_FLOW)
    with AsgiServer(flow_app(flow, files_root=root)) as srv, httpx.Client(base_url=srv.url, timeout=30) as client:
        ok = client.post("/run", json={"document": "secret.pdf"})
        assert ok.status_code == 200, ok.text
        assert "TOP SECRET" in ok.json()["outputs"]["extract"]["text"]
        assert client.post("/run", json={"document": str(readable)}).status_code == 200
        for probe in ("../private/secret.pdf", str(outside), "link.pdf", "up/secret.pdf", "/etc/passwd"):
            r = client.post("/run", json={"document": probe})
            assert r.status_code == 422, (probe, r.text)
            assert "outside the folder" in r.text and str(tmp_path) not in r.text
        # a missing file inside the root: the run fails, naming the path the client gave, no server path
        missing = client.post("/run", json={"document": "nope.pdf"})
        assert missing.status_code == 500
        assert "nope.pdf" in missing.json()["error"] and str(tmp_path) not in missing.text
        assert str(tmp_path) not in client.get(f"/runs/{missing.json()['run_id']}").text


def classifier(req: Request) -> Reply:
    # stands in for the clause-classifier model service of the deployment
    texts = req.body["text"]
    return Reply(200, {"predictions": [{"label": "other", "score": 0.1} for _ in texts]})


def upload_folders() -> set[str]:
    return {p.name for p in Path(tempfile.gettempdir()).glob("jupyter-flow-upload-*")}


def test_a_multipart_upload_runs_the_contract_review_deployment(tmp_path: Path, serve, monkeypatch) -> None:
    planted = make_contract_pdf(tmp_path / "contract.pdf")
    backend = serve({"/predict": classifier})
    monkeypatch.setenv("CLAUSE_CLASSIFIER_URL", backend.url)
    before = upload_folders()
    with AsgiServer(flow_app(DEPLOYED)) as srv, httpx.Client(base_url=srv.url, timeout=60) as client:
        with planted.path.open("rb") as pdf:
            r = client.post("/run", files={"document": ("my contract.pdf", pdf, "application/pdf")})
        assert r.status_code == 200, r.text
        review = r.json()["outputs"]["report"]["review"]
        assert set(review["summary"]["rules_fired"]) == set(planted.risks)
        assert str(tmp_path) not in r.text and tempfile.gettempdir() + "/jupyter-flow-upload" not in r.text
        # the trace names the upload by its field and file name, not by where it was kept
        trace = client.get(f"/runs/{r.json()['run_id']}").text
        assert "my_contract.pdf" in trace and "jupyter-flow-upload" not in trace
        # the same input as a path: refused, saying how to send the file
        refused = client.post("/run", json={"document": str(planted.path)})
        assert refused.status_code == 422 and "multipart/form-data" in refused.json()["error"]
    assert upload_folders() == before  # uploads are deleted after their run


def test_a_100_mb_body_gets_413_declared_or_streamed(tmp_path: Path) -> None:
    flow = tmp_path / "greet.flow.yaml"
    flow.write_text(GREET)
    big = b'{"name": "' + b"x" * (100 * 1024 * 1024) + b'"}'
    with AsgiServer(flow_app(flow)) as srv, httpx.Client(base_url=srv.url, timeout=60) as client:
        r = client.post("/run", content=big, headers={"content-type": "application/json"})
        assert r.status_code == 413 and "--max-body" in r.json()["error"]

        def chunks() -> Iterator[bytes]:  # no Content-Length: counted while it streams
            for start in range(0, len(big), 1024 * 1024):
                yield big[start:start + 1024 * 1024]

        streamed = client.post("/run", content=chunks(), headers={"content-type": "application/json"})
        assert streamed.status_code == 413
        assert client.post("/run", json={"name": "still up"}).json()["outputs"]["hello"]["text"] == "Hello still up"
        assert metric(client.get("/metrics").text, "jupyter_flow_requests_total", route="/run", status="413") == 1
    # an upload is counted as it streams too
    pdf_flow = tmp_path / "read.flow.yaml"
    pdf_flow.write_text(PDF_FLOW)
    before = upload_folders()
    with AsgiServer(flow_app(pdf_flow, max_body=1024 * 1024)) as srv, httpx.Client(base_url=srv.url, timeout=60) as client:
        r = client.post("/run", files={"document": ("big.pdf", b"%PDF" + b"0" * (3 * 1024 * 1024))})
        assert r.status_code == 413
    assert upload_folders() == before


def test_deep_or_duplicated_request_bodies_get_422(tmp_path: Path) -> None:
    flow = tmp_path / "greet.flow.yaml"
    flow.write_text(GREET)
    with AsgiServer(flow_app(flow)) as srv, httpx.Client(base_url=srv.url, timeout=30) as client:
        deep = b'{"name": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
        r = client.post("/run", content=deep, headers={"content-type": "application/json"})
        assert r.status_code == 422 and "nested more than" in r.json()["error"]
        twice = client.post("/run", content=b'{"name": "a", "name": "b"}', headers={"content-type": "application/json"})
        assert twice.status_code == 422 and "given twice" in twice.json()["error"]
        assert client.post("/run", json={"name": "ok"}).status_code == 200


def test_run_history_is_bounded_by_count_and_bytes(tmp_path: Path) -> None:
    flow = tmp_path / "greet.flow.yaml"
    flow.write_text(GREET)
    with AsgiServer(flow_app(flow, keep_runs=3)) as srv, httpx.Client(base_url=srv.url) as client:
        ids = [client.post("/run", json={"name": f"n{i}"}).json()["run_id"] for i in range(5)]
        assert [client.get(f"/runs/{i}").status_code for i in ids] == [404, 404, 200, 200, 200]
    with AsgiServer(flow_app(flow, keep_bytes=20_000)) as srv, httpx.Client(base_url=srv.url) as client:
        small = client.post("/run", json={"name": "x"}).json()["run_id"]
        assert client.get(f"/runs/{small}").status_code == 200
        large = client.post("/run", json={"name": "x" * 50_000}).json()["run_id"]  # its trace alone is over the bound
        assert client.get(f"/runs/{large}").status_code == 404
        ids = [client.post("/run", json={"name": "y" * 3000}).json()["run_id"] for _ in range(10)]
        kept = [i for i in ids if client.get(f"/runs/{i}").status_code == 200]
        assert 0 < len(kept) < 10 and kept == ids[-len(kept):]  # the newest, within the bytes


def test_a_model_service_keeps_no_runs_unless_asked(tmp_path: Path) -> None:
    config = {"type": "template", "config": {"template": "{{ text }}"}}
    with AsgiServer(model_app(config)) as srv, httpx.Client(base_url=srv.url) as client:
        r = client.post("/predict", json={"text": "hi"})
        assert r.status_code == 200 and "x-run-id" not in r.headers
        assert client.get("/runs/anything").status_code == 404
        assert client.post("/predict", json={"text": [1, 2]}).status_code == 422
    with AsgiServer(model_app(config, keep_runs=2)) as srv, httpx.Client(base_url=srv.url) as client:
        r = client.post("/predict", json={"text": "hi"})
        assert client.get(f"/runs/{r.headers['x-run-id']}").json()["status"] == "ok"


def test_metrics_count_an_answer_that_could_not_be_built_as_500(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "odd.py").write_text(textwrap.dedent("""\
        class Unprintable:
            def __repr__(self):
                raise RuntimeError("no way to show this")


        def make(name):
            return {"value": Unprintable()}
        """))
    monkeypatch.syspath_prepend(str(tmp_path))
    flow = tmp_path / "odd.flow.yaml"
    flow.write_text(textwrap.dedent("""\
        inputs: {name: {type: text}}
        nodes:
          - {id: odd, type: python, config: {function: "odd:make", input_mapping: {name: "{{ name }}"}}}
        """))
    with AsgiServer(flow_app(flow)) as srv, httpx.Client(base_url=srv.url) as client:
        # the run succeeds, but its output cannot be written as JSON
        r = client.post("/run", json={"name": "x"})
        assert r.status_code == 500 and "failed to answer" in r.json()["error"]
        text = client.get("/metrics").text
        assert metric(text, "jupyter_flow_requests_total", route="/run", status="200") == 0
        assert metric(text, "jupyter_flow_requests_total", route="/run", status="500") == 1


TWO_NODES = """\
name: pair
inputs: {name: {type: text}}
nodes:
  - id: first
    type: template
    config: {template: "%s {{ name }}"}
  - id: second
    type: template
    config: {template: "%s {{ first.output.text }}"}
edges:
  - {from: first, to: second}
"""


def test_a_flow_file_written_in_two_chunks_under_load_is_never_served_half(tmp_path: Path) -> None:
    path = tmp_path / "pair.flow.yaml"
    path.write_text(TWO_NODES % ("v0", "v0"))
    answers: list[tuple[int, dict]] = []
    stop = threading.Event()

    def client_loop(url: str) -> None:
        with httpx.Client(base_url=url, timeout=30) as client:
            while not stop.is_set():
                r = client.post("/run", json={"name": "x"})
                answers.append((r.status_code, r.json()))

    with AsgiServer(flow_app(path)) as srv:
        clients = [threading.Thread(target=client_loop, args=(srv.url,)) for _ in range(4)]
        for thread in clients:
            thread.start()
        try:
            for version in range(1, 9):
                text = TWO_NODES % (f"v{version}", f"v{version}")
                cut = text.index("  - id: second")  # the first half is itself a valid flow
                with path.open("w") as out:
                    out.write(text[:cut])
                    out.flush()
                    time.sleep(0.05)
                    out.write(text[cut:])
                time.sleep(0.5)
        finally:
            stop.set()
            for thread in clients:
                thread.join()
        with httpx.Client(base_url=srv.url) as client:
            deadline = time.monotonic() + 10  # the last edit is taken once it has settled
            while (final := client.post("/run", json={"name": "x"}).json()["outputs"])["second"]["text"] != "v8 v8 x":
                if time.monotonic() > deadline:
                    break
                time.sleep(0.05)
    incomplete = [body for status, body in answers if status != 200 or set(body["outputs"]) != {"first", "second"}]
    print(f"{len(answers)} answers while the file was rewritten 8 times, {len(incomplete)} incomplete")
    assert len(answers) > 50 and incomplete == []
    assert final["second"]["text"] == "v8 v8 x"


def test_the_compose_review_api_serves_uploads_and_mounted_contracts(tmp_path: Path, serve, served_cli) -> None:
    import yaml

    compose = yaml.safe_load((ROOT / "images" / "pytorch-cuda" / "compose.yaml").read_text())
    command = compose["services"]["review-api"]["command"]
    contracts = tmp_path / "contracts"
    planted = make_contract_pdf(contracts / "2024" / "acme.pdf")
    args = [{"/work/contract-review.flow.yaml": str(DEPLOYED), "/contracts": str(contracts)}.get(a, a) for a in command[3:]]
    args = [a for a in args if a not in ("--host", "0.0.0.0")]
    while "--port" in args:  # the fixture picks a free port
        i = args.index("--port")
        del args[i:i + 2]
    backend = serve({"/predict": classifier})
    url = served_cli(DEPLOYED, *args, env={"REVIEW_API_TOKEN": "t0ken", "CLAUSE_CLASSIFIER_URL": backend.url})
    auth = {"authorization": "Bearer t0ken"}
    with planted.path.open("rb") as pdf:
        uploaded = httpx.post(url + "/run", files={"document": ("acme.pdf", pdf)}, headers=auth, timeout=60)
    assert uploaded.status_code == 200, uploaded.text
    named = httpx.post(url + "/run", json={"document": "2024/acme.pdf"}, headers=auth, timeout=60)
    assert named.status_code == 200, named.text
    for r in (uploaded, named):
        assert set(r.json()["outputs"]["report"]["review"]["summary"]["rules_fired"]) == set(planted.risks)
    secret_pdf(tmp_path)  # next to the contracts folder, not in it
    outside = httpx.post(url + "/run", json={"document": "../secret.pdf"}, headers=auth, timeout=60)
    assert outside.status_code == 422 and str(tmp_path) not in outside.text
    assert httpx.post(url + "/run", json={"document": "2024/acme.pdf"}, timeout=60).status_code == 401


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the server's memory from /proc")
def test_keep_mb_bounds_the_memory_kept_for_past_runs(tmp_path: Path) -> None:
    # the whole run was kept while only its summarised trace was counted: --keep-mb 10 and
    # 60 requests of 5 MB grew a server from 63 to 669 MB
    flow = tmp_path / "greet.flow.yaml"
    flow.write_text(GREET)
    port = free_port()
    exe = Path(sys.executable).with_name("jupyter-flow")
    proc = subprocess.Popen([str(exe), "serve", "flow", str(flow), "--port", str(port), "--keep-mb", "10", "--max-body", "16MB"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None and time.monotonic() < deadline, "the service did not start"
            try:
                httpx.get(url + "/health", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        with httpx.Client(base_url=url, timeout=60) as client:
            for _ in range(5):  # warm: allocator pools, first traces
                client.post("/run", json={"name": "w" * 5_000_000})
            before = _rss_mb(proc.pid)
            ids = [client.post("/run", json={"name": chr(65 + i % 26) * 5_000_000}).headers["x-run-id"] for i in range(40)]
            grown = _rss_mb(proc.pid) - before
            kept = [i for i in ids if client.get(f"/runs/{i}").status_code == 200]
            print(f"RSS grew {grown:.0f} MB over 40 requests of 5 MB; {len(kept)} runs kept")
            assert kept and kept == ids[-len(kept):]
            assert grown < 100  # the 10 MB kept plus the allocator's slack, not 200 MB of inputs
    finally:
        stop(proc)


def test_a_half_sent_body_is_answered_408_and_holds_nothing(tmp_path: Path) -> None:
    # half-sent request bodies were held open forever (150 connections, 71 s)
    import socket

    flow = tmp_path / "greet.flow.yaml"
    flow.write_text(GREET)
    with AsgiServer(flow_app(flow, body_timeout_s=1)) as srv:
        host, port = srv.url.removeprefix("http://").split(":")
        socks = []
        for _ in range(20):
            s = socket.create_connection((host, int(port)), timeout=30)
            s.sendall(b"POST /run HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"name\": \"")
            socks.append(s)
        answers = []
        for s in socks:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
            answers.append(data.split(b"\r\n", 1)[0])
            s.close()
        assert set(answers) == {b"HTTP/1.1 408 Request Timeout"}, answers
        with httpx.Client(base_url=srv.url, timeout=10) as client:
            assert client.get("/health").status_code == 200
            assert client.post("/run", json={"name": "ok"}).json()["outputs"]["hello"]["text"] == "Hello ok"
            assert metric(client.get("/metrics").text, "jupyter_flow_requests_total", route="/run", status="408") == 20


def test_worker_threads_held_by_abandoned_work_give_503_with_retry_after(tmp_path: Path) -> None:
    # abandoned worker threads exhausted a served flow's pool, and then a request that did
    # nothing failed with a misleading "ran past timeout_s"
    release = tmp_path / "release"
    (tmp_path / "blocker.py").write_text(textwrap.dedent(f"""\
        import os, time

        def hold(name):
            deadline = time.monotonic() + 60
            while not os.path.exists({str(release)!r}) and time.monotonic() < deadline:
                time.sleep(0.05)
            return {{"name": name}}
        """))
    flow = tmp_path / "hold.flow.yaml"
    flow.write_text(textwrap.dedent("""\
        name: hold
        inputs: {name: {type: text}}
        nodes:
          - id: work
            type: python
            config: {function: "blocker:hold", input_mapping: {name: "{{ name }}"}}
            timeout_s: 0.2
        """))
    from jupyter_flow.workers import DEFAULT_MAX_THREADS

    try:
        with AsgiServer(flow_app(flow)) as srv, httpx.Client(base_url=srv.url, timeout=60) as client:
            answers = [client.post("/run", json={"name": str(i)}) for i in range(DEFAULT_MAX_THREADS)]
            assert {r.status_code for r in answers} == {500} and "timeout_s" in answers[0].json()["error"]
            # each run gave up on its thread: now every thread is held
            busy = client.post("/run", json={"name": "one more"})
            assert busy.status_code == 503 and busy.headers["retry-after"].isdigit()
            assert "worker threads are still busy" in busy.json()["error"]
            release.write_text("go")
            deadline = time.monotonic() + 30
            while client.post("/run", json={"name": "x"}).status_code != 200:
                assert time.monotonic() < deadline, "the threads never came back"
                time.sleep(0.2)
    finally:
        release.write_text("go")
