"""An MCP server over this repository's docs/ folder, for the demo and the tests.

Run over stdio (how an agents.toml ``command`` starts it)::

    python examples/mcp_docs.py

or over streamable HTTP on a port of your choice (URL ``http://127.0.0.1:PORT/mcp``)::

    python examples/mcp_docs.py --http --port 8765
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

DOCS = Path(__file__).resolve().parent.parent / "docs"

server = MCPServer("agentrun-docs", instructions="Reads agentrun's documentation.")


@server.tool()
def list_docs() -> list[str]:
    """The names of the documents there are."""
    return sorted(path.stem for path in DOCS.glob("*.md"))


@server.tool()
def read_doc(name: str) -> str:
    """The text of one document.

    Args:
        name: Its name, as ``list_docs`` gives it (e.g. ``delegation``).
    """
    path = DOCS / f"{name}.md"
    if path.parent != DOCS or not path.is_file():
        raise ToolError(f"No document {name!r}; there are: {', '.join(list_docs())}")
    return path.read_text(encoding="utf-8")


@server.tool()
def add(a: int, b: int) -> int:
    """Add two whole numbers."""
    return a + b


def main() -> None:
    """Serve over stdio, or over streamable HTTP with ``--http --port N``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--http", action="store_true", help="serve streamable HTTP")
    parser.add_argument("--port", type=int, default=8765)
    arguments = parser.parse_args()
    if arguments.http:
        server.run(transport="streamable-http", host="127.0.0.1", port=arguments.port)
    else:
        server.run()


if __name__ == "__main__":
    main()
