"""Tiny local models for examples, demos and tests: made here, no downloads.

- `make_tiny_bert(dir, labels=[...])`: a small BERT (``BertConfig``, a vocabulary file
  written here, a fast tokenizer), saved with ``save_pretrained``: a directory a
  `transformers` node loads. Untrained: the outputs are deterministic, not meaningful.
- `make_clause_classifier(dir)`: a small BERT trained in a few seconds on generated
  English and Chinese contract clauses (`clause_sentences`) to tell payment,
  termination, liability, confidentiality, force majeure and other clauses apart;
  `evaluate_classifier` measures it on the clauses of the sample contracts, which it
  never saw in training.
- `make_torchscript_model(path)`, `make_exported_model(path)`, `make_factory_weights(path)`:
  a small MLP (`TinyMLP`) as TorchScript, as a ``torch.export`` archive, and as
  safetensors weights for the factory ``jupyter_flow_examples.models:tiny_mlp``.
- ``python -m jupyter_flow_examples.models --out DIR`` makes what the example notebooks need
  (``DIR/clause-bert`` and its model-service config ``DIR/clause-bert.serve.yaml``),
  skipping what is already there and up to date.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
import warnings
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from jupyter_flow_examples.corpus import _TEMPLATES, CLAUSE_LABELS, clause_sentences

__all__ = [
    "CLAUSE_KEYWORDS",
    "CLAUSE_LABELS",
    "classify_texts",
    "clause_classifier_is_current",
    "clause_sentences",
    "evaluate_classifier",
    "main",
    "make_clause_classifier",
    "make_demo_models",
    "make_exported_model",
    "make_factory_weights",
    "make_tiny_bert",
    "make_torchscript_model",
    "recipe_fingerprint",
    "tiny_mlp",
    "write_vocab",
]

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
#: Words typical of each clause label (the default vocabulary of `make_tiny_bert`).
CLAUSE_KEYWORDS: dict[str, list[str]] = {
    "payment": ["pay", "paid", "payment", "invoice", "invoices", "fee", "fees", "price", "due", "amount", "euro"],
    "termination": ["terminate", "terminated", "termination", "notice", "expire", "end", "cancel", "renewal"],
    "liability": ["liable", "liability", "damages", "indemnify", "loss", "negligence", "limit", "indirect"],
    "confidentiality": ["confidential", "secret", "disclose", "disclosed", "disclosure", "information", "proprietary"],
    "force_majeure": ["force", "majeure", "beyond", "control", "flood", "fire", "war", "epidemic"],
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
    from transformers import (  # type: ignore[attr-defined]
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


# -- the clause classifier ----------------------------------------------------------------
_RECIPE: dict[str, Any] = {"version": 2, "hidden_size": 64, "layers": 2, "heads": 4, "max_positions": 256, "max_length": 96,
           "per_label": 150, "batch": 32, "lr": 2e-3, "epochs": 12}


def _words_of(texts: Iterable[str]) -> list[str]:
    """The tokens a BERT pre-tokenizer cuts `texts` into (words, punctuation, Chinese
    characters), most frequent first: the whole-word part of the vocabulary."""
    from collections import Counter

    from tokenizers import normalizers, pre_tokenizers

    normalizer = normalizers.BertNormalizer(lowercase=True, handle_chinese_chars=True, strip_accents=None, clean_text=True)
    split = pre_tokenizers.BertPreTokenizer()
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(piece for piece, _ in split.pre_tokenize_str(normalizer.normalize_str(text)))
    return [word for word, _ in counts.most_common()]


def recipe_fingerprint(labels: Sequence[str] = CLAUSE_LABELS, seed: int = 0) -> str:
    """What the trained classifier depends on (recipe, labels, seed, templates), hashed:
    a saved model with the same fingerprint need not be trained again."""
    blob = json.dumps([_RECIPE, list(labels), seed, _TEMPLATES], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


def make_clause_classifier(
    path: str | Path,
    labels: Sequence[str] = CLAUSE_LABELS,
    *,
    seconds: float = 60.0,
    epochs: int | None = None,
    seed: int = 0,
) -> Path:
    """A tiny BERT trained on generated English and Chinese contract clauses to tell
    `labels` apart; saved with ``save_pretrained`` in `path` (returned).

    Training is seeded and runs a fixed number of epochs (stopping early once the
    training set has been separated for two epochs), so the same seed gives the same
    model; `seconds` is only a safety limit for very slow machines. The clauses of the
    sample contracts (``jupyter_flow_examples.samples``) are kept out of the training data so that
    `evaluate_classifier` on them measures generalisation. ``config.json`` records the
    recipe's fingerprint and the training figures under ``demo_training``.
    """
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from jupyter_flow_examples.samples import sample_clauses

    labels = list(labels)
    unknown = set(labels) - set(CLAUSE_LABELS)
    if unknown:
        raise ValueError(f"no training sentences for labels {sorted(unknown)} (known: {', '.join(CLAUSE_LABELS)})")
    r = _RECIPE
    started = time.monotonic()
    held_back = [text for text, _ in sample_clauses()]
    data_text = clause_sentences(per_label=r["per_label"], seed=seed, labels=labels, exclude=held_back)
    path = make_tiny_bert(path, labels, hidden_size=r["hidden_size"], layers=r["layers"], heads=r["heads"],
                          max_positions=r["max_positions"], words=_words_of(s for s, _ in data_text), seed=seed)
    _quiet()
    tokenizer = AutoTokenizer.from_pretrained(path)
    torch.manual_seed(seed)
    model = AutoModelForSequenceClassification.from_pretrained(path)
    enc = tokenizer([s for s, _ in data_text], padding="max_length", truncation=True, max_length=r["max_length"], return_tensors="pt")
    targets = torch.tensor([labels.index(label) for _, label in data_text])
    optimizer = torch.optim.AdamW(model.parameters(), lr=r["lr"], weight_decay=0.01)
    total_epochs = epochs or r["epochs"]
    steps = total_epochs * -(-len(data_text) // r["batch"])
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=r["lr"], total_steps=steps, pct_start=0.15)
    generator = torch.Generator().manual_seed(seed)
    deadline = started + seconds
    model.train()
    with _one_thread():
        epochs_run, accuracy, separated = _train(model, optimizer, schedule, enc, targets, total_epochs, r["batch"],
                                                 generator, deadline)
    model.eval()
    model.config.update({"demo_training": {
        "fingerprint": recipe_fingerprint(labels, seed), "sentences": len(data_text), "epochs": epochs_run,
        "train_accuracy": round(accuracy, 4), "seconds": round(time.monotonic() - started, 1),
        "stopped_by_time_limit": epochs_run < total_epochs and separated < 2,
    }})
    model.save_pretrained(path)
    return path


@contextmanager
def _one_thread() -> Iterator[None]:
    """Torch on one thread: matrices this small gain nothing from more, and on a busy
    machine worker threads that wait for each other make a step tens of times slower.
    One thread also makes the arithmetic, and so the trained model, the same everywhere."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _train(model: Any, optimizer: Any, schedule: Any, enc: Any, targets: Any, epochs: int, batch_size: int,
           generator: Any, deadline: float) -> tuple[int, float, int]:
    """Mini-batch epochs until `epochs`, two separated epochs in a row, or `deadline`;
    returns (epochs run, last training accuracy, separated epochs in a row)."""
    import torch

    separated = epochs_run = 0
    accuracy = 0.0
    for _ in range(epochs):
        order = torch.randperm(len(targets), generator=generator)
        right = 0
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            mask = enc["attention_mask"][idx]
            width = int(mask.sum(dim=1).max())  # cut the padding the whole chunk does not need
            batch = {k: v[idx, :width] for k, v in enc.items()}
            out = model(**batch, labels=targets[idx])
            right += int((out.logits.argmax(-1) == targets[idx]).sum())
            optimizer.zero_grad()
            out.loss.backward()
            optimizer.step()
            schedule.step()
        epochs_run += 1
        accuracy = right / len(targets)
        separated = separated + 1 if accuracy >= 0.995 else 0
        if separated >= 2 or time.monotonic() > deadline:
            break
    return epochs_run, accuracy, separated


