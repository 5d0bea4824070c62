"""Tiny local models for examples, demos and tests: made here, no downloads.

- `make_tiny_bert(dir, labels=[...])`: a small BERT (``BertConfig``, a vocabulary file
  written here, a fast tokenizer), saved with ``save_pretrained``: a directory a
  `transformers` node loads. Untrained: the outputs are deterministic, not meaningful.
- `make_clause_classifier(dir)`: the same tiny BERT, trained for a few seconds on
  generated contract sentences so that it tells payment, termination, liability,
  confidentiality and other clauses apart by their keywords.
- `make_torchscript_model(path)`, `make_exported_model(path)`, `make_factory_weights(path)`:
  a small MLP (`TinyMLP`) as TorchScript, as a ``torch.export`` archive, and as
  safetensors weights for the factory ``jupyter_flow.demo_models:tiny_mlp``.
"""

from __future__ import annotations

import random
import time
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "CLAUSE_LABELS",
    "CLAUSE_KEYWORDS",
    "clause_sentences",
    "make_clause_classifier",
    "make_exported_model",
    "make_factory_weights",
    "make_tiny_bert",
    "make_torchscript_model",
    "tiny_mlp",
    "write_vocab",
]

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
CLAUSE_LABELS = ["payment", "termination", "liability", "confidentiality", "other"]
CLAUSE_KEYWORDS: dict[str, list[str]] = {
    "payment": ["pay", "paid", "payment", "invoice", "invoices", "fee", "fees", "price", "due", "amount", "euro"],
    "termination": ["terminate", "terminated", "termination", "notice", "expire", "end", "cancel", "renewal"],
    "liability": ["liable", "liability", "damages", "indemnify", "loss", "negligence", "limit", "indirect"],
    "confidentiality": ["confidential", "secret", "disclose", "disclosed", "disclosure", "information", "proprietary"],
    "other": ["law", "governed", "court", "jurisdiction", "address", "headings", "counterparts", "language"],
}
_FILLER = ["the", "party", "shall", "within", "days", "of", "this", "agreement", "any", "a", "to", "by", "in",
           "and", "or", "with", "all", "each", "other", "under", "may", "be", "is", "for", "on", "at", "its",
           "thirty", "written", "supplier", "customer", "company", "services", "contract", "section", "not", "either",
           "will", "no", "as", "such", "from", "than", "more", "per", "year", "party's"]
_LETTERS = list("abcdefghijklmnopqrstuvwxyz0123456789.,;:-'()%$")


def write_vocab(path: str | Path, words: Iterable[str] = ()) -> Path:
    """A WordPiece vocabulary: special tokens, the given words, then single characters
    (with ``##`` forms) so that any text tokenizes without [UNK]."""
    path = Path(path)
    seen: dict[str, None] = {}
    for token in [*SPECIAL, *words, *_LETTERS, *(f"##{c}" for c in _LETTERS)]:
        seen.setdefault(token.lower() if not token.startswith("[") else token, None)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(seen) + "\n", encoding="utf-8")
    return path


def _vocab_words() -> list[str]:
    words = [w for ws in CLAUSE_KEYWORDS.values() for w in ws] + _FILLER
    return list(dict.fromkeys(words))


def make_tiny_bert(
    path: str | Path,
    labels: Sequence[str] | None = None,
    *,
    task: str = "text-classification",
    hidden_size: int = 32,
    layers: int = 2,
    heads: int = 2,
    max_positions: int = 128,
    words: Iterable[str] | None = None,
    seed: int = 0,
) -> Path:
    """Build and save a tiny BERT for `task` (text-classification, token-classification,
    or feature-extraction) with its tokenizer; returns the directory."""
    import torch
    from transformers import (
        BertConfig,
        BertForSequenceClassification,
        BertForTokenClassification,
        BertModel,
        BertTokenizerFast,
    )

    _quiet()
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    vocab = write_vocab(path / "vocab.txt", _vocab_words() if words is None else words)
    tokenizer = _bert_tokenizer(BertTokenizerFast, vocab, max_positions)
    labels = list(labels or (["negative", "positive"] if task != "token-classification" else ["O", "B-ORG", "I-ORG"]))
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=hidden_size * 2,
        max_position_embeddings=max_positions,
        id2label=dict(enumerate(labels)),
        label2id={name: i for i, name in enumerate(labels)},
    )
    torch.manual_seed(seed)
    cls = {"text-classification": BertForSequenceClassification, "token-classification": BertForTokenClassification,
           "feature-extraction": BertModel}[task]
    model = cls(config).eval()
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def _quiet() -> None:
    from transformers.utils import logging

    logging.disable_progress_bar()


