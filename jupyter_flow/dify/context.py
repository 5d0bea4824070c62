"""The state of one import that every node conversion reads: the app's nodes and their new
ids, Dify's references as template paths, the flow's inputs (start variables, `sys.*`,
conversation and environment variables), the options, and the report being written."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from jupyter_flow.dify.bindings import ToolBinding
from jupyter_flow.dify.dsl import INPUT_TYPES, SAFE_ID, START, VALUE_TYPES
from jupyter_flow.dify.result import DifyImport
from jupyter_flow.dify.text import dify_text, literal
from jupyter_flow.errors import FlowError

__all__ = ["FILE_FIELDS", "RENAMED_OUTPUTS", "STATE_MODULE", "Built", "Context", "Options", "Unsupported", "join_path", "slug"]

#: Dify's system variables and the input each becomes: (type, description, required)
SYSTEM = {"query": ("text", "the user's message (Dify's sys.query)", True),
          "conversation_id": ("string", "the conversation (Dify's sys.conversation_id)", False),
          "files": ("list", "the files the user sent (Dify's sys.files)", False),
          "user_id": ("string", "the user (Dify's sys.user_id)", False),
          "dialogue_count": ("number", "the turns of the conversation, this one included (Dify's sys.dialogue_count)", False)}
#: the fields of Dify's file objects (`{{#start.doc.url#}}`)
FILE_FIELDS = ("name", "size", "type", "extension", "mime_type", "transfer_method", "url", "related_id")
#: the module whose `load` reads a conversation's variables
STATE_MODULE = "jupyter_flow.dify.conversation"
_ENV_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
#: what a Dify node type calls an output and what the flow node calls it
RENAMED_OUTPUTS = {"template-transform": {"output": "text"}, "answer": {"answer": "text"},
                    "tool": {"text": "result", "json": "result"}}


class Unsupported(FlowError):
    """A Dify node, or a setting of one, that cannot be imported (why, for its placeholder)."""


def slug(text: str) -> str:
    """`text` as an id (letters, digits, underscores), or '' when nothing of it fits."""
    out = re.sub(r"[^A-Za-z0-9]+", "_", text.strip().lower()).strip("_")
    return out if out and not out[0].isdigit() else f"n_{out}" if out else ""


def join_path(root: str, parts: Iterable[str]) -> str:
    """A template path: `root.a.b`, a part that is not a name as `["part"]`."""
    out = root
    for part in parts:
        out += f".{part}" if SAFE_ID.fullmatch(part) else f"[{json.dumps(part, ensure_ascii=False)}]"
    return out


@dataclass(frozen=True)
class Options:
    """How to import: the module prefix of code nodes, the llm server, tool bindings."""

    module_prefix: str = "dify"
    base_url: str = "${OPENAI_BASE_URL}"
    model: str | None = None
    api_key_env: str | None = None
    tools: Mapping[str, ToolBinding] = field(default_factory=dict)
    partial: bool = False


@dataclass
class Built:
    """What one Dify node became: flow nodes, the edges between them, the node that takes
    the Dify node's incoming edges (`entry`) and the one its outgoing edges leave (`exit`)."""

    nodes: list[dict[str, Any]]
    edges: list[dict[str, Any]] = field(default_factory=list)
    entry: str = ""
    exit: str = ""

    def __post_init__(self) -> None:
        self.entry = self.entry or self.nodes[0]["id"]
        self.exit = self.exit or self.nodes[-1]["id"]

    def kinds(self) -> str:
        return ", ".join(f"{n['id']} ({n['type']})" for n in self.nodes)


