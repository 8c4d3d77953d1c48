"""The Temporal Web UI, read by headless Chromium: a run tree's summary, details, turns,
the run list (each id names its agent), and no resume offered for a completed run.

Runs the same check as ``make screenshot`` (devtools.webui_check). CI installs Debian's
chromium first; without it this test fails, unless AGENTRUN_SKIP_BROWSER=1 says to skip.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agentrun._server import EmbeddedServer
from devtools.webui_check import (
    ChromiumMissing,
    chromium_binary,
    expected_texts,
    read_tree_pages,
    unwanted_texts,
)


@pytest.fixture
def chromium() -> Path:
    """Chromium, or a skip only when AGENTRUN_SKIP_BROWSER=1 asks for one."""
    if os.environ.get("AGENTRUN_SKIP_BROWSER") == "1":
        pytest.skip("AGENTRUN_SKIP_BROWSER=1: the Web UI is not checked in a browser")
    try:
        return chromium_binary()
    except ChromiumMissing as err:
        missing = str(err)
    pytest.fail(f"{missing} (or set AGENTRUN_SKIP_BROWSER=1 to skip this test)")


@pytest.mark.timeout(90)
async def test_web_ui_shows_run_summary_details_children_and_turns(
    chromium: Path, tmp_path: Path, owner: str
):
    screenshot = tmp_path / "tree.png"
    async with EmbeddedServer(db=tmp_path / "webui.db") as server:
        pages = await read_tree_pages(server, owner, screenshot)
    for name, (text, wanted) in expected_texts(pages).items():
        assert wanted in text, f"{name}: {wanted!r} not on the page: {text[:500]!r}"
    for name, (text, unwanted) in unwanted_texts(pages).items():
        assert unwanted not in text, f"{name}: {unwanted!r} on the page: {text[:500]!r}"
    assert screenshot.read_bytes().startswith(b"\x89PNG")
