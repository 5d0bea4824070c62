"""Scale-out: items per second of the local batch engine and of the Ray engine over the
same inputs, for a model-bound flow (a BERT classifier on the CPU) and an endpoint-bound
one (the classifier, then a remote model answering in --delay-ms), and with GPU actors
when CUDA is present.

    python benchmarks/scale_out.py [--items N] [--concurrency C] [--delay-ms D] [--address ADDR]

Ray runs join one cluster (started here, or --address); its start-up is timed on its own.
"end to end" counts from the call to the last result (so a Ray run pays for starting its
actors and loading a model in each); "steady" is the rate between the first and the last
result. Every run's results are checked against the local run's (status per item).
Prints a table; never fails on timing.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import tempfile
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from jupyter_flow import Flow
from jupyter_flow.batch import read_results, run_batch
from jupyter_flow_examples.models import make_tiny_bert

WORDS = ["the", "customer", "shall", "pay", "invoice", "within", "thirty", "days", "terminate", "notice",
         "liability", "risk", "fee", "supplier", "warranty", "indemnify", "breach", "party"]

FLOW = """
name: scale-out
inputs: {{text: {{type: string}}}}
nodes:
  - id: clauses
    type: transformers
    config: {{model: {model}, task: text-classification, text: "{{{{text}}}}", device: {device},
             batch: {{max_size: 32, max_wait_ms: 5}}}}
{remote}
edges:
  - {{from: start, to: clauses}}
{remote_edge}
"""

REMOTE = """  - id: escalate
    type: http
    config: {{endpoint: "{url}", input_mapping: {{text: "{{{{text}}}}", label: "{{{{clauses.output.label}}}}"}}}}
