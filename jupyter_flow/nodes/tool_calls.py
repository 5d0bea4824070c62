"""The tool calls a model asks for, read from its answer in one of two forms.

- Native: OpenAI's ``tool_calls`` (``{id, type: function, function: {name, arguments}}``,
  the arguments a JSON text), which servers with tool calling give.
- ReAct, for models without tool calling: the tools are described in the system prompt
  (`react_messages`), and the model writes ::

      Thought: what it thinks
      Action: a tool's name
      Action Input: {"the": "arguments as one JSON object"}

  (several Action / Action Input pairs in one answer are several calls), and, once it
  knows, ``Final Answer: ...``. An answer with neither is taken as the final answer. The
  results go back as ``Observation: ...`` in a user message; the server is asked to stop
  before the model writes an observation of its own (`react_stop`).

Arguments that are not one JSON object make an `AskedCall` with an `error` that the model
is told, rather than a failure.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["AskedCall", "native_calls", "parse_react", "react_messages", "react_stop"]

_ACTION = re.compile(r"^[ \t]*Action[ \t]*:[ \t]*(.*?)[ \t]*$", re.M)
_INPUT = re.compile(r"[ \t]*\r?\n?[ \t]*Action[ \t]+Input[ \t]*:[ \t]*(?:```(?:json)?[ \t]*\r?\n)?", re.I)
_FINAL = re.compile(r"^[ \t]*Final[ \t]+Answer[ \t]*:[ \t]*", re.M | re.I)
_OBSERVATION_STOP = "\nObservation:"


@dataclass(frozen=True)
class AskedCall:
    """One tool call a model asked for: `arguments` read from `raw`, or `error` saying
    why they could not be."""

    id: str
    name: str
    arguments: dict[str, Any] = field(default_factory=dict)
    raw: Any = None
    error: str | None = None

    @classmethod
    def from_arguments(cls, call_id: str, name: str, raw: Any) -> AskedCall:
        """A call whose arguments are `raw`: a JSON text, an object, or nothing."""
        if not name:
            return cls(call_id, name, raw=raw, error="the call names no tool: give the tool's name")
        if isinstance(raw, Mapping):
            return cls(call_id, name, dict(raw), raw=raw)
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            return cls(call_id, name, {}, raw=raw)
        if not isinstance(raw, str):
            return cls(call_id, name, raw=raw, error=f"the arguments are a {type(raw).__name__}: give them as one JSON object")
        try:
            value = json.loads(raw)
        except ValueError as exc:
            return cls(call_id, name, raw=raw, error=f"the arguments are not valid JSON ({exc}): give them as one JSON object")
        if not isinstance(value, dict):
            return cls(call_id, name, raw=raw, error=f"the arguments are a JSON {type(value).__name__}: give them as one JSON object")
        return cls(call_id, name, value, raw=raw)

    @property
    def shown_arguments(self) -> Any:
        """The arguments as read, or as the model wrote them when they could not be read."""
        return self.raw if self.error is not None else self.arguments

    def openai(self) -> dict[str, Any]:
        """The call as an assistant message of the conversation carries it back."""
        raw = self.raw if isinstance(self.raw, str) else json.dumps(self.arguments if self.error is None else self.raw)
        return {"id": self.id, "type": "function", "function": {"name": self.name, "arguments": raw}}


def native_calls(message: Mapping[str, Any], step: int) -> list[AskedCall]:
    """The tool calls of an OpenAI-style assistant message (ids made up where missing)."""
    calls = []
    for i, asked in enumerate(message.get("tool_calls") or ()):
        asked = asked if isinstance(asked, Mapping) else {}
        function = asked.get("function")
        function = function if isinstance(function, Mapping) else {}
        call_id = str(asked.get("id") or f"call_{step}_{i + 1}")
        calls.append(AskedCall.from_arguments(call_id, str(function.get("name") or ""), function.get("arguments")))
    return calls


def react_messages(messages: list[dict[str, Any]], tools: list[tuple[str, str, dict[str, Any]]]) -> list[dict[str, Any]]:
    """`messages` with the tools and the answer format in the system prompt (added to the
    first system message, or as one before the others)."""
    listed = "\n".join(f"- {name}: {' '.join(description.split()) or '(no description)'}\n  arguments (JSON schema): {json.dumps(schema)}"
                       for name, description, schema in tools)
    prompt = (
        "You can use these tools:\n"
        f"{listed}\n\n"
        "To use a tool, answer in exactly this form:\n"
        "Thought: what you think about the question\n"
        "Action: the tool's name\n"
        "Action Input: the arguments, as one JSON object on one line\n\n"
        "Several Action / Action Input pairs in one answer run together. Each result comes back as "
        '"Observation: ...". Once you know the answer, write:\n'
        "Final Answer: the answer"
    )
    if messages and messages[0].get("role") == "system":
        first = dict(messages[0])
        first["content"] = f"{first.get('content') or ''}\n\n{prompt}".lstrip()
        return [first, *messages[1:]]
    return [{"role": "system", "content": prompt}, *messages]


def react_stop(stop: Any) -> list[str]:
    """The server's stop sequences: the flow's, and the start of an observation."""
    given = [stop] if isinstance(stop, str) else list(stop or [])
    return [*given, _OBSERVATION_STOP] if _OBSERVATION_STOP not in given else given


def parse_react(text: str, step: int) -> tuple[list[AskedCall], str]:
    """The calls a ReAct answer asks for (none when it gives its final answer first), and
    its final answer (the whole text when it has no ``Final Answer:`` line)."""
    final = _FINAL.search(text)
    calls: list[AskedCall] = []
    for match in _ACTION.finditer(text):
        if final is not None and final.start() < match.start():
            break
        call_id = f"call_{step}_{len(calls) + 1}"
        name = match.group(1).strip().strip("`'\"")
        given = _INPUT.match(text, match.end())
        if given is None:
            calls.append(AskedCall(call_id, name, error="no `Action Input:` line followed the action: give the arguments as one JSON object"))
            continue
        try:
            value, end = json.JSONDecoder().raw_decode(text, given.end())
        except ValueError as exc:
            line = text[given.end():].split("\n", 1)[0]
            calls.append(AskedCall(call_id, name, raw=line, error=f"the Action Input is not valid JSON ({exc}): give one JSON object on one line"))
            continue
        calls.append(AskedCall.from_arguments(call_id, name, value if isinstance(value, dict) else text[given.end():end]))
    if calls:
        return calls, ""
    return [], (text[final.end():] if final is not None else text).strip()
