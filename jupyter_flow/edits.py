"""The file view's edits of a flow document, and the requests it sends the server
extension, as pydantic models; applying one edit to a document's text.

The JupyterLab file view holds a flow as the text of a document. For each change made on
the graph it sends that text and one edit (`POST jupyter-flow/api/edit`); `apply_edit`
reads the text, checks the edit against it (the nodes and edges the edit names must be
there), applies it with the `FlowEditor` the notebook workbench uses, and gives back the
text with the document's comments kept. The browser puts that text into its document, so
JupyterLab's own save, undo and reload apply.

The edits, a union on `op`::

    add_node      {kind, id?, config?, position?: {x, y}}   made: the new node's id
    remove        {nodes?: [id], edges?: [index]}             (what the Delete key removes)
    add_edge      {from, to, when?, branch?, on?, label?}     made: the new edge's index
    replace_node  {node, body: mapping or YAML text}          made: the node's id (maybe new)
    set_config    {node, config: mapping}
    replace_edge  {index, body: mapping or YAML text}
    move          {positions: {id: {x, y}}}
    settings      {body: mapping or YAML text}

A request or edit that does not fit (a field missing, unknown or of the wrong type, a
number that is not finite, a node or edge the document does not have, more than the
bounds below) raises `EditRequestError`, naming the op and the field; an edit that fits
but would break the flow's graph raises `FlowValidationError` from the editor. Either way
the text is not changed.

The requests of every route, and the JSON schema the file view's TypeScript types are
generated from, are in `jupyter_flow.protocol`; the replies in `jupyter_flow.replies`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, Union

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    JsonValue,
    RootModel,
    StringConstraints,
    Tag,
    ValidationError,
    ValidationInfo,
)
from pydantic_core import ErrorDetails, PydanticCustomError

from jupyter_flow.document import FlowDocument
from jupyter_flow.editor import FlowEditor, new_node_config
from jupyter_flow.errors import FlowError, FlowFileError, Problem
from jupyter_flow.replies import ErrorReply, FieldError, FlowProblem
from jupyter_flow.spec import START, FlowSpec, PathLike, check_document

__all__ = [
    "MAX_DEPTH",
    "MAX_DOCUMENT_CHARS",
    "MAX_ID_CHARS",
    "MAX_ITEMS",
    "MAX_KEYS",
    "MAX_PATH_CHARS",
    "MAX_TEXT_CHARS",
    "MAX_VALUES",
    "OPS",
    "AddEdgeEdit",
    "AddNodeEdit",
    "AppliedEdit",
    "ApiPath",
    "Directory",
    "DocumentText",
    "Edit",
    "EditRequestError",
    "FlowEdit",
    "Id",
    "JsonMapping",
    "MoveEdit",
    "NodePosition",
    "RemoveEdit",
    "ReplaceEdgeEdit",
    "ReplaceNodeEdit",
    "SetConfigEdit",
    "SettingsEdit",
    "StrictModel",
    "apply_edit",
    "read_edit",
    "read_request",
]

#: The longest node id or node kind an edit may name.
MAX_ID_CHARS = 200
#: The longest text in an edit: a YAML body, a `when` condition, a label.
MAX_TEXT_CHARS = 1_000_000
#: The longest flow document a request may carry.
MAX_DOCUMENT_CHARS = 4_000_000
#: The longest file path a request may name.
MAX_PATH_CHARS = 4096
#: The most nodes or edges one edit may remove, or nodes it may move.
MAX_ITEMS = 10_000
#: The most keys in a mapping an edit carries (a node's config, a body), at its top level.
MAX_KEYS = 1000
#: How deep a mapping an edit carries may nest, and how many values it may hold in all.
MAX_DEPTH = 32
MAX_VALUES = 100_000

OPS = ("add_node", "remove", "add_edge", "replace_node", "set_config", "replace_edge", "move", "settings")
_LISTED_NODES = 20  # how many of the document's node ids an error lists


# -- checks that need the document ------------------------------------------------------
@dataclass(frozen=True)
class _Document:
    """What an edit may name: the document's node ids and its number of edges (the
    validation context of `read_edit`)."""

    nodes: frozenset[str]
    edges: int


def _document(info: ValidationInfo) -> _Document | None:
    return info.context if isinstance(info.context, _Document) else None


def _known_node(value: str, info: ValidationInfo) -> str:
    doc = _document(info)
    if doc is not None and value not in doc.nodes:
        names = sorted(doc.nodes)
        listed = ", ".join(names[:_LISTED_NODES]) + (", ..." if len(names) > _LISTED_NODES else "")
        raise PydanticCustomError(
            "unknown_node", "no node '{node}' in the flow (nodes: {nodes})", {"node": value, "nodes": listed or "none"}
        )
    return value


def _known_source(value: str, info: ValidationInfo) -> str:
    return value if value == START else _known_node(value, info)


def _new_node(value: str, info: ValidationInfo) -> str:
    doc = _document(info)
    if doc is not None and value in doc.nodes:
        raise PydanticCustomError("node_exists", "a node '{node}' exists already: pick another id", {"node": value})
    return value


def _known_edge(value: int, info: ValidationInfo) -> int:
    doc = _document(info)
    if doc is not None and value >= doc.edges:
        raise PydanticCustomError(
            "unknown_edge", "no edge number {index} (the flow has {count} edges)", {"index": value, "count": doc.edges}
        )
    return value


def _bounded(value: dict[str, JsonValue]) -> dict[str, JsonValue]:
    try:
        check_document(value, source="edit", max_depth=MAX_DEPTH, max_values=MAX_VALUES)
    except FlowFileError as exc:
        raise PydanticCustomError("too_big", "{problem}", {"problem": exc.problems[0].message}) from None
    return value


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise PydanticCustomError("nul_in_path", "a path may not hold a NUL character")
    return value


Id = Annotated[str, StringConstraints(min_length=1, max_length=MAX_ID_CHARS)]
Text = Annotated[str, StringConstraints(max_length=MAX_TEXT_CHARS)]
DocumentText = Annotated[str, StringConstraints(max_length=MAX_DOCUMENT_CHARS)]
ApiPath = Annotated[str, StringConstraints(min_length=1, max_length=MAX_PATH_CHARS), AfterValidator(_no_nul)]
Directory = Annotated[str, StringConstraints(max_length=MAX_PATH_CHARS), AfterValidator(_no_nul)]
NodeRef = Annotated[Id, AfterValidator(_known_node)]
SourceRef = Annotated[Id, AfterValidator(_known_source)]
NewNodeId = Annotated[Id, AfterValidator(_new_node)]
EdgeRef = Annotated[int, Field(ge=0), AfterValidator(_known_edge)]
JsonMapping = Annotated[dict[str, JsonValue], Field(max_length=MAX_KEYS), AfterValidator(_bounded)]


def _body_kind(value: Any) -> str | None:
    return "text" if isinstance(value, str) else "mapping" if isinstance(value, Mapping) else None


#: A node's, an edge's or the flow's settings: a mapping, or YAML text as typed in the editor.
Body = Annotated[
    Union[Annotated[Text, Tag("text")], Annotated[JsonMapping, Tag("mapping")]],
    Discriminator(
        _body_kind, custom_error_type="body_type", custom_error_message="the body must be a mapping or YAML text"
    ),
]


class StrictModel(BaseModel):
    # strict: a JSON string is not a number here, nor `true` a number; finite numbers only
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, allow_inf_nan=False)


# -- the edits ------------------------------------------------------------------------------
class NodePosition(StrictModel):
    """Where a node is drawn, in the graph's coordinates."""

    x: float
    y: float