def classify_texts(path: str | Path, texts: Sequence[str], *, max_length: int = 256) -> list[tuple[str, float]]:
    """``(label, score)`` for each text, straight from the saved model (no flow)."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    _quiet()
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path).eval()
    out: list[tuple[str, float]] = []
    with torch.inference_mode(), _one_thread():
        for start in range(0, len(texts), 64):
            enc = tokenizer(list(texts[start : start + 64]), padding=True, truncation=True, max_length=max_length, return_tensors="pt")
            probs = torch.softmax(model(**enc).logits, dim=-1)
            score, best = probs.max(dim=-1)
            out += [(model.config.id2label[int(b)], float(s)) for b, s in zip(best, score)]
    return out


def evaluate_classifier(path: str | Path, pairs: Sequence[tuple[str, str]] | None = None) -> dict[str, Any]:
    """Accuracy of a clause classifier on `pairs` (by default every clause of the sample
    contracts, English and Chinese, safe and risky wording): ``{accuracy, right, total,
    mean_score, wrong: [(text, expected, got, score)]}``."""
    from jupyter_flow_examples.samples import sample_clauses

    pairs = list(pairs if pairs is not None else sample_clauses())
    got = classify_texts(path, [t for t, _ in pairs])
    wrong = [(t, want, label, round(score, 3)) for (t, want), (label, score) in zip(pairs, got) if label != want]
    return {"accuracy": (len(pairs) - len(wrong)) / max(len(pairs), 1), "right": len(pairs) - len(wrong), "total": len(pairs),
            "mean_score": sum(s for _, s in got) / max(len(got), 1), "wrong": wrong}


def clause_classifier_is_current(path: str | Path, labels: Sequence[str] = CLAUSE_LABELS, seed: int = 0) -> bool:
    """Whether `path` holds a complete clause classifier made by the current recipe."""
    path = Path(path)
    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    complete = (path / "model.safetensors").is_file() and (path / "tokenizer.json").is_file()
    return complete and (config.get("demo_training") or {}).get("fingerprint") == recipe_fingerprint(labels, seed)


# -- a small plain PyTorch model ----------------------------------------------------------
def tiny_mlp(in_features: int = 8, hidden: int = 16, out_features: int = 3, seed: int = 0) -> Any:
    """A small MLP (`in_features` -> `out_features`), deterministic for a seed: the factory
    ``jupyter_flow_examples.models:tiny_mlp``. Its submodules are ``encoder`` and ``head``."""
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
    """`tiny_mlp`'s weights as safetensors (for ``factory: jupyter_flow_examples.models:tiny_mlp``)."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in tiny_mlp(**kwargs).state_dict().items()}, str(path))
    return path


