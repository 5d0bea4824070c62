"""The public surface is `jupyter_flow.__all__`; this pins it so that a change is a decision."""

from __future__ import annotations

import subprocess
import sys

import jupyter_flow

PUBLIC = [
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


def test_all_is_pinned() -> None:
    assert jupyter_flow.__all__ == PUBLIC


def test_every_public_name_exists() -> None:
    for name in PUBLIC:
        assert getattr(jupyter_flow, name) is not None, name


def test_errors_share_one_root() -> None:
    for name in PUBLIC:
        obj = getattr(jupyter_flow, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, jupyter_flow.FlowError), name
    assert issubclass(jupyter_flow.FlowFileError, jupyter_flow.FlowValidationError)
    assert issubclass(jupyter_flow.FlowTimeoutError, jupyter_flow.FlowRunError)
    assert issubclass(jupyter_flow.RemoteError, jupyter_flow.NodeError)


def test_import_stays_light() -> None:
    # heavy libraries load only where a node uses them
    code = "import sys, jupyter_flow; print(sorted(m for m in ('torch', 'transformers', 'fitz', 'numpy', 'ipywidgets', 'papermill') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True).stdout
    assert out.strip() == "[]"