class AddNodeEdit(StrictModel):
    """Add a node of `kind`, with `config` (by default the kind's required fields, empty)."""

    op: Literal["add_node"]
    kind: Id
    id: NewNodeId | None = None
    config: JsonMapping | None = None
    position: NodePosition | None = None

    def apply(self, editor: FlowEditor) -> str:
        config = dict(self.config) if self.config is not None else new_node_config(self.kind)
        at = (self.position.x, self.position.y) if self.position is not None else None
        return editor.add_node(self.kind, self.id, config, at)


class RemoveEdit(StrictModel):
    """Remove nodes (with their edges) and edges, by id and by index in the file's edges."""

    op: Literal["remove"]
    nodes: list[NodeRef] = Field(default_factory=list, max_length=MAX_ITEMS)
    edges: list[EdgeRef] = Field(default_factory=list, max_length=MAX_ITEMS)

    def apply(self, editor: FlowEditor) -> None:
        # edges first, from the last, so that the indexes given still name the same edges
        for index in sorted(set(self.edges), reverse=True):
            editor.remove_edge(index)
        for node_id in dict.fromkeys(self.nodes):
            editor.remove_node(node_id)


class AddEdgeEdit(StrictModel):
    """Wire `from` (a node, or `start` for an entry node) to `to`."""

    op: Literal["add_edge"]
    source: SourceRef = Field(alias="from")
    target: NodeRef = Field(alias="to")
    when: Text | None = None
    branch: Text | None = None
    on: Literal["success", "error"] | None = None
    label: Text | None = None

    def apply(self, editor: FlowEditor) -> int:
        given = {"when": self.when, "branch": self.branch, "on": self.on, "label": self.label}
        return editor.add_edge(self.source, self.target, **{k: v for k, v in given.items() if v not in (None, "")})


