"""Real OpenAI-compatible servers for tests.

- `transformers_serve`: `transformers serve` on a loopback port, serving a tiny GPT-2 made
  on the spot (random weights, a tokenizer of single printable characters, a chat
  template). Its answers are nonsense; its protocol is the real one.
- `ScriptedModel`: a loopback chat server whose answers follow a script (tool calls,
  several at once, arguments that are not JSON, a tool that does not exist, a model that
  never stops), for agents' tests."""

from __future__ import annotations

import json
import os
import string
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from processes import stop
from servers import LoopbackServer, Reply, Request, Route, free_port

CHAT_TEMPLATE = (
    "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant: {% endif %}"
)


def make_tiny_gpt2(folder: Path) -> Path:
    """Write a two-layer GPT-2 and its tokenizer to `folder` with `save_pretrained`."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    chars = [c for c in string.printable if c not in "\x0b\x0c"]
    vocab = {"<unk>": 0, "<eos>": 1, **{c: i + 2 for i, c in enumerate(chars)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split("", behavior="isolated")
    tok.decoder = decoders.Fuse()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", eos_token="<eos>", pad_token="<eos>")
    fast.chat_template = CHAT_TEMPLATE
    config = GPT2Config(vocab_size=len(vocab), n_embd=32, n_layer=2, n_head=2, n_positions=512, bos_token_id=1, eos_token_id=1)
    torch.manual_seed(0)
    folder.mkdir(parents=True, exist_ok=True)
    GPT2LMHeadModel(config).save_pretrained(folder)
    fast.save_pretrained(folder)
    return folder


@dataclass
class OpenAIServer:
    base_url: str  # ends in /v1
    model: str
    process: subprocess.Popen[bytes]


@contextmanager
def transformers_serve(model_dir: Path, log: Path, timeout_s: float = 180) -> Iterator[OpenAIServer]:
    """`transformers serve MODEL_DIR` on a free loopback port, stopped (by its own handle) after."""
    port = free_port()
    exe = Path(sys.executable).with_name("transformers")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    with log.open("wb") as out:
        proc = subprocess.Popen([str(exe), "serve", str(model_dir), "--host", "127.0.0.1", "--port", str(port)],
                                stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"transformers serve exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"transformers serve did not answer within {timeout_s} s:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield OpenAIServer(f"http://127.0.0.1:{port}/v1", str(model_dir), proc)
    finally:
        stop(proc)


Serve = Callable[[dict[str, Route]], LoopbackServer]
Script = Callable[[dict[str, Any]], dict[str, Any]] | dict[str, Any]


class ScriptedModel:
    """An OpenAI-compatible chat server whose answers follow a script: each request gets the
    next entry (a message, or a function of the request body giving one); the last entry
    answers every request after it. `requests` are the bodies it received. `serve` is the
    tests' `serve` fixture (it stops the server after the test)."""

    def __init__(self, serve: Serve, *script: Script) -> None:
        self.script = list(script)
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.server = serve({"/v1/chat/completions": self.answer})
        self.base_url = f"{self.server.url}/v1"

    def answer(self, req: Request) -> Reply:
        self.requests.append(req.body)
        self.headers.append({k.lower(): v for k, v in req.headers.items()})
        entry = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        message = entry(req.body) if callable(entry) else entry
        finish = "tool_calls" if message.get("tool_calls") else "stop"
        return Reply(200, {"id": f"chat-{len(self.requests)}", "object": "chat.completion", "model": req.body["model"],
                           "choices": [{"index": 0, "message": {"role": "assistant", "content": None, **message}, "finish_reason": finish}],
                           "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}})


def tool_call(name: str, arguments: Any, call_id: str) -> dict[str, Any]:
    """A tool call as OpenAI writes it (arguments as JSON text, or the text given)."""
    text = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": text}}


def tool_messages(body: dict[str, Any]) -> dict[str, str]:
    """The tool results a request carries, by call id."""
    return {m["tool_call_id"]: m["content"] for m in body["messages"] if m["role"] == "tool"}
