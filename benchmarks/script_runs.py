"""`flow.run()` from a plain script, where every call runs on an event loop of its own,
each case in a fresh process, against its baseline in the same process:

- a flow of one template node (what a flow of local models pays around its nodes): the
  first `flow.run()` in the process and the later ones, against a bare `asyncio.run`;
  and whether the run imported an HTTP transport;
- a flow of one `http` node calling the example cleaner service (its own uvicorn process):
  the first and the later `flow.run()`s, against `asyncio.run` of a new aiohttp session
  making the same call.

    python benchmarks/script_runs.py [--runs 30]

Prints a table; never fails on timing.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
from pathlib import Path

LOCAL = """
import asyncio, json, sys, time
t0 = time.perf_counter()
from jupyter_flow import Flow
imported = time.perf_counter() - t0
flow = Flow.from_dict({"inputs": {"x": {"type": "integer", "default": 1}},
                       "nodes": [{"id": "t", "type": "template", "config": {"template": "{{ x + 1 }}"}}]})
def timed(fn):
    t0 = time.perf_counter(); fn(); return time.perf_counter() - t0
first = timed(lambda: flow.run({"x": 2}))
later = [timed(lambda: flow.run({"x": 2})) for _ in range(RUNS)]
async def nothing(): return 3
bare = [timed(lambda: asyncio.run(nothing())) for _ in range(RUNS)]
print(json.dumps({"import": imported, "first": first, "later": later, "bare": bare,
                  "transport_imported": "aiohttp" in sys.modules or "httpx_aiohttp" in sys.modules}))
"""

REMOTE = """
import asyncio, json, time
from jupyter_flow import Flow
flow = Flow.from_dict({"nodes": [{"id": "c", "type": "http",
                                  "config": {"endpoint": URL + "/clean", "input_mapping": {"raw_text": "Hi THERE"}}}]})
def timed(fn):
    t0 = time.perf_counter(); fn(); return time.perf_counter() - t0
first = timed(lambda: flow.run())
later = [timed(lambda: flow.run()) for _ in range(RUNS)]
import aiohttp
async def direct():
    async with aiohttp.ClientSession() as session:
        async with session.post(URL + "/clean", json={"raw_text": "Hi THERE"}) as r:
            return await r.json()
direct_first = timed(lambda: asyncio.run(direct()))
direct_later = [timed(lambda: asyncio.run(direct())) for _ in range(RUNS)]
print(json.dumps({"first": first, "later": later, "direct_first": direct_first, "direct_later": direct_later}))
"""


def fresh(code: str, **names: object) -> dict:
    """Run `code` in a new Python process (names set first); what it printed, as JSON."""
    head = "".join(f"{k} = {v!r}\n" for k, v in names.items())
    done = subprocess.run([sys.executable, "-c", head + code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    if done.returncode != 0:
        raise SystemExit(f"the measuring process failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=30, help="later runs per case (their median counts)")
    args = parser.parse_args()
    rows = []
    local = fresh(LOCAL, RUNS=args.runs)
    later, bare = statistics.median(local["later"]), statistics.median(local["bare"])
    rows.append(("template flow: import jupyter_flow", ms(local["import"]), ""))
    rows.append(("template flow: first flow.run() in the process", ms(local["first"]),
                 "an HTTP transport was imported" if local["transport_imported"] else "no HTTP transport imported"))
    rows.append(("template flow: later flow.run() (median)", ms(later), f"{ms(later - bare)} over a bare asyncio.run ({ms(bare)})"))

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from engine_overhead import _start, print_table

    proc, url = _start(multiprocessing.get_context("spawn"), "service", "CLEANER_URL")
    try:
        remote = fresh(REMOTE, RUNS=args.runs, URL=url)
    finally:
        proc.terminate()
        proc.join()
    later, direct = statistics.median(remote["later"]), statistics.median(remote["direct_later"])
    rows.append(("one http node: first flow.run() in the process", ms(remote["first"]),
                 f"first asyncio.run(aiohttp session + call) after it: {ms(remote['direct_first'])}"))
    rows.append(("one http node: later flow.run() (median)", ms(later),
                 f"{later / direct:.2f}x asyncio.run(new aiohttp session + the call) ({ms(direct)})"))

    print(f"python {sys.version.split()[0]}: flow.run() from a plain script, a fresh process per case, median of {args.runs} later runs")
    print_table(rows, "against")


if __name__ == "__main__":
    main()
