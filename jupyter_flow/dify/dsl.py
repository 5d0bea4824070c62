"""What Dify's DSL says, in one place for import and export: node types, references,
start-variable types, comparison operators."""

from __future__ import annotations

import re

#: the module of the functions the python nodes import makes call
FUNCTIONS = "jupyter_flow.dify.functions"
#: The Dify DSL version export writes.
DIFY_VERSION = "0.1.5"
#: The node kinds export can write, and the Dify node type each becomes.
EXPORTABLE = {"http": "http-request", "python": "code", "template": "template-transform", "switch": "if-else",
              "llm": "llm", "coalesce": "variable-aggregator", "tool": "tool", "agent": "agent", "pdf": "document-extractor",
              "map": "iteration"}
#: Dify node types that are notes on the canvas, not steps of the app.
NOTE_TYPES = {"", "custom-note"}
#: Dify node types that only mark where an iteration or loop starts inside it.
INNER_START_TYPES = {"iteration-start", "loop-start"}
#: the handle of the edges Dify takes when a node with the fail-branch error strategy fails
FAIL_BRANCH = "fail-branch"
#: The Dify node type of the start node, and its ends.
START, ANSWER, END = "start", "answer", "end"
DIFY_REF = re.compile(r"\{\{#([^#{}]+?)#\}\}")
SAFE_ID = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
PATH = r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*"
#: the filter imported templates print values into text with (none as '', objects and lists as JSON)
AS_TEXT = "as_text"
#: a plain reference, as import writes it into text (with AS_TEXT) or into a value (without)
JINJA_REF = re.compile(r"\{\{\s*(" + PATH + r")(?:\s*\|\s*" + AS_TEXT + r")?\s*\}\}")
#: how import writes a `{` of Dify's text that Jinja would otherwise read
LITERAL_BRACE = "{{ '{' }}"
GUARDED = re.compile(r"^\{\{\s*(" + PATH + r") if ([A-Za-z_][A-Za-z0-9_]*)\.status == 'ok' else none\s*\}\}$")
#: how import sets template variables read all at once (one of them is named like a node)
SET_ALL = re.compile(r"\{% set ([A-Za-z_][A-Za-z0-9_]*(?:, [A-Za-z_][A-Za-z0-9_]*)+) = (" + PATH + r"(?:, " + PATH + r")+) %\}")
SET = re.compile(r"\{%-? set ([A-Za-z_][A-Za-z0-9_]*) = (" + PATH + r") -?%\}")
#: what import adds at the end of a code node's module: Dify checks what `main` returns
FOOTER = re.compile(r"\n# Added on import: Dify checks what main returns against the outputs it declares\.\n"
                    r"from jupyter_flow\.dify\.functions import checked_outputs as _checked_outputs  # noqa: E402\n"
                    r"main = _checked_outputs\(main, .*\)\n\Z")
HEADER = re.compile(r"^# Imported from the Dify code node .*\n# Outputs Dify declared: (\{.*\})\n")
INPUT_TYPES = {"text-input": "string", "paragraph": "text", "select": "string", "number": "number", "file": "file",
               "file-list": "list", "checkbox": "boolean", "json_object": "object"}
#: Dify's value types (conversation and environment variables, parameters) and the input type each becomes
VALUE_TYPES = {"string": "string", "secret": "string", "number": "number", "boolean": "boolean", "object": "object"}
DIFY_TYPES = {"string": "text-input", "text": "paragraph", "number": "number", "integer": "number", "file": "file",
              "list": "file-list", "boolean": "checkbox", "object": "json_object", "json": "json_object", "any": "text-input"}
#: Dify's comparison operators and the condition each becomes ({L}: the value, {V}: Dify's
#: value). Dify answers false rather than failing when the value is not there.
OPERATORS = {"contains": "{L} is not none and {V} in {L}", "not contains": "{L} is none or {V} not in {L}",
             "start with": "{L} is string and {L}.startswith({V})", "end with": "{L} is string and {L}.endswith({V})",
             "is": "{L} == {V}", "is not": "{L} != {V}", "empty": "not {L}", "not empty": "{L} is not none and {L} | length > 0",
             "=": "{L} == {V}", "≠": "{L} != {V}", ">": "{L} > {V}", "<": "{L} < {V}", "≥": "{L} >= {V}", "≤": "{L} <= {V}",
             "null": "{L} is none", "not null": "{L} is not none", "exists": "{L} is defined and {L} is not none",
             "not exists": "{L} is not defined or {L} is none", "in": "{L} in {V}", "not in": "{L} not in {V}",
             "all of": "{L} is not none and {V} | reject('in', {L}) | list | length == 0"}
#: other spellings Dify has used for some of them
OPERATOR_ALIASES = {"is empty": "empty", "is not empty": "not empty", "is null": "null", "is not null": "not null",
                    "==": "=", "!=": "≠", ">=": "≥", "<=": "≤"}
NUMERIC = {"=", "≠", ">", "<", "≥", "≤"}
#: operators whose value is a list
LISTED = {"in", "not in", "all of"}
VALUE = r"(?P<value>\"(?:[^\"\\]|\\.)*\"|-?\d+(?:\.\d+)?|\[.*\])"


def _pattern(form: str) -> re.Pattern[str]:
    text = re.escape(form).replace(re.escape("{V}"), VALUE)
    left = "(?P<left>" + PATH + ")"
    first = text.find(re.escape("{L}"))
    text = text[:first] + left + text[first + len(re.escape("{L}")):]
    return re.compile("^" + text.replace(re.escape("{L}"), "(?P=left)") + "$")


OPERATOR_PATTERNS = [(op, _pattern(form)) for op, form in OPERATORS.items()]
