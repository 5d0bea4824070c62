"""The file view's protocol: the request of every route of the server extension, and the
JSON schema of every request, edit and reply that the file view's TypeScript types are
generated from.

`edit_schema()` maps each route (`ROUTES`) to its request and reply; the edits are in
`jupyter_flow.edits`, the replies in `jupyter_flow.replies`. The file view's TypeScript
types (labextension/src/edits.ts) are generated from the copy in
labextension/src/edits.schema.json by `python scripts/edit_types.py`; a test keeps the
three in step.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, StringConstraints
from pydantic.json_schema import GenerateJsonSchema, models_json_schema

from jupyter_flow.edits import ApiPath, Directory, DocumentText, FlowEdit, Id, JsonMapping, StrictModel
from jupyter_flow.replies import (
    EditOutcome,
    ErrorReply,
    ExportReply,
    FolderReply,
    LastRunReply,
    NewFlowReply,
    PaletteReply,
    RunReply,
    SchemaReply,
    StatusReply,
    ValidateReply,
    WorkbenchReply,
)
from jupyter_flow.viewruns import MAX_TIMEOUT_S

__all__ = [
    "ROUTES",
    "CancelRequest",
    "EditRequest",
    "ExportRequest",
    "NewFlowRequest",
    "RunRequest",
    "ValidateRequest",
    "WorkbenchRequest",
    "edit_schema",
    "schema_text",
]

RunId = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[0-9a-f]+$")]


class EditRequest(StrictModel):
    """`POST edit`: the flow document's (unsaved) text, and one edit of it."""

    path: ApiPath
    text: DocumentText
    edit: FlowEdit


class ValidateRequest(StrictModel):
    """`POST validate`: the flow file at `path`, or unsaved `text` for it."""

    path: ApiPath
    text: DocumentText | None = None


class ExportRequest(StrictModel):
    """`POST export`: write the flow's production notebook beside it, or at `output`."""

    path: ApiPath
    output: ApiPath | None = None


class NewFlowRequest(StrictModel):
    """`POST new`: a new flow file and its workbench notebook in `directory`."""

    directory: Directory | None = None
    name: Id | None = None
    device: Literal["auto", "cpu", "cuda"] = "auto"
    batch_size: int = Field(8, ge=1, le=4096)


class WorkbenchRequest(StrictModel):
    """`POST workbench`: the workbench notebook of the flow file at `path`."""

    path: ApiPath


class RunRequest(StrictModel):
    """`POST run`: run the flow file at `path` (as saved) with `inputs`, in a process of its
    own; `cache`: take unchanged nodes' results from the node cache; `timeout_s`: stop the
    run after this long (default and bound: `jupyter_flow.viewruns`)."""

    path: ApiPath
    inputs: JsonMapping = Field(default_factory=dict)
    cache: bool = False
    timeout_s: float | None = Field(None, gt=0, le=MAX_TIMEOUT_S)


class CancelRequest(StrictModel):
    """`POST cancel`: stop a run of the file view."""

    run: RunId


# -- the schema the TypeScript types are generated from ------------------------------------
#: Each route the file view calls: the model of its request (None for a GET) and of its reply.
ROUTES: dict[str, tuple[type[BaseModel] | None, type[BaseModel]]] = {
    "status": (None, StatusReply),
    "palette": (None, PaletteReply),
    "validate": (ValidateRequest, ValidateReply),
    "edit": (EditRequest, EditOutcome),
    "schema": (None, SchemaReply),
    "export": (ExportRequest, ExportReply),
    "new": (NewFlowRequest, NewFlowReply),
    "workbench": (WorkbenchRequest, WorkbenchReply),
    "run": (RunRequest, RunReply),
    "runstate": (None, RunReply),
    "cancel": (CancelRequest, RunReply),
    "lastrun": (None, LastRunReply),
    "folder": (None, FolderReply),
}


class _NamedModelsOnly(GenerateJsonSchema):
    """Titles on models only: a title on a field would become a TypeScript type of its own."""

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False


def edit_schema() -> dict[str, Any]:
    """The JSON schema of the file view's protocol: the root maps each route to its request
    and reply, and `definitions` holds every edit, request and reply by name (the error
    reply too, which no route names)."""
    models = {model for pair in ROUTES.values() for model in pair if model is not None} | {ErrorReply}
    _, top = models_json_schema(
        [(model, "validation") for model in sorted(models, key=lambda m: m.__name__)],
        ref_template="#/definitions/{model}",
        schema_generator=_NamedModelsOnly,
    )
    routes: dict[str, Any] = {}
    for route, (request, reply) in ROUTES.items():
        parts = {"request": request, "reply": reply} if request is not None else {"reply": reply}
        routes[route] = {
            "type": "object",
            "properties": {k: {"$ref": f"#/definitions/{m.__name__}"} for k, m in parts.items()},
            "required": list(parts),
            "additionalProperties": False,
        }
    return {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": "FileViewRoutes",
        "description": "Each route of the jupyter-flow server extension that the file view calls: its request "
        "(none for a GET) and its reply. Generated from jupyter_flow/protocol.py.",
        "type": "object",
        "properties": routes,
        "required": list(routes),
        "additionalProperties": False,
        "definitions": dict(sorted(top["$defs"].items())),
    }


def schema_text() -> str:
    """`edit_schema()` as the committed file holds it."""
    return json.dumps(edit_schema(), indent=2, ensure_ascii=False) + "\n"
