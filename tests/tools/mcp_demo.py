"""An MCP server for the tool tests, made with the official SDK:
`python mcp_demo.py stdio`, or `python mcp_demo.py http PORT` (streamable HTTP at /mcp).

`secret_ok` answers "yes" when the secret reached it: the `authorization` header over
HTTP, the `DEMO_KEY` variable over stdio, compared with `DEMO_EXPECTED`."""

from __future__ import annotations

import asyncio
import os
import sys
import zlib

from mcp.server.mcpserver import Context, Image, MCPServer
from mcp.server.mcpserver.exceptions import ToolError

app = MCPServer("demo")


@app.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@app.tool()
def shout(text: str) -> str:
    """The text in capitals."""
    return text.upper()


@app.tool()
async def slow(seconds: float) -> str:
    """Answer "done" after `seconds`."""
    await asyncio.sleep(seconds)
    return "done"


@app.tool()
def fail(reason: str) -> str:
    """Always fails, saying `reason`."""
    raise ToolError(f"refused: {reason}")


@app.tool()
def secret_ok(ctx: Context) -> str:
    """Whether the secret arrived."""
    expected = os.environ.get("DEMO_EXPECTED", "")
    headers = ctx.headers or {}
    got = headers.get("authorization", "").removeprefix("Bearer ") if headers else os.environ.get("DEMO_KEY", "")
    return "yes" if expected and got == expected else "no"


@app.tool()
def dot() -> Image:
    """A one-pixel red PNG."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", (1).to_bytes(4, "big") * 2 + bytes([8, 2, 0, 0, 0]))
    png += chunk(b"IDAT", zlib.compress(b"\x00\xff\x00\x00")) + chunk(b"IEND", b"")
    return Image(data=png, format="png")


if __name__ == "__main__":
    if sys.argv[1] == "http":
        app.run(transport="streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
    else:
        app.run()
