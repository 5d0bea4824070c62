"""Which tool of the registry a Dify tool becomes: the built-in matches, and the bindings a
user gives (`import-dify --tools BINDINGS.yaml`).

A Dify tool is named here `provider/tool` after its provider's last name part and the
tool's name (`langgenius/duckduckgo/duckduckgo` + `ddgo_search` -> `duckduckgo/ddgo_search`;
tools made from Dify workflows are `workflow/<tool>`). A bindings file maps such names (or
the tool's name alone) to registry names, with the arguments renamed where they differ::

    duckduckgo/ddgo_search: python/my_tools:search      # same argument names as in Dify
    translate:
      tool: mcp/translator/translate
      server: {url: "http://127.0.0.1:9000/mcp"}
      arguments: {text: content, target: dest}         # registry argument: Dify parameter

A Dify tool with no match imports as the tool `dify/<provider>/<tool>`, which `validate`
reports on its node with how to bind it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from jupyter_flow.errors import FlowFileError
from jupyter_flow.spec import PathLike, yaml_problem

__all__ = ["BUILTIN_BINDINGS", "ToolBinding", "dify_tool_name", "dify_tool_of", "read_bindings", "unbound_name"]

_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.IGNORECASE)
_WORD = re.compile(r"[^A-Za-z0-9_.-]+")


@dataclass(frozen=True)
class ToolBinding:
    """A registry tool standing for a Dify tool: `arguments` renames (registry argument ->
    the Dify parameter giving its value; none given: Dify's names are kept), `fixed` sets
    arguments Dify has no parameter for, `approximated` says how it differs from Dify's."""

    tool: str
    arguments: Mapping[str, str] | None = None
    fixed: Mapping[str, Any] = field(default_factory=dict)
    server: Mapping[str, Any] | None = None
    approximated: str | None = None


#: Dify's own tools that a built-in tool of the registry does
BUILTIN_BINDINGS: dict[str, ToolBinding] = {
    "time/current_time": ToolBinding("time/current_time", {"timezone": "timezone", "format": "format"}),
    "webscraper/webscraper": ToolBinding("web/page_text", {"url": "url"}, {"format": "text"},
                                         approximated="the page is read here as plain text (no summary, no user agent of its own)"),
    "jina/jina_reader": ToolBinding("web/page_text", {"url": "url"}, {"format": "markdown"},
                                    approximated="the page is read here and written as Markdown, not by Jina's reader service"),
    "json_process/parse": ToolBinding("json/path", {"data": "content", "path": "json_filter"}, {"first": True}),
    "base64_codec/base64_encoder": ToolBinding("base64/encode", {"text": "plain_text", "url_safe": "urlsafe_enabled"}),
    "base64_codec/base64_decoder": ToolBinding("base64/decode", {"data": "encoded_text", "url_safe": "urlsafe_enabled"}),
}


def dify_tool_name(provider_id: Any, tool_name: Any, provider_type: Any = None) -> str:
    """`provider/tool` for a Dify tool (see the module docstring)."""
    provider = str(provider_id or "").strip("/").split("/")[-1]
    if provider_type == "workflow" or _UUID.match(provider) or not provider:
        provider = "workflow"
    return f"{_WORD.sub('_', provider)}/{_WORD.sub('_', str(tool_name or 'tool'))}"


def unbound_name(name: str) -> str:
    """The registry name of a Dify tool nothing is bound to (`validate` reports it)."""
    return f"dify/{name}"


def dify_tool_of(tool: str, arguments: Mapping[str, Any] | None) -> tuple[str, dict[str, Any]] | None:
    """The Dify tool (`provider/tool`) that the registry tool `tool` stands for in an
    imported flow, with `arguments` under Dify's parameter names: an unbound one, or a
    built-in match (its fixed arguments set as import sets them; `arguments` None: an
    agent's tool, named only). None for any other tool."""
    if tool.startswith("dify/") and "/" in tool[5:]:
        return tool[5:], dict(arguments or {})
    for name, found in BUILTIN_BINDINGS.items():
        if found.tool != tool or (arguments is not None and any(arguments.get(k) != v for k, v in found.fixed.items())):
            continue
        renamed = found.arguments or {}
        given = {k: v for k, v in (arguments or {}).items() if k not in found.fixed}
        return name, {renamed.get(k, k): v for k, v in given.items()}
    return None


def read_bindings(path: PathLike) -> dict[str, ToolBinding]:
    """The bindings of a `--tools` file (see the module docstring); FlowFileError names the
    entry that is wrong."""
    source = Path(path)
    try:
        data = yaml.safe_load(source.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FlowFileError("no such file (the tool bindings)", source=str(source)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise FlowFileError(f"cannot read: {exc}", source=str(source)) from None
    except yaml.YAMLError as exc:
        problem = yaml_problem(exc)
        raise FlowFileError(problem.message, source=str(source), line=problem.line, column=problem.column) from None
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise FlowFileError("tool bindings are a mapping of Dify tool names to registry tool names", source=str(source))
    bindings = {}
    for key, value in data.items():
        where = f"{key}: "
        if isinstance(value, str):
            bindings[str(key)] = ToolBinding(value)
            continue
        if not isinstance(value, Mapping) or not isinstance(value.get("tool"), str):
            raise FlowFileError(f"{where}give the registry tool's name, or a mapping with `tool` (and `arguments`, `server`)",
                                source=str(source))
        unknown = set(value) - {"tool", "arguments", "server"}
        if unknown:
            raise FlowFileError(f"{where}unknown field {sorted(unknown)[0]!r} (known: tool, arguments, server)", source=str(source))
        arguments = value.get("arguments")
        if arguments is not None and not (isinstance(arguments, Mapping) and all(isinstance(v, str) for v in arguments.values())):
            raise FlowFileError(f"{where}`arguments` maps the registry tool's argument names to Dify parameter names",
                                source=str(source))
        server = value.get("server")
        if server is not None and not isinstance(server, Mapping):
            raise FlowFileError(f"{where}`server` is an MCP server: {{url: ...}} or {{command: [...]}}", source=str(source))
        bindings[str(key)] = ToolBinding(value["tool"], {str(k): str(v) for k, v in arguments.items()} if arguments else None,
                                         server=dict(server) if server else None)
    return bindings
