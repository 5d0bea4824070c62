"""A served flow in one process against the same flow on Ray Serve, with one and with two
replicas of its first model node, in one run.

    python benchmarks/serve_ray.py [--requests 400] [--clients 16]

The flow: two torch models in a chain (an MLP made here, micro-batched; then a second
one) and an http node calling an echo server on loopback. The one-process server is
`jupyter-flow serve flow` in its own process; the Ray Serve one is `RayServer` on a local
Ray started here (2 CPUs, 200 MB object store, no dashboard): an ingress replica and a
replica per model node, then the same with `deploy: {embed: {num_replicas: 2}}`. This
process is the load generator (`serve_load.load`: aiohttp, `--clients` at once) and
the echo server. Prints requests per second, p50/p99 latency and errors per target, the
overhead of Ray Serve against one process, Ray's start-up and deploy times and the memory
of its processes. Never fails on timing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import statistics
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from serve_load import Service, free_port, load

from jupyter_flow.flow import Flow
from jupyter_flow.serve.ray_serve import RayServer
from jupyter_flow_examples.models import make_torchscript_model

FLOW = """\
spec_version: 1
name: serve-ray-bench
inputs: {x: {type: list}}
nodes:
  - id: embed
    type: torch
    config: {model: embed.pt, inputs: "{{ x }}", device: cpu, batch: {max_size: 16, max_wait_ms: 5}}
  - id: classify
    type: torch
    config: {model: classify.pt, inputs: "{{ embed.output.output }}", device: cpu}
  - id: echo
    type: http
    config: {endpoint: "%s/echo", input_mapping: {scores: "{{ classify.output.output.tolist() }}"}}
edges:
  - {from: start, to: embed}
  - {from: embed, to: classify}
  - {from: classify, to: echo}
"""


class _Echo(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        data = json.dumps({"echo": json.loads(body or b"null")}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def ray_memory_mb() -> tuple[int, float]:
    """The processes of the local Ray started here (this process's descendants: GCS,
    raylet, workers, Serve's controller, proxy and replicas) and their RSS in MB."""
    import psutil

    procs = psutil.Process().children(recursive=True)
    rss = 0
    for proc in procs:
        try:
            rss += proc.memory_info().rss
        except psutil.Error:  # gone meanwhile
            pass
    return len(procs), rss / 2**20


def row(name: str, wall: float, latencies: list[float], errors: int, n: int) -> dict[str, Any]:
    ms = sorted(x * 1000 for x in latencies)
    p99 = ms[min(len(ms) - 1, math.ceil(0.99 * len(ms)) - 1)]
    return {"target": name, "rps": n / wall, "p50": statistics.median(ms), "p99": p99, "errors": errors}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--clients", type=int, default=16)
    args = parser.parse_args()
    bodies = [{"x": [math.sin(i + k) for k in range(8)]} for i in range(args.requests)]
    echo = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    echo.daemon_threads = True
    threading.Thread(target=echo.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{echo.server_address[1]}"
    rows: list[dict[str, Any]] = []
    notes: list[str] = []

    def measure(name: str, target: str) -> None:
        wall, latencies, errors = asyncio.run(load(target, "/run", bodies, args.clients))
        rows.append(row(name, wall, latencies, errors, len(bodies)))
        print(f"  {name}: {rows[-1]['rps']:.0f} req/s", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_torchscript_model(root / "embed.pt", out_features=8, seed=1)
        make_torchscript_model(root / "classify.pt", in_features=8, out_features=3, seed=2)
        path = root / "bench.flow.yaml"
        path.write_text(FLOW % url)
        one = Service("flow", path)
        try:
            one.wait()
            measure("one process (uvicorn)", one.url)
        finally:
            one.stop()

        t0 = time.perf_counter()
        server = RayServer.for_flow(path, port=free_port())
        try:
            server.start()
            notes.append(f"Ray started and the flow deployed (ingress + 2 model deployments, 1 replica each) in "
                         f"{time.perf_counter() - t0:.1f} s")
            measure("Ray Serve, 1 replica of embed", server.url)
            procs, mb = ray_memory_mb()
            notes.append(f"Ray's processes with 1 replica each: {procs}, {mb:.0f} MB RSS in all")
            path.write_text(FLOW % url + "deploy:\n  embed: {num_replicas: 2}\n")
            t0 = time.perf_counter()
            server.deploy(Flow.load(path).validate())
            notes.append(f"redeployed with 2 replicas of embed in {time.perf_counter() - t0:.1f} s")
            time.sleep(2)  # the old ingress drains
            measure("Ray Serve, 2 replicas of embed", server.url)
            procs, mb = ray_memory_mb()
            notes.append(f"Ray's processes with 2 replicas of embed: {procs}, {mb:.0f} MB RSS in all")
        finally:
            server.close()
    echo.shutdown()

    base = rows[0]
    print(f"\n{args.requests} requests from {args.clients} concurrent clients; {os.cpu_count()} CPUs\n")
    print("| target | req/s | p50 ms | p99 ms | errors | req/s vs one process | p99 vs one process |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['target']} | {r['rps']:.0f} | {r['p50']:.1f} | {r['p99']:.1f} | {r['errors']} | "
              f"{r['rps'] / base['rps']:.2f}x | {r['p99'] / base['p99']:.2f}x |")
    print()
    for note in notes:
        print(f"- {note}")


if __name__ == "__main__":
    main()
