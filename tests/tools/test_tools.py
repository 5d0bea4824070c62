"""The tool registry and its tools against real inputs: a loopback web server, PDFs written
with pymupdf, Word files read back with python-docx, Python functions in modules written
here, a package that adds tools through an entry point, and a real MCP server."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import io
import json
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import docx
import pymupdf
import pytest
from servers import LoopbackServer, Reply

from jupyter_flow.tools import McpServer, Tool, ToolContext, ToolError, ToolFile, ToolRegistry, ToolResult

Serve = Callable[[dict[str, Any]], LoopbackServer]
MCP_DEMO = Path(__file__).with_name("mcp_demo.py")
BUILTINS = {"time/current_time", "web/page_text", "pdf/pages_to_png", "docx/from_markdown", "base64/encode", "base64/decode", "json/path"}


def call(registry: ToolRegistry, tool: str, ctx: ToolContext | None = None, /, **arguments: Any) -> ToolResult:
    return asyncio.run(registry.get(tool).call(arguments, ctx))


@pytest.fixture
def registry() -> ToolRegistry:
    return ToolRegistry(entry_points_group=None)


# -- the registry -----------------------------------------------------------------------
def test_every_builtin_is_listed_with_a_description_and_an_object_schema(registry: ToolRegistry) -> None:
    assert BUILTINS <= set(registry.names())
    for name in BUILTINS:
        spec = registry.get(name).spec()
        assert spec["name"] == name and spec["description"], name
        schema = spec["input_schema"]
        assert schema["type"] == "object" and schema["properties"], name
        # what a model reads to fill an argument: every argument says what it is
        for arg, prop in schema["properties"].items():
            assert prop.get("description"), f"{name}: argument {arg} has no description"
        assert "ctx" not in schema["properties"], name


def test_unknown_names_say_what_is_known(registry: ToolRegistry) -> None:
    assert "time/now" not in registry
    assert "time/current_time" in registry.check("time/now")  # type: ignore[operator]
    assert "python" in registry.check("weather/today")  # type: ignore[operator]
    assert "provider/tool" in registry.check("current_time")  # type: ignore[operator]
    with pytest.raises(KeyError, match="unknown tool"):
        registry.get("time/now")


# -- time -------------------------------------------------------------------------------
def test_current_time_in_a_time_zone(registry: ToolRegistry) -> None:
    before = dt.datetime.now(ZoneInfo("Asia/Tokyo"))
    text = call(registry, "time/current_time", timezone="Asia/Tokyo", format="%Y-%m-%d %z %Z").value
    after = dt.datetime.now(ZoneInfo("Asia/Tokyo"))
    assert text in {before.strftime("%Y-%m-%d +0900 JST"), after.strftime("%Y-%m-%d +0900 JST")}
    iso = dt.datetime.fromisoformat(call(registry, "time/current_time", timezone="America/New_York", format="iso").value)
    assert iso.utcoffset() in {dt.timedelta(hours=-5), dt.timedelta(hours=-4)}


def test_current_time_refuses_unknown_zones_and_padded_fields(registry: ToolRegistry) -> None:
    with pytest.raises(ToolError, match=r"tool 'time/current_time': unknown time zone 'Mars/Olympus'"):
        call(registry, "time/current_time", timezone="Mars/Olympus")
    # a field width makes the C library pad to it: a huge one would fill memory
    with pytest.raises(ToolError, match="field widths"):
        call(registry, "time/current_time", format="%100000000Y")


# -- web pages ---------------------------------------------------------------------------
PAGE = """<!DOCTYPE html><html><head><meta charset="iso-8859-1"><title>Caf\xe9 menu</title>
<style>body { color: red }</style><script>var tracking = "SCRIPT-TEXT";</script></head>
<body><nav>Home | About</nav><main><h1>Caf\xe9 du Nord</h1><p>Open <b>daily</b>, see <a href="/hours">hours</a>.</p>
<ul><li>Espresso</li><li>Cr\xe8me br\xfbl\xe9e</li></ul><script>alert("SCRIPT-TEXT")</script></main></body></html>"""


def test_a_web_page_as_markdown_and_as_text(serve: Serve, registry: ToolRegistry) -> None:
    server = serve({
        "/menu": lambda req: Reply(200, PAGE.encode("iso-8859-1"), content_type="text/html"),
        "/moved": lambda req: Reply(307, "", headers={"location": "/menu"}),
    })
    md = call(registry, "web/page_text", url=f"{server.url}/moved").value
    assert md.startswith("# Café du Nord")
    assert "Open **daily**" in md and f"[hours]({server.url}/hours)" in md and "- Crème brûlée" in md
    assert "SCRIPT-TEXT" not in md and "Home | About" not in md and "color: red" not in md
    text = call(registry, "web/page_text", url=f"{server.url}/menu", format="text").value
    assert text.splitlines()[0] == "Café du Nord" and "**" not in text and "Espresso" in text


def test_web_page_errors_name_the_tool_and_the_cause(serve: Serve, registry: ToolRegistry) -> None:
    big = b"<html><body>" + b"x" * 200_000 + b"</body></html>"
    server = serve({
        "/gone": lambda req: Reply(404, "nothing here", content_type="text/html"),
        "/big": lambda req: Reply(200, big, content_type="text/html"),
        "/pdf": lambda req: Reply(200, b"%PDF-1.7", content_type="application/pdf"),
    })
    with pytest.raises(ToolError, match=r"tool 'web/page_text': .*/gone answered HTTP 404"):
        call(registry, "web/page_text", url=f"{server.url}/gone")
    with pytest.raises(ToolError, match="larger than max_bytes=100,000"):
        call(registry, "web/page_text", url=f"{server.url}/big", max_bytes=100_000)
    with pytest.raises(ToolError, match="is application/pdf, not a web page"):
        call(registry, "web/page_text", url=f"{server.url}/pdf")
    with pytest.raises(ToolError, match="not an http:// or https:// address"):
        call(registry, "web/page_text", url="file:///etc/passwd")
    with pytest.raises(ToolError, match="argument 'max_bytes'"):
        call(registry, "web/page_text", url=f"{server.url}/big", max_bytes=0)


# -- PDF pages ---------------------------------------------------------------------------
def write_pdf(path: Path, sizes: list[tuple[float, float]]) -> Path:
    doc = pymupdf.open()
    for i, (w, h) in enumerate(sizes):
        page = doc.new_page(width=w, height=h)
        page.insert_text((20, 40), f"Page {i + 1}", fontsize=18)
    doc.save(path)
    return path


def test_pdf_pages_become_png_files(tmp_path: Path, registry: ToolRegistry) -> None:
    pdf = write_pdf(tmp_path / "three.pdf", [(595, 842)] * 3)
    result = call(registry, "pdf/pages_to_png", path=str(pdf), pages="2-3", dpi=72)
    assert result.value == {"pages": [2, 3], "page_count": 3, "dpi": [72, 72]}
    assert [f.name for f in result.files] == ["page-2.png", "page-3.png"]
    image = pymupdf.Pixmap(result.files[0].data)
    assert (image.width, image.height) == (595, 842) and result.files[0].media_type == "image/png"
    # relative paths are read beside the flow file
    ctx = ToolContext(base_dir=tmp_path)
    assert call(registry, "pdf/pages_to_png", ctx, path="three.pdf", dpi=36).value["pages"] == [1, 2, 3]


def test_pdf_pages_stay_within_their_bounds(tmp_path: Path, registry: ToolRegistry) -> None:
    pdf = write_pdf(tmp_path / "poster.pdf", [(72 * 40, 72 * 40), (100, 100), (100, 100)])
    result = call(registry, "pdf/pages_to_png", path=str(pdf), pages="1", dpi=300, max_pixels=1_000_000)
    image = pymupdf.Pixmap(result.files[0].data)
    assert image.width * image.height <= 1_000_000 and result.value["dpi"][0] < 300
    assert call(registry, "pdf/pages_to_png", path=str(pdf), max_pages=2, dpi=36).value["pages"] == [1, 2]
    with pytest.raises(ToolError, match="selects 3 pages, more than max_pages=2"):
        call(registry, "pdf/pages_to_png", path=str(pdf), pages="1-3", max_pages=2)
    with pytest.raises(ToolError, match="pages: "):
        call(registry, "pdf/pages_to_png", path=str(pdf), pages="7")
    (tmp_path / "not.pdf").write_text("hello")
    with pytest.raises(ToolError, match="not a readable PDF"):
        call(registry, "pdf/pages_to_png", path=str(tmp_path / "not.pdf"))
    with pytest.raises(ToolError, match="no such file"):
        call(registry, "pdf/pages_to_png", path=str(tmp_path / "missing.pdf"))


# -- Word --------------------------------------------------------------------------------
MARKDOWN = """# Quarterly report

