"""`transformers`: run a local Hugging Face model directory (tokenizer + AutoModelFor...).

Tasks:
- ``text-classification``: ``{"label", "score", "scores": {label: p}, "logits"}``
- ``token-classification``: ``{"entities": [{"label", "start", "end", "text", "score"}]}``
  (spans merged from B-/I- tags, offsets in characters of the input text)
- ``feature-extraction``: ``{"embedding"}`` pooled by `pooling` (mean, cls or pooler)

`text` is one string or a list of strings; a list gives a list of outputs, in order.
Texts are tokenized per forward pass with right padding; `max_length` and `truncation`
say what happens to long ones. With `capture`, each output also has ``"captured"``, and
the record's extra has ``"tokens"``: each input's tokens, for labelling sequence axes.
``capture: [attentions]`` runs the model with ``output_attentions=True`` (loaded with the
eager attention implementation) and captures, per input, the attention probabilities of
every layer as one ``(layers, heads, tokens, tokens)`` tensor, cut to the input's own
tokens (padding left out, so each row sums to 1).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from jupyter_flow.capture import Capture, check_capturable
from jupyter_flow.errors import NodeError, Problem
from jupyter_flow.expressions import is_template
from jupyter_flow.models import LoadedModel, import_torch, peak_gpu_memory, source_stamp
from jupyter_flow.nodes.base import NodeContext
from jupyter_flow.nodes.local_model import LocalModelConfig, LocalModelNode, upstream_nodes

__all__ = ["ATTENTIONS", "TASKS", "TransformersConfig", "TransformersNode"]

ATTENTIONS = "attentions"  # the capture name of the attention probabilities

Task = Literal["text-classification", "token-classification", "feature-extraction"]
TASKS: dict[str, str] = {
    "text-classification": "ForSequenceClassification",
    "token-classification": "ForTokenClassification",
    "feature-extraction": "",
}


class TransformersConfig(LocalModelConfig):
    model: str
    task: Task
    text: Any
    max_length: int | None = Field(None, ge=1)
    truncation: bool = True
    padding: Literal["longest", "max_length"] = "longest"
    pooling: Literal["mean", "cls", "pooler"] = "mean"


class _Bundle:
    __slots__ = ("tokenizer", "model", "max_positions")

    def __init__(self, tokenizer: Any, model: Any) -> None:
        self.tokenizer = tokenizer
        self.model = model
        self.max_positions = getattr(model.config, "max_position_embeddings", None)

    def parameters(self) -> Any:
        return self.model.parameters()

    def buffers(self) -> Any:
        return self.model.buffers()


class TransformersNode(LocalModelNode):
    """Tokenize `text`, run the model for `task`, decode the outputs (see the module docstring)."""

    kind = "transformers"
    Config = TransformersConfig
    config: TransformersConfig

    def problems(self) -> list[Problem]:
        model = self.config.model
        if is_template(model):
            return []
        path = self.local_path(model)
        if not path.exists():
            return [Problem(f"no model directory at {self.where(model)}", node=self.id, field="config.model")]
        if not (path / "config.json").is_file():
            return [Problem(f"{self.where(model)} is not a transformers model directory (no config.json)",
                            node=self.id, field="config.model")]
        return []

    # -- loading -----------------------------------------------------------------------
    def path(self) -> Path:
        return self.local_path(self.config.model)

    def describe_source(self) -> str:
        return str(self.path())

    def stamp(self) -> Any:
        return source_stamp(self.path())

    def model_key(self, device: str, dtype: Any) -> tuple[Any, ...]:
        key = ("transformers", str(self.path()), self.config.task, device, str(dtype))
        return (*key, "eager") if self.wants_attentions() else key

    def wants_attentions(self) -> bool:
        return ATTENTIONS in self.config.capture

    def load(self, device: str, dtype: Any) -> Any:
        import_torch("the transformers node", "transformers")
        try:
            import transformers
        except ImportError as exc:  # pragma: no cover
            from jupyter_flow.errors import MissingDependencyError

            raise MissingDependencyError("transformers", "transformers", "the transformers node") from exc
        transformers.utils.logging.disable_progress_bar()
        path, task, node = self.path(), self.config.task, self.id
        if not path.is_dir():
            raise NodeError(f"config.model: no model directory at {self.where(self.config.model)}", node=node, retryable=False)
        config_file = path / "config.json"
        if not config_file.is_file():
            raise NodeError(f"config.model: {path} is not a transformers model directory (no config.json)", node=node, retryable=False)
        try:
            architectures = json.loads(config_file.read_text(encoding="utf-8")).get("architectures") or []
        except (ValueError, OSError) as exc:
            raise NodeError(f"config.model: {config_file} is not valid JSON: {exc}", node=node, retryable=False) from exc
        _check_task(architectures, task, node)
        try:
            tokenizer = transformers.AutoTokenizer.from_pretrained(str(path))
        except Exception as exc:
            raise NodeError(f"config.model: cannot load a tokenizer from {path} ({type(exc).__name__}: {_short(exc)})",
                            node=node, retryable=False) from exc
        if task == "token-classification" and not getattr(tokenizer, "is_fast", False):
            raise NodeError("config.task: token-classification needs a fast tokenizer (for character offsets); "
                            f"{path} has a slow one (save a tokenizer.json with it)", node=node, retryable=False)
        tokenizer.padding_side = "right"
        auto = {"text-classification": transformers.AutoModelForSequenceClassification,
                "token-classification": transformers.AutoModelForTokenClassification,
                "feature-extraction": transformers.AutoModel}[task]
        kwargs: dict[str, Any] = {"dtype": dtype} if dtype is not None else {}
        if self.wants_attentions():
            kwargs["attn_implementation"] = "eager"  # sdpa and flash kernels do not return the probabilities
        try:
            model = auto.from_pretrained(str(path), **kwargs)
        except Exception as exc:
            raise NodeError(f"config.model: cannot load the weights in {path}: the files are corrupt or incomplete "
                            f"({type(exc).__name__}: {_short(exc)})", node=node, retryable=False) from exc
        model.to(device).eval()
        return _Bundle(tokenizer, model)

    # -- running -----------------------------------------------------------------------
    def batch_key(self) -> tuple[Any, ...]:
        c = self.config
        return (c.max_length, c.truncation, c.padding, c.pooling, tuple(c.capture))

    def warm_up_item(self) -> Any:
        return "warm up"

    def batch_function(self, entry: LoadedModel) -> Callable[[list[Any]], list[Any]]:
        torch = import_torch()
        bundle: _Bundle = entry.obj
        tokenizer, model, device = bundle.tokenizer, bundle.model, entry.device
        c = self.config
        attentions = self.wants_attentions()
        modules = [name for name in c.capture if name != ATTENTIONS]
        hooks = check_capturable(model, modules, node=self.id) if modules else {}
        capturing = bool(c.capture)
        limit = c.max_length or min(int(getattr(tokenizer, "model_max_length", 512) or 512), bundle.max_positions or 512)
        task = c.task
        id2label = {int(k): v for k, v in (model.config.id2label or {}).items()}
        multi_label = getattr(model.config, "problem_type", None) == "multi_label_classification"

        options = {
            "padding": "max_length" if c.padding == "max_length" else True,
            "truncation": c.truncation,
            "max_length": limit if c.truncation or c.padding == "max_length" else None,
            "return_tensors": "pt",
            "return_offsets_mapping": task == "token-classification",
        }

        def run(texts: list[str]) -> list[dict[str, Any]]:
            # the whole batch is tokenized in one call, right-padded, then one forward pass
            with entry.lock:  # fast tokenizers are not safe to share between threads
                enc = tokenizer(texts, **options)
                offsets = enc.pop("offset_mapping", None)
                length = enc["input_ids"].shape[1]
                if bundle.max_positions and length > bundle.max_positions:
                    raise NodeError(f"config.text: a text is {length} tokens long but the model takes at most "
                                    f"{bundle.max_positions} (set `truncation: true` or a smaller `max_length`)", retryable=False)
                lengths = enc["attention_mask"].sum(dim=1).tolist() if capturing else []
                tokens = [tokenizer.convert_ids_to_tokens(ids[: int(n)]) for ids, n in zip(enc["input_ids"].tolist(), lengths)]
                enc = {k: v.to(device) for k, v in enc.items()} if device != "cpu" else dict(enc)
                extra = {"output_attentions": True} if attentions else {}
                with torch.inference_mode(), peak_gpu_memory(device) as mem, Capture(hooks) as cap:
                    out = model(**enc, **extra)
                items = _decode(task, out, enc, offsets, texts, id2label, multi_label, c.pooling)
            n = len(texts)
            peak = mem.get("peak_bytes")
            if capturing or peak is not None:
                for i, item in enumerate(items):
                    if capturing:
                        item["captured"] = cap.item(i, n, int(lengths[i]), length)
                        if attentions:
                            item["captured"][ATTENTIONS] = _attentions(out, i, int(lengths[i]), self.id)
                        item["_tokens"] = tokens[i]
                    if peak is not None:
                        item["_peak_gpu_memory"] = peak
            return items

        return run

    async def run(self, inputs: dict[str, Any], ctx: NodeContext) -> Any:
        text = inputs.get("text")
        many = isinstance(text, (list, tuple))
        texts: list[Any] = list(text) if isinstance(text, (list, tuple)) else [text]
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                ups = upstream_nodes(self.spec.config.get("text"), ctx.result.records)
                source = f" from node {', '.join(repr(u) for u in ups)}" if ups else ""
                where = f"item {i} of the list" if many else "the value"
                raise NodeError(f"config.text: {where}{source} is {type(t).__name__}, not text "
                                "(give a string or a list of strings)", node=self.id, retryable=False)
        if not texts:
            return []
        results = await self.forward(texts, ctx)
        values = [r.value for r in results]
        if self.config.capture:
            ctx.record.extra["tokens"] = [v.pop("_tokens", []) if isinstance(v, dict) else [] for v in values]
        return values if many else values[0]


def _attentions(out: Any, index: int, length: int, node: str) -> Any:
    """One input's attention probabilities, all layers: ``(layers, heads, length, length)``."""
    import torch

    layers = getattr(out, "attentions", None)
    if not layers or any(a is None for a in layers):
        raise NodeError("config.capture: this model returned no attention probabilities with output_attentions=True "
                        "(its attention implementation does not expose them)", node=node, retryable=False)
    return torch.stack([a[index, :, :length, :length] for a in layers]).detach().float().cpu()