# -- what the examples need ---------------------------------------------------------------
def make_demo_models(out: str | Path, *, force: bool = False, log: Any = print) -> dict[str, Path]:
    """Make every model the example notebooks use in `out`, skipping what is up to date:
    ``clause-bert`` (the clause classifier) and ``clause-bert.serve.yaml`` (a model-service
    config for ``jupyter-flow serve model``). Returns the paths by name."""
    import yaml

    out = Path(out).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    model = out / "clause-bert"
    if force or not clause_classifier_is_current(model):
        log(f"training the clause classifier into {model} ...")
        make_clause_classifier(model)
        facts = json.loads((model / "config.json").read_text(encoding="utf-8"))["demo_training"]
        log(f"  {facts['sentences']} generated clauses, {facts['epochs']} epochs, {facts['seconds']} s, "
            f"training accuracy {facts['train_accuracy']:.1%}")
        held_out = evaluate_classifier(model)
        log(f"  held-out accuracy on the sample contracts' clauses: {held_out['accuracy']:.1%} "
            f"({held_out['right']}/{held_out['total']}, mean score {held_out['mean_score']:.2f})")
        for text, want, got, score in held_out["wrong"]:
            log(f"  wrong: {text[:60]!r}: {got} ({score}), expected {want}")
    else:
        log(f"{model} is up to date")
    service = out / "clause-bert.serve.yaml"
    config = {"name": "clause-bert", "type": "transformers",
              "config": {"model": str(model), "task": "text-classification", "text": "{{ text }}",
                         "batch": {"max_size": 32, "max_wait_ms": 5}},
              "inputs": {"text": {"type": "text"}}}
    text = ("# A model service for the clause classifier: jupyter-flow serve model " + service.name + "\n"
            + yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
    if force or not service.is_file() or service.read_text(encoding="utf-8") != text:
        service.write_text(text, encoding="utf-8")
        log(f"wrote {service}")
    return {"clause-bert": model, "clause-bert.serve": service}


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="notebooks/models", help="folder for the models (default: notebooks/models)")
    parser.add_argument("--samples", metavar="DIR", help="also write the sample contracts into DIR")
    parser.add_argument("--force", action="store_true", help="make them again even when they are up to date")


def _command(args: argparse.Namespace) -> int:
    try:
        make_demo_models(args.out, force=args.force)
        if args.samples:
            from jupyter_flow_examples.samples import make_samples

            for path in make_samples(args.samples, force=args.force).values():
                print(path)
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jupyter_flow_examples.models",
                                     description="Make the models the example notebooks use (no downloads).")
    _add_arguments(parser)
    return _command(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