Sales rose **12%** in *March*, see [the data](https://example.org/q1).

## Highlights

- New shop in Lyon
  - opened in May
- Online orders doubled

1. Hire
2. Grow

| Region | Sales |
| --- | --- |
| North | 120 |

> Best quarter yet.

```
total = 120
```
"""


def test_markdown_becomes_a_word_document(registry: ToolRegistry) -> None:
    result = call(registry, "docx/from_markdown", markdown=MARKDOWN, file_name="q1", title="Q1")
    (file,) = result.files
    assert file.name == "q1.docx" and file.media_type.endswith("wordprocessingml.document")
    document = docx.Document(io.BytesIO(file.data))
    paragraphs = [(p.style.name, p.text) for p in document.paragraphs]
    assert ("Title", "Q1") in paragraphs and ("Heading 1", "Quarterly report") in paragraphs and ("Heading 2", "Highlights") in paragraphs
    assert ("List Bullet", "New shop in Lyon") in paragraphs and ("List Bullet 2", "opened in May") in paragraphs
    assert ("List Number", "Hire") in paragraphs and ("Quote", "Best quarter yet.") in paragraphs
    sales = next(p for p in document.paragraphs if p.text.startswith("Sales rose"))
    assert sales.text == "Sales rose 12% in March, see the data (https://example.org/q1)."
    assert [r.text for r in sales.runs if r.bold] == ["12%"] and [r.text for r in sales.runs if r.italic] == ["March"]
    code = next(p for p in document.paragraphs if p.text == "total = 120")
    assert code.runs[0].font.name == "Courier New"
    table = document.tables[0]
    assert [[c.text for c in row.cells] for row in table.rows] == [["Region", "Sales"], ["North", "120"]]


# -- base64 and JSON path ---------------------------------------------------------------
def test_base64_both_ways(tmp_path: Path, registry: ToolRegistry) -> None:
    encoded = call(registry, "base64/encode", text="naïve ☕").value
    assert encoded == base64.b64encode("naïve ☕".encode()).decode()
    assert call(registry, "base64/decode", data=encoded).value == "naïve ☕"
    assert call(registry, "base64/decode", data=encoded.rstrip("=")).value == "naïve ☕"  # padding left out
    (tmp_path / "blob.bin").write_bytes(b"\xff\x00\xfe")
    from_file = call(registry, "base64/encode", ToolContext(base_dir=tmp_path), path="blob.bin", url_safe=True).value
    assert from_file == base64.urlsafe_b64encode(b"\xff\x00\xfe").decode()
    as_file = call(registry, "base64/decode", data=from_file, url_safe=True, output="file", file_name="blob.bin")
    assert as_file.files == (ToolFile("blob.bin", b"\xff\x00\xfe"),)
    with pytest.raises(ToolError, match="not UTF-8 text; ask for output: file"):
        call(registry, "base64/decode", data=from_file, url_safe=True)
    with pytest.raises(ToolError, match="tool 'base64/decode': not base64"):
        call(registry, "base64/decode", data="not base64!")
    with pytest.raises(ToolError, match="give `text` or `path`"):
        call(registry, "base64/encode")


def test_json_path_selects_values(registry: ToolRegistry) -> None:
    order = {"items": [{"name": "tea", "price": 3}, {"name": "cake", "price": 5}], "total": 8}
    assert call(registry, "json/path", data=order, path="$.items[*].name").value == ["tea", "cake"]
    assert call(registry, "json/path", data=json.dumps(order), path="$.items[?@.price > 4].name", first=True).value == "cake"
    assert call(registry, "json/path", data=order, path="$.missing", first=True).value is None
    with pytest.raises(ToolError, match=r"tool 'json/path': path '\$\.items\['"):
        call(registry, "json/path", data=order, path="$.items[")
    with pytest.raises(ToolError, match="text that is not JSON"):
        call(registry, "json/path", data="{oops", path="$")


# -- Python functions --------------------------------------------------------------------
TOOLS_MODULE = '''
from pathlib import Path
from typing import Literal

from jupyter_flow.tools import ToolFile

Path(__file__).with_name("imported.marker").write_text("imported")


def word_count(text: str, min_len: int = 1, unit: Literal["words", "chars"] = "words") -> dict:
    """Count the words of a text.

    Args:
        text: the text to count
        min_len: the shortest word counted
        unit: what to count
    """
    words = [w for w in text.split() if len(w) >= min_len]
    return {"count": len(words) if unit == "words" else sum(map(len, words))}


async def echo_file(name: str, content: str) -> ToolFile:
    """A text file with `content`.

    :param name: the file's name
    :param content: what it holds
    """
    return ToolFile(name, content.encode(), "text/plain")
'''


@pytest.fixture
def tools_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "my_tools.py").write_text(textwrap.dedent(TOOLS_MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "my_tools", raising=False)
    return tmp_path


def test_a_python_function_is_a_tool_with_a_schema(tools_module: Path, registry: ToolRegistry) -> None:
    assert registry.check("python/my_tools:word_count") is None
    assert "no 'nope'" in registry.check("python/my_tools:nope")  # type: ignore[operator]
    # checking a name runs none of the module's code
    assert not (tools_module / "imported.marker").exists()
    tool = registry.get("python/my_tools:word_count")
    assert (tools_module / "imported.marker").exists()
    assert tool.description == "Count the words of a text."
    assert tool.input_schema["required"] == ["text"]
    props = tool.input_schema["properties"]
    assert props["text"] == {"title": "Text", "type": "string", "description": "the text to count"}
    assert props["min_len"]["type"] == "integer" and props["min_len"]["default"] == 1
    assert props["unit"]["enum"] == ["words", "chars"]
    assert call(registry, "python/my_tools:word_count", text="a bb ccc", min_len="2").value == {"count": 2}
    with pytest.raises(ToolError, match=r"tool 'python/my_tools:word_count': argument 'text': Field required; argument 'colour': unknown argument"):
        call(registry, "python/my_tools:word_count", colour="red")
    made = call(registry, "python/my_tools:echo_file", name="a.txt", content="hi")
    assert made.files == (ToolFile("a.txt", b"hi", "text/plain"),)
    assert registry.get("python/my_tools:echo_file").input_schema["properties"]["content"]["description"] == "what it holds"


def test_functions_registered_by_name(registry: ToolRegistry) -> None:
    def area(width: float, height: float) -> float:
        """The area of a rectangle."""
        return width * height

    tool = registry.register_function(area, name="geometry/area")
    assert "geometry/area" in registry.names() and tool.description == "The area of a rectangle."
    assert call(registry, "geometry/area", width=2, height="1.5").value == 3.0
    with pytest.raises(ValueError, match="provider of its own"):
        registry.register_function(area, name="python/area")


ENTRY_POINT_MODULE = '''
from jupyter_flow.tools import Tool, ToolResult


async def _reverse(arguments, ctx):
    return ToolResult(arguments["text"][::-1])


def tools():
    return [Tool("acme/reverse", "The text backwards.", {"type": "object", "properties": {"text": {"type": "string"}}}, _reverse)]
'''


def test_a_package_adds_tools_through_an_entry_point(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "acme_tools.py").write_text(ENTRY_POINT_MODULE)
    info = tmp_path / "acme_tools-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-tools\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[jupyter_flow.tools]\nacme = acme_tools:tools\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = ToolRegistry()
    assert registry.check("acme/reverse") is None
    assert "acme/reverse" in registry.names()
    assert call(registry, "acme/reverse", text="abc").value == "cba"
    assert "known tools: acme/reverse" in registry.check("acme/other")  # type: ignore[operator]


# -- MCP servers -------------------------------------------------------------------------
def test_an_mcp_server_over_stdio_lists_and_runs_its_tools(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEMO_TOKEN", "t0ps3cret")
    registry = ToolRegistry(entry_points_group=None)
    registry.add_server("demo", {"command": [sys.executable, str(MCP_DEMO), "stdio"],
                                 "env": {"DEMO_KEY": "${DEMO_TOKEN}", "DEMO_EXPECTED": "t0ps3cret"}})
    assert "mcp/demo/add" in registry and "mcp/other/add" not in registry

    async def scenario() -> tuple[list[Tool], ToolResult, ToolResult]:
        tools = await registry.list_tools()
        add = next(t for t in tools if t.name == "mcp/demo/add")
        secret = next(t for t in tools if t.name == "mcp/demo/secret_ok")
        return tools, await add.call({"a": 2, "b": 40}), await secret.call({})

    tools, added, secret = asyncio.run(scenario())
    listed = {t.name: t for t in tools}
    assert BUILTINS <= set(listed)
    assert {"mcp/demo/add", "mcp/demo/slow", "mcp/demo/fail", "mcp/demo/dot"} <= set(listed)
    add = listed["mcp/demo/add"]
    assert add.description == "Add two integers."
    assert add.input_schema["properties"]["a"]["type"] == "integer" and add.input_schema["required"] == ["a", "b"]
    assert added.value == 42
    assert secret.value == "yes"  # the ${DEMO_TOKEN} in env reached the server's process


def test_mcp_server_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="`url`.*or its `command`"):
        McpServer.model_validate({})
    with pytest.raises(ValueError, match="`env` and `cwd` are for a server started with `command`"):
        McpServer.model_validate({"url": "http://127.0.0.1:1/mcp", "env": {"A": "b"}})
    assert McpServer.model_validate({"command": "my-server"}).command == ["my-server"]
