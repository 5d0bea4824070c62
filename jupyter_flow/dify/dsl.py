"""What Dify's DSL says, in one place for import and export: node types, references,
start-variable types, comparison operators."""

from __future__ import annotations

import re

#: The Dify DSL version export writes.
DIFY_VERSION = "0.1.5"
#: The node kinds export can write, and the Dify node type each becomes.
EXPORTABLE = {"http": "http-request", "python": "code", "template": "template-transform", "switch": "if-else",
              "llm": "llm", "coalesce": "variable-aggregator"}
IMPORTABLE = {"start", "end", "answer", "http-request", "code", "if-else", "template-transform", "variable-aggregator",
               "variable-assigner", "llm"}
DIFY_REF = re.compile(r"\{\{#([^#{}]+?)#\}\}")
SAFE_ID = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
PATH = r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*"
JINJA_REF = re.compile(r"\{\{\s*(" + PATH + r")\s*\}\}")
GUARDED = re.compile(r"^\{\{\s*(" + PATH + r") if ([A-Za-z_][A-Za-z0-9_]*)\.status == 'ok' else none\s*\}\}$")
SET = re.compile(r"\{%-? set ([A-Za-z_][A-Za-z0-9_]*) = (" + PATH + r") -?%\}")
HEADER = re.compile(r"^# Imported from the Dify code node .*\n# Outputs Dify declared: (\{.*\})\n")
INPUT_TYPES = {"text-input": "string", "paragraph": "text", "select": "string", "number": "number", "file": "file",
                "file-list": "list", "checkbox": "boolean", "json_object": "object"}
DIFY_TYPES = {"string": "text-input", "text": "paragraph", "number": "number", "integer": "number", "file": "file",
               "list": "file-list", "boolean": "checkbox", "object": "json_object", "json": "json_object", "any": "text-input"}
#: Dify's comparison operators and the condition each becomes ({L}: the value, {V}: Dify's value).
OPERATORS = {"contains": "{V} in {L}", "not contains": "{V} not in {L}", "start with": "{L}.startswith({V})",
              "end with": "{L}.endswith({V})", "is": "{L} == {V}", "is not": "{L} != {V}", "empty": "not {L}",
              "not empty": "{L} | length > 0", "=": "{L} == {V}", "≠": "{L} != {V}", ">": "{L} > {V}", "<": "{L} < {V}",
              "≥": "{L} >= {V}", "≤": "{L} <= {V}", "null": "{L} is none", "not null": "{L} is not none"}
NUMERIC = {"=", "≠", ">", "<", "≥", "≤"}
VALUE = r"(?P<value>\"(?:[^\"\\]|\\.)*\"|-?\d+(?:\.\d+)?)"
OPERATOR_PATTERNS = [
    (op, re.compile("^" + re.escape(form).replace(re.escape("{L}"), "(?P<left>" + PATH + ")").replace(re.escape("{V}"), VALUE) + "$"))
    for op, form in OPERATORS.items()
]
