"""Engine overhead, each case against its baseline in the same run:

- a 50-node chain of trivial python nodes passing values with `{{ nX.output.x }}`
  references, against the same calls written by hand;
- a 32-way fan-out of 100 ms calls to a Starlette/uvicorn endpoint in its own process,
  against the floor (100 ms) and raw aiohttp;
- the customer-service flow (cleaner -> intent and slots at once -> answer, the four
  example services each in its own process), 64 runs at a time through plain
  `Flow.arun` calls, against calling the four services directly from aiohttp (and, with
  the case `httpx-own`, to show what the aiohttp transport under httpx's client gives,
  the same runs over httpx's own transport, as `JUPYTER_FLOW_HTTP_TRANSPORT=httpx` makes
  the client: several times slower, so not run unless asked).

    python benchmarks/engine_overhead.py [--runs N] [--cases chain,fanout,services[,httpx-own]]

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


def _uvicorn(app_factory: str, arg: str, ports: multiprocessing.Queue) -> None:
    """One uvicorn server in its own process (so that it shares no GIL with the client)."""
    from jupyter_flow_examples import services

    serve_app(_slow_app() if app_factory == "slow" else services.service_app(*_service(arg)), ports)


def serve_app(app: object, ports: multiprocessing.Queue) -> None:
    """Serve `app` with uvicorn (uvloop and httptools when installed) on a free loopback
    port, put on `ports`; runs until the process ends."""
    import socket

    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    ports.put(sock.getsockname()[1])
    loop = "uvloop" if _has("uvloop") else "asyncio"
    http = "httptools" if _has("httptools") else "h11"
    uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off", loop=loop, http=http, backlog=4096)).run(sockets=[sock])


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def _service(var: str) -> tuple[str, object]:
    from jupyter_flow_examples.services import SERVICES

    _name, route, handler = SERVICES[var]
    return route, handler


def _slow_app() -> object:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def predict(request: Request) -> JSONResponse:
        await request.body()
        await asyncio.sleep(DELAY_S)
        return JSONResponse({"ok": True})

    return Starlette(routes=[Route("/predict", predict, methods=["POST"])])


def _start(ctx: multiprocessing.context.BaseContext, factory: str, arg: str = "") -> tuple[multiprocessing.Process, str]:
    ports = ctx.Queue()
    proc = ctx.Process(target=_uvicorn, args=(factory, arg, ports), daemon=True)  # type: ignore[attr-defined]
    proc.start()
    url = f"http://127.0.0.1:{ports.get(timeout=60)}"
    import httpx as _httpx

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # wait until it accepts connections
        try:
            _httpx.post(url + "/", timeout=1)
            break
        except _httpx.HTTPError:
            time.sleep(0.05)
    return proc, url


def fanout_flow(url: str) -> Flow:
    nodes = [{"id": f"call{i}", "type": "http", "config": {"endpoint": url, "input_mapping": {"i": i}}} for i in range(FANOUT)]
    nodes.append({"id": "join", "type": "template", "config": {"template": "{{ call0.output.ok }}"}})
    edges = [{"from": f"call{i}", "to": "join"} for i in range(FANOUT)]
    return Flow.from_dict({"name": "fanout", "nodes": nodes, "edges": edges})


async def _aiohttp_fanout(url: str, runs: int) -> list[float]:
    import aiohttp

    times = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256)) as session:

        async def one(i: int) -> None:
            async with session.post(url, json={"i": i}) as r:
                await r.json()

        await asyncio.gather(*(one(i) for i in range(FANOUT)))  # connections opened once, as a pool does
        for _ in range(runs):
            t0 = time.perf_counter()
            await asyncio.gather(*(one(i) for i in range(FANOUT)))
            times.append(time.perf_counter() - t0)
    return times


async def _engine_fanout(flow: Flow, runs: int) -> tuple[list[float], list[float]]:
    times, branches = [], []
    await flow.arun({})  # the loop's shared client opens its connections
    for _ in range(runs):
        t0 = time.perf_counter()
        result = await flow.arun({})
        times.append(time.perf_counter() - t0)
        branches.append(max(r.duration_s or 0 for r in result.trace if r.node != "join"))
    return times, branches


async def _direct_service_runs(urls: dict[str, str], text: str, total: int, concurrency: int) -> tuple[float, list[float]]:
    """The customer-service chain called by hand from aiohttp: cleaner, then intent and
    slots at once, then answer; `concurrency` runs at a time."""
    import aiohttp

    latencies: list[float] = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=512)) as session:

        async def post(url: str, body: dict) -> dict:
            async with session.post(url, json=body) as r:
                return await r.json()

        async def one() -> None:
            t0 = time.perf_counter()
            cleaned = (await post(urls["CLEANER_URL"] + "/clean", {"raw_text": text}))["cleaned_text"]
            intent, slots = await asyncio.gather(post(urls["INTENT_URL"] + "/predict", {"text": cleaned}),
                                                 post(urls["SLOTS_URL"] + "/extract", {"text": cleaned}))
            await post(urls["ANSWER_URL"] + "/answer", {"intent": intent["label"], "slots": slots["slots"], "text": cleaned})
            latencies.append(time.perf_counter() - t0)

        return await _closed_loop(one, total, concurrency, latencies), latencies


async def _flow_service_runs(flow: Flow, text: str, total: int, concurrency: int, *, httpx_own: bool = False) -> tuple[float, list[float]]:
    """`total` runs of the flow, `concurrency` at a time, through plain `Flow.arun` calls
    (the loop's shared client); `httpx_own`: with a client passed in that `make_client`
    made over httpx's own transport (`JUPYTER_FLOW_HTTP_TRANSPORT=httpx`)."""
    latencies: list[float] = []
    client = None
    if httpx_own:
        import os

        from jupyter_flow.http import TRANSPORT_ENV, make_client

        before = os.environ.get(TRANSPORT_ENV)
        os.environ[TRANSPORT_ENV] = "httpx"
        try:
            client = make_client(concurrency=concurrency)
        finally:
            if before is None:
                del os.environ[TRANSPORT_ENV]
            else:
                os.environ[TRANSPORT_ENV] = before

    async def one() -> None:
        t0 = time.perf_counter()
        await flow.arun({"user_input": text}, http_client=client)
        latencies.append(time.perf_counter() - t0)

    try:
        return await _closed_loop(one, total, concurrency, latencies), latencies
    finally:
        if client is not None:
            await client.aclose()


async def _closed_loop(one, total: int, concurrency: int, latencies: list[float]) -> float:
    """Runs per second of `total` calls of `one`, `concurrency` in flight; a warm-up first,
    whose latencies (`one` adds each to `latencies`) are left out as its time is."""
    await asyncio.gather(*(one() for _ in range(concurrency)))
    latencies.clear()
    left = total

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await one()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return total / (time.perf_counter() - t0)


def _p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--fanout-runs", type=int, default=15)
    parser.add_argument("--service-runs", type=int, default=600, help="runs of the four-service flow per case and round")
    parser.add_argument("--concurrency", type=int, default=64, help="four-service runs in flight at once")
    parser.add_argument("--rounds", type=int, default=5,
                        help="rounds of the chain cases (the best round counts) and of the four-service cases (the median ratio counts)")
    parser.add_argument("--cases", default="chain,fanout,services", help="which cases to run (comma-separated)")
    args = parser.parse_args()
    register_function(step, name="step")
    register_function(step_sync, name="step_sync")

    rows = []
    cases = set(args.cases.split(","))
    if "chain" in cases:
        rows += chain_rows(args.runs, args.rounds)
    if cases & {"fanout", "services", "httpx-own"}:
        rows += remote_rows(args, cases)
    from jupyter_flow.http import transport_name

    print(f"python {sys.version.split()[0]}, HTTP transport {transport_name()}, {CHAIN}-node chain: best of {args.rounds} rounds of the median of {args.runs} runs")
    print_table(rows, "overhead")
    print()
    for line in SUMMARY:
        print(line)


SUMMARY: list[str] = []


def print_table(rows: list[tuple[str, str, str]], third: str) -> None:
    """Rows of (case, time, `third`) as a markdown table."""
    width = max(len(r[0]) for r in rows)
    print(f"| {'case'.ljust(width)} | time | {third} |")
    print(f"|{'-' * (width + 2)}|------|{'-' * (len(third) + 2)}|")
    for name, t, o in rows:
        print(f"| {name.ljust(width)} | {t} | {o} |")


def chain_rows(runs: int, rounds: int) -> list[tuple[str, str, str]]:
    """The chain cases, each the best of `rounds` rounds (the cases take turns within a
    round, so that a slow minute of a shared machine hits them alike) of the median of
    `runs` runs."""
    rows = []
    flow = chain_flow("step")
    flow.run({"x": 0})
    events: list[object] = []
    sync_flow = chain_flow("step_sync", blocking=False)
    threaded = chain_flow("step_sync")
    cases = {
        "base": (lambda: hand_chain(0), runs * 5),
        "engine": (lambda: flow.arun({"x": 0}), runs),
        "events": (lambda: flow.arun({"x": 0}, on_event=events.append), runs),
        "sync": (lambda: sync_flow.arun({"x": 0}), runs),
        "threads": (lambda: threaded.arun({"x": 0}), max(20, runs // 5)),
    }
    best = {name: timed(fn, n) for name, (fn, n) in cases.items()}
    for _ in range(rounds - 1):
        for name, (fn, n) in cases.items():
            best[name] = min(best[name], timed(fn, n))
    base, engine, with_events, engine_sync, engine_thread = (best[k] for k in ("base", "engine", "events", "sync", "threads"))
    per = lambda t: (t - base) / CHAIN * 1e6  # noqa: E731
    rows.append(("chain: hand-written asyncio (baseline)", f"{base * 1e3:.3f} ms", "-"))
    rows.append(("chain: engine, {{ nX.output.x }} references, async nodes, tracing on", f"{engine * 1e3:.3f} ms", f"{per(engine):.1f} us/node"))
    rows.append(("chain: engine + live event callback", f"{with_events * 1e3:.3f} ms", f"{per(with_events):.1f} us/node"))
    rows.append(("chain: engine, sync nodes on the loop", f"{engine_sync * 1e3:.3f} ms", f"{per(engine_sync):.1f} us/node"))
    rows.append(("chain: engine, sync nodes in threads", f"{engine_thread * 1e3:.3f} ms", f"{per(engine_thread):.1f} us/node"))
    SUMMARY.append(f"engine overhead per node (template references, tracing on): {per(engine):.1f} us (target < 15 us)")
    return rows


def remote_rows(args: argparse.Namespace, cases: set[str]) -> list[tuple[str, str, str]]:
    rows = []
    ctx = multiprocessing.get_context("spawn")
    procs = []
    try:
        if "fanout" in cases:
            proc, slow = _start(ctx, "slow")
            procs.append(proc)
            url = slow + "/predict"
            fan = fanout_flow(url)
            raw = asyncio.run(_aiohttp_fanout(url, args.fanout_runs))
            fan_times, branch_max = asyncio.run(_engine_fanout(fan, args.fanout_runs))
        if cases & {"services", "httpx-own"}:
            urls = {}
            for var in ("CLEANER_URL", "INTENT_URL", "SLOTS_URL", "ANSWER_URL"):
                proc, urls[var] = _start(ctx, "service", var)
                procs.append(proc)
            import os

            os.environ.update(urls)
            from pathlib import Path

            service_flow = Flow.load(Path(__file__).resolve().parents[1] / "notebooks" / "flows" / "customer-service.flow.json")
            text = service_flow.spec.inputs["user_input"].default
            # the cases take turns, round after round, so that a slow minute of a shared
            # machine hits them alike; each ratio is taken within its round
            runs = {"direct": lambda: _direct_service_runs(urls, text, args.service_runs, args.concurrency),
                    "flow": lambda: _flow_service_runs(service_flow, text, args.service_runs, args.concurrency)}
            if "httpx-own" in cases:
                runs["httpx"] = lambda: _flow_service_runs(service_flow, text, args.service_runs, args.concurrency, httpx_own=True)
            rates: dict[str, list[float]] = {case: [] for case in runs}
            lats: dict[str, list[float]] = {case: [] for case in runs}
            for _ in range(args.rounds):
                for case, run in runs.items():
                    rate, lat = asyncio.run(run())
                    rates[case].append(rate)
                    lats[case] += lat
            direct_rate, flow_rate = (statistics.median(rates[k]) for k in ("direct", "flow"))
            direct_lat, flow_lat = lats["direct"], lats["flow"]
            flow_ratio = statistics.median(f / d for f, d in zip(rates["flow"], rates["direct"]))
            per_round = ", ".join(f"{f / d:.2f}x" for f, d in zip(rates["flow"], rates["direct"]))
    finally:
        for proc in procs:
            proc.terminate()
            proc.join()
    if "fanout" in cases:
        raw_med = statistics.median(raw)
        fan_med = statistics.median(fan_times)
        rows.append((f"fan-out {FANOUT} x {DELAY_S * 1e3:.0f} ms: floor", f"{DELAY_S * 1e3:.1f} ms", "1.00x"))
        rows.append(("fan-out: raw aiohttp gather, no engine", f"{raw_med * 1e3:.1f} ms", f"{raw_med / DELAY_S:.2f}x floor"))
        rows.append(("fan-out: slowest branch (node duration in trace)", f"{statistics.median(branch_max) * 1e3:.1f} ms",
                     f"{statistics.median(branch_max) / DELAY_S:.2f}x floor"))
        rows.append(("fan-out: engine wall time (Flow.arun, shared client)", f"{fan_med * 1e3:.1f} ms",
                     f"{fan_med / DELAY_S:.2f}x floor, {fan_med / raw_med:.3f}x aiohttp"))
        SUMMARY.append(f"fan-out wall time: {fan_med / DELAY_S:.2f}x the floor (target <= 1.15x), "
                       f"{fan_med / raw_med:.3f}x raw aiohttp (target within 5%)")
    if cases & {"services", "httpx-own"}:
        rows.append((f"4 services, {args.concurrency} runs at once: direct aiohttp", f"{direct_rate:.0f} runs/s", f"p99 {_p99(direct_lat) * 1e3:.0f} ms"))
        rows.append((f"4 services, {args.concurrency} runs at once: Flow.arun", f"{flow_rate:.0f} runs/s",
                     f"p99 {_p99(flow_lat) * 1e3:.0f} ms; {flow_ratio:.2f}x direct rate (rounds: {per_round}), "
                     f"p99 {_p99(flow_lat) / _p99(direct_lat):.2f}x direct"))
        if "httpx" in rates:
            httpx_lat = lats["httpx"]
            httpx_ratio = statistics.median(h / d for h, d in zip(rates["httpx"], rates["direct"]))
            rows.append((f"4 services, {args.concurrency} runs at once: Flow.arun over httpx's own transport",
                         f"{statistics.median(rates['httpx']):.0f} runs/s",
                         f"p99 {_p99(httpx_lat) * 1e3:.0f} ms; {httpx_ratio:.2f}x direct rate, "
                         f"p99 {_p99(httpx_lat) / _p99(direct_lat):.2f}x direct"))
        SUMMARY.append(f"four services: {flow_ratio:.2f}x the direct rate (median of {args.rounds} rounds; target >= 0.8x), "
                       f"p99 {_p99(flow_lat) / _p99(direct_lat):.2f}x (target <= 1.5x)")
    return rows


if __name__ == "__main__":
    main()
