"""`rules`: flag risky text with keyword and regular-expression rules written in YAML.

A rule file is a list of rules, or a mapping with a `rules:` list::

    rules:
      - id: auto_renewal
        severity: medium                 # low | medium | high
        message: The contract renews itself unless someone acts.
        keywords: [automatically renew, 自动续期]
        patterns: ['renew(?:s|ed)?\\s+automatically']
        unless: ['\\bnot\\s+renew\\s+automatically']   # a clause matching one of these is fine
        labels: [termination]            # only clauses classified with these labels
      - id: missing_governing_law
        mode: absent                     # fires once when nothing in the document matches
        severity: medium
        message: No governing-law clause.
        keywords: [governed by, 适用法律]

Keywords match case-insensitively as whole words (any run of whitespace matches a space);
patterns are Python regular expressions (case-insensitive unless `case_sensitive: true`).
`labels` narrow a rule to classified clauses with those labels; items without a label
(plain text) are checked by every rule. A bad rule (a regex that does not compile, a
missing field, a duplicate id) is a validation problem naming the rule and the field.

The overall `level` is the highest severity found, or ``"none"`` when nothing was found.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from jupyter_flow.errors import NodeError, Problem
from jupyter_flow.expressions import is_template
from jupyter_flow.nodes.base import Node, NodeConfig, NodeContext
from jupyter_flow.spec import yaml_problem

__all__ = ["LEVELS", "Rule", "RuleProblem", "RuleSet", "RuleSetError", "RulesNode", "load_rules", "normalize_items", "overall_level"]

Severity = Literal["low", "medium", "high"]
#: Levels from least to most severe; "none" means nothing was found.
LEVELS = ("none", "low", "medium", "high")
_EXCERPT = 60


class Rule(BaseModel):
    """One rule as written in the YAML."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(min_length=1)
    message: str = Field(min_length=1)
    severity: Severity = "medium"
    keywords: list[str] = Field(default_factory=list)
    patterns: list[str] = Field(default_factory=list)
    unless: list[str] = Field(default_factory=list)
    labels: list[str] = Field(default_factory=list)
    mode: Literal["match", "absent"] = "match"
    case_sensitive: bool = False
    description: str | None = None

    @field_validator("keywords", "patterns", "unless", "labels")
    @classmethod
    def _non_empty(cls, values: list[str]) -> list[str]:
        for i, value in enumerate(values):
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"item {i} is empty")
        return values


@dataclass(frozen=True)
class RuleProblem:
    """What is wrong with a rule: its position, its id (when it has one), the field."""

    message: str
    index: int | None = None
    rule: str | None = None
    field: str | None = None

    @property
    def location(self) -> str:
        """e.g. ``rules[2].patterns[0]``."""
        if self.index is None:
            return ""
        return f"rules[{self.index}]" + (f".{self.field}" if self.field else "")

    def __str__(self) -> str:
        who = f"rule '{self.rule}'" if self.rule else ""
        where = self.location
        head = f"{who} ({where})" if who and where else who or where
        return f"{head}: {self.message}" if head else self.message


class RuleSetError(Exception):
    """A rule file or list that cannot be used; each problem names the rule and field."""

    def __init__(self, problems: list[RuleProblem], source: str | None = None) -> None:
        self.problems = problems
        self.source = source
        head = f"{source}: " if source else ""
        super().__init__(head + "; ".join(str(p) for p in problems))


@dataclass(frozen=True)
class _Compiled:
    rule: Rule
    find: tuple[re.Pattern[str], ...]
    unless: tuple[re.Pattern[str], ...]


def _keyword_regex(keyword: str) -> str:
    words = [re.escape(w) for w in keyword.split()]
    body = r"\s+".join(words)
    # Whole words for Latin text; Chinese has no word boundaries to respect.
    head = r"(?<!\w)" if re.match(r"\w", keyword.strip()[0]) and keyword.strip()[0].isascii() else ""
    tail = r"(?!\w)" if re.match(r"\w", keyword.strip()[-1]) and keyword.strip()[-1].isascii() else ""
    return f"{head}{body}{tail}"


