"""jupyter-flow: chain models into flows, run them, look inside every node."""

from __future__ import annotations

from typing import TYPE_CHECKING

from jupyter_flow.errors import (
    FlowError,
    FlowFileError,
    FlowRunError,
    FlowTimeoutError,
    FlowValidationError,
    MissingDependencyError,
    NodeError,
    NodeTimeoutError,
    Problem,
    RemoteError,
    TemplateError,
)
from jupyter_flow.flow import Flow
from jupyter_flow.models import loaded_models, release_models
from jupyter_flow.nodes.base import Node, NodeConfig, NodeContext
from jupyter_flow.nodes.python import register_function
from jupyter_flow.nodes.registry import NodeRegistry, default_registry
from jupyter_flow.spec import EdgeSpec, FlowSpec, NodeSpec
from jupyter_flow.trace import NodeRecord, RunEvent, RunResult
from jupyter_flow.version import __version__

if TYPE_CHECKING:
    from jupyter_flow.batch import BatchFailedError, BatchSummary, arun_batch, run_batch
    from jupyter_flow.dify import export_dify, import_dify
    from jupyter_flow.export import export_notebook
    from jupyter_flow.exported import run_exported
    from jupyter_flow.workbench import Workbench

# Loaded when first asked for, so that `import jupyter_flow` (and every command) stays
# quick: the workbench pulls in ipywidgets, batch and export papermill's neighbours.
_LAZY = {
    "Workbench": "jupyter_flow.workbench",
    "run_batch": "jupyter_flow.batch",
    "arun_batch": "jupyter_flow.batch",
    "BatchSummary": "jupyter_flow.batch",
    "BatchFailedError": "jupyter_flow.batch",
    "export_notebook": "jupyter_flow.export",
    "run_exported": "jupyter_flow.exported",
    "import_dify": "jupyter_flow.dify",
    "export_dify": "jupyter_flow.dify",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'jupyter_flow' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


__all__ = [
    "BatchFailedError",
    "BatchSummary",
    "EdgeSpec",
    "Flow",
    "FlowError",
    "FlowFileError",
    "FlowRunError",
    "FlowSpec",
    "FlowTimeoutError",
    "FlowValidationError",
    "MissingDependencyError",
    "Node",
    "NodeConfig",
    "NodeContext",
    "NodeError",
    "NodeRecord",
    "NodeRegistry",
    "NodeSpec",
    "NodeTimeoutError",
    "Problem",
    "RemoteError",
    "RunEvent",
    "RunResult",
    "TemplateError",
    "Workbench",
    "__version__",
    "arun_batch",
    "default_registry",
    "export_dify",
    "export_notebook",
    "import_dify",
    "loaded_models",
    "register_function",
    "release_models",
    "run_batch",
    "run_exported",
]
