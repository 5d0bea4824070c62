"""The built-in tools: keyless, each a Python function whose type hints and docstring give
its schema (`jupyter_flow.tools.functions`).

| name | what it does |
| --- | --- |
| `time/current_time` | the time now in an IANA time zone, formatted with strftime |
| `web/page_text` | a web page as Markdown or plain text (bounded download) |
| `pdf/pages_to_png` | PDF pages rendered as PNG files (bounded pages and pixels) |
| `docx/from_markdown` | a Word document written from Markdown |
| `base64/encode`, `base64/decode` | the base64 codec (text, or a file) |
| `json/path` | the values a JSONPath query selects in a JSON value |

Their libraries (markdownify, python-docx, markdown-it-py, python-jsonpath, pymupdf) come
with the `tools` extra and are imported when a tool first runs.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import math
import re
from typing import Annotated, Any, Literal
from urllib.parse import urljoin
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field

from jupyter_flow.errors import MissingDependencyError
from jupyter_flow.http import DEFAULT_TIMEOUT_S
from jupyter_flow.http_errors import describe_error, transport_errors
from jupyter_flow.nodes.pdf import parse_page_ranges
from jupyter_flow.tools.base import ToolContext, ToolError, ToolFile, ToolResult
from jupyter_flow.tools.docx_writer import DOCX_MEDIA_TYPE, markdown_to_docx
from jupyter_flow.workers import within

__all__ = ["current_time", "decode", "encode", "from_markdown", "json_path", "page_text", "pages_to_png"]

#: bytes a web page may have at most (`max_bytes` cannot go past it)
MAX_PAGE_BYTES = 50_000_000
#: bytes of a file base64 encodes at most
MAX_ENCODE_BYTES = 50_000_000
#: characters of Markdown a Word document is written from at most
MAX_MARKDOWN_CHARS = 5_000_000
_HTML_TYPES = ("text/html", "application/xhtml+xml")
_TEXT_TYPES = ("text/", "application/json", "application/xml", "application/ld+json")
#: tags whose content is never page text
_NOT_TEXT = ("script", "style", "noscript", "template", "svg", "iframe", "head", "canvas", "object")
#: a strftime field with a width (`%1000000Y`): C libraries pad it to that width
_WIDTH = re.compile(r"%[-_0^#]*\d")


def current_time(timezone: str = "UTC", format: str = "%Y-%m-%d %H:%M:%S %Z") -> str:
    """The current date and time.

    Args:
        timezone: an IANA time zone such as Europe/Paris, America/New_York or UTC
        format: a strftime format, e.g. %Y-%m-%d %H:%M:%S %Z, or iso for ISO 8601
    """
    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ToolError(f"unknown time zone {timezone!r}: give an IANA name such as Europe/Paris or UTC", tool="time/current_time") from None
    now = dt.datetime.now(zone)
    if format.strip().lower() == "iso":
        return now.isoformat()
    if len(format) > 200 or _WIDTH.search(format):
        raise ToolError("the format may have up to 200 characters and no field widths (%10Y)", tool="time/current_time")
    return now.strftime(format)


async def page_text(
    url: str,
    ctx: ToolContext,
    format: Literal["markdown", "text"] = "markdown",
    max_bytes: Annotated[int, Field(ge=1, le=MAX_PAGE_BYTES)] = 5_000_000,
) -> str:
    """The text of a web page, as Markdown (headings, lists, links kept) or plain text.

    Args:
        url: the page's http:// or https:// address
        format: markdown or text
        max_bytes: the largest page read; a larger one is an error
    """
    name = "web/page_text"
    if not url.lower().startswith(("http://", "https://")):
        raise ToolError(f"{url!r} is not an http:// or https:// address", tool=name)
    client = await ctx.client()
    timeout = ctx.timeout_s or DEFAULT_TIMEOUT_S
    try:
        status, media, charset, data, final_url = await within(_download(client, url, max_bytes), timeout)
    except transport_errors() as exc:
        raise ToolError(describe_error(exc, url, timeout), tool=name, retryable=True) from None
    except _TooLarge:
        raise ToolError(f"{url} is larger than max_bytes={max_bytes:,}; raise max_bytes (up to {MAX_PAGE_BYTES:,})", tool=name) from None
    if status >= 400:
        raise ToolError(f"{url} answered HTTP {status}", tool=name, retryable=status >= 500 or status in (408, 429))
    if media in _HTML_TYPES or not media:
        return await ctx.run_blocking(_html_text, data, final_url, format)
    if media.startswith(_TEXT_TYPES):
        return data.decode(charset or "utf-8", errors="replace")
    raise ToolError(f"{url} is {media}, not a web page or text", tool=name)


class _TooLarge(Exception):
    pass


async def _download(client: Any, url: str, max_bytes: int) -> tuple[int, str, str | None, bytes, str]:
    """Status, media type, charset, body (at most `max_bytes`) and final address of a GET."""
    async with client.stream("GET", url, headers={"accept": "text/html,application/xhtml+xml,text/plain;q=0.9,*/*;q=0.5"}) as response:
        declared = int(response.headers.get("content-length") or 0)
        if declared > max_bytes:
            raise _TooLarge
        chunks: list[bytes] = []
        size = 0
        if response.status_code < 400:
            async for chunk in response.aiter_bytes():  # counted as decoded: a compressed bomb stops too
                size += len(chunk)
                if size > max_bytes:
                    raise _TooLarge
                chunks.append(chunk)
        media, _, params = response.headers.get("content-type", "").partition(";")
        charset = None
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key.lower() == "charset" and value:
                charset = value.strip('"')
        return response.status_code, media.strip().lower(), charset, b"".join(chunks), str(response.url)


def _html_text(data: bytes, url: str, format: str) -> str:
    try:
        from bs4 import BeautifulSoup
        from markdownify import MarkdownConverter
    except ImportError as exc:
        raise MissingDependencyError("markdownify", "tools", "web pages as text (web/page_text)") from exc
    soup = BeautifulSoup(data, "html.parser")
    for tag in soup(list(_NOT_TEXT)):
        tag.decompose()
    main = soup.find("main") or soup.find("article") or soup.body or soup
    if format == "text":
        text = main.get_text("\n", strip=True)
    else:
        for link in main.find_all("a", href=True):
            link["href"] = urljoin(url, str(link["href"]))
        text = MarkdownConverter(heading_style="ATX", bullets="-").convert_soup(main)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


async def pages_to_png(
    path: str,
    ctx: ToolContext,
    pages: str | None = None,
    dpi: Annotated[int, Field(ge=18, le=600)] = 144,
    max_pages: Annotated[int, Field(ge=1, le=500)] = 20,
    max_pixels: Annotated[int, Field(ge=10_000, le=100_000_000)] = 20_000_000,
) -> ToolResult:
    """PDF pages rendered as PNG images, one file per page.

    Args:
        path: the PDF file (relative paths are read beside the flow file first)
        pages: the pages to render, such as 1-3,5 (default: every page, up to max_pages)
        dpi: the resolution, from 18 to 600
        max_pages: the most pages rendered; asking for more is an error
        max_pixels: the most pixels of one image; a larger page is rendered at a lower dpi
    """
    return await ctx.run_blocking(_render, ctx.path(path), pages, dpi, max_pages, max_pixels)


def _render(path: Any, pages: str | None, dpi: int, max_pages: int, max_pixels: int) -> ToolResult:
    name = "pdf/pages_to_png"
    try:
        import pymupdf
    except ImportError as exc:
        raise MissingDependencyError("pymupdf", "tools", "PDF pages as images (pdf/pages_to_png)") from exc
    if not path.is_file():
        raise ToolError(f"no such file: {path}", tool=name)
    try:
        doc = pymupdf.open(path, filetype="pdf")
    except (pymupdf.FileDataError, RuntimeError) as exc:
        raise ToolError(f"{path} is not a readable PDF ({exc})", tool=name) from None
    with doc:
        if doc.needs_pass:
            raise ToolError(f"{path} is encrypted: it needs a password", tool=name)
        try:
            chosen = parse_page_ranges(pages, doc.page_count)
        except ValueError as exc:
            raise ToolError(f"pages: {exc}", tool=name) from None
        numbers = list(range(1, doc.page_count + 1)) if chosen is None else chosen
        if chosen is not None and len(numbers) > max_pages:
            raise ToolError(f"pages selects {len(numbers)} pages, more than max_pages={max_pages}", tool=name)
        numbers = numbers[:max_pages]
        files, dpis = [], []
        for number in numbers:
            page = doc[number - 1]
            area = page.rect.width * page.rect.height / (72 * 72)  # square inches
            used = min(dpi, int(math.sqrt(max_pixels / area))) if area else dpi
            if used < 1:
                raise ToolError(f"page {number} is too large to fit max_pixels={max_pixels:,}", tool=name)
            pix = page.get_pixmap(dpi=used)
            files.append(ToolFile(f"page-{number}.png", pix.tobytes("png"), "image/png"))
            dpis.append(used)
        return ToolResult({"pages": numbers, "page_count": doc.page_count, "dpi": dpis}, tuple(files))


def from_markdown(
    markdown: Annotated[str, Field(max_length=MAX_MARKDOWN_CHARS)],
    file_name: str = "document.docx",
    title: str | None = None,
) -> ToolFile:
    """A Word document (.docx) written from Markdown: headings, lists, tables, code, quotes.

    Args:
        markdown: the document's text in Markdown
        file_name: the name of the file made
        title: a title set above the text
    """
    if not file_name.lower().endswith(".docx"):
        file_name += ".docx"
    return ToolFile(file_name, markdown_to_docx(markdown, title=title), DOCX_MEDIA_TYPE)


def encode(ctx: ToolContext, text: str | None = None, path: str | None = None, url_safe: bool = False) -> str:
    """Base64 of a text (as UTF-8) or of a file's bytes.

    Args:
        text: the text to encode
        path: a file to encode instead (relative paths are read beside the flow file first)
        url_safe: use - and _ instead of + and /
    """
    if (text is None) == (path is None):
        raise ToolError("give `text` or `path`, one of them", tool="base64/encode")
    if path is not None:
        file = ctx.path(path)
        try:
            if file.stat().st_size > MAX_ENCODE_BYTES:
                raise ToolError(f"{file} is larger than {MAX_ENCODE_BYTES:,} bytes", tool="base64/encode")
            data = file.read_bytes()
        except OSError as exc:
            raise ToolError(f"cannot read {file}: {exc.strerror or exc}", tool="base64/encode") from None
    else:
        data = (text or "").encode("utf-8", errors="surrogatepass")
    return (base64.urlsafe_b64encode if url_safe else base64.b64encode)(data).decode("ascii")


def decode(data: str, output: Literal["text", "file"] = "text", file_name: str = "decoded.bin", url_safe: bool = False) -> str | ToolFile:
    """The bytes base64 text stands for, as UTF-8 text or as a file.

    Args:
        data: the base64 text (padding may be left out)
        output: text (the bytes must be UTF-8) or file
        file_name: the name of the file made when output is file
        url_safe: the text uses - and _ instead of + and /
    """
    cleaned = "".join(data.split())
    cleaned += "=" * (-len(cleaned) % 4)
    try:
        raw = (base64.urlsafe_b64decode if url_safe else base64.b64decode)(cleaned.encode("ascii"), **({} if url_safe else {"validate": True}))
    except (binascii.Error, ValueError, UnicodeEncodeError) as exc:
        raise ToolError(f"not base64 ({exc})", tool="base64/decode") from None
    if output == "file":
        return ToolFile(file_name, raw)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ToolError("the bytes are not UTF-8 text; ask for output: file", tool="base64/decode") from None


def json_path(data: Any, path: str, first: bool = False) -> Any:
    """The values a JSONPath query (RFC 9535) selects in a JSON value, as a list.

    Args:
        data: the JSON value to search; text is parsed as JSON first
        path: the query, such as $.items[*].name or $..price
        first: give the first value selected (null when none) instead of the list
    """
    try:
        import jsonpath
    except ImportError as exc:
        raise MissingDependencyError("python-jsonpath", "tools", "JSONPath queries (json/path)") from exc
    if isinstance(data, str):
        try:
            data = json.loads(data)
        except ValueError as exc:
            raise ToolError(f"data is text that is not JSON ({exc})", tool="json/path") from None
    try:
        found = jsonpath.findall(path, data)
    except jsonpath.JSONPathError as exc:
        raise ToolError(f"path {path!r}: {' '.join(str(exc).split())}", tool="json/path") from None
    if first:
        return found[0] if found else None
    return found

