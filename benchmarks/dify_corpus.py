"""How the 45 Dify apps of the corpus (tests/fixtures/dify/corpus, MIT) import today.

Each app is imported into a fresh folder without `--partial`; one that is refused is
imported again with it. Each imported flow is validated (nothing runs). The table gives, per
app, its Dify nodes, the flow nodes it became, the outcome (`valid`, `bindings` when only
Dify tools that need a binding stop it from validating, `invalid`, `partial`, `crash`), the
placeholders, the lines the report marks as approximated, the tools that need a binding,
the environment variables it reads, and the import time; then whether the flow goes back
to Dify (`export-dify`) and comes in again as the same flow (`back`: `same`, `differs`,
`refused`), with the time of the export and the second import. The last lines compare with
how the importer stood when the corpus was added (14 of 45 imported whole and validated, 8
crashed). Never fails on timing.

    python benchmarks/dify_corpus.py [--corpus DIR]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import Counter
from pathlib import Path

from jupyter_flow import Flow, FlowValidationError
from jupyter_flow.dify import DifyImport, export_dify, write_import
from jupyter_flow.errors import FlowError
from jupyter_flow.spec import parse_spec_text, spec_to_dict

CORPUS = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "dify" / "corpus"
#: how the importer stood on the corpus when it was added
BEFORE = {"valid": 14, "crash": 8}


def one(app: Path, folder: Path) -> dict[str, object]:
    """How `app` imports into `folder`."""
    row: dict[str, object] = {"app": app.stem, "placeholders": 0, "approximated": 0, "bindings": 0, "keys": 0, "nodes": 0}
    started = time.perf_counter()
    try:
        try:
            result, target = write_import(app, folder / "app.flow.yaml")
        except FlowValidationError:
            result, target = write_import(app, folder / "partial.flow.yaml", partial=True)
            row["outcome"] = "partial"
    except Exception as exc:  # what the table is for: any failure is counted, not raised
        row.update(outcome="crash", ms=(time.perf_counter() - started) * 1000, note=f"{type(exc).__name__}: {exc}"[:60])
        return row
    row["ms"] = (time.perf_counter() - started) * 1000
    row.update(dify=len(result.mapped), nodes=len(result.spec.nodes), placeholders=len(result.unsupported),
               approximated=len(result.approximated), bindings=len(result.bindings), keys=len(result.keys))
    if "outcome" not in row:
        try:
            Flow.load(target).validate()
            row["outcome"] = "valid"
        except FlowError as exc:
            problems = getattr(exc, "problems", [])
            only_tools = problems and all("stands for a tool of an imported Dify app" in p.message for p in problems)
            row["outcome"] = "bindings" if only_tools else "invalid"
        row.update(back(result, target, folder))
    return row


def back(first: DifyImport, target: Path, folder: Path) -> dict[str, object]:
    """Whether the imported flow goes back to Dify and comes in again as the same flow."""
    started = time.perf_counter()
    try:
        export_dify(Flow.load(target), folder / "back.yml")
        (folder / "again").mkdir()
        again, _ = write_import(folder / "back.yml", folder / "again" / target.name)
    except FlowError as exc:
        return {"back": "refused", "note": str(exc)[:60]}
    same = (spec_to_dict(again.spec) == spec_to_dict(first.spec) and again.modules == first.modules
            and {k: spec_to_dict(parse_spec_text(v)) for k, v in again.flows.items()}
            == {k: spec_to_dict(parse_spec_text(v)) for k, v in first.flows.items()})
    return {"back": "same" if same else "differs", "back_ms": (time.perf_counter() - started) * 1000}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    args = parser.parse_args()
    apps = sorted(args.corpus.glob("*.yml"))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, app in enumerate(apps):
            folder = Path(tmp) / str(i)
            folder.mkdir()
            rows.append(one(app, folder))
    width = max(len(str(r["app"])) for r in rows) + 2
    head = (f"{'app':<{width}}{'dify':>5}{'flow':>5}  {'outcome':<9}{'placeh.':>8}{'approx.':>8}{'bind':>5}{'keys':>5}{'ms':>8}"
            f"  {'back':<8}{'back ms':>8}")
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r['app']!s:<{width}}{r.get('dify', 0)!s:>5}{r['nodes']!s:>5}  {r['outcome']!s:<9}{r['placeholders']!s:>8}"
              f"{r['approximated']!s:>8}{r['bindings']!s:>5}{r['keys']!s:>5}{float(r['ms']):>8.1f}"  # type: ignore[arg-type]
              f"  {r.get('back', '-')!s:<8}{float(r.get('back_ms', 0.0)):>8.1f}"  # type: ignore[arg-type]
              + (f"  {r['note']}" if r.get("note") else ""))
    counts = Counter(str(r["outcome"]) for r in rows)
    total = len(rows)
    whole = total - counts["partial"] - counts["crash"]
    print()
    print(f"imported without --partial: {whole} of {total} ({whole / total:.0%}); validate: {counts['valid']} of {total} "
          f"({counts['valid'] / total:.0%}); wait only for tool bindings: {counts['bindings']}; partial: {counts['partial']}; "
          f"crash: {counts['crash']}")
    same = sum(1 for r in rows if r.get("back") == "same")
    imported = sum(float(str(r["ms"])) for r in rows) / 1000
    again = sum(float(str(r.get("back_ms", 0.0))) for r in rows) / 1000
    print(f"go back to Dify and come in again as the same flow: {same} of {total}; import {imported:.1f} s for all, "
          f"export and import again {again:.1f} s")
    print(f"when the corpus was added: {BEFORE['valid']} of 45 imported whole and validated, {BEFORE['crash']} crashed")


if __name__ == "__main__":
    main()
