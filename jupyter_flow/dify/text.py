"""Dify's text as template text, and the text of its sticky notes.

Dify's prompts, answers, HTTP bodies and tool arguments are plain text apart from
`{{#node.var#}}` references: a `{{topic}}` or `{%` written in them is text, not a
template. Import writes such text so that it renders as itself (every `{` that Jinja would
read becomes `{{ '{' }}`) and each reference as `{{ path | as_text }}`, which prints a
value as Dify does: text as it is, nothing as an empty string, objects and lists as JSON.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from jupyter_flow.dify.dsl import AS_TEXT, DIFY_REF, LITERAL_BRACE

__all__ = ["dify_text", "literal", "note_text"]

#: a `{` that opens Jinja syntax (`{{`, `{%`, `{#`), or one that ends a piece of text (a
#: reference written right after it would open `{{{`)
_OPENS = re.compile(r"\{(?=[{%#])|\{\Z")


def literal(text: str) -> str:
    """`text` as template text that renders as itself."""
    return _OPENS.sub(lambda _: LITERAL_BRACE, text)


def dify_text(text: str, path: Callable[[str], str | None]) -> str:
    """Dify's `text` as a template: its references as `{{ path | as_text }}` (`path` gives
    the template path of a reference's inside, e.g. `1711.text`, or None to leave it out),
    the rest as literal text."""
    out: list[str] = []
    end = 0
    for match in DIFY_REF.finditer(text):
        out.append(literal(text[end:match.start()]))
        target = path(match.group(1).strip())
        if target is not None:
            out.append(f"{{{{ {target} | {AS_TEXT} }}}}")
        end = match.end()
    out.append(literal(text[end:]))
    return "".join(out)


def note_text(data: Any) -> str:
    """The text of a sticky note: Dify keeps it as the JSON of its rich-text editor (a tree
    of paragraphs whose leaves have `text`), or as plain text in older apps."""
    raw = data.get("text") if isinstance(data, dict) else None
    if not isinstance(raw, str) or not raw.strip():
        return ""
    try:
        tree = json.loads(raw)
    except ValueError:
        return raw.strip()
    lines: list[str] = []

    def walk(node: Any, line: list[str]) -> None:
        if not isinstance(node, dict):
            return
        if isinstance(node.get("text"), str):
            line.append(node["text"])
        children = node.get("children") or []
        if node.get("type") in ("paragraph", "heading", "listitem", "quote", "code"):
            inner: list[str] = []
            for child in children:
                walk(child, inner)
            lines.append("".join(inner))
            return
        if node.get("type") == "linebreak":
            line.append("\n")
        for child in children:
            walk(child, line)

    rest: list[str] = []
    walk(tree.get("root", tree) if isinstance(tree, dict) else {}, rest)
    if rest:
        lines.append("".join(rest))
    return "\n".join(lines).strip()
