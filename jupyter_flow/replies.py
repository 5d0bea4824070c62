"""The replies of the server extension's routes, as the file view reads them: one model
per route, and the reply of every route that refuses (`ErrorReply`).

The server extension builds each reply with its model, and the file view's TypeScript
types are generated from the same models (see `jupyter_flow.edits.edit_schema`), so the
two sides cannot drift apart.
"""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, JsonValue, RootModel

from jupyter_flow.errors import Problem

__all__ = [
    "EditOutcome",
    "EditRefusal",
    "EditReply",
    "ErrorReply",
    "ExportReply",
    "FieldError",
    "FlowProblem",
    "FolderReply",
    "KindColour",
    "LastRun",
    "LastRunReply",
    "NewFlowReply",
    "NodeState",
    "PaletteReply",
    "RunEvent",
    "RunFinished",
    "RunRefused",
    "RunReply",
    "RunStarted",
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

    applied: Literal[True]
    path: str
    text: str
    what: str
    made: str | int | None
    nodes: int
    edges: int
    problems: list[FlowProblem]


class EditRefusal(_Reply):
    """`POST edit`, refused: the edit does not fit the protocol or the document (`op` and
    `errors` name the field), or it would break the flow (`problems`). The text is not
    changed. A refusal is an answer, not a failed request: the view shows it."""

    applied: Literal[False]
    message: str
    path: str | None = None
    op: str | None = None
    errors: list[FieldError] = Field(default_factory=list)
    problems: list[FlowProblem] = Field(default_factory=list)


class EditOutcome(RootModel[Union[EditReply, EditRefusal]]):
    """What `POST edit` answers: the edit applied, or refused (`applied` tells them apart)."""

    model_config = ConfigDict(frozen=True)


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


class FolderReply(_Reply):
    """`GET folder?path=P`: the size of the flow file's folder as a job that runs "on a copy
    of the flow's folder" would copy it (every file, hidden ones and links' targets too):
    counting stops past `small_files` files or `small_bytes` bytes (or a time bound), and
    `small` is then false."""

    path: str
    files: int
    bytes: int
    complete: bool
    small: bool
    small_files: int
    small_bytes: int


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


RunStatus = Literal["running", "ok", "error", "cancelled", "timeout", "refused"]
NodeStatus = Literal["pending", "running", "ok", "error", "skipped", "cancelled"]


class RunStarted(_Reply):
    """A run of the file view started: its run id (the run history's) and its nodes."""

    event: Literal["started"]
    run_id: str
    flow: str
    nodes: list[str]


class NodeState(_Reply):
    """A node of a run started or ended: its status, whether its result came from the node
    cache, its time, its error, and its output as the trace writes it (`output_chars`: the
    length of the whole output as JSON; when that is over the run's bound, `output` is the
    beginning of that text)."""

    event: Literal["node"]
    node: str
    status: NodeStatus
    cached: bool = False
    duration_s: float | None = None
    error: str | None = None
    output: JsonValue = None
    output_chars: int = 0


class RunFinished(_Reply):
    """The run ended: its status, why it failed, every node's status, and whether it is in
    the run history."""

    event: Literal["finished"]
    run_id: str | None
    status: Literal["ok", "error", "cancelled", "timeout"]
    error: str | None = None
    nodes: dict[str, NodeStatus] = Field(default_factory=dict)
    recorded: bool = False


class RunRefused(_Reply):
    """The flow or its inputs are not valid: nothing ran."""

    event: Literal["refused"]
    message: str
    problems: list[FlowProblem] = Field(default_factory=list)


RunEvent = Annotated[Union[RunStarted, NodeState, RunFinished, RunRefused], Field(discriminator="event")]


class RunReply(_Reply):
    """`POST run`, `GET runstate?run=ID&after=N`, `POST cancel`: a run of the file view, its
    events from the `after`-th on (`next`: where the next poll starts), and the end of
    what it printed (`log`)."""

    run: str
    path: str
    status: RunStatus
    done: bool
    events: list[RunEvent]
    next: int
    message: str | None = None
    log: str = ""


class LastRun(_Reply):
    """The newest run of a flow file in the run history: its nodes as they ended."""

    run_id: str
    status: str
    started_at: float | None
    error: str | None = None
    nodes: list[NodeState]


class LastRunReply(_Reply):
    """`GET lastrun?path=P`: the flow file's last run, or null when the history has none;
    `active`: the id of a run of the file still going on in this server (started from a
    view since closed), which a view opened again follows (`GET runstate`)."""

    path: str
    run: LastRun | None
    active: str | None = None


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
