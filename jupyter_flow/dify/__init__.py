"""Dify apps in and out: a Dify DSL file (`app`, `kind: app`, `version`, `workflow.graph`)
becomes a flow file, and a flow made of kinds Dify has goes back to one.

What maps to what (Dify -> flow); README's "From Dify" has the whole table:

- start variables -> `inputs`; `sys.query`, `sys.conversation_id`, ... -> inputs of that
  name; environment variables -> inputs with the app's value as default; a chat app's
  conversation variables (and `sys.dialogue_count`) -> kept between the runs of one
  conversation by a `conversation` node first in the flow and by its assigners
  (`jupyter_flow.dify.conversation`); file fields (`{{#start.doc.url#}}`) -> a `files` node
- `{{#id.var#}}` -> `{{ id.output.var | as_text }}` in text (prompts, answers, bodies:
  the rest of the text is literal), `{{ id.output.var }}` where a value is taken
- http-request -> `http` (`response: full`); code (python3) -> `python` (the code in a
  module beside the flow file); if-else -> `switch`; template-transform -> `template`;
  variable aggregator -> `coalesce`; llm -> `llm`; answer -> a `template` node that a
  declared output reads; end -> declared `outputs`
- question-classifier -> `llm` (a JSON schema as `response_format`) + `python` + `switch`;
  parameter-extractor -> `llm` + `python`; agent -> `agent`; tool -> `tool` (a registry
  tool where one matches or `--tools` binds one); knowledge-retrieval -> `http` to an
  External Knowledge API; document-extractor -> `pdf`; list-operator and assigner -> `python`
- sticky notes -> comments in the flow file; error strategies -> `on_error: default`
  (default-value) and error edges (fail-branch)

Export writes each of these back as the Dify node type it came from; a DSL file is read
within the bounds of `jupyter_flow.dify.source`.

Anything else is listed with its id and type; with `partial=True` it comes over as a
`placeholder` node that keeps Dify's data and that the plan reports as a problem on that
node. Each import writes a report (`DifyImport.report()`).
"""

from __future__ import annotations

from jupyter_flow.dify.cli import add_to_cli
from jupyter_flow.dify.exporter import export_dify
from jupyter_flow.dify.importer import convert_dify, import_dify, write_import
from jupyter_flow.dify.result import DifyImport

__all__ = ["DifyImport", "add_to_cli", "convert_dify", "export_dify", "import_dify", "write_import"]
