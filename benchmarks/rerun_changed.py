"""Change the last node, run again: the node cache against running the whole flow.

A customer-service-like flow of four http nodes in a chain (intent -> lookup -> draft ->
reply), each against a loopback service with a fixed latency (50 ms by default), runs
once in full through a fresh node cache (the baseline: every node runs, and is stored);
then the last node's config changes and the flow runs again with the same cache: the
first three nodes come from the cache, only the last one runs. Each round uses a new
cache folder; the table shows the median of the rounds.

    python benchmarks/rerun_changed.py [--rounds N] [--latency-ms MS]

Prints a table and the ratio (target: under 30%); never fails on timing.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from jupyter_flow import Flow

STEPS = ("intent", "lookup", "draft", "reply")


def serve(latency_s: float) -> ThreadingHTTPServer:
    """One loopback server answering every step's path after `latency_s`."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:  # noqa: N802 (the name http.server calls)
            body = json.loads(self.rfile.read(int(self.headers.get("content-length") or 0)) or b"{}")
            time.sleep(latency_s)
            step = self.path.strip("/")
            data = json.dumps({step: f"{step}({body.get('text', '')}{body.get('tone', '')})"}).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def support_flow(url: str, tone: str) -> Flow:
    nodes, previous = [], "{{ question }}"
    for step in STEPS:
        mapping = {"text": previous, **({"tone": tone} if step == STEPS[-1] else {})}
        nodes.append({"id": step, "type": "http", "config": {"endpoint": f"{url}/{step}", "input_mapping": mapping}})
        previous = "{{ " + step + ".output." + step + " }}"
    return Flow.from_dict({
        "name": "support", "inputs": {"question": {"type": "string", "default": "where is my parcel?"}},
        "nodes": nodes, "edges": [{"from": a, "to": b} for a, b in zip(STEPS, STEPS[1:])],
    }).validate()


def timed(flow: Flow, cache: Path) -> tuple[float, int]:
    t0 = time.perf_counter()
    result = flow.run(cache=cache)
    return time.perf_counter() - t0, sum(r.cached for r in result.trace)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    args = parser.parse_args()
    server = serve(args.latency_ms / 1000)
    url = f"http://127.0.0.1:{server.server_address[1]}"
    full_flow, changed_flow = support_flow(url, "."), support_flow(url, "!")
    full_flow.run()  # the shared HTTP client and the imports, before anything is timed
    full: list[float] = []
    changed: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.rounds):
            cache = Path(tmp) / f"cache{i}"
            seconds, cached = timed(full_flow, cache)
            assert cached == 0, cached
            full.append(seconds)
            seconds, cached = timed(changed_flow, cache)
            assert cached == len(STEPS) - 1, cached  # only the changed last node ran
            changed.append(seconds)
    server.shutdown()
    full_s, changed_s = statistics.median(full), statistics.median(changed)
    print(f"four chained http nodes, {args.latency_ms:g} ms each, {args.rounds} rounds (median)")
    print(f"{'case':<44} {'ms':>8}")
    print(f"{'full run (every node runs, stored)':<44} {full_s * 1000:8.1f}")
    print(f"{'last node changed, with the cache':<44} {changed_s * 1000:8.1f}")
    print(f"ratio: {changed_s / full_s:.1%} of the full run (target: under 30%)")


if __name__ == "__main__":
    main()