def _check_task(architectures: list[str], task: str, node: str) -> None:
    want = TASKS[task]
    if not architectures:
        return
    if want and not any(a.endswith(want) for a in architectures):
        fits = [t for t, suffix in TASKS.items() if suffix and any(a.endswith(suffix) for a in architectures)]
        hint = f" (use task: {fits[0]})" if fits else " (use task: feature-extraction for its hidden states)"
        raise NodeError(f"config.task: the model is a {', '.join(architectures)}, which does not do {task}{hint}",
                        node=node, retryable=False)


def _decode(task: str, out: Any, enc: dict[str, Any], offsets: Any, texts: list[str], id2label: dict[int, str],
            multi_label: bool, pooling: str) -> list[dict[str, Any]]:
    import torch

    if task == "text-classification":
        logits = out.logits.float()
        probs = torch.sigmoid(logits) if multi_label else torch.softmax(logits, dim=-1)
        rows = probs.cpu().tolist()
        names = [id2label.get(j, str(j)) for j in range(logits.shape[-1])]
        items = []
        for row, item_logits in zip(rows, logits.cpu().unbind(0)):
            best = max(range(len(row)), key=row.__getitem__)
            items.append({"label": names[best], "score": row[best], "scores": dict(zip(names, row)), "logits": item_logits})
        return items
    if task == "token-classification":
        probs = torch.softmax(out.logits.float(), dim=-1).cpu()
        best_p, best_ids = probs.max(dim=-1)
        mask = enc["attention_mask"].cpu()
        return [{"entities": _spans(texts[i], offsets[i].tolist(), best_ids[i].tolist(), best_p[i].tolist(),
                                    mask[i].tolist(), id2label)} for i in range(len(texts))]
    hidden = out.last_hidden_state
    if pooling == "cls":
        pooled = hidden[:, 0]
    elif pooling == "pooler":
        pooled = getattr(out, "pooler_output", None)
        if pooled is None:
            raise NodeError("config.pooling: this model has no pooler output (use mean or cls)", retryable=False)
    else:
        m = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * m).sum(dim=1) / m.sum(dim=1).clamp(min=1)
    pooled = pooled.float().cpu()
    return [{"embedding": pooled[i]} for i in range(len(texts))]


def _spans(text: str, offsets: list[list[int]], labels: list[int], scores: list[float], mask: list[int],
           id2label: dict[int, str]) -> list[dict[str, Any]]:
    """Merge tagged tokens into entity spans: B- starts one, I- (same type) continues it,
    a plain label continues a run of itself; O and special tokens end it."""
    spans: list[dict[str, Any]] = []
    current: dict[str, Any] | None = None
    for (start, end), label_id, score, m in zip(offsets, labels, scores, mask):
        if not m or start == end:
            continue
        label = id2label.get(label_id, str(label_id))
        if label == "O":
            current = None
            continue
        prefix, _, kind = label.partition("-") if label[:2] in ("B-", "I-") else ("", "", label)
        if current is not None and current["label"] == kind and prefix != "B":
            current["end"] = end
            current["_scores"].append(score)
            continue
        current = {"label": kind, "start": start, "end": end, "_scores": [score]}
        spans.append(current)
    for span in spans:
        s = span.pop("_scores")
        span["text"] = text[span["start"] : span["end"]]
        span["score"] = sum(s) / len(s)
    return spans


def _short(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300]
