"""`pdf`: text, pages, paragraphs and metadata out of a PDF, with OCR for scanned pages.

Parsing runs on pymupdf (imported where it is used) in a worker thread. Pages without a
text layer are read by Tesseract through pymupdf's built-in OCR, which needs only
Tesseract's language data (Debian: ``apt-get install -y tesseract-ocr tesseract-ocr-eng
tesseract-ocr-chi-sim``); the data folder is found from ``TESSDATA_PREFIX``, from
``tesseract --list-langs``, or from the usual install folders.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from statistics import median
from typing import Any, Literal

from pydantic import field_validator

from jupyter_flow.errors import NodeError
from jupyter_flow.expressions import is_template
from jupyter_flow.nodes.base import Node, NodeConfig, NodeContext
from jupyter_flow.nodes.http import expand_env

__all__ = ["PdfNode", "find_tessdata", "parse_page_ranges", "tesseract_languages"]

#: A page rendered for OCR holds at most this many pixels (an A2 page at 300 dpi holds 35 M);
#: a larger page is rendered at the resolution that fits, and one that does not fit even at
#: 72 dpi is refused (a 3.6 KB PDF can declare a page of 3000 x 3000 points: 156 M pixels at 300 dpi).
DEFAULT_OCR_MAX_PIXELS = 40_000_000
#: OCR below this resolution reads nothing useful
MIN_OCR_DPI = 72
INSTALL_HINT = "apt-get install -y tesseract-ocr tesseract-ocr-eng tesseract-ocr-chi-sim (or set TESSDATA_PREFIX to a tessdata folder)"
DEFAULT_LANGUAGES = ("eng", "chi_sim")
_TESSDATA_DIRS = (
    "/usr/share/tesseract-ocr/5/tessdata",
    "/usr/share/tesseract-ocr/4.00/tessdata",
    "/usr/share/tessdata",
    "/usr/local/share/tessdata",
    "/opt/homebrew/share/tessdata",
)
_CJK = "\u3000-\u303f\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef"
_CJK_GAP = re.compile(rf"(?<=[{_CJK}])\s+(?=[{_CJK}])")
_CJK_CHAR = re.compile(rf"[{_CJK}]")
_SPACES = re.compile(r"[ \t\r\f\v]+")


# -- page ranges ---------------------------------------------------------------------
def parse_page_ranges(spec: Any, page_count: int | None = None) -> list[int] | None:
    """1-based page numbers from "1-3,5", "4-", "-2", 7 or [1, "3-4"]; None means every page.

    With `page_count` the numbers are checked against the document; without it only the
    syntax is checked. Raises ValueError with a message meant for the user.
    """
    if spec is None or (isinstance(spec, str) and spec.strip().lower() in ("", "all")):
        return None
    parts: Iterable[Any]
    if isinstance(spec, bool):
        raise ValueError(f"expected page numbers such as \"1-3,5\", got {spec!r}")
    if isinstance(spec, int):
        parts = [spec]
    elif isinstance(spec, str):
        parts = spec.split(",")
    elif isinstance(spec, Sequence):
        parts = spec
    else:
        raise ValueError(f"expected page numbers such as \"1-3,5\" or a list, got {type(spec).__name__}")
    pages: list[int] = []
    for part in parts:
        if isinstance(part, bool) or not isinstance(part, (int, str)):
            raise ValueError(f"{part!r} is not a page number or range")
        if isinstance(part, int):
            first = last = part
        else:
            text = part.strip()
            match = re.fullmatch(r"(\d*)\s*-\s*(\d*)", text)
            if match and (match.group(1) or match.group(2)):
                first = int(match.group(1)) if match.group(1) else 1
                if match.group(2):
                    last = int(match.group(2))
                elif page_count is not None:
                    last = page_count
                else:
                    last = first  # open range: checked for syntax only until the page count is known
            elif text.isdigit():
                first = last = int(text)
            else:
                raise ValueError(f"{part!r} is not a page number or range (write e.g. \"1-3,5\")")
        if first < 1 or last < 1:
            raise ValueError(f"page numbers start at 1, got {part!r}")
        if last < first:
            raise ValueError(f"range {part!r} runs backwards")
        if page_count is not None and last > page_count:
            raise ValueError(f"page {last} is past the end: the document has {page_count} page{'s' if page_count != 1 else ''}")
        pages.extend(n for n in range(first, last + 1) if n not in pages)
    if not pages:
        raise ValueError("selects no pages")
    return pages


# -- Tesseract -------------------------------------------------------------------------
def _has_traineddata(folder: Path) -> bool:
    return folder.is_dir() and any(folder.glob("*.traineddata"))


def find_tessdata(env: dict[str, str] | None = None, candidates: Sequence[str] = _TESSDATA_DIRS) -> Path | None:
    """The folder holding Tesseract's `*.traineddata` files, or None when none is found."""
    env = dict(os.environ) if env is None else env
    prefix = env.get("TESSDATA_PREFIX")
    if prefix:
        for folder in (Path(prefix), Path(prefix) / "tessdata"):
            if _has_traineddata(folder):
                return folder
    binary = shutil.which("tesseract", path=env.get("PATH"))
    if binary:
        try:
            listing = subprocess.run([binary, "--list-langs"], capture_output=True, text=True, timeout=20).stdout
        except (OSError, subprocess.SubprocessError):
            listing = ""
        match = re.search(r'"(.+?)"', listing)
        if match and _has_traineddata(Path(match.group(1))):
            return Path(match.group(1))
    for candidate in candidates:
        if _has_traineddata(Path(candidate)):
            return Path(candidate)
    return None