class Context:
    """See the module docstring; one per import."""

    def __init__(self, app: Mapping[str, Any], nodes: list[Mapping[str, Any]], options: Options, result: DifyImport,
                 outer: Context | None = None) -> None:
        self.options, self.result = options, result
        #: the context of the flow that maps this one (the inside of an iteration): what the
        #: inside reads of the outside becomes an input, given by the map node
        self.outer = outer
        self.outer_inputs: dict[str, str] = {}
        #: the Dify node being converted, the nodes upstream of each, and the assigner nodes
        #: writing each conversation variable: a node after an assigner reads what it wrote
        self.current: str | None = None
        self.upstream: dict[str, set[str]] = {}
        self.writers: dict[str, list[str]] = {}
        #: the id of the node that reads a chat app's conversation variables as its
        #: conversation has them (see `jupyter_flow.dify.conversation`), or None
        self.state: str | None = None
        #: whether the app reads sys.dialogue_count (the turns of the conversation, this one included)
        self.turns = False
        #: the node giving the fields of the app's files (Dify's file objects) and the inputs it reads
        self.files: str | None = None
        self.file_reads: list[str] = []
        self.data = {str(n["id"]): n["data"] for n in nodes}
        self.types = {nid: str(data.get("type") or "") for nid, data in self.data.items()}
        self.starts = {nid for nid, kind in self.types.items() if kind == START}
        self.inputs: dict[str, dict[str, Any]] = {}
        self.used: set[str] = {START, "inputs"}
        #: the node ids of the whole app, the insides of its iterations included (shared with them)
        self.taken: set[str] = set()
        self.ids: dict[str, str] = {}
        self._system: dict[str, str] = {}
        self._variables: dict[tuple[str, str], str] = {}
        workflow = app.get("workflow") or {}
        self._declared = {("conversation", str(v.get("name"))): v for v in workflow.get("conversation_variables") or [] if isinstance(v, Mapping)}
        self._declared.update({("env", str(v.get("name"))): v for v in workflow.get("environment_variables") or [] if isinstance(v, Mapping)})
        #: names inputs may take, which node ids must not
        self.used.update(SYSTEM, (name for _, name in self._declared))

    # -- ids ---------------------------------------------------------------------------
    def name(self, nid: str, data: Mapping[str, Any]) -> str:
        """A new id for the Dify node `nid`: its own when it is one, else from its title or type."""
        titled = slug(str(data.get("title") or ""))
        if not re.search("[a-z]", titled.removeprefix("n_")):  # a title of no Latin letters ("直接回复 2")
            titled = ""
        new = nid if SAFE_ID.fullmatch(nid) and nid not in self.used | self.taken else titled or slug(str(data.get("type") or "")) or "node"
        new = self.fresh(new, self.taken)
        self.taken.add(new)
        self.ids[nid] = new
        if new != nid:
            self.result.renamed[nid] = new
        return new

    def fresh(self, base: str, also: set[str] | None = None) -> str:
        """`base`, or `base_2`, `base_3`, ... whichever is free (of `also` too); taken from then on."""
        new, i = base, 2
        while new in self.used or (also is not None and new in also):
            new, i = f"{base}_{i}", i + 1
        self.used.add(new)
        return new

    # -- references ----------------------------------------------------------------------
    def path(self, selector: Iterable[Any], *, where: str) -> str:
        """A Dify value selector ([id, var, ...]) as a template path."""
        parts = [piece for p in selector for piece in str(p).split(".")]
        if len(parts) < 2:
            raise ValueError(f"{where}: the reference {parts!r} names no variable")
        head, rest = parts[0], parts[1:]
        if head in self.starts and rest[0] == "sys" and len(rest) > 1:  # older apps kept sys.* on the start node
            head, rest = "sys", rest[1:]
        if self.outer is not None and head not in self.ids and head not in self.starts:
            return join_path("inputs", [self._from_outside([head, *rest], where)])
        if head in self.starts and len(rest) > 1 and rest[1] in FILE_FIELDS and self.inputs.get(rest[0], {}).get("type") == "file":
            return join_path(self._file(rest[0]), rest[1:])
        if head in self.starts:
            return join_path("inputs", rest)
        if head == "sys" and rest == ["dialogue_count"] and self.state is not None and "dialogue_count" not in self.conversation_names():
            self.turns = True  # counted by the conversation
            return f"{self.state}.output.dialogue_count"
        if head == "sys":
            return join_path("inputs", [self.system(rest[0]), *rest[1:]])
        if head == "conversation":
            return join_path(self._conversation(rest[0]), rest[1:])
        if head == "env":
            return join_path("inputs", [self.variable(head, rest[0]), *rest[1:]])
        if head not in self.ids:
            raise ValueError(f"{where}: references node {head!r}, which the app does not have")
        if rest[0] in ("error_message", "error_type") and self.data[head].get("error_strategy") in ("default-value", "fail-branch"):
            return join_path(f"{self.ids[head]}.error", [rest[0].removeprefix("error_")])  # what failed, when it did
        rest = [RENAMED_OUTPUTS.get(self.types.get(head, ""), {}).get(rest[0], rest[0]), *rest[1:]]
        return join_path(f"{self.ids[head]}.output", rest)

    def ref(self, selector: Iterable[Any], *, where: str) -> str:
        """A Dify value selector as a template giving the value itself."""
        return f"{{{{ {self.path(selector, where=where)} }}}}"

    def text(self, value: Any, *, where: str, context: str | None = None) -> Any:
        """Dify's text (a prompt, an answer, a body) as a template (see `text.dify_text`);
        `{{#context#}}` becomes the expression `context`. Anything but text is kept."""
        if not isinstance(value, str):
            return value

        def resolve(inner: str) -> str | None:
            if inner == "context":
                return context
            return self.path(inner.split("."), where=where)

        return dify_text(value, resolve)

    def _conversation(self, name: str) -> str:
        """What a node reads of a conversation variable: the value the last assigner before
        it wrote (the first of them that ran, latest first), else the input."""
        given = join_path("inputs", [self.variable("conversation", name)])
        expr = join_path(f"{self.state}.output", [name]) if self.state else given
        before = self.upstream.get(self.current or "", set())
        writers = [w for w in self.writers.get(name, []) if w in before and w in self.ids]
        # earliest first: a writer upstream of another comes before it
        writers.sort(key=lambda w: len(self.upstream.get(w, set()) & set(writers)))
        for writer in writers:
            fid = self.ids[writer]
            expr = f"({join_path(f'{fid}.output', [name])} if {fid}.status == 'ok' else {expr})"
        return expr

    def _from_outside(self, parts: list[str], where: str) -> str:
        """The input standing for a value the inside of an iteration reads of the outside."""
        assert self.outer is not None
        template = f"{{{{ {self.outer.path(parts, where=where)} }}}}"
        for name, known in self.outer_inputs.items():
            if known == template:
                return name
        outer_path = self.outer.path(parts, where=where)
        base = outer_path.removeprefix("inputs.") if outer_path.startswith("inputs.") else outer_path.replace(".output.", "_")
        name = self.fresh(slug(base) or "outer")
        self.outer_inputs[name] = template
        self.inputs[name] = {"type": "any", "description": f"{template} of the flow that runs this one per item"}
        return name

    def _file(self, name: str) -> str:
        """The path of the fields (Dify's file object) of the file input `name`."""
        if self.files is None:
            self.files = self.fresh("files")
        if name not in self.file_reads:
            self.file_reads.append(name)
        return join_path(f"{self.files}.output", [name])

    def files_node(self) -> dict[str, Any] | None:
        """The node giving the fields of the file inputs the app reads them of, or None."""
        if self.files is None:
            return None
        mapping = {"files": {name: f"{{{{ {join_path('inputs', [name])} }}}}" for name in self.file_reads}}
        return {"id": self.files, "type": "python", "title": "Files", "cache": False,
                "config": {"function": "jupyter_flow.dify.functions:file_fields", "input_mapping": mapping}}

    def before_ids(self) -> list[str]:
        """The nodes import puts before the app's first (see `files_node` and `state_node`)."""
        return [n for n in (self.files, self.state if self.conversation_names() or self.turns else None) if n]

    def declares_conversation(self) -> bool:
        """Whether the app declares conversation variables."""
        return any(scope == "conversation" for scope, _ in self._declared)

    def conversation_input(self, name: str = "conversation_id") -> str:
        """The input standing for Dify's sys.<name> (by default the conversation's id)."""
        if name in self._system or name not in self.inputs:
            return self.system(name)
        return name  # a start variable of that name: a flow exported from here

    def conversation_names(self) -> dict[str, str]:
        """The conversation variables the app reads or writes, and the input of each."""
        return {name: input_name for (scope, name), input_name in self._variables.items() if scope == "conversation"}

    def state_node(self) -> dict[str, Any] | None:
        """The node that reads the conversation variables as the run's conversation has them
        (`jupyter_flow.dify.conversation.load`), or None when the app uses none."""
        names = self.conversation_names()
        if self.state is None or not (names or self.turns):
            return None
        mapping: dict[str, Any] = {**self.conversation_mapping(),
                                   "initial": {name: f"{{{{ {join_path('inputs', [given])} }}}}" for name, given in names.items()}}
        if self.turns:  # sys.dialogue_count: the turns of the conversation, this one included (the input's, without one)
            mapping["turns"] = f"{{{{ inputs.{self.conversation_input('dialogue_count')} }}}}"
        return {"id": self.state, "type": "python", "title": "Conversation variables", "cache": False,
                "config": {"function": f"{STATE_MODULE}:load", "input_mapping": mapping}}

    def conversation_mapping(self) -> dict[str, str]:
        """Which conversation a run is: the app's name and the conversation id (what the
        conversation node and the assigners pass to the store)."""
        return {"app": literal(self.result.app_name or "dify-app"), "conversation_id": f"{{{{ inputs.{self.conversation_input()} }}}}"}

    # -- inputs ----------------------------------------------------------------------------
    def start(self, data: Mapping[str, Any]) -> None:
        """The start node's variables as inputs (types, defaults; labels and options kept as
        the description)."""
        for var in data.get("variables") or []:
            name = str(var["variable"])
            spec: dict[str, Any] = {"type": INPUT_TYPES.get(str(var.get("type")), "string")}
            label = str(var.get("label") or "")
            options = var.get("options") or []
            description = label + (f" (one of: {', '.join(map(str, options))})" if options else "")
            if description and description != name:
                spec["description"] = description
            if var.get("default") not in (None, ""):
                spec["default"] = var["default"]
            if var.get("required") is False and "default" not in spec:
                spec["required"] = False
            self.inputs[name] = spec
            self.used.add(name)

    def system(self, name: str) -> str:
        """The input standing for Dify's `sys.<name>`."""
        if name not in self._system:
            kind, description, required = SYSTEM.get(name, ("string", f"Dify's sys.{name}", False))
            input_name = name if name not in self.inputs else f"sys_{name}"
            spec: dict[str, Any] = {"type": kind, "description": description}
            if not required:
                spec["required"] = False
            self.inputs[input_name] = spec
            self._system[name] = input_name
        return self._system[name]

    def variable(self, scope: str, name: str) -> str:
        """The input standing for a conversation or environment variable (its value in the
        app is the input's default)."""
        key = (scope, name)
        if key not in self._variables:
            declared = self._declared.get(key) or {}
            input_name = name if name not in self.inputs else f"{scope}_{name}"
            value_type = str(declared.get("value_type") or "string")
            spec: dict[str, Any] = {"type": VALUE_TYPES.get(value_type, "list" if value_type.startswith("array") else "string")}
            secret = value_type == "secret"
            if declared.get("value") not in (None, "") and not secret:
                spec["default"] = declared["value"]
            elif not secret:
                spec["required"] = False
            if scope == "conversation" and self.state is not None:
                spec["description"] = f"Dify's conversation variable {name}: its value when a conversation starts"
                self.result.notes.append(f"conversation variable {name!r}: kept between the runs of a conversation (the "
                                         f"conversation_id input) in the conversation store; the input {input_name!r} starts it")
            elif scope == "conversation":
                spec["description"] = f"Dify's conversation variable {name} (kept between turns there; here given with each run)"
                self.result.approximated.append(f"conversation variable {name!r}: the input {input_name!r}, given with each run "
                                                "(Dify keeps it between the turns of a conversation)")
            else:
                spec["description"] = f"Dify's environment variable {name}" + (" (a secret: give it with each run)" if secret else "")
                self.result.notes.append(f"Dify's environment variable {name!r} is the input {input_name!r}")
            self.inputs[input_name] = spec
            self._variables[key] = input_name
        return self._variables[key]

    # -- models -----------------------------------------------------------------------------
    def model(self, model: Mapping[str, Any]) -> dict[str, Any]:
        """The config fields naming the OpenAI-compatible server and model of an llm or
        agent node (Dify's model settings: `name` or `model`, `completion_params`)."""
        config: dict[str, Any] = {"base_url": self.options.base_url,
                                  "model": self.options.model or str(model.get("name") or model.get("model") or "")}
        params = model.get("completion_params") or {}
        for key in ("temperature", "max_tokens", "top_p", "stop", "response_format"):
            if params.get(key) not in (None, "", []):
                config[key] = params[key]
        for var in _ENV_VAR.findall(self.options.base_url):
            self.result.keys.setdefault(var, "the address of the OpenAI-compatible server of llm and agent nodes "
                                             "(such as http://127.0.0.1:8000/v1); `--llm-base-url` sets another")
        if self.options.api_key_env:
            config["api_key_env"] = self.options.api_key_env
            self.result.keys.setdefault(self.options.api_key_env, "the API key of that server")
        return config

    def python_module(self, name: str, code: str) -> str:
        """Keep `code` to be written as `name.py` beside the flow file; its name."""
        self.result.modules[name] = code
        return name
