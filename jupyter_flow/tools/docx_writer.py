"""Markdown to a Word document: markdown-it-py reads the Markdown (CommonMark with tables),
python-docx writes the document.

Headings, paragraphs, bold, italic, inline code, links (their text, the address after it
in brackets), bullet and numbered lists (three levels of indent), block quotes, code
blocks (monospace, lines kept), tables and rules become their Word counterparts; an
image becomes its alt text. Both libraries come with the `tools` extra.
"""

from __future__ import annotations

import io
from typing import Any

from jupyter_flow.errors import MissingDependencyError

__all__ = ["DOCX_MEDIA_TYPE", "markdown_to_docx"]

DOCX_MEDIA_TYPE = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
_MONOSPACE = "Courier New"


def markdown_to_docx(markdown: str, *, title: str | None = None) -> bytes:
    """The Word document (`.docx` bytes) for `markdown`, with `title` as its title."""
    try:
        import docx
        from markdown_it import MarkdownIt
    except ImportError as exc:
        raise MissingDependencyError("python-docx", "tools", "markdown to Word (docx/from_markdown)") from exc
    tokens = MarkdownIt("commonmark").enable("table").parse(markdown)
    document = docx.Document()
    if title:
        document.add_heading(title, 0)
    _Writer(document).write(tokens)
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


class _Writer:
    """Walks markdown-it's block tokens, adding paragraphs to the document."""

    def __init__(self, document: Any) -> None:
        self.document = document
        self.lists: list[str] = []  # "Bullet" or "Number", innermost last
        self.quote = 0
        self.heading: int | None = None
        self.table: list[list[Any]] | None = None  # rows of inline tokens
        self.pending_item = False

    def write(self, tokens: list[Any]) -> None:
        for token in tokens:
            kind = token.type
            if kind == "heading_open":
                self.heading = int(token.tag[1])
            elif kind == "heading_close":
                self.heading = None
            elif kind in ("bullet_list_open", "ordered_list_open"):
                self.lists.append("Bullet" if kind == "bullet_list_open" else "Number")
            elif kind in ("bullet_list_close", "ordered_list_close"):
                self.lists.pop()
            elif kind == "blockquote_open":
                self.quote += 1
            elif kind == "blockquote_close":
                self.quote -= 1
            elif kind == "table_open":
                self.table = []
            elif kind == "tr_open" and self.table is not None:
                self.table.append([])
            elif kind == "table_close":
                self._table()
            elif kind == "inline":
                if self.table is not None:
                    self.table[-1].append(token)
                else:
                    self._inline(self._paragraph(), token.children or [])
            elif kind in ("fence", "code_block"):
                self._code(token.content)
            elif kind == "hr":
                self.document.add_paragraph("\u2014" * 3)

    def _paragraph(self) -> Any:
        if self.heading is not None:
            return self.document.add_heading("", min(self.heading, 9))
        if self.lists:
            depth = len(self.lists)
            style = f"List {self.lists[-1]}" + (f" {min(depth, 3)}" if depth > 1 else "")
            return self.document.add_paragraph(style=style)
        if self.quote:
            return self.document.add_paragraph(style="Quote")
        return self.document.add_paragraph()

    def _inline(self, paragraph: Any, children: list[Any]) -> None:
        bold = italic = 0
        links: list[str] = []
        for child in children:
            kind = child.type
            if kind == "text":
                run = paragraph.add_run(child.content)
                run.bold, run.italic = bool(bold) or None, bool(italic) or None
            elif kind == "code_inline":
                paragraph.add_run(child.content).font.name = _MONOSPACE
            elif kind == "strong_open":
                bold += 1
            elif kind == "strong_close":
                bold -= 1
            elif kind == "em_open":
                italic += 1
            elif kind == "em_close":
                italic -= 1
            elif kind == "link_open":
                links.append(str(child.attrs.get("href", "")))
            elif kind == "link_close" and links:
                href = links.pop()
                if href:
                    paragraph.add_run(f" ({href})")
            elif kind == "softbreak":
                paragraph.add_run(" ")
            elif kind == "hardbreak":
                paragraph.add_run().add_break()
            elif kind == "image":
                paragraph.add_run(child.content or str(child.attrs.get("alt", "")))
            elif kind in ("html_inline",):
                paragraph.add_run(child.content)

    def _code(self, text: str) -> None:
        paragraph = self.document.add_paragraph()
        lines = text.rstrip("\n").split("\n")
        for i, line in enumerate(lines):
            run = paragraph.add_run(line)
            run.font.name = _MONOSPACE
            if i < len(lines) - 1:
                run.add_break()

    def _table(self) -> None:
        rows, self.table = self.table or [], None
        width = max((len(r) for r in rows), default=0)
        if not width:
            return
        table = self.document.add_table(rows=len(rows), cols=width)
        table.style = "Table Grid"
        for r, row in enumerate(rows):
            for c, cell in enumerate(row):
                paragraph = table.cell(r, c).paragraphs[0]
                self._inline(paragraph, cell.children or [])
                if r == 0:
                    for run in paragraph.runs:
                        run.bold = True