class RuleSet:
    """Rules compiled and ready to check items."""

    def __init__(self, rules: list[_Compiled], source: str) -> None:
        self._rules = rules
        self.source = source

    @property
    def rules(self) -> list[Rule]:
        return [c.rule for c in self._rules]

    def __len__(self) -> int:
        return len(self._rules)

    @classmethod
    def from_data(cls, data: Any, *, source: str = "rules") -> RuleSet:
        """Compile rules from parsed YAML; raises RuleSetError listing every problem."""
        if isinstance(data, Mapping) and "rules" in data:
            extra = set(data) - {"rules", "version", "description", "name"}
            if extra:
                raise RuleSetError([RuleProblem(f"unknown top-level keys {sorted(extra)} (expected: rules, version, name, description)")], source)
            data = data["rules"]
        if not isinstance(data, list) or not data:
            raise RuleSetError([RuleProblem("expected a non-empty list of rules (or a mapping with a `rules:` list)")], source)
        problems: list[RuleProblem] = []
        compiled: list[_Compiled] = []
        seen: dict[str, int] = {}
        for i, raw in enumerate(data):
            if not isinstance(raw, Mapping):
                problems.append(RuleProblem(f"a rule must be a mapping with id, message and keywords or patterns, got {type(raw).__name__}", i))
                continue
            name = raw.get("id") if isinstance(raw.get("id"), str) else None
            try:
                rule = Rule.model_validate(dict(raw))
            except ValidationError as exc:
                for err in exc.errors():
                    loc = ".".join(str(p) for p in err["loc"])
                    msg = err["msg"].removeprefix("Value error, ")
                    if err["type"] == "extra_forbidden":
                        msg = f"unknown field (known: {', '.join(Rule.model_fields)})"
                    problems.append(RuleProblem(msg, i, name, loc))
                continue
            if rule.id in seen:
                problems.append(RuleProblem(f"duplicate rule id (also rules[{seen[rule.id]}])", i, rule.id, "id"))
            seen[rule.id] = i
            if not rule.keywords and not rule.patterns:
                problems.append(RuleProblem("needs `keywords` or `patterns` (or both)", i, rule.id))
                continue
            flags = 0 if rule.case_sensitive else re.IGNORECASE
            finds: list[re.Pattern[str]] = []
            unless: list[re.Pattern[str]] = []
            for kind, items, bucket in (("keywords", rule.keywords, finds), ("patterns", rule.patterns, finds), ("unless", rule.unless, unless)):
                for j, text in enumerate(items):
                    source_text = _keyword_regex(text) if kind == "keywords" else text
                    try:
                        pattern = re.compile(source_text, flags)
                    except re.error as exc:
                        problems.append(RuleProblem(f"invalid regular expression {text!r}: {exc}", i, rule.id, f"{kind}[{j}]"))
                        continue
                    if pattern.match("") is not None:
                        problems.append(RuleProblem(f"{text!r} matches the empty string, so it would match everywhere", i, rule.id, f"{kind}[{j}]"))
                        continue
                    bucket.append(pattern)
            compiled.append(_Compiled(rule, tuple(finds), tuple(unless)))
        if problems:
            raise RuleSetError(problems, source)
        return cls(compiled, source)

    # -- checking ----------------------------------------------------------------
    def check(self, items: list[dict[str, Any]], *, min_score: float = 0.0) -> list[dict[str, Any]]:
        """Findings over normalized items, in item order then rule order."""
        findings: list[dict[str, Any]] = []
        absent_hits: set[str] = set()
        for index, item in enumerate(items):
            text = item["text"]
            label = item.get("label")
            score = item.get("score")
            trusted = label is not None and (score is None or score >= min_score)
            for compiled in self._rules:
                rule = compiled.rule
                if rule.mode == "match" and rule.labels and trusted and label not in rule.labels:
                    continue
                match = _first(compiled.find, text)
                if match is None:
                    continue
                if rule.mode == "absent":
                    absent_hits.add(rule.id)
                    continue
                if any(p.search(text) for p in compiled.unless):
                    continue
                findings.append(
                    {
                        "rule": rule.id,
                        "severity": rule.severity,
                        "message": rule.message,
                        "match": match.group(0),
                        "start": match.start(),
                        "end": match.end(),
                        "excerpt": _excerpt(text, match.start(), match.end()),
                        "clause": index,
                        "label": label,
                        "score": score,
                        "page": item.get("page"),
                    }
                )
        for compiled in self._rules:
            rule = compiled.rule
            if rule.mode == "absent" and rule.id not in absent_hits:
                findings.append(
                    {
                        "rule": rule.id,
                        "severity": rule.severity,
                        "message": rule.message,
                        "match": None,
                        "start": None,
                        "end": None,
                        "excerpt": None,
                        "clause": None,
                        "label": None,
                        "score": None,
                        "page": None,
                    }
                )
        return findings


