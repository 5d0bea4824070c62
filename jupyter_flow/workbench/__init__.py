"""The workbench: build, run and inspect flows in JupyterLab (ipywidgets + ipycytoscape).

Needs the `workbench` extra: `pip install 'jupyter-flow[workbench]'`.
"""

from __future__ import annotations

from jupyter_flow.workbench.app import Workbench

__all__ = ["Workbench"]