"""


def _serve(port_box: Any, delay_s: float) -> None:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers.get("content-length") or 0)) or b"{}")
            time.sleep(delay_s)
            data = json.dumps({"level": "high" if "risk" in body.get("text", "") else "low"}).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    port_box.value = server.server_address[1]
    server.serve_forever()


class Clock:
    """A tqdm-like progress class that notes when each result arrived."""

    last: Clock | None = None

    def __init__(self, **_: Any) -> None:
        self.times: list[float] = []
        Clock.last = self

    def update(self, n: int = 1) -> None:
        self.times.extend([time.perf_counter()] * n)

    def close(self) -> None:
        pass


def make_items(path: Path, count: int) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        for n in range(count):
            words = [WORDS[(n * 7 + k * 5) % len(WORDS)] for k in range(12 + n % 40)]
            fh.write(json.dumps({"id": f"doc-{n:05d}", "text": " ".join(words)}) + "\n")


def timed(label: str, fn: Any, out: Path, baseline: dict[str, str] | None) -> tuple[dict[str, Any], dict[str, str]]:
    t0 = time.perf_counter()
    summary = fn(out)
    wall = time.perf_counter() - t0
    times = Clock.last.times if Clock.last else []
    steady = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else float("nan")
    statuses = {r["id"]: r["status"] for r in read_results(out)}
    same = "-" if baseline is None else ("yes" if statuses == baseline else "NO")
    row = {"case": label, "items": summary.total, "ok": summary.ok, "wall_s": wall, "e2e": summary.total / wall,
           "first_s": (times[0] - t0) if times else float("nan"), "steady": steady, "same": same}
    print(f"  {label}: {row['e2e']:.1f} items/s end to end, {steady:.1f} steady", file=sys.stderr)
    return row, statuses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=16, help="items at once (per replica on Ray)")
    parser.add_argument("--delay-ms", type=float, default=50.0, help="the remote model's answer time")
    parser.add_argument("--hidden", type=int, default=128, help="the BERT's hidden size (4 layers)")
    parser.add_argument("--replicas", type=int, nargs="*", default=[1, 2], help="Ray actor pool sizes to try")
    parser.add_argument("--address", help="a Ray cluster to join (default: start a local one)")
    args = parser.parse_args()

    import ray
    import torch

    from jupyter_flow.batch.ray import run_batch_ray

    cuda = torch.cuda.is_available()
    port = multiprocessing.Value("i", 0)
    server = multiprocessing.Process(target=_serve, args=(port, args.delay_ms / 1000), daemon=True)
    server.start()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="scale-out-") as tmp:
        root = Path(tmp)
        while not port.value:
            time.sleep(0.01)
        model = make_tiny_bert(root / "bert", labels=["payment", "other"], words=WORDS, hidden_size=args.hidden,
                               layers=4, heads=4, max_positions=128)
        items = root / "items.jsonl"
        make_items(items, args.items)

        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        t0 = time.perf_counter()
        if args.address:
            ray.init(address=args.address, log_to_driver=False, configure_logging=False)
        else:
            ray.init(include_dashboard=False, object_store_memory=256 * 1024**2, log_to_driver=False,
                     configure_logging=False)
        init_s = time.perf_counter() - t0
        resources = ray.cluster_resources()
        try:
            devices = ["cpu"] + (["cuda"] if cuda else [])
            for kind in ("model", "model+remote"):
                for device in devices:
                    remote = kind == "model+remote"
                    text = FLOW.format(model=model, device=device,
                                       remote=REMOTE.format(url=f"http://127.0.0.1:{port.value}/x") if remote else "",
                                       remote_edge="  - {from: clauses, to: escalate}" if remote else "")
                    path = root / f"{kind}-{device}.flow.yaml"
                    path.write_text(text, encoding="utf-8")
                    flow = Flow.load(path)
                    name = f"{kind}, {device}"
                    row, base = timed(f"{name}: local engine", lambda o, flow=flow: run_batch(
                        flow, items, o, concurrency=args.concurrency, progress=Clock), root / f"out-{kind}-{device}-l", None)
                    rows.append(row)
                    if device == "cuda":
                        gpus = int(resources.get("GPU", 0))
                        cases = [(f"{name}: ray, {gpus} GPU actor(s)", dict(num_gpus=1.0))]
                    else:
                        cases = [(f"{name}: ray, {r} CPU actor(s)", dict(replicas=r, num_gpus=0.0)) for r in args.replicas]
                    for label, extra in cases:
                        out = root / f"out-{label.replace(' ', '_').replace(',', '').replace(':', '')}"
                        row, _ = timed(label, lambda o, extra=extra, path=path: run_batch_ray(
                            Flow.load(path), items, o, concurrency=args.concurrency, progress=Clock, **extra), out, base)
                        rows.append(row)
        finally:
            ray.shutdown()
            server.terminate()
            server.join()

    cpus = os.cpu_count()
    print(f"\n{args.items} items, concurrency {args.concurrency}, remote model {args.delay_ms:g} ms, BERT hidden "
          f"{args.hidden} x 4 layers; {cpus} CPUs, CUDA: {cuda}; Ray {ray.__version__}, cluster "
          f"{resources.get('CPU', 0):g} CPU / {resources.get('GPU', 0):g} GPU, ray.init {init_s:.1f} s\n")
    print(f"| {'case':<44} | {'ok':>5} | {'wall s':>7} | {'first s':>7} | {'items/s e2e':>11} | {'steady':>7} | same |")
    print(f"|{'-' * 46}|{'-' * 7}:|{'-' * 8}:|{'-' * 8}:|{'-' * 12}:|{'-' * 8}:|------|")
    for r in rows:
        print(f"| {r['case']:<44} | {r['ok']:>5} | {r['wall_s']:>7.2f} | {r['first_s']:>7.2f} | {r['e2e']:>11.1f} "
              f"| {r['steady']:>7.1f} | {r['same']:>4} |")
    local = {r["case"].split(": ")[0]: r for r in rows if r["case"].endswith("local engine")}
    print()
    for r in rows:
        base = local.get(r["case"].split(": ")[0])
        if base is not None and r is not base:
            print(f"{r['case']}: {r['e2e'] / base['e2e']:.2f}x local end to end, {r['steady'] / base['steady']:.2f}x steady")


if __name__ == "__main__":
    main()
