"""A tiny BERT served with `jupyter-flow serve model`: predict, lists, batching, errors."""

from __future__ import annotations

import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import yaml
from model_fixtures import model_dir, tiny_bert  # noqa: F401  (session fixtures)
from servers import AsgiServer, free_port
from test_serve import metric

from jupyter_flow.serve.app import model_app


def service_config(model: Path, **config: object) -> dict:
    return {
        "name": "clause-bert",
        "type": "transformers",
        "config": {
            "model": str(model),
            "task": "text-classification",
            "text": "{{ text }}",
            "batch": {"max_size": 16, "max_wait_ms": 20},
            **config,
        },
        "inputs": {"text": {"type": "text"}},
    }


@pytest.fixture
def served(tiny_bert: Path):  # noqa: F811
    with AsgiServer(model_app(service_config(tiny_bert))) as srv, httpx.Client(base_url=srv.url, timeout=60) as client:
        yield client


def test_predict_single_and_list(served: httpx.Client) -> None:
    one = served.post("/predict", json={"text": "The buyer pays within 30 days."})
    assert one.status_code == 200, one.text
    body = one.json()
    assert set(body) >= {"label", "score", "scores"}
    # tensors reach API clients as numbers, not as trace summaries
    assert isinstance(body["logits"], list) and all(isinstance(x, float) for x in body["logits"])
    texts = ["payment is due", "either party may terminate", "liability is limited"]
    many = served.post("/predict", json={"text": texts})
    assert many.status_code == 200
    results = many.json()
    assert isinstance(results, list) and len(results) == 3
    # a list answer is in order and equal to asking one at a time
    for text, result in zip(texts, results):
        single = served.post("/predict", json={"text": text}).json()
        assert single["label"] == result["label"]
        assert single["score"] == pytest.approx(result["score"], abs=1e-5)


def test_health_reports_the_model(served: httpx.Client) -> None:
    health = served.get("/health").json()
    assert health["status"] == "ok"
    assert health["model_loaded"] is True  # loaded at start-up, before any request
    assert health["type"] == "transformers"
    assert health["device"] == "cpu" and health["cuda_available"] is False
    assert health["dtype"] == "float32"
    assert health["version"]


def test_concurrent_clients_share_forward_passes(tiny_bert: Path) -> None:  # noqa: F811
    texts = [f"clause number {i} about payment" for i in range(64)]
    # 32 threads on one sync client: its pool keeps at most 20 idle connections by default,
    # and trimming to that can close a connection it has just handed to a waiting thread
    # (the thread then reads a closed socket). Keep-alive room for every thread avoids it.
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    with AsgiServer(model_app(service_config(tiny_bert))) as srv, \
            httpx.Client(base_url=srv.url, timeout=60, limits=limits) as served, ThreadPoolExecutor(32) as pool:
        answers = list(pool.map(lambda t: served.post("/predict", json={"text": t}), texts))
        metrics = served.get("/metrics").text
    assert all(a.status_code == 200 for a in answers)
    count = metric(metrics, "jupyter_flow_batch_size_count", node="model")
    total = metric(metrics, "jupyter_flow_batch_size_sum", node="model")
    assert count == 64
    # every request reports the size of the batch it rode in: a mean above 1 means shared passes
    assert total / count > 2, total / count
    assert metric(metrics, "jupyter_flow_requests_total", route="/predict", status="200") == 64


def test_bad_input_is_422_and_model_errors_are_500(tiny_bert: Path) -> None:  # noqa: F811
    config = service_config(tiny_bert, truncation=False, max_length=8)
    with AsgiServer(model_app(config)) as srv, httpx.Client(base_url=srv.url, timeout=60) as client:
        missing = client.post("/predict", json={})
        assert missing.status_code == 422 and missing.json()["problems"][0]["field"] == "inputs.text"
        wrong = client.post("/predict", json={"text": 12})
        assert wrong.status_code == 422 and "text" in wrong.json()["error"]
        not_json = client.post("/predict", content=b"text=hello")
        assert not_json.status_code == 422
        too_long = client.post("/predict", json={"text": "word " * 200})
        assert too_long.status_code == 500
        assert too_long.json()["node"] == "model" and too_long.json()["error"]
        # the service keeps serving
        assert client.post("/predict", json={"text": "short"}).status_code == 200
        metrics = client.get("/metrics").text
        assert metric(metrics, "jupyter_flow_requests_total", route="/predict", status="422") == 3
        assert metric(metrics, "jupyter_flow_requests_total", route="/predict", status="500") == 1


def test_serve_model_cli_starts_a_service(tmp_path: Path, tiny_bert: Path) -> None:  # noqa: F811
    config = tmp_path / "clause.serve.yaml"
    config.write_text(yaml.safe_dump(service_config(tiny_bert)))
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "jupyter_flow.cli", "serve", "model", str(config), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
                if health.status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, proc.stdout.read()
            assert time.monotonic() < deadline, "service did not come up"
            time.sleep(0.2)
        answer = httpx.post(f"http://127.0.0.1:{port}/predict", json={"text": "hello"}, timeout=30)
        assert answer.status_code == 200 and "label" in answer.json()
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_invalid_model_config_exits_2(tmp_path: Path) -> None:
    config = tmp_path / "bad.serve.yaml"
    config.write_text(yaml.safe_dump({"type": "transformers", "config": {"model": "x", "task": "nope", "text": "{{ text }}"}}))
    proc = subprocess.run([sys.executable, "-m", "jupyter_flow.cli", "serve", "model", str(config)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "task" in proc.stderr and "Traceback" not in proc.stderr


def test_a_port_in_use_exits_2_with_the_reason(tmp_path: Path, tiny_bert: Path) -> None:  # noqa: F811
    import socket

    config = tmp_path / "clause.serve.yaml"
    config.write_text(yaml.safe_dump(service_config(tiny_bert)))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = subprocess.run([sys.executable, "-m", "jupyter_flow.cli", "serve", "model", str(config), "--port", str(port)],
                              capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert f"127.0.0.1:{port}" in proc.stderr and "--port" in proc.stderr and "Traceback" not in proc.stderr


def test_relative_model_paths_are_read_from_the_config_folder(tmp_path: Path, tiny_bert: Path) -> None:  # noqa: F811
    import shutil

    folder = tmp_path / "deploy"
    shutil.copytree(tiny_bert, folder / "bert")
    config = service_config(Path("bert"))
    with AsgiServer(model_app_from_file(folder, config)) as srv:
        assert httpx.post(f"{srv.url}/predict", json={"text": "hello"}, timeout=30).status_code == 200


def model_app_from_file(folder: Path, config: dict) -> object:
    path = folder / "model.serve.yaml"
    path.write_text(yaml.safe_dump(config))
    return model_app(path)