class ReplaceNodeEdit(StrictModel):
    """Replace a node's settings (id, type, config, ...); a new `id` renames the node."""

    op: Literal["replace_node"]
    node: NodeRef
    body: Body

    def apply(self, editor: FlowEditor) -> str:
        return editor.replace_node(self.node, self.body)


class SetConfigEdit(StrictModel):
    """Replace a node's config, keeping its other settings."""

    op: Literal["set_config"]
    node: NodeRef
    config: JsonMapping

    def apply(self, editor: FlowEditor) -> str:
        node = next(n for n in editor.data()["nodes"] if n["id"] == self.node)
        return editor.replace_node(self.node, {**node, "config": dict(self.config)})


class ReplaceEdgeEdit(StrictModel):
    """Replace an edge's settings (when, branch, on, label; its ends unless given)."""

    op: Literal["replace_edge"]
    index: EdgeRef
    body: Body

    def apply(self, editor: FlowEditor) -> None:
        editor.replace_edge(self.index, self.body)


class MoveEdit(StrictModel):
    """Keep nodes' positions in the flow's layout."""

    op: Literal["move"]
    positions: dict[NodeRef, NodePosition] = Field(max_length=MAX_ITEMS)

    def apply(self, editor: FlowEditor) -> None:
        for node_id, at in self.positions.items():
            editor.move(node_id, at.x, at.y)


class SettingsEdit(StrictModel):
    """Replace the flow's settings: name, description, inputs, timeout_s, max_concurrency."""

    op: Literal["settings"]
    body: Body

    def apply(self, editor: FlowEditor) -> None:
        editor.replace_settings(self.body)


Edit = Union[
    AddNodeEdit, RemoveEdit, AddEdgeEdit, ReplaceNodeEdit, SetConfigEdit, ReplaceEdgeEdit, MoveEdit, SettingsEdit
]


class FlowEdit(RootModel[Annotated[Edit, Field(discriminator="op")]]):
    """One edit of a flow document, told apart by its `op`."""

    model_config = ConfigDict(frozen=True)