def _first(patterns: Sequence[re.Pattern[str]], text: str) -> re.Match[str] | None:
    best: re.Match[str] | None = None
    for pattern in patterns:
        match = pattern.search(text)
        if match is not None and (best is None or match.start() < best.start()):
            best = match
    return best


def _excerpt(text: str, start: int, end: int) -> str:
    left = max(0, start - _EXCERPT)
    right = min(len(text), end + _EXCERPT)
    return ("…" if left else "") + text[left:right] + ("…" if right < len(text) else "")


def overall_level(findings: Sequence[Mapping[str, Any]]) -> str:
    """The highest severity among findings, or "none"."""
    return max((f["severity"] for f in findings), key=LEVELS.index, default="none")


def load_rules(value: str | Path | list[Any], *, base: Path | None = None) -> RuleSet:
    """A RuleSet from a YAML file path or an inline list (raises RuleSetError).

    A relative path is looked up in the working folder, then under `base` (the flow
    file's folder, when known).
    """
    if isinstance(value, list):
        return RuleSet.from_data(value, source="")
    path = resolve_path(value, base)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        tried = f" or {base / Path(value)}" if base is not None and not Path(value).is_absolute() else ""
        raise RuleSetError([RuleProblem(f"rule file {path}{tried} does not exist (working folder: {Path.cwd()})")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RuleSetError([RuleProblem(f"rule file cannot be read: {exc}")], str(path)) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        problem = yaml_problem(exc)
        where = f" at {problem.place}" if problem.place else ""
        raise RuleSetError([RuleProblem(f"not valid YAML{where}: {problem.message}")], str(path)) from None
    return RuleSet.from_data(data, source=str(path))


def resolve_path(value: str | Path, base: Path | None) -> Path:
    path = Path(value).expanduser()
    if not path.is_absolute() and not path.exists() and base is not None and (base / path).exists():
        return base / path
    return path


# -- items -------------------------------------------------------------------------------
_LIST_KEYS = ("clauses", "items", "paragraphs", "predictions", "results")


def normalize_items(value: Any, texts: Any = None) -> list[dict[str, Any]]:
    """Items as ``[{text, label, score, page}]`` from text, a list of texts, classified
    clauses, a `pdf` node's output (its paragraphs), or predictions paired with `texts`."""
    if isinstance(value, Mapping):
        for key in _LIST_KEYS:
            if isinstance(value.get(key), list):
                return normalize_items(value[key], texts)
        if "text" in value:
            return [_item(value, None, 0)]
        raise ValueError(f"expected text, a list of texts or clauses, or a mapping with one of {', '.join(_LIST_KEYS)}; got a mapping with keys {sorted(value)[:8]}")
    if isinstance(value, str):
        return [{"text": value, "label": None, "score": None, "page": None}]
    if value is None:
        raise ValueError("got nothing (None): check the template in config.items")
    if not isinstance(value, Sequence):
        raise ValueError(f"expected text or a list, got {type(value).__name__}")
    paired = _texts(texts) if texts is not None else None
    if paired is not None and len(paired) != len(value):
        raise ValueError(f"config.texts has {len(paired)} entries but config.items has {len(value)}; they must pair up")
    return [_item(entry, paired[i] if paired else None, i) for i, entry in enumerate(value)]


def _texts(value: Any) -> list[dict[str, Any]]:
    return [{"text": t["text"], "page": t.get("page")} if isinstance(t, Mapping) else {"text": t, "page": None} for t in normalize_items(value)]


def _item(entry: Any, paired: dict[str, Any] | None, i: int) -> dict[str, Any]:
    if isinstance(entry, str):
        return {"text": entry, "label": None, "score": None, "page": None}
    if not isinstance(entry, Mapping):
        raise ValueError(f"item {i} is a {type(entry).__name__}, expected text or a mapping with `text`")
    text = entry.get("text")
    if text is None and paired is not None:
        text = paired["text"]
    if not isinstance(text, str):
        hint = " (classifier output has no text: pass the classified texts in config.texts)" if "label" in entry else ""
        raise ValueError(f"item {i} has no `text`{hint}")
    score = entry.get("score")
    page = entry.get("page", paired["page"] if paired else None)
    return {
        "text": text,
        "label": entry.get("label"),
        "score": float(score) if isinstance(score, (int, float)) else None,
        "page": page,
    }


# -- the node --------------------------------------------------------------------------------
class RulesConfig(NodeConfig):
    rules: Any
    items: Any
    texts: Any = None
    min_score: float = Field(0.0, ge=0.0, le=1.0)

    @field_validator("rules")
    @classmethod
    def _rules(cls, value: Any) -> Any:
        if isinstance(value, (str, Path)) or is_template(value) or isinstance(value, list):
            return value
        raise ValueError("expected the path of a YAML rule file or an inline list of rules")


class RulesNode(Node):
    """Output: ``findings`` (``[{rule, severity, message, match, start, end, excerpt,
    clause, label, score, page}]``; `start`/`end` index the clause text; `clause` is the
    item's index, or None for `mode: absent` rules), ``level`` (none/low/medium/high),
    ``counts`` by severity, and the checked ``clauses``.

    `min_score`: a label whose classifier score is below it is not trusted, and the clause
    is checked by every rule, as unclassified text is.
    """

    kind = "rules"
    Config = RulesConfig
    config: RulesConfig

    def __init__(self, spec: Any) -> None:
        super().__init__(spec)
        self._ruleset: RuleSet | None = None

    def _static(self) -> str | list[Any] | None:
        value = self.config.rules
        if is_template(value) or (isinstance(value, list) and any(is_template(v) for v in _strings(value))):
            return None
        return value

    @property
    def _base(self) -> Path | None:
        base = self.base_dir  # the flow file's folder, when the flow sets it
        return Path(base) if base is not None else None

    def problems(self) -> list[Problem]:
        value = self._static()
        if value is None:
            return []
        try:
            self._ruleset = load_rules(value, base=self._base)
        except RuleSetError as exc:
            return [_problem(self.id, p, exc.source, inline=isinstance(value, list)) for p in exc.problems]
        return []

    def cache_token(self) -> str:
        value = self._static()
        if isinstance(value, (str, Path)):
            try:
                return hashlib.blake2b(resolve_path(value, self._base).read_bytes(), digest_size=8).hexdigest()
            except OSError:
                return ""
        return ""

    def _rules_for(self, value: Any) -> RuleSet:
        if self._ruleset is not None and value == self.config.rules:
            return self._ruleset
        try:
            return load_rules(value, base=self._base)
        except RuleSetError as exc:
            raise NodeError(f"config.rules: {exc}", node=self.id, retryable=False) from None

    async def run(self, inputs: dict[str, Any], ctx: NodeContext) -> Any:
        ruleset = self._rules_for(inputs["rules"])
        try:
            items = normalize_items(inputs.get("items"), inputs.get("texts"))
        except ValueError as exc:
            raise NodeError(f"config.items: {exc}", node=self.id, retryable=False) from None
        findings = ruleset.check(items, min_score=float(inputs.get("min_score") or 0.0))
        counts = {level: sum(1 for f in findings if f["severity"] == level) for level in ("high", "medium", "low")}
        return {
            "findings": findings,
            "level": overall_level(findings),
            "counts": counts,
            "rules": [r.id for r in ruleset.rules],
            "clauses": [{"index": i, **item} for i, item in enumerate(items)],
        }


def _problem(node: str, problem: RuleProblem, source: str | None, *, inline: bool) -> Problem:
    if inline and problem.location:
        return Problem(f"rule '{problem.rule}': {problem.message}" if problem.rule else problem.message, node=node, field=f"config.{problem.location}")
    return Problem(f"{source}: {problem}" if source else str(problem), node=node, field="config.rules")


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, Mapping):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []
