"""Validating (planning) a long flow: time and peak memory against the node count.

A chain of N template nodes, each reading the one before it (`{{ nI.output.text }}`), is
validated with `Flow.from_dict(...).validate()`. The baseline, in the same run, is the
same validation with the reachability the planner used before put back: a set of
ancestor names per node, built in topological order (memory and time grow with the square
of N). Each case runs in its own process, so its peak memory (max RSS) is its own.

    python benchmarks/plan_scale.py [--sizes 1000,2000,5000,10000] [--baseline-max 5000]

Prints a table; never fails on timing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from typing import Any


def chain(n: int) -> dict[str, Any]:
    nodes = [{"id": "n0", "type": "template", "config": {"template": "{{ x }}"}}]
    nodes += [{"id": f"n{i}", "type": "template", "config": {"template": f"{{{{ n{i - 1}.output.text }}}}!"}} for i in range(1, n)]
    edges = [{"from": f"n{i - 1}", "to": f"n{i}"} for i in range(1, n)]
    return {"name": "chain", "inputs": {"x": {"type": "text"}}, "nodes": nodes, "edges": edges}


def one(mode: str, n: int) -> dict[str, float]:
    """Run one case in this process; its seconds and max RSS in MB."""
    from jupyter_flow import Flow

    data = chain(n)
    if mode == "baseline":
        from jupyter_flow.graph import Graph

        def is_upstream(self: Graph, node: str, of: str) -> bool:  # the former ancestor sets
            if not hasattr(self, "_sets"):
                ups: dict[str, set[str]] = {nid: set() for nid in self.node_ids}
                for nid in self.order:
                    for p in self.parents.get(nid, ()):
                        ups[nid] |= ups[p] | {p}
                self._sets = ups  # type: ignore[attr-defined]
            return node in self._sets.get(of, ())  # type: ignore[attr-defined]

        Graph.is_upstream = is_upstream  # type: ignore[method-assign]
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    Flow.from_dict(data).validate()
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"seconds": seconds, "peak_mb": peak, "import_mb": base}


def measure(mode: str, n: int) -> dict[str, float]:
    out = subprocess.run([sys.executable, __file__, "--one", mode, str(n)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,2000,5000,10000")
    parser.add_argument("--baseline-max", type=int, default=5000, help="largest N for the (quadratic) baseline")
    parser.add_argument("--one", nargs=2, metavar=("MODE", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.one[0], int(args.one[1]))))
        return
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, {time.strftime('%Y-%m-%d')}, load {load}")
    print("| nodes | validate s | peak MB (after import) | baseline s | baseline peak MB | baseline / ours |")
    print("|---:|---:|---:|---:|---:|---:|")
    for n in (int(s) for s in args.sizes.split(",")):
        ours = measure("planner", n)
        if n <= args.baseline_max:
            base = measure("baseline", n)
            cells = f"{base['seconds']:.2f} | {base['peak_mb']:.0f} ({base['import_mb']:.0f}) | {base['seconds'] / ours['seconds']:.2f}x time, {base['peak_mb'] / ours['peak_mb']:.1f}x memory"
        else:
            cells = "not run | not run | -"
        print(f"| {n:,} | {ours['seconds']:.2f} | {ours['peak_mb']:.0f} ({ours['import_mb']:.0f}) | {cells} |")


if __name__ == "__main__":
    main()