# -- reading requests and applying edits ----------------------------------------------------
class EditRequestError(FlowError):
    """A request or edit of the file view that does not fit the protocol; `op` is the edit's
    op (when there is one) and `errors` names each field that is wrong and how."""

    def __init__(self, errors: list[FieldError], op: str | None = None) -> None:
        self.errors = errors
        self.op = op
        super().__init__("; ".join(self._where(e) + e.message for e in errors))

    def _where(self, error: FieldError) -> str:
        head = "edit" + (f" '{self.op}'" if self.op else "") + ", " if error.loc[:1] == ["edit"] and error.field != "edit" else ""
        return f"{head}field '{error.field}': "

    @classmethod
    def from_validation(cls, exc: ValidationError, data: Any, *, within: tuple[str, ...] = ()) -> EditRequestError:
        """Translate pydantic's errors for `data` (found at `within` in the request)."""
        request = {within[0]: data} if within else data
        edit = request.get("edit") if isinstance(request, Mapping) else None
        op = edit.get("op") if isinstance(edit, Mapping) else None
        op = op[:MAX_ID_CHARS] if isinstance(op, str) else None
        return cls([_field_error(request, [*within, *err["loc"]], err, op) for err in exc.errors()], op)

    @property
    def problems(self) -> list[Problem]:
        return [Problem(self._where(e) + e.message, field=e.field) for e in self.errors]

    def reply(self, path: str | None = None) -> ErrorReply:
        return ErrorReply(
            message=f"not applied: {self}", path=path, op=self.op, errors=self.errors,
            problems=[FlowProblem.of(p) for p in self.problems],
        )


def _field_error(request: Any, loc: list[str | int], err: ErrorDetails, op: str | None) -> FieldError:
    """The error with the field it names, as the request holds it: the edit's op and the
    parts of pydantic's location that name a branch of a union (not a key) left out."""
    parts: list[str | int] = []
    here = request
    for i, part in enumerate(loc):
        if i == 1 and loc[0] == "edit" and part == op:
            continue
        if isinstance(here, Mapping) and part in here:
            here = here[part]
        elif isinstance(here, list) and isinstance(part, int) and 0 <= part < len(here):
            here = here[part]
        elif not (err["type"] == "missing" and i == len(loc) - 1):
            continue  # a union's branch, or the key a mapping lacks
        parts.append(part)
    message = err["msg"]
    if err["type"] in ("union_tag_invalid", "union_tag_not_found"):
        parts.append("op")
        message = f"the op must be one of: {', '.join(OPS)}"
    elif err["type"] == "extra_forbidden":
        message = "not a field of this request or edit"
    elif err["type"] == "missing":
        message = "this field is needed"
    if parts[:1] == ["edit"] and len(parts) > 1:
        parts = parts[1:]
    field = ".".join(str(p) for p in parts) or "request"
    return FieldError(loc=loc, field=field, message=message.removeprefix("Value error, "), type=err["type"])


_R = TypeVar("_R", bound=BaseModel)


def read_request(model: type[_R], data: Any) -> _R:
    """`data` (a parsed request body) as `model`, or `EditRequestError` naming each field."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise EditRequestError.from_validation(exc, data) from None


def read_edit(edit: FlowEdit | Edit | Mapping[str, Any], spec: FlowSpec | None = None) -> Edit:
    """An edit read (again) as the protocol says, its node ids and edge indexes checked
    against `spec` when given; `EditRequestError` names the op and field when it does not fit."""
    if isinstance(edit, FlowEdit):
        edit = edit.root
    data = edit.model_dump(by_alias=True) if isinstance(edit, BaseModel) else edit
    context = _Document(frozenset(n.id for n in spec.nodes), len(spec.edges)) if spec is not None else None
    try:
        return FlowEdit.model_validate(data, context=context).root
    except ValidationError as exc:
        raise EditRequestError.from_validation(exc, data, within=("edit",)) from None


@dataclass(frozen=True)
class AppliedEdit:
    """The document's text after an edit, what the edit did, and what it made."""

    text: str
    what: str
    made: str | int | None = None


def apply_edit(text: str, path: PathLike, edit: FlowEdit | Edit | Mapping[str, Any]) -> AppliedEdit:
    """Apply `edit` to flow `text` (the content of the file at `path`). Raises
    `EditRequestError` for an edit that does not fit the protocol or the document, and
    `FlowValidationError` (naming node, edge and field) for text that is not a flow or an
    edit that would break its graph."""
    spec, document = FlowDocument.parse(text, Path(path))
    checked = read_edit(edit, spec)
    editor = FlowEditor(spec)
    made = checked.apply(editor)
    if not editor.can_undo:
        return AppliedEdit(text, "nothing changed", made)
    return AppliedEdit(document.text(editor.spec), editor.last_edit or "edit", made)
