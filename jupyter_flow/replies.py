"""The replies of the server extension's routes, as the file view reads them: one model
per route, and the reply of every route that refuses (`ErrorReply`).

The server extension builds each reply with its model, and the file view's TypeScript
types are generated from the same models (see `jupyter_flow.edits.edit_schema`), so the
two sides cannot drift apart.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from jupyter_flow.errors import Problem

__all__ = [
    "EditReply",
    "ErrorReply",
    "ExportReply",
    "FieldError",
    "FlowProblem",
    "KindColour",
    "NewFlowReply",
    "PaletteReply",
    "SchemaReply",
    "StatusReply",
    "ValidateReply",
    "WorkbenchReply",
]


class _Reply(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class FlowProblem(_Reply):
    """One thing wrong with a flow: its node, edge (index in the file's edges) and field."""

    node: str | None
    edge: int | None
    field: str | None
    message: str

    @classmethod
    def of(cls, problem: Problem) -> FlowProblem:
        return cls(node=problem.node, edge=problem.edge, field=problem.field, message=problem.message)


class StatusReply(_Reply):
    """`GET status`."""

    version: str
    export: bool


class KindColour(_Reply):
    kind: str
    colour: str
    builtin: bool


class PaletteReply(_Reply):
    """`GET palette`: the colours the notebook workbench draws with."""

    kinds: list[KindColour]
    statuses: dict[str, str]
    problem: str
    selected: str


class ValidateReply(_Reply):
    """`POST validate`: every problem of the flow, with its node and edge counts."""

    path: str
    valid: bool
    nodes: int
    edges: int
    problems: list[FlowProblem]


class EditReply(_Reply):
    """`POST edit`: the document's text after the edit (comments kept), what the edit did
    ("add node template_1"), what it made (a new node's id, a new edge's index), and the
    problems of the flow the text holds."""

    path: str
    text: str
    what: str
    made: str | int | None
    nodes: int
    edges: int
    problems: list[FlowProblem]


class SchemaReply(_Reply):
    """`GET schema?kind=K`: the JSON schema of a node kind's config as a form shows it, and
    a new node's config; without `kind`, the schema of an edge's settings."""

    kind: str | None
    config_schema: dict[str, JsonValue] = Field(alias="schema")
    config: dict[str, JsonValue]


class ExportReply(_Reply):
    """`POST export`."""

    path: str
    notebook: str


class NewFlowReply(_Reply):
    """`POST new`."""

    flow: str
    notebook: str


class WorkbenchReply(_Reply):
    """`POST workbench`."""

    path: str
    notebook: str
    created: bool
    #: the notebook is the workbench made for this flow (its marker says so): the view runs
    #: it; any other notebook of that name is only opened
    runnable: bool


class FieldError(_Reply):
    """One field of a request that does not fit: pydantic's location, the field within the
    edit (or request), and what is wrong."""

    loc: list[str | int]
    field: str
    message: str
    type: str


class ErrorReply(_Reply):
    """What every route answers when it refuses: `message`; a refused request or edit names
    its `op` and `errors`, a flow that is invalid lists its `problems`."""

    message: str
    reason: str | None = None
    path: str | None = None
    op: str | None = None
    errors: list[FieldError] = Field(default_factory=list)
    problems: list[FlowProblem] = Field(default_factory=list)
