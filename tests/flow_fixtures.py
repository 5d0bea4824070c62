"""Flows several test modules build the same way."""

from __future__ import annotations

from typing import Any


def three_nodes(function: str) -> dict[str, Any]:
    """prompt (a template) -> shout (the python function registered as `function`, called
    with the prompt's text) -> report (a template over shout's `text` and `n`)."""
    return {
        "name": "three",
        "inputs": {"text": {"type": "string", "default": "a b"}},
        "nodes": [
            {"id": "prompt", "type": "template", "config": {"template": "say {{text}}"}},
            {"id": "shout", "type": "python", "config": {"function": function, "input_mapping": {"text": "{{prompt.output.text}}"}}},
            {"id": "report", "type": "template", "config": {"template": "{{shout.output.text}} ({{shout.output.n}})"}},
        ],
        "edges": [{"from": "prompt", "to": "shout"}, {"from": "shout", "to": "report"}],
    }
