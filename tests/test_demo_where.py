"""What the demo prints at its end: whole commands at 80 columns, and that its Web UI
link needs a server that runs."""

from __future__ import annotations

import io
from pathlib import Path

from rich.console import Console

from agentrun._demo import _print_where
from agentrun._server import EmbeddedServer


def test_the_demos_closing_commands_do_not_wrap_at_80_columns(tmp_path: Path):
    deep = tmp_path / "a-directory-with-a-rather-long-name" / "and-another-one-below-it"
    server = EmbeddedServer(deep / "demo-20261130-041500-abcd.db")  # never started
    output = io.StringIO()
    _print_where(Console(file=output, width=80), server, "planner")
    lines = output.getvalue().splitlines()
    command = f"  agentrun server --db {server.db} --port {server.port} --ui-port {server.ui_port}"
    assert command in lines, lines
    listing = [line for line in lines if " workflow list " in line]
    assert len(listing) == 1 and listing[0].endswith("--query \"RootWorkflowId='planner'\"")
    said = " ".join(output.getvalue().split())
    assert "its Web UI link works only while a server runs" in said
    assert "start one that stays" in said
