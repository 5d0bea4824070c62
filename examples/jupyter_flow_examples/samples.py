"""Sample contracts as real PDFs, with known risky clauses planted in them.

`make_contract_pdf` writes a multi-page services agreement (English or Chinese) with
pymupdf: a normal text layer, or image-only pages rendered from the text (what a scanner
produces) so that reading it needs OCR. It returns what it planted, so that a review can
be checked against it. The risk ids are those of ``notebooks/flows/rules/contract.yaml``.
`sample_clauses` lists every clause the samples can contain with its label (to measure
a clause classifier on text it was not trained on).

``python -m jupyter_flow_examples.samples --out DIR`` writes the example notebook's samples:
``contract.pdf`` (every risk planted), ``scanned.pdf`` (the same, image-only pages),
``clean.pdf`` (no risk planted), and the Chinese contract as ``contract_zh.pdf`` (text) and
``scanned_zh.pdf`` (image-only pages), every risk planted in both.
"""

from __future__ import annotations

import argparse
import html
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

__all__ = ["RISKS", "SAMPLES", "PlantedClause", "PlantedContract", "main", "make_contract_pdf", "make_samples", "sample_clauses"]

Language = Literal["en", "zh"]

#: Every risk a sample contract can plant, by rule id, with its severity.
RISKS: dict[str, str] = {
    "unlimited_liability": "high",
    "termination_without_notice": "high",
    "unilateral_changes": "high",
    "auto_renewal": "medium",
    "long_payment_term": "medium",
    "broad_indemnity": "medium",
    "missing_governing_law": "medium",
    "perpetual_confidentiality": "low",
}


@dataclass(frozen=True)
class PlantedClause:
    index: int  # position among the contract's paragraphs
    text: str
    label: str  # liability, force_majeure, confidentiality, termination, payment or other
    page: int  # 1-based
    risks: tuple[str, ...] = ()


@dataclass(frozen=True)
class PlantedContract:
    path: Path
    language: Language
    scanned: bool
    page_count: int
    clauses: tuple[PlantedClause, ...]
    #: rule ids planted, including risks planted by leaving a clause out
    risks: frozenset[str] = field(default_factory=frozenset)
    password: str | None = None

    @property
    def risky_clauses(self) -> list[PlantedClause]:
        return [c for c in self.clauses if c.risks]

    def expected_pages(self) -> dict[str, set[int]]:
        """Rule id -> the pages its planted clauses are on (empty for an omission)."""
        pages: dict[str, set[int]] = {risk: set() for risk in self.risks}
        for clause in self.clauses:
            for risk in clause.risks:
                pages[risk].add(clause.page)
        return pages

    def items(self) -> list[dict[str, Any]]:
        """The clauses as classified items ``{text, label, score, page}``."""
        return [{"text": c.text, "label": c.label, "score": 1.0, "page": c.page} for c in self.clauses]


# One entry per clause: (label, safe text, risky text or None, risk id or None).
# A page break comes before entries marked with PAGE.
PAGE = "<page>"
_Clause = tuple[str, str, "str | None", "str | None"]

_EN: list[_Clause | str] = [
    ("other", "MASTER SERVICES AGREEMENT", None, None),
    ("other", 'This Master Services Agreement (the "Agreement") is made on 1 March 2024 between Northwind Analytics Ltd., '
     'a company registered in England (the "Supplier"), and Contoso Retail plc (the "Customer").', None, None),
    ("other", '1. Definitions. In this Agreement, "Services" means the data analytics services described in Schedule 1, '
     'and "Fees" means the charges set out in Schedule 2.', None, None),
    ("other", "2. Services. The Supplier shall provide the Services with reasonable skill and care and in accordance "
     "with good industry practice.", None, None),
    ("payment", "3. Payment. The Customer shall pay each undisputed invoice within 30 days of the date of receipt. "
     "Late payments bear interest at two per cent above the base rate.",
     "3. Payment. The Customer shall pay each undisputed invoice within 120 days of the date of receipt. "
     "Late payments bear no interest.", "long_payment_term"),
    PAGE,
    ("termination", "4. Term. This Agreement starts on the Effective Date and runs for an initial term of twelve months. "
     "It will not renew automatically; any extension requires a written agreement signed by both parties.",
     "4. Term. This Agreement starts on the Effective Date and runs for an initial term of twelve months. "
     "It shall automatically renew for successive periods of twelve months unless terminated under clause 5.",
     "auto_renewal"),
    ("termination", "5. Termination. Either party may terminate this Agreement by giving the other party not less than "
     "30 days' written notice.",
     "5. Termination. The Supplier may terminate this Agreement at any time without notice and without any "
     "liability to the Customer.", "termination_without_notice"),
    ("liability", "6. Liability. Each party's total liability under this Agreement shall not exceed the Fees paid in "
     "the twelve months before the claim arose.",
     "6. Liability. The Customer shall bear unlimited liability for all losses, damages, costs and expenses "
     "arising out of or in connection with this Agreement.", "unlimited_liability"),
    ("liability", "7. Indemnity. Each party shall indemnify the other against third-party claims to the extent caused "
     "by its breach of this Agreement.",
     "7. Indemnity. The Customer shall indemnify the Supplier against any and all claims, losses and costs of "
     "whatever nature, howsoever arising.", "broad_indemnity"),
    PAGE,
    ("confidentiality", "8. Confidentiality. Each party shall keep the other party's Confidential Information secret "
     "for five years after this Agreement ends.",
     "8. Confidentiality. Each party shall keep the other party's Confidential Information secret in perpetuity.",
     "perpetual_confidentiality"),
    ("force_majeure", "9. Force Majeure. Neither party is responsible for any delay or failure to perform caused by "
     "events beyond its reasonable control, including fire, flood, epidemic or war.", None, None),
    ("other", "10. Changes. No amendment to this Agreement is effective unless it is in writing and signed by both "
     "parties.",
     "10. Changes. The Supplier may amend the terms of this Agreement and the Fees at any time at its sole "
     "discretion by posting the changes on its website.", "unilateral_changes"),
    ("other", "11. Governing Law. This Agreement is governed by the laws of England and Wales, and the courts of "
     "London have exclusive jurisdiction.", "", "missing_governing_law"),
    ("other", "12. Notices. Notices under this Agreement must be in writing and sent to the addresses set out above.",
     None, None),
    ("other", "Signed for and on behalf of the Supplier: ____________ Signed for and on behalf of the Customer: "
     "____________", None, None),
]

