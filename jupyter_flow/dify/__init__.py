"""Dify apps in and out: a Dify DSL file (`app`, `kind: app`, `version`, `workflow.graph`)
becomes a flow file, and a flow made of kinds Dify has goes back to one.

What maps to what (Dify -> flow):

- start variables -> `inputs` (types and defaults; labels and select options kept as the
  input's description); `sys.query` and other `sys.*` variables -> inputs of that name
- `{{#id.var#}}` and value selectors -> `{{ id.output.var }}` (`{{ inputs.var }}` for the
  start node); ids that are not template-safe are renamed (the flow file says how)
- http-request -> `http` with `response: full` (outputs `body` as text, `status_code`,
  `headers`, as in Dify); headers and params lines, JSON/raw/form bodies, timeouts, retry
  config, api-key auth -> a header read from an environment variable
- code (python3) -> `python`, the code written to a module beside the flow file and
  called as `module:main`
- if-else -> `switch`, one case per Dify case, edges following the `sourceHandle`
- template-transform -> `template` (Dify's `output` is read as the node's `text`)
- variable-aggregator -> `coalesce` (the first input whose branch ran)
- llm -> `llm` (OpenAI-compatible; the server comes from `base_url`)
- end and answer -> the flow's declared `outputs`; positions -> `layout`

Anything else (knowledge retrieval, tools, agents, iterations, ...) is listed with its id
and type; with `partial=True` it comes over as a `placeholder` node that keeps Dify's data
and that the plan reports as a problem on that node.
"""

from __future__ import annotations

from jupyter_flow.dify.cli import add_to_cli
from jupyter_flow.dify.exporter import export_dify
from jupyter_flow.dify.importer import DifyImport, convert_dify, import_dify, write_import

__all__ = ["DifyImport", "add_to_cli", "convert_dify", "export_dify", "import_dify", "write_import"]
