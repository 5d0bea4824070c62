"""`jupyter-flow import-dify` and `export-dify`."""

from __future__ import annotations

import sys
from typing import Any

from jupyter_flow.dify.dsl import EXPORTABLE
from jupyter_flow.dify.exporter import export_dify
from jupyter_flow.dify.importer import write_import

__all__ = ["add_to_cli"]


def _cmd_import(args: Any) -> int:
    result, target = write_import(args.app, args.output, partial=args.partial, base_url=args.llm_base_url,
                                  model=args.llm_model, api_key_env=args.llm_api_key_env, tools=args.tools, force=args.force)
    print(f"wrote {target} ({len(result.spec.nodes)} nodes)")
    print(result.report(), file=sys.stderr)
    if result.unsupported:
        print("the flow does not run until its placeholders are replaced (jupyter-flow validate lists them)", file=sys.stderr)
    notice = result.code_notice(target.parent)
    if notice is not None:  # the app's code now runs unsandboxed with `run` (never with import or `validate`)
        print(notice, file=sys.stderr)
    return 0


def _cmd_export(args: Any) -> int:
    export_dify(args.flow, args.output)
    print(f"wrote {args.output}")
    return 0


def add_to_cli(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "import-dify", help="turn a Dify app (its exported DSL) into a flow file",
        description="Write NAME.flow.yaml from a Dify app, with the code of its code nodes in modules beside it, and "
        "report on stderr what each Dify node became, what was approximated and what needs a tool binding or an "
        "environment variable. Exit 2 listing the nodes that cannot be imported (id and type), unless --partial, "
        "which keeps them as placeholders the flow reports until they are replaced.")
    p.add_argument("app", metavar="APP.yml")
    p.add_argument("-o", "--output", required=True, metavar="NAME.flow.yaml")
    p.add_argument("--partial", action="store_true", help="import what can be imported; the rest as placeholders")
    p.add_argument("--tools", metavar="BINDINGS.yaml",
                   help="bind Dify tools to registry tools: lines `provider/tool: registry/name` (or a mapping with "
                   "tool, arguments, server)")
    p.add_argument("--force", action="store_true", help="replace the flow file and code modules if they are there")
    p.add_argument("--llm-base-url", default="${OPENAI_BASE_URL}", metavar="URL",
                   help="the OpenAI-compatible server of llm nodes (default: ${OPENAI_BASE_URL}, read at run time)")
    p.add_argument("--llm-model", metavar="NAME", help="the model llm nodes ask for (default: the one the app names)")
    p.add_argument("--llm-api-key-env", metavar="VAR", help="the environment variable holding the server's API key")
    p.set_defaults(fn=_cmd_import)
    p = subparsers.add_parser(
        "export-dify", help="write a Dify app (DSL) from a flow made of kinds Dify has",
        description=f"Write a Dify DSL file. The flow's nodes must be of kinds Dify has ({', '.join(sorted(EXPORTABLE))}); "
        "exit 2 naming each node that is not.")
    p.add_argument("flow")
    p.add_argument("-o", "--output", required=True, metavar="APP.yml")
    p.set_defaults(fn=_cmd_export)
