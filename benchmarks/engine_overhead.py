"""Engine overhead: a 50-node chain of trivial python nodes, and a 32-way fan-out of
100 ms remote calls to a loopback server, each against its baseline in the same run.

    python benchmarks/engine_overhead.py [--runs N]

Prints a table; never fails on timing.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import multiprocessing
import statistics
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

from jupyter_flow import Flow, register_function

CHAIN = 50
FANOUT = 32
DELAY_S = 0.100


async def step(x: int) -> dict[str, int]:
    return {"x": x + 1}


def step_sync(x: int) -> dict[str, int]:
    return {"x": x + 1}


def chain_flow(function: str, blocking: bool | None = None) -> Flow:
    nodes = []
    for i in range(CHAIN):
        source = "{{ x }}" if i == 0 else f"{{{{ n{i - 1}.output.x }}}}"
        config = {"function": function, "input_mapping": {"x": source}}
        if blocking is not None:
            config["blocking"] = blocking
        nodes.append({"id": f"n{i}", "type": "python", "config": config})
    edges = [{"from": f"n{i - 1}", "to": f"n{i}"} for i in range(1, CHAIN)]
    return Flow.from_dict({"name": "chain", "inputs": {"x": {"type": "integer", "default": 0}}, "nodes": nodes, "edges": edges})


async def hand_chain(x: int) -> int:
    for _ in range(CHAIN):
        x = (await step(x=x))["x"]
    return x


def timed(fn, runs: int) -> float:
    """Median seconds of `runs` calls of the coroutine function `fn` on one loop."""

    async def go() -> list[float]:
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            await fn()
            times.append(time.perf_counter() - t0)
        return times

    gc.collect()
    return statistics.median(asyncio.run(go()))


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # listen() backlog: 32 connections arrive at once


def _serve(ports: multiprocessing.Queue) -> None:
    server = _Server(("127.0.0.1", 0), _Slow)
    ports.put(server.server_address[1])
    server.serve_forever()


class _Slow(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        time.sleep(DELAY_S)
        body = b'{"ok": true}'
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def fanout_flow(url: str) -> Flow:
    nodes = [{"id": f"call{i}", "type": "http", "config": {"endpoint": url, "input_mapping": {"i": i}}} for i in range(FANOUT)]
    nodes.append({"id": "join", "type": "template", "config": {"template": "{{ call0.output.ok }}"}})
    edges = [{"from": f"call{i}", "to": "join"} for i in range(FANOUT)]
    return Flow.from_dict({"name": "fanout", "nodes": nodes, "edges": edges})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--fanout-runs", type=int, default=7)
    args = parser.parse_args()
    register_function(step, name="step")
    register_function(step_sync, name="step_sync")

    rows = []
    base = timed(lambda: hand_chain(0), args.runs * 5)
    flow = chain_flow("step")
    flow.run({"x": 0})
    engine = timed(lambda: flow.arun({"x": 0}), args.runs)
    events = []
    with_events = timed(lambda: flow.arun({"x": 0}, on_event=events.append), args.runs)
    sync_flow = chain_flow("step_sync", blocking=False)
    engine_sync = timed(lambda: sync_flow.arun({"x": 0}), args.runs)
    threaded = chain_flow("step_sync")
    engine_thread = timed(lambda: threaded.arun({"x": 0}), max(20, args.runs // 5))
    per = lambda t: (t - base) / CHAIN * 1e6  # noqa: E731
    rows.append(("chain: hand-written asyncio (baseline)", f"{base * 1e3:.3f} ms", "-"))
    rows.append(("chain: engine, async nodes, tracing on", f"{engine * 1e3:.3f} ms", f"{per(engine):.1f} us/node"))
    rows.append(("chain: engine + live event callback", f"{with_events * 1e3:.3f} ms", f"{per(with_events):.1f} us/node"))
    rows.append(("chain: engine, sync nodes on the loop", f"{engine_sync * 1e3:.3f} ms", f"{per(engine_sync):.1f} us/node"))
    rows.append(("chain: engine, sync nodes in threads", f"{engine_thread * 1e3:.3f} ms", f"{per(engine_thread):.1f} us/node"))

    # The endpoint runs in its own process so that it does not share the client's GIL.
    ctx = multiprocessing.get_context("spawn")
    ports = ctx.Queue()
    server = ctx.Process(target=_serve, args=(ports,), daemon=True)
    server.start()
    url = f"http://127.0.0.1:{ports.get(timeout=30)}/predict"
    try:
        fan = fanout_flow(url)

        async def fan_run() -> None:
            async with httpx.AsyncClient(limits=httpx.Limits(max_connections=64)) as client:
                # first run opens the connections; the measured runs reuse the pool, as a batch does
                await fan.arun({}, http_client=client)
                for _ in range(args.fanout_runs):
                    t0 = time.perf_counter()
                    result = await fan.arun({}, http_client=client)
                    fan_times.append(time.perf_counter() - t0)
                    branch_max.append(max(r.duration_s for r in result.trace if r.node != "join"))

        async def direct() -> None:
            async with httpx.AsyncClient(limits=httpx.Limits(max_connections=64)) as client:
                await asyncio.gather(*(client.post(url, json={"i": i}) for i in range(FANOUT)))
                for _ in range(args.fanout_runs):
                    t0 = time.perf_counter()
                    await asyncio.gather(*(client.post(url, json={"i": i}) for i in range(FANOUT)))
                    direct_times.append(time.perf_counter() - t0)

        fan_times: list[float] = []
        branch_max: list[float] = []
        direct_times: list[float] = []
        asyncio.run(direct())
        asyncio.run(fan_run())
        cold = time.perf_counter()
        fan.run({})
        cold = time.perf_counter() - cold
    finally:
        server.terminate()
        server.join()
    fan_med = statistics.median(fan_times)
    ratios = [w / b for w, b in zip(fan_times, branch_max)]
    direct_med = statistics.median(direct_times)
    rows.append((f"fan-out {FANOUT} x {DELAY_S * 1e3:.0f} ms: ideal (slowest branch)", f"{DELAY_S * 1e3:.1f} ms", "1.00x"))
    rows.append(("fan-out: httpx gather, no engine", f"{direct_med * 1e3:.1f} ms", f"{direct_med / DELAY_S:.2f}x ideal"))
    rows.append(("fan-out: slowest branch (node duration in trace)", f"{statistics.median(branch_max) * 1e3:.1f} ms", f"{statistics.median(branch_max) / DELAY_S:.2f}x ideal"))
    rows.append(("fan-out: engine wall time, pooled client", f"{fan_med * 1e3:.1f} ms", f"{statistics.median(ratios):.3f}x slowest branch"))
    rows.append(("fan-out: engine, fresh client per run", f"{cold * 1e3:.1f} ms", f"{cold / DELAY_S:.2f}x ideal"))

    width = max(len(r[0]) for r in rows)
    print(f"python {sys.version.split()[0]}, {CHAIN}-node chain, median of {args.runs} runs")
    print(f"| {'case'.ljust(width)} | time | overhead |")
    print(f"|{'-' * (width + 2)}|------|----------|")
    for name, t, o in rows:
        print(f"| {name.ljust(width)} | {t} | {o} |")
    print(f"\nengine overhead per node (tracing on): {per(engine):.1f} us (target < 25 us)")
    print(f"fan-out wall time vs slowest branch: {statistics.median(ratios):.3f}x (target <= 1.10x); "
          f"vs the ideal {DELAY_S * 1e3:.0f} ms: {fan_med / DELAY_S:.2f}x (the httpx baseline alone: {direct_med / DELAY_S:.2f}x)")


if __name__ == "__main__":
    main()
