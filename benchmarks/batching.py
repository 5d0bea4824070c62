"""Micro-batching: N single-text runs through a flow with one `transformers` node.

(a) one run at a time, (b) all runs at once with `batch: {max_size, max_wait_ms}`, and
(c) the same model called directly (tokenizer + forward) on full batches, no flow.
Prints items per second and the ratios as a markdown table; never fails on a timing.
Targets: (b) >= 3x (a) on CPU, (b) >= 0.8x (c).

    python benchmarks/batching.py [--n 512] [--batch 32] [--device auto]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import platform
import tempfile
import time
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=512)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--wait-ms", type=float, default=5.0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    args = parser.parse_args()

    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from jupyter_flow import Flow
    from jupyter_flow.demo_models import CLAUSE_LABELS, clause_sentences, make_tiny_bert
    from jupyter_flow.models import release_models, resolve_device

    device = resolve_device(args.device)
    texts = [s for s, _ in clause_sentences(per_label=args.n // len(CLAUSE_LABELS) + 1, seed=1)][: args.n]
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = make_tiny_bert(Path(tmp) / "bert", CLAUSE_LABELS, hidden_size=args.hidden, layers=args.layers,
                                   heads=max(1, args.hidden // 64))

        def flow(batch: dict | None) -> Flow:
            config = {"model": str(model_dir), "task": "text-classification", "text": "{{text}}", "device": device}
            if batch:
                config["batch"] = batch
            return Flow.from_dict({"spec_version": 1, "name": "bench", "nodes": [
                {"id": "clf", "type": "transformers", "config": config}], "edges": [{"from": "start", "to": "clf"}]})

        single, batched = flow(None), flow({"max_size": args.batch, "max_wait_ms": args.wait_ms})
        for f in (single, batched):  # load and warm both before timing
            f.plan.nodes["clf"].node.ensure_warm()
            f.run({"text": texts[0]})

        async def one_at_a_time() -> list:
            return [(await single.arun({"text": t})).outputs["clf"]["label"] for t in texts]

        async def concurrent() -> list:
            results = await asyncio.gather(*(batched.arun({"text": t}) for t in texts))
            sizes.extend(r["clf"].extra["batch_size"] for r in results)
            return [r.outputs["clf"]["label"] for r in results]

        sizes: list[int] = []
        t0 = time.perf_counter()
        labels_a = asyncio.run(one_at_a_time())
        a = time.perf_counter() - t0
        t0 = time.perf_counter()
        labels_b = asyncio.run(concurrent())
        b = time.perf_counter() - t0

        tok = AutoTokenizer.from_pretrained(model_dir)
        model = AutoModelForSequenceClassification.from_pretrained(model_dir).to(device).eval()
        labels_c: list[str] = []
        with torch.inference_mode():
            model(**tok(texts[:2], padding=True, return_tensors="pt").to(device))
            t0 = time.perf_counter()
            for i in range(0, len(texts), args.batch):
                enc = tok(texts[i : i + args.batch], padding=True, truncation=True, return_tensors="pt").to(device)
                ids = model(**enc).logits.argmax(-1).tolist()
                labels_c.extend(model.config.id2label[j] for j in ids)
            c = time.perf_counter() - t0
        release_models()

    n = len(texts)
    rate = {k: n / v for k, v in {"a": a, "b": b, "c": c}.items()}
    same = labels_a == labels_b == labels_c
    print(f"# micro-batching benchmark, {datetime.date.today()}, {platform.node()}")
    print(f"device {device} ({torch.get_num_threads()} torch threads), BERT hidden {args.hidden} x {args.layers} layers, "
          f"{n} texts, batch max_size {args.batch}, max_wait_ms {args.wait_ms:g}, torch {torch.__version__}\n")
    print("| run | seconds | items/s |")
    print("|---|---|---|")
    print(f"| (a) flow, one run at a time | {a:.2f} | {rate['a']:.1f} |")
    print(f"| (b) flow, {n} concurrent runs, micro-batched (mean batch {sum(sizes) / max(len(sizes), 1):.1f}) | {b:.2f} | {rate['b']:.1f} |")
    print(f"| (c) model called directly, batches of {args.batch} | {c:.2f} | {rate['c']:.1f} |")
    print()
    print(f"| ratio | value | target |")
    print("|---|---|---|")
    print(f"| (b) / (a) | {rate['b'] / rate['a']:.2f}x | >= 3x on CPU |")
    print(f"| (b) / (c) | {rate['b'] / rate['c']:.2f}x | >= 0.8x |")
    print(f"\nsame labels in (a), (b) and (c): {same}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