def tesseract_languages(tessdata: Path) -> list[str]:
    return sorted(p.name[: -len(".traineddata")] for p in tessdata.glob("*.traineddata") if p.name != "osd.traineddata")


@lru_cache(maxsize=4)
def _cached_tessdata(override: str | None) -> Path | None:
    if override:
        return Path(override) if _has_traineddata(Path(override)) else None
    return find_tessdata()


# -- config ----------------------------------------------------------------------------
class PdfConfig(NodeConfig):
    source: Any
    ocr: Literal["auto", "always", "never"] = "auto"
    ocr_language: str | None = None
    ocr_dpi: int = 300
    #: pixels of one page rendered for OCR; a larger page is read at a lower resolution
    ocr_max_pixels: int = DEFAULT_OCR_MAX_PIXELS
    tessdata: str | None = None
    pages: Any = None
    password: str | None = None
    allow_damaged: bool = False

    @field_validator("pages")
    @classmethod
    def _pages(cls, value: Any) -> Any:
        if not is_template(value):
            parse_page_ranges(value)
        return value

    @field_validator("ocr_dpi")
    @classmethod
    def _dpi(cls, value: int) -> int:
        if not 72 <= value <= 1200:
            raise ValueError("must be between 72 and 1200")
        return value

    @field_validator("ocr_max_pixels")
    @classmethod
    def _max_pixels(cls, value: int) -> int:
        if not 1_000_000 <= value <= 400_000_000:
            raise ValueError("must be between 1000000 and 400000000")
        return value

    @field_validator("ocr_language")
    @classmethod
    def _language(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[A-Za-z0-9_]+(\+[A-Za-z0-9_]+)*", value):
            raise ValueError(f"{value!r} is not a Tesseract language list such as \"eng+chi_sim\"")
        return value


@dataclass
class _Source:
    name: str
    path: Path | None = None
    data: bytes | None = None


class PdfNode(Node):
    """Output: ``text`` (the pages read, joined by blank lines), ``pages``
    (``[{number, text, ocr}]``, 1-based), ``paragraphs`` (``[{text, page, bbox}]``, bbox in
    PDF points ``[x0, y0, x1, y1]``) and ``metadata`` (page counts, title, author, encryption,
    which pages were OCR'd).

    ``ocr: auto`` (the default) OCRs pages that have no text layer but do carry images;
    ``always`` OCRs every page read, replacing its text layer; ``never`` never OCRs.
    """

    kind = "pdf"
    Config = PdfConfig
    config: PdfConfig

    async def run(self, inputs: dict[str, Any], ctx: NodeContext) -> Any:
        source = self._source(inputs.get("source"))
        password = inputs.get("password")
        if password is not None:
            password = expand_env(str(password), node=self.id, field="config.password").value
        try:
            parse_page_ranges(inputs.get("pages"))
        except ValueError as exc:
            raise NodeError(f"config.pages: {exc}", node=self.id, retryable=False) from None
        return await ctx.run_blocking(self._parse, source, password, inputs)

    # -- input ----------------------------------------------------------------------
    def _source(self, value: Any) -> _Source:
        if isinstance(value, (bytes, bytearray, memoryview)):
            data = bytes(value)
            return _Source(f"<{len(data)} bytes>", data=data)
        if isinstance(value, os.PathLike) or (isinstance(value, str) and value.strip()):
            path = Path(os.fspath(value)).expanduser()
            base = self.base_dir  # the flow file's folder, when the flow sets it
            if not path.is_absolute() and not path.exists() and base is not None and (Path(base) / path).exists():
                path = Path(base) / path
            if not path.exists():
                raise NodeError(f"config.source: no such file: {path} (working folder: {Path.cwd()})", node=self.id, retryable=False)
            if path.is_dir():
                raise NodeError(f"config.source: {path} is a folder, not a PDF file", node=self.id, retryable=False)
            return _Source(str(path), path=path)
        raise NodeError(
            f"config.source: expected a file path or the PDF's bytes, got {type(value).__name__} {value!r:.60}",
            node=self.id,
            retryable=False,
        )

    def _fail(self, message: str) -> NodeError:
        return NodeError(message, node=self.id, retryable=False)

    def _open(self, source: _Source, allow_damaged: bool) -> Any:
        import pymupdf

        data = source.data if source.data is not None else source.path.read_bytes()  # type: ignore[union-attr]
        if b"%PDF-" not in data[:1024]:
            kind = "an empty file" if not data else "not a PDF (no %PDF- header)"
            raise self._fail(f"config.source: {source.name} is {kind}")
        pymupdf.TOOLS.mupdf_warnings()  # clear what earlier documents left
        truncated = b"%%EOF" not in data[-2048:]
        try:
            doc = pymupdf.open(stream=data, filetype="pdf")
        except (pymupdf.FileDataError, RuntimeError) as exc:
            if truncated:
                raise self._fail(
                    f"config.source: {source.name} is truncated (no %%EOF end marker) and MuPDF cannot recover it "
                    f"({exc}); it may be an incomplete download or copy (config.allow_damaged cannot help here)"
                ) from None
            raise self._fail(f"config.source: {source.name} is not a readable PDF ({exc})") from None
        if (truncated or doc.page_count == 0) and not allow_damaged:
            warnings = " ".join(pymupdf.TOOLS.mupdf_warnings().split("\n")[:2])
            what = "is truncated (no %%EOF end marker)" if truncated else "has no readable pages"
            doc.close()
            raise self._fail(
                f"config.source: {source.name} {what}; it may be an incomplete download or copy"
                f"{f' (MuPDF: {warnings})' if warnings else ''}. Set config.allow_damaged: true to read what can be recovered"
            )
        return doc

    def _unlock(self, doc: Any, source: _Source, password: str | None) -> None:
        if not doc.needs_pass:
            return
        if not password:
            raise self._fail(f"{source.name} is encrypted: set config.password (e.g. password: \"${{PDF_PASSWORD}}\")")
        if not doc.authenticate(password):
            raise self._fail(f"{source.name}: the password in config.password is wrong")

    # -- parsing --------------------------------------------------------------------
    def _parse(self, source: _Source, password: str | None, inputs: dict[str, Any]) -> dict[str, Any]:
        doc = self._open(source, bool(inputs.get("allow_damaged")))
        try:
            self._unlock(doc, source, password)
            try:
                numbers = parse_page_ranges(inputs.get("pages"), doc.page_count) or list(range(1, doc.page_count + 1))
            except ValueError as exc:
                raise self._fail(f"config.pages: {exc}") from None
            mode = inputs.get("ocr") or "auto"
            ocr = _Ocr(self, inputs) if mode != "never" else None
            pages: list[dict[str, Any]] = []
            paragraphs: list[dict[str, Any]] = []
            for number in numbers:
                page = doc[number - 1]
                textpage, used_ocr = self._textpage(page, number, mode, ocr)
                blocks = [b for b in page.get_text("blocks", textpage=textpage, sort=True) if b[6] == 0]
                paras = _merge_lines(blocks) if used_ocr else [(b[:4], b[4]) for b in blocks]
                page_paragraphs = []
                for bbox, raw in paras:
                    text = _clean(raw, ocr=used_ocr)
                    if text:
                        page_paragraphs.append({"text": text, "page": number, "bbox": [round(float(v), 2) for v in bbox]})
                page_text = "\n\n".join(str(p["text"]) for p in page_paragraphs) if used_ocr else _clean_page(page.get_text("text", textpage=textpage))
                pages.append({"number": number, "text": page_text, "ocr": used_ocr})
                paragraphs.extend(page_paragraphs)
            return {
                "text": "\n\n".join(p["text"] for p in pages if p["text"]),
                "pages": pages,
                "paragraphs": paragraphs,
                "metadata": self._metadata(doc, source, pages, ocr),
            }
        finally:
            doc.close()

    def _textpage(self, page: Any, number: int, mode: str, ocr: _Ocr | None) -> tuple[Any, bool]:
        if ocr is None:
            return page.get_textpage(), False
        if mode == "always":
            return ocr.read(page, number), True
        has_text = bool(page.get_text("text").strip())
        if not has_text and page.get_images(full=False):
            return ocr.read(page, number), True
        return page.get_textpage(), False

    def _metadata(self, doc: Any, source: _Source, pages: list[dict[str, Any]], ocr: _Ocr | None) -> dict[str, Any]:
        meta = doc.metadata or {}
        return {
            "source": source.name,
            "page_count": doc.page_count,
            "pages_read": [p["number"] for p in pages],
            "ocr_pages": [p["number"] for p in pages if p["ocr"]],
            "ocr_language": ocr.language if ocr is not None and ocr.language_used else None,
            "title": meta.get("title") or None,
            "author": meta.get("author") or None,
            "subject": meta.get("subject") or None,
            "keywords": meta.get("keywords") or None,
            "creator": meta.get("creator") or None,
            "producer": meta.get("producer") or None,
            "created": meta.get("creationDate") or None,
            "modified": meta.get("modDate") or None,
            "format": meta.get("format") or None,
            "encrypted": bool(doc.is_encrypted or meta.get("encryption")),
            "encryption": meta.get("encryption") or None,
            "repaired": bool(getattr(doc, "is_repaired", False)),
        }


class _Ocr:
    """Tesseract through pymupdf, set up on the first page that needs it."""

    def __init__(self, node: PdfNode, inputs: dict[str, Any]) -> None:
        self.node = node
        self.requested: str | None = inputs.get("ocr_language")
        self.dpi = int(inputs.get("ocr_dpi") or 300)
        self.max_pixels = int(inputs.get("ocr_max_pixels") or DEFAULT_OCR_MAX_PIXELS)
        self.override = inputs.get("tessdata")
        self.tessdata: Path | None = None
        self.language = ""
        self.language_used = False

    def _setup(self, number: int) -> None:
        if self.tessdata is not None:
            return
        tessdata = _cached_tessdata(self.override)
        if tessdata is None:
            where = f"no Tesseract language data in config.tessdata {self.override}" if self.override else "Tesseract is not installed"
            raise self.node._fail(f"page {number} has no text layer and needs OCR, but {where}: {INSTALL_HINT}. Or set config.ocr: never")
        installed = tesseract_languages(tessdata)
        if self.requested:
            wanted = self.requested.split("+")
            missing = [lang for lang in wanted if lang not in installed]
            if missing:
                packages = " ".join(f"tesseract-ocr-{lang.replace('_', '-').lower()}" for lang in missing)
                raise self.node._fail(
                    f"config.ocr_language: Tesseract has no data for {', '.join(missing)} in {tessdata} "
                    f"(installed: {', '.join(installed) or 'none'}); install it with apt-get install -y {packages}"
                )
        else:
            wanted = [lang for lang in DEFAULT_LANGUAGES if lang in installed] or installed[:1]
            if not wanted:
                raise self.node._fail(f"page {number} needs OCR, but {tessdata} holds no language data: {INSTALL_HINT}")
        self.language = "+".join(wanted)
        self.tessdata = tessdata

    def read(self, page: Any, number: int) -> Any:
        self._setup(number)
        dpi = self._dpi_for(page, number)
        try:
            textpage = page.get_textpage_ocr(language=self.language, dpi=dpi, full=True, tessdata=str(self.tessdata))
        except RuntimeError as exc:
            raise self.node._fail(f"OCR of page {number} failed ({exc}); check the Tesseract install: {INSTALL_HINT}") from None
        self.language_used = True
        return textpage

    def _dpi_for(self, page: Any, number: int) -> int:
        """`ocr_dpi`, or the highest resolution at which the page fits `ocr_max_pixels`."""
        width_in, height_in = page.rect.width / 72, page.rect.height / 72
        pixels = width_in * height_in * self.dpi * self.dpi
        if pixels <= self.max_pixels:
            return self.dpi
        dpi = int(self.dpi * math.sqrt(self.max_pixels / pixels))
        if dpi < MIN_OCR_DPI:
            raise self.node._fail(
                f"page {number} is {page.rect.width:g} x {page.rect.height:g} points: more than config.ocr_max_pixels "
                f"({self.max_pixels:,}) even at {MIN_OCR_DPI} dpi; raise config.ocr_max_pixels or set config.ocr: never")
        return dpi


# -- text clean-up -----------------------------------------------------------------------
def _join_lines(lines: Iterable[str]) -> str:
    out = ""
    for line in lines:
        line = line.strip()
        if not line:
            continue
        if out.endswith("-") and not out.endswith(" -") and line[:1].islower():
            out = out[:-1] + line  # a word hyphenated across lines
        elif out and _CJK_CHAR.match(out[-1]) and _CJK_CHAR.match(line[0]):
            out += line  # Chinese lines join without a space
        elif out:
            out += " " + line
        else:
            out = line
    return out


def _clean(raw: str, *, ocr: bool) -> str:
    text = _SPACES.sub(" ", _join_lines(raw.splitlines()))
    if ocr:  # Tesseract puts spaces between Chinese characters
        text = _CJK_GAP.sub("", text)
    return text.strip()


def _clean_page(raw: str) -> str:
    lines = [_SPACES.sub(" ", line).rstrip() for line in raw.splitlines()]
    return "\n".join(lines).strip()


def _merge_lines(blocks: list[tuple[Any, ...]]) -> list[tuple[tuple[float, float, float, float], str]]:
    """Group OCR lines (which come one block per line) into paragraphs by vertical gaps."""
    if not blocks:
        return []
    heights = [(b[3] - b[1]) / max(1, b[4].count("\n")) for b in blocks]
    line_height = median(heights) or 10.0
    merged: list[tuple[list[float], list[str]]] = []
    for b in blocks:
        if merged:
            bbox, texts = merged[-1]
            gap = b[1] - bbox[3]
            overlaps = b[0] < bbox[2] and b[2] > bbox[0]
            if -line_height / 2 < gap < 0.9 * line_height and overlaps:
                bbox[:] = [min(bbox[0], b[0]), min(bbox[1], b[1]), max(bbox[2], b[2]), max(bbox[3], b[3])]
                texts.append(b[4])
                continue
        merged.append(([b[0], b[1], b[2], b[3]], [b[4]]))
    return [((bbox[0], bbox[1], bbox[2], bbox[3]), "\n".join(texts)) for bbox, texts in merged]
