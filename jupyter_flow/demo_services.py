"""Two small model services for the examples: a text cleaner and a keyword intent model.

They stand in for the HTTP model endpoints a team already runs (one container per model),
so that the example flows run end to end on a laptop::

    python -m jupyter_flow.demo_services            # run the intent example once
    python -m jupyter_flow.demo_services --serve    # keep the services up, print their URLs

`start_demo_services()` starts both on free loopback ports in a background thread and
sets CLEANER_URL and INTENT_URL, which the example flow files read as `${CLEANER_URL}`.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import sys
import threading
import time
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["INTENTS", "classify_intent", "clean_text", "start_demo_services"]

INTENTS: dict[str, tuple[str, ...]] = {
    "billing": ("invoice", "bill", "charge", "refund", "payment", "price", "paid", "账单", "退款", "付款"),
    "cancel": ("cancel", "terminate", "unsubscribe", "close my account", "取消", "终止"),
    "support": ("error", "broken", "crash", "help", "not working", "bug", "故障", "帮助"),
    "greeting": ("hello", "hi", "good morning", "你好"),
}


def clean_text(raw: str) -> str:
    """Unicode-normalize, drop control characters and markup, collapse whitespace."""
    text = unicodedata.normalize("NFKC", raw)
    text = re.sub(r"<[^>]+>", " ", text)
    text = "".join(ch for ch in text if unicodedata.category(ch)[0] != "C" or ch in "\n\t")
    return re.sub(r"\s+", " ", text).strip()


def classify_intent(text: str) -> dict[str, Any]:
    """Score each intent by its keywords; softmax-free normalized scores."""
    low = text.lower()
    hits = {label: sum(low.count(k) for k in keys) for label, keys in INTENTS.items()}
    total = sum(hits.values())
    if total == 0:
        scores = {label: 0.0 for label in INTENTS} | {"other": 1.0}
    else:
        scores = {label: n / total for label, n in hits.items()} | {"other": 0.0}
    label = max(scores, key=scores.__getitem__)
    return {"label": label, "score": scores[label], "scores": scores}


def _app() -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def body(request: Request) -> dict[str, Any]:
        try:
            data = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            data = None
        if not isinstance(data, dict):
            raise ValueError("expected a JSON object")
        return data

    async def clean(request: Request) -> JSONResponse:
        try:
            data = await body(request)
            raw = data["raw_text"]
        except (ValueError, KeyError):
            return JSONResponse({"error": "send {\"raw_text\": \"...\"}"}, status_code=422)
        return JSONResponse({"cleaned_text": clean_text(str(raw))})

    async def predict(request: Request) -> JSONResponse:
        try:
            data = await body(request)
            text = data["text"]
        except (ValueError, KeyError):
            return JSONResponse({"error": "send {\"text\": \"...\"}"}, status_code=422)
        return JSONResponse(classify_intent(str(text)))

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    return Starlette(
        routes=[
            Route("/clean", clean, methods=["POST"]),
            Route("/predict", predict, methods=["POST"]),
            Route("/health", health, methods=["GET"]),
        ]
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def start_demo_services(host: str = "127.0.0.1") -> Iterator[dict[str, str]]:
    """Run both services (one uvicorn server, two routes) while the block runs."""
    import uvicorn

    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(_app(), host=host, port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="jupyter-flow-demo-services", daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError(f"the demo services did not start on {host}:{port}")
        time.sleep(0.02)
    base = f"http://{host}:{port}"
    urls = {"CLEANER_URL": base, "INTENT_URL": base}
    previous = {k: os.environ.get(k) for k in urls}
    os.environ.update(urls)
    try:
        yield urls
    finally:
        for k, v in previous.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        server.should_exit = True
        thread.join(timeout=10)


def main(argv: list[str] | None = None) -> int:
    from jupyter_flow.cli import main as cli

    parser = argparse.ArgumentParser(prog="python -m jupyter_flow.demo_services", description=__doc__.splitlines()[0])
    parser.add_argument("--serve", action="store_true", help="keep the services running until Ctrl-C")
    parser.add_argument("--flow", default=str(Path(__file__).resolve().parents[1] / "notebooks" / "flows" / "intent.flow.yaml"))
    parser.add_argument("--text", default="Hello!  I was <b>charged twice</b> on my last invoice, please refund.")
    args = parser.parse_args(argv)
    with start_demo_services() as urls:
        if args.serve:
            print(json.dumps(urls), flush=True)
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                return 0
        print(f"running {args.flow} against the demo services at {urls['CLEANER_URL']}", file=sys.stderr)
        return cli(["run", args.flow, "--input", f"user_input={args.text}"])


if __name__ == "__main__":
    sys.exit(main())
