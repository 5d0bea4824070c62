"""Micro-batching: N single-text runs through a flow with one `transformers` node.

(a) one run at a time, (b) all runs at once with `batch: {max_size, max_wait_ms}`, and
(c) the same model called directly on full batches, no flow: the same tokenizer settings
(right padding, truncation), tokenization included, the same batch size. Each is timed
`--repeat` times, in rounds of (a), (b), (c), so that a burst of load on a shared machine
hits all three alike; the table shows the best round of each and the ratios' spread.
Prints a markdown table; never fails on a timing. Targets: (b) >= 3x (a) on CPU,
(b) >= 0.8x (c).

    python benchmarks/batching.py [--texts messages|clauses] [--n 512] [--batch 32] [--device auto] [--repeat 3]

Two workloads: `messages`, short customer messages (the single-text requests a served
classifier sees), and `clauses`, contract clauses about four times longer.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import platform
import random
import tempfile
import time
from pathlib import Path

_MESSAGES = [
    "hi, I was charged twice for order {n}",
    "please cancel my subscription",
    "the app crashes when I open {thing}",
    "can I get a refund for invoice {n}?",
    "how do I change the {thing} on my account",
    "hello, {thing} is not working since yesterday",
    "I want to close my account",
    "my payment of {n} dollars failed",
    "where is my {thing}",
    "good morning, quick question about {thing}",
]
_THINGS = ["settings", "billing page", "invoice", "password", "delivery", "address", "plan", "export"]


def messages(n: int, seed: int = 1) -> list[str]:
    """Short customer messages, 4 to 10 words."""
    rng = random.Random(seed)
    return [rng.choice(_MESSAGES).format(n=rng.randint(10, 9999), thing=rng.choice(_THINGS)) for _ in range(n)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=512)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--wait-ms", type=float, default=5.0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3, help="rounds of (a), (b), (c); the best of each counts")
    parser.add_argument("--texts", choices=["messages", "clauses"], default="messages",
                        help="short customer messages, or contract clauses (about four times longer)")
    parser.add_argument("--languages", default="en",
                        help="with --texts clauses: languages of the generated clauses, comma-separated (en, zh); mixing them mixes "
                             "short and long texts, so batches carry more padding")
    args = parser.parse_args()

    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from jupyter_flow import Flow
    from jupyter_flow.models import release_models, resolve_device
    from jupyter_flow_examples.models import CLAUSE_LABELS, clause_sentences, make_tiny_bert

    device = resolve_device(args.device)
    languages = tuple(x.strip() for x in args.languages.split(",") if x.strip())
    if args.texts == "messages":
        texts = messages(args.n)
    else:
        texts = [s for s, _ in clause_sentences(per_label=args.n // len(CLAUSE_LABELS) + 1, seed=1,
                                                languages=languages)][: args.n]
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

        tok = AutoTokenizer.from_pretrained(model_dir)
        tok.padding_side = "right"  # as the node does
        model = AutoModelForSequenceClassification.from_pretrained(model_dir).to(device).eval()

        def direct() -> list[str]:
            labels: list[str] = []
            with torch.inference_mode():
                for i in range(0, len(texts), args.batch):
                    enc = tok(texts[i : i + args.batch], padding=True, truncation=True, return_tensors="pt").to(device)
                    ids = model(**enc).logits.argmax(-1).tolist()
                    labels.extend(model.config.id2label[j] for j in ids)
            if device.startswith("cuda"):
                torch.cuda.synchronize(device)
            return labels

        direct()  # warm the direct path too
        lengths = [len(ids) for ids in tok(texts, truncation=True)["input_ids"]]  # tokens per text, as run
        padded = sum(max(lengths[i : i + args.batch]) * len(lengths[i : i + args.batch])
                     for i in range(0, len(lengths), args.batch))
        sizes: list[int] = []
        times: dict[str, list[float]] = {"a": [], "b": [], "c": []}
        same = True
        for _ in range(max(1, args.repeat)):
            t0 = time.perf_counter()
            labels_a = asyncio.run(one_at_a_time())
            times["a"].append(time.perf_counter() - t0)
            sizes.clear()
            t0 = time.perf_counter()
            labels_b = asyncio.run(concurrent())
            times["b"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            labels_c = direct()
            times["c"].append(time.perf_counter() - t0)
            same = same and labels_a == labels_b == labels_c
        release_models()

    n = len(texts)
    a, b, c = (min(times[k]) for k in "abc")
    rate = {k: n / v for k, v in {"a": a, "b": b, "c": c}.items()}
    per_round = sorted(tc / tb for tb, tc in zip(times["b"], times["c"]))
    print(f"# micro-batching benchmark, {datetime.date.today()}, {platform.node()}")
    print(f"device {device} ({torch.get_num_threads()} torch threads), BERT hidden {args.hidden} x {args.layers} layers, "
          f"{n} {args.texts} ({', '.join(languages) if args.texts == 'clauses' else 'en'}; {sum(lengths) / n:.0f} tokens on average, "
          f"{sum(lengths) / padded:.0%} of a padded batch are real tokens), batch max_size {args.batch}, max_wait_ms {args.wait_ms:g}, torch {torch.__version__}, "
          f"best of {len(times['a'])} rounds\n")
    print("| run | seconds (best) | items/s | seconds per round |")
    print("|---|---|---|---|")
    rounds = {k: ", ".join(f"{t:.2f}" for t in times[k]) for k in "abc"}
    print(f"| (a) flow, one run at a time | {a:.2f} | {rate['a']:.1f} | {rounds['a']} |")
    print(f"| (b) flow, {n} concurrent runs, micro-batched (mean batch {sum(sizes) / max(len(sizes), 1):.1f}) "
          f"| {b:.2f} | {rate['b']:.1f} | {rounds['b']} |")
    print(f"| (c) model called directly, batches of {args.batch} | {c:.2f} | {rate['c']:.1f} | {rounds['c']} |")
    print()
    print("| ratio | value (best rounds) | per round (low-high) | target |")
    print("|---|---|---|---|")
    per_a = sorted(ta / tb for ta, tb in zip(times["a"], times["b"]))
    print(f"| (b) / (a) | {rate['b'] / rate['a']:.2f}x | {per_a[0]:.2f}-{per_a[-1]:.2f}x | >= 3x on CPU |")
    print(f"| (b) / (c) | {rate['b'] / rate['c']:.2f}x | {per_round[0]:.2f}-{per_round[-1]:.2f}x | >= 0.8x |")
    print(f"\nsame labels in (a), (b) and (c), every round: {same}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