_ZH: list[_Clause | str] = [
    ("other", "技术服务合同", None, None),
    ("other", "甲方：上海星河零售有限公司。乙方：北京远景数据科技有限公司。双方经友好协商，就数据分析技术服务事宜订立本合同。", None, None),
    ("other", "第一条 定义。本合同所称服务是指附件一所列的数据分析服务，费用是指附件二所列的服务费用。", None, None),
    ("other", "第二条 服务内容。乙方应当以合理的技能和谨慎提供服务，并遵守行业通行标准。", None, None),
    ("payment", "第三条 付款。甲方应在收到发票之日起30日内支付全部款项，逾期付款按日支付万分之五的违约金。",
     "第三条 付款。甲方应在收到发票之日起120日内支付全部款项，逾期付款不计利息。", "long_payment_term"),
    PAGE,
    ("termination", "第四条 合同期限。本合同有效期为十二个月，期满后不自动续期；续期须经双方书面同意。",
     "第四条 合同期限。本合同有效期为十二个月，期满后自动续期十二个月，依此类推。", "auto_renewal"),
    ("termination", "第五条 合同解除。任何一方解除本合同，应提前三十日书面通知对方。",
     "第五条 合同解除。乙方可随时解除本合同，无需提前通知甲方，且不承担任何责任。", "termination_without_notice"),
    ("liability", "第六条 违约责任。任何一方在本合同项下的责任总额不超过索赔前十二个月内已支付的费用。",
     "第六条 违约责任。甲方违反本合同约定的，应当承担无限责任，赔偿乙方因此遭受的全部损失。", "unlimited_liability"),
    ("liability", "第七条 赔偿。任何一方仅就因其违约行为引起的第三方索赔向对方承担赔偿责任。",
     "第七条 赔偿。甲方应就任何及所有索赔、损失和费用无条件赔偿乙方，无论其因何产生。", "broad_indemnity"),
    PAGE,
    ("confidentiality", "第八条 保密。双方应在本合同终止后五年内对另一方的保密信息承担保密义务。",
     "第八条 保密。双方应永久对另一方的保密信息承担保密义务。", "perpetual_confidentiality"),
    ("force_majeure", "第九条 不可抗力。因火灾、洪水、疫情或战争等不可抗力事件导致延迟或不能履行的，任何一方均不承担责任。", None, None),
    ("other", "第十条 合同变更。对本合同的任何修改须以书面形式作出并经双方签字方可生效。",
     "第十条 合同变更。乙方有权自行决定随时单方面修改本合同条款及费用标准，并在其网站公布后生效。", "unilateral_changes"),
    ("other", "第十一条 适用法律。本合同适用中华人民共和国法律，因本合同引起的争议由上海市有管辖权的人民法院管辖。", "",
     "missing_governing_law"),
    ("other", "第十二条 通知。本合同项下的通知应以书面形式发送至双方在本合同首部列明的地址。", None, None),
    ("other", "甲方（盖章）：__________ 乙方（盖章）：__________", None, None),
]

_CSS = {
    "en": "* {font-family: sans-serif; font-size: 11pt; line-height: 1.3;} h1 {font-size: 15pt; text-align: center;}",
    "zh": "* {font-family: sans-serif; font-size: 11pt; line-height: 1.4;} h1 {font-size: 15pt; text-align: center;}",
}
_MARGIN = 72.0
_GAP = 16.0