def _bert_tokenizer(cls: Any, vocab: Path, max_positions: int) -> Any:
    import inspect

    # transformers 5 takes the vocabulary as `vocab`, earlier versions as `vocab_file`
    arg = "vocab" if "vocab" in inspect.signature(cls.__init__).parameters else "vocab_file"
    tokenizer = cls(**{arg: str(vocab)}, do_lower_case=True, model_max_length=max_positions)
    expected = sum(1 for line in vocab.read_text(encoding="utf-8").splitlines() if line)
    if len(tokenizer) != expected:
        raise RuntimeError(f"the tokenizer read {len(tokenizer)} tokens from {vocab}, expected {expected}")
    return tokenizer


def clause_sentences(per_label: int = 40, seed: int = 0) -> list[tuple[str, str]]:
    """Generated (sentence, label) pairs: a clause type's keywords among common filler words."""
    rng = random.Random(seed)
    pairs = []
    for label, keywords in CLAUSE_KEYWORDS.items():
        for _ in range(per_label):
            words = rng.sample(_FILLER, rng.randint(4, 9)) + rng.sample(keywords, rng.randint(1, 3))
            rng.shuffle(words)
            pairs.append((" ".join(words).capitalize() + ".", label))
    rng.shuffle(pairs)
    return pairs


def make_clause_classifier(
    path: str | Path,
    labels: Sequence[str] = CLAUSE_LABELS,
    *,
    seconds: float = 20.0,
    epochs: int = 30,
    seed: int = 0,
) -> Path:
    """A tiny BERT trained (for at most `seconds`) to tell clause types apart by keyword."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    unknown = set(labels) - set(CLAUSE_KEYWORDS)
    if unknown:
        raise ValueError(f"no training sentences for labels {sorted(unknown)} (known: {', '.join(CLAUSE_KEYWORDS)})")
    path = make_tiny_bert(path, labels, hidden_size=32, layers=2, seed=seed)
    _quiet()
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path)
    data = [(s, labels.index(lab)) for s, lab in clause_sentences(per_label=40, seed=seed) if lab in labels]
    torch.manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-3)
    model.train()
    deadline = time.monotonic() + seconds
    rng = random.Random(seed)
    perfect = epochs_run = 0
    for _ in range(epochs):
        rng.shuffle(data)
        right = 0
        for start in range(0, len(data), 20):
            chunk = data[start : start + 20]
            enc = tokenizer([s for s, _ in chunk], padding=True, truncation=True, max_length=32, return_tensors="pt")
            target = torch.tensor([y for _, y in chunk])
            out = model(**enc, labels=target)
            right += int((out.logits.argmax(-1) == target).sum())
            optimizer.zero_grad()
            out.loss.backward()
            optimizer.step()
        perfect = perfect + 1 if right == len(data) else 0
        epochs_run += 1
        if perfect >= 8 or time.monotonic() > deadline:  # separated for a while: enough for a demo
            break
    model.eval()
    model.config.update({"demo_training": {"epochs": epochs_run, "seconds": round(seconds - (deadline - time.monotonic()), 1)}})
    model.save_pretrained(path)
    return path


# -- a small plain PyTorch model ----------------------------------------------------------
def tiny_mlp(in_features: int = 8, hidden: int = 16, out_features: int = 3, seed: int = 0) -> Any:
    """A small MLP (`in_features` -> `out_features`), deterministic for a seed: the factory
    ``jupyter_flow.demo_models:tiny_mlp``. Its submodules are ``encoder`` and ``head``."""
    import torch
    from torch import nn

    class TinyMLP(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU())
            self.head = nn.Linear(hidden, out_features)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.encoder(x))

    torch.manual_seed(seed)
    return TinyMLP().eval()


def make_torchscript_model(path: str | Path, **kwargs: Any) -> Path:
    """`tiny_mlp` scripted with TorchScript and saved to `path` (.pt)."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():  # TorchScript is deprecated upstream, still loadable
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.script(tiny_mlp(**kwargs)), str(path))
    return path


def make_exported_model(path: str | Path, **kwargs: Any) -> Path:
    """`tiny_mlp` exported with ``torch.export`` (a dynamic batch dimension), saved as .pt2."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = tiny_mlp(**kwargs)
    example = (torch.randn(2, kwargs.get("in_features", 8)),)
    program = torch.export.export(model, example, dynamic_shapes=({0: torch.export.Dim.DYNAMIC},))
    torch.export.save(program, str(path))
    return path


def make_factory_weights(path: str | Path, **kwargs: Any) -> Path:
    """`tiny_mlp`'s weights as safetensors (for ``factory: jupyter_flow.demo_models:tiny_mlp``)."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in tiny_mlp(**kwargs).state_dict().items()}, str(path))
    return path
