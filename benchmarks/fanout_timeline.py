"""Where a 32-way fan-out of 100 ms calls spends its time beyond the floor: the server
(Starlette on uvicorn, in its own process, as in `engine_overhead.py`) logs when each
handler starts and ends, on the machine's monotonic clock, which the client shares; the
client (raw aiohttp, or `Flow.arun`) logs when the gather starts, when each answer's
headers arrive and when the gather ends. Medians over the rounds, in ms from the start.

    python benchmarks/fanout_timeline.py [--rounds 20] [--client aiohttp,flow] [--no-body]

`--no-body` sends the aiohttp requests without a body (aiohttp then writes each request at
once, where a body is written from a task of its own on Python 3.11). Never fails on timing.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import statistics
import time

FANOUT = 32
DELAY_S = 0.100


def _serve(ports: multiprocessing.Queue) -> None:
    from engine_overhead import serve_app
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    log: list[tuple[float, float]] = []

    async def predict(request: Request) -> JSONResponse:
        started = time.monotonic()
        await request.body()
        await asyncio.sleep(DELAY_S)
        log.append((started, time.monotonic()))
        return JSONResponse({"ok": True})

    async def handled(request: Request) -> JSONResponse:
        taken = list(log)
        log.clear()
        return JSONResponse(taken)

    serve_app(Starlette(routes=[Route("/predict", predict, methods=["GET", "POST"]), Route("/handled", handled)]), ports)


async def _timelines(url: str, client: str, rounds: int, body: bool) -> list[dict[str, float]]:
    import aiohttp

    from jupyter_flow import Flow

    nodes = [{"id": f"call{i}", "type": "http", "config": {"endpoint": url + "/predict", "input_mapping": {"i": i}}}
             for i in range(FANOUT)]
    flow = Flow.from_dict({"name": "fanout", "nodes": nodes})
    rows = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256)) as session:
        answers: list[float] = []

        async def one(i: int) -> None:
            async with session.request("POST" if body else "GET", url + "/predict", json={"i": i} if body else None) as r:
                answers.append(time.monotonic())
                await r.read()

        async def once() -> None:
            if client == "flow":
                await flow.arun({})
            else:
                await asyncio.gather(*(one(i) for i in range(FANOUT)))

        await once()  # connections opened once, as a pool does
        async with session.get(url + "/handled") as r:
            await r.read()
        for _ in range(rounds):
            answers.clear()
            t0 = time.monotonic()
            await once()
            t1 = time.monotonic()
            async with session.get(url + "/handled") as r:
                handled = await r.json()
            starts, ends = [s for s, _ in handled], [e for _, e in handled]
            row = {"first handler starts": min(starts) - t0, "last handler starts": max(starts) - t0,
                   "last handler ends": max(ends) - t0, "wall": t1 - t0}
            if answers:
                row["first answer read"] = min(answers) - t0
                row["last answer read"] = max(answers) - t0
            rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--client", default="aiohttp,flow", help="aiohttp, flow, or both (comma-separated)")
    parser.add_argument("--no-body", action="store_true", help="aiohttp requests without a body")
    args = parser.parse_args()
    ctx = multiprocessing.get_context("spawn")
    ports = ctx.Queue()
    proc = ctx.Process(target=_serve, args=(ports,), daemon=True)
    proc.start()
    url = f"http://127.0.0.1:{ports.get(timeout=60)}"
    time.sleep(1.0)
    try:
        for client in args.client.split(","):
            rows = asyncio.run(_timelines(url, client, args.rounds, body=not args.no_body))
            print(f"{client} ({FANOUT} x {DELAY_S * 1e3:.0f} ms, median of {args.rounds} rounds, ms from the start):")
            for key in rows[0]:
                print(f"  {key:22s} {statistics.median(r[key] for r in rows) * 1e3:7.1f}")
    finally:
        proc.terminate()
        proc.join()


if __name__ == "__main__":
    main()
