"""The demo's tools: a search over the project's docs/ folder, and the example MCP server.

Both work offline. The MCP server ships in the repository (``examples/mcp_docs.py``);
the demo uses it when it runs from a checkout, and says so when it does not.
"""

from __future__ import annotations

import sys
from pathlib import Path

from agentrun._tools import MCPServer

MCP_EXAMPLE = Path("examples/mcp_docs.py")
MAX_HITS = 5


def search_docs(query: str) -> list[str]:
    """Lines of the project's documentation (docs/*.md) that mention ``query``.

    Args:
        query: The word or phrase to look for (case does not matter).
    """
    docs = Path("docs")
    if not docs.is_dir():
        return [f"no docs/ folder in {Path.cwd()}"]
    hits = []
    for path in sorted(docs.glob("*.md")):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if query.lower() in line.lower():
                hits.append(f"{path.name}:{number}: {line.strip()[:100]}")
    return hits[:MAX_HITS] or [f"nothing about {query!r} in docs/"]


def docs_server() -> MCPServer | None:
    """The example MCP server over stdio, when this is a checkout that has it."""
    if not MCP_EXAMPLE.is_file():
        return None
    return MCPServer(
        name="docs", command=sys.executable, args=(str(MCP_EXAMPLE.resolve()),), prefix="docs"
    )