def make_contract_pdf(
    path: str | Path,
    *,
    scanned: bool = False,
    risky: bool = True,
    risks: Iterable[str] | None = None,
    language: Language = "en",
    password: str | None = None,
    dpi: int = 200,
    title: str | None = None,
) -> PlantedContract:
    """Write a three-page services agreement to `path` and return what was planted.

    `risky` plants every risk in `RISKS`; `risks` plants only the ones named. `scanned`
    turns each page into a grey-scale image of itself at `dpi` (no text layer left), so
    reading it needs OCR. `password` encrypts the file (AES-256).
    """
    import pymupdf

    wanted = set(RISKS) if risks is None and risky else set(risks or ())
    unknown = wanted - set(RISKS)
    if unknown:
        raise ValueError(f"unknown risks {sorted(unknown)} (known: {', '.join(RISKS)})")
    if language not in ("en", "zh"):
        raise ValueError(f"language must be 'en' or 'zh', not {language!r}")
    script = _EN if language == "en" else _ZH
    default_title = "Master Services Agreement" if language == "en" else "技术服务合同"

    doc = pymupdf.open()
    page = doc.new_page(width=595, height=842)
    y = _MARGIN
    clauses: list[PlantedClause] = []
    for entry in script:
        if entry == PAGE:
            page, y = doc.new_page(width=595, height=842), _MARGIN
            continue
        label, safe, risky_text, risk = entry  # type: ignore[str-unpack]
        text = risky_text if risk in wanted and risky_text is not None else safe
        planted = (risk,) if risk in wanted else ()
        if not text:  # a clause left out is the risk
            continue
        body = f"<h1>{html.escape(text)}</h1>" if not clauses else f"<p>{html.escape(text)}</p>"
        rect = pymupdf.Rect(_MARGIN, y, page.rect.width - _MARGIN, page.rect.height - _MARGIN)
        spare, _ = page.insert_htmlbox(rect, body, css=_CSS[language], scale_low=1)
        if spare < 0:
            raise RuntimeError(f"clause does not fit on page {page.number + 1}: {text[:40]!r}")
        y += rect.height - spare + _GAP
        clauses.append(PlantedClause(len(clauses), text, label, page.number + 1, planted))
    doc.set_metadata({"title": title or default_title, "author": "jupyter-flow samples", "subject": "sample contract"})

    if scanned:
        doc = _as_scan(doc, dpi)
    else:
        doc.subset_fonts()  # the Chinese font alone is over 20 MB; keep only the glyphs used
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    options: dict[str, Any] = {"garbage": 3, "deflate": True}
    if password:
        options.update(encryption=pymupdf.PDF_ENCRYPT_AES_256,  # type: ignore[attr-defined]
                       user_pw=password, owner_pw=password + "-owner")
    doc.save(str(target), **options)
    page_count = doc.page_count
    doc.close()
    planted_risks = frozenset(r for c in clauses for r in c.risks) | (wanted & {"missing_governing_law"})
    return PlantedContract(target, language, scanned, page_count, tuple(clauses), planted_risks, password)


def _as_scan(doc: Any, dpi: int) -> Any:
    """A new document whose pages are only images of the old pages, as from a scanner."""
    import pymupdf

    scan = pymupdf.open()
    for page in doc:
        pixmap = page.get_pixmap(dpi=dpi, colorspace=pymupdf.csGRAY)
        new = scan.new_page(width=page.rect.width, height=page.rect.height)
        new.insert_image(new.rect, pixmap=pixmap)
    scan.set_metadata(doc.metadata)
    doc.close()
    return scan


def sample_clauses(language: Language | None = None) -> list[tuple[str, str]]:
    """Every clause a sample contract can contain, safe and risky wording, as
    ``(text, label)`` pairs; `language` picks one language (default: both)."""
    scripts = {"en": _EN, "zh": _ZH}
    pairs: dict[str, str] = {}
    for lang in [language] if language else ["en", "zh"]:
        if lang not in scripts:
            raise ValueError(f"language must be 'en' or 'zh', not {lang!r}")
        for entry in scripts[lang]:
            if entry == PAGE:
                continue
            label, safe, risky_text, _ = entry  # type: ignore[str-unpack]
            for text in (safe, risky_text):
                if text:
                    pairs.setdefault(text, label)
    return list(pairs.items())


#: The example notebook's samples: file name -> make_contract_pdf arguments.
SAMPLES: dict[str, dict[str, Any]] = {
    "contract.pdf": {},
    "scanned.pdf": {"scanned": True},
    "clean.pdf": {"risky": False},
    "contract_zh.pdf": {"language": "zh"},
    "scanned_zh.pdf": {"language": "zh", "scanned": True},
}


def make_samples(out: str | Path, *, force: bool = False) -> dict[str, Path]:
    """Write the example samples (`SAMPLES`) into `out`; files already there are kept
    unless `force`. Returns the paths by file name."""
    folder = Path(out).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    for name, options in SAMPLES.items():
        target = folder / name
        if force or not target.is_file():
            make_contract_pdf(target, **options)
        written[name] = target
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jupyter_flow_examples.samples",
                                     description="Write sample contract PDFs with known risks planted in them.")
    parser.add_argument("--out", default="notebooks/samples", help="folder for the PDFs (default: notebooks/samples)")
    parser.add_argument("--force", action="store_true", help="write them again even when they exist")
    args = parser.parse_args(argv)
    try:
        paths = make_samples(args.out, force=args.force)
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for path in paths.values():
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
