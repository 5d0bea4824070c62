"""Load on served models and a served flow: a bounded number of requests from many
concurrent clients, against the same model served without micro-batching (the baseline).

    python benchmarks/serve_load.py [--requests 2000] [--clients 64]

Each service runs in its own process (`jupyter-flow serve ...` on a loopback port, with
uvloop and httptools when installed); this process is the load generator (aiohttp). Prints requests per second, p50/p99 latency, mean batch
size and the error count per target. Never fails on timing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import yaml
from prometheus_client.parser import text_string_to_metric_families

from jupyter_flow_examples.models import make_tiny_bert


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def metric_sum(text: str, name: str) -> float:
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples if s.name == name)


class Service:
    def __init__(self, kind: str, target: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jupyter_flow.cli", "serve", kind, str(target), "--port", str(self.port), "--log-level", "warning"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )

    def wait(self) -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"service exited: {self.proc.stderr.read()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise RuntimeError("service did not start")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


async def load(url: str, path: str, bodies: list[dict], clients: int) -> tuple[float, list[float], int]:
    """`clients` concurrent loops posting `bodies` from aiohttp (a client that costs far
    less per request than the services it measures, so it is not the bottleneck)."""
    import aiohttp

    queue: asyncio.Queue[dict] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)
    latencies: list[float] = []
    errors = 0

    async def client_loop(session: aiohttp.ClientSession) -> None:
        nonlocal errors
        while True:
            try:
                body = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            t0 = time.perf_counter()
            try:
                async with session.post(url + path, json=body) as r:
                    await r.read()
                    ok = r.status == 200
            except aiohttp.ClientError:
                ok = False
            latencies.append(time.perf_counter() - t0)
            errors += not ok

    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=clients), timeout=timeout) as session:

        async def warm(i: int) -> None:
            async with session.post(url + path, json=bodies[i % len(bodies)]) as r:
                await r.read()

        await asyncio.gather(*(warm(i) for i in range(clients)))  # open connections, warm up
        t0 = time.perf_counter()
        await asyncio.gather(*(client_loop(session) for _ in range(clients)))
        wall = time.perf_counter() - t0
    return wall, latencies, errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--hidden", type=int, default=256, help="BERT hidden size (64 makes the HTTP stack the bottleneck)")
    parser.add_argument("--layers", type=int, default=4)
    args = parser.parse_args()
    words = "payment due within days invoice terminate notice liability limited confidential law court".split()
    texts = [" ".join(words[(i * 7 + j) % len(words)] for j in range(12 + i % 20)) for i in range(257)]

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model = make_tiny_bert(root / "bert", labels=["a", "b", "c"], hidden_size=args.hidden, layers=args.layers,
                               heads=max(1, args.hidden // 64))
        base = {"type": "transformers", "config": {"model": str(model), "task": "text-classification", "text": "{{ text }}"},
                "inputs": {"text": {"type": "text"}}}
        batched = {**base, "name": "batched", "config": {**base["config"], "batch": {"max_size": 32, "max_wait_ms": 5}}}
        single = {**base, "name": "unbatched"}
        (root / "batched.yaml").write_text(yaml.safe_dump(batched))
        (root / "single.yaml").write_text(yaml.safe_dump(single))
        flow = {
            "name": "classify-and-route",
            "inputs": {"text": {"type": "text"}},
            "nodes": [
                {"id": "clf", "type": "transformers", "config": batched["config"]},
                {"id": "reply", "type": "template", "config": {"template": "{{ clf.output.label }}: {{ text[:20] }}"}},
            ],
            "edges": [{"from": "clf", "to": "reply"}],
        }
        (root / "flow.flow.yaml").write_text(yaml.safe_dump(flow))
        targets = [
            ("model, no micro-batching (baseline)", "model", root / "single.yaml", "/predict"),
            ("model, micro-batched (32, 5 ms)", "model", root / "batched.yaml", "/predict"),
            ("flow: model + template", "flow", root / "flow.flow.yaml", "/run"),
        ]
        rows = []
        bodies = [{"text": t} for t in texts]
        for name, kind, target, path in targets:
            service = Service(kind, target)
            try:
                service.wait()
                wall, lat, errors = asyncio.run(load(service.url, path, [bodies[i % len(bodies)] for i in range(args.requests)], args.clients))
                metrics = httpx.get(f"{service.url}/metrics").text
            finally:
                service.stop()
            count = metric_sum(metrics, "jupyter_flow_batch_size_count")
            mean_batch = metric_sum(metrics, "jupyter_flow_batch_size_sum") / count if count else float("nan")
            lat.sort()
            rows.append((name, args.requests / wall, statistics.median(lat) * 1e3, lat[int(0.99 * (len(lat) - 1))] * 1e3, mean_batch, errors))

    print(f"{args.requests} requests from {args.clients} concurrent aiohttp clients; BERT (hidden {args.hidden}, {args.layers} layers) on CPU; "
          f"{os.cpu_count()} cores")
    print("| target | req/s | p50 ms | p99 ms | mean batch | errors |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, rps, p50, p99, batch, errors in rows:
        print(f"| {name} | {rps:.0f} | {p50:.1f} | {p99:.1f} | {batch:.1f} | {errors} |")
    print(f"\nmicro-batching vs none: {rows[1][1] / rows[0][1]:.2f}x requests per second")


if __name__ == "__main__":
    main()
