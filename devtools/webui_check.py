"""``make screenshot``: what the Temporal Web UI shows of a run tree, read by a browser.

An embedded dev server and an in-process worker run the demo's scripted planner (three
background children, one of them stopped, one delegating further). Debian's headless
Chromium then loads the Web UI's pages of that tree, the page text is checked for the
run's summary, details, children and turn names, and the relationships page is saved
as ``docs/webui-tree.png`` for the README. ``tests/test_webui.py`` runs the same check.

The Web UI is a single-page app; ``--dump-dom`` with a virtual time budget lets it fetch
and render before the DOM is printed, so no DevTools client library is needed.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import uuid
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

from temporalio.client import Client
from temporalio.worker import Worker

from agentrun import AgentRunClient, AgentRunPlugin
from agentrun._demo import planner_script
from agentrun._demo_tools import search_docs
from agentrun._server import NAMESPACE, EmbeddedServer

__all__ = [
    "CHROMIUM_ENV",
    "SCREENSHOT",
    "ChromiumMissing",
    "WebUIPages",
    "chromium_binary",
    "expected_texts",
    "main",
    "read_tree_pages",
]

CHROMIUM_ENV = "AGENTRUN_CHROMIUM"
DEBIAN_CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOT = Path("docs") / "webui-tree.png"
WINDOW = "1400,1000"
# Virtual milliseconds the page may spend fetching and rendering before it is read.
RENDER_BUDGET_MS = 15000
# A page load by one Chromium: seconds alone, but beyond 60 s twice in the suite on a
# loaded 2-core machine (two test workers, other engineers' runs).
BROWSER_TIMEOUT = 120.0
TREE_TIMEOUT = 60.0
ROOT_RUN = "planner"
# Without the background-networking flags Chromium calls home, which a closed network
# refuses; the fresh profile keeps runs from sharing state.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)


class ChromiumMissing(RuntimeError):
    """No Chromium to drive; the message says how to install it."""


def chromium_binary() -> Path:
    """``AGENTRUN_CHROMIUM``, else Debian's ``/usr/bin/chromium``.

    Raises:
        ChromiumMissing: when neither is an executable file.
    """
    path = Path(os.environ.get(CHROMIUM_ENV) or DEBIAN_CHROMIUM)
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise ChromiumMissing(
            f"No Chromium at {path}: install Debian's package "
            "(sudo apt-get install chromium) or set AGENTRUN_CHROMIUM to a Chromium binary"
        )
    return path


_PLAIN_QUOTES = str.maketrans({"“": '"', "”": '"', "‘": "'", "’": "'"})


class _TextParser(HTMLParser):
    """The visible text of a page, and the ``src`` of its iframes."""

    def __init__(self) -> None:
        super().__init__()
        self.words: list[str] = []
        self.frames: list[str] = []
        self._hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style", "select"):
            self._hidden += 1
        if tag == "iframe":
            self.frames += [value for name, value in attrs if name == "src" and value]

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style", "select"):
            self._hidden = max(0, self._hidden - 1)

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            # Markdown fields render with typographic quotes; compare with plain ones.
            self.words += data.translate(_PLAIN_QUOTES).split()


@dataclass
class _Page:
    text: str
    frames: list[str]


async def _browse(url: str, screenshot: Path | None = None) -> _Page:
    """Load ``url`` in a fresh headless Chromium; its text (or save a screenshot)."""
    with tempfile.TemporaryDirectory(prefix="agentrun-chromium-") as profile:
        output = ["--dump-dom"]
        if screenshot is not None:
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            output = [f"--screenshot={screenshot.resolve()}"]
        command = [
            str(chromium_binary()),
            *CHROMIUM_FLAGS,
            f"--user-data-dir={profile}",
            f"--window-size={WINDOW}",
            f"--virtual-time-budget={RENDER_BUDGET_MS}",
            *output,
            url,
        ]
        done = await asyncio.to_thread(
            subprocess.run, command, capture_output=True, text=True, timeout=BROWSER_TIMEOUT
        )
    if done.returncode != 0:
        raise RuntimeError(f"Chromium exited {done.returncode} on {url}: {done.stderr[-2000:]}")
    parser = _TextParser()
    parser.feed(done.stdout)
    return _Page(" ".join(parser.words), parser.frames)


@dataclass
class WebUIPages:
    """The text of the Web UI pages of one run tree, as Chromium rendered them."""

    owner: str
    root_run: str
    summary: str
    details: str
    current_details: str
    relationships: str
    child_history: str
    run_list: str


async def read_tree_pages(
    server: EmbeddedServer, owner: str, screenshot: Path | None = None
) -> WebUIPages:
    """Run the demo planner's tree on ``server``; the Web UI's pages of it.

    Args:
        server: A running embedded server (its Web UI is what is read).
        owner: The owner thread of the tree.
        screenshot: Where to save a PNG of the root's relationships page, if anywhere.
    """
    queue = f"webui-{uuid.uuid4().hex[:8]}"
    # The worker stays up while the pages load: the UI reads current details through
    # a query, which waits for a worker (about 30 s) when none polls.
    # The demo's docs search, as the demo has it (its MCP server is left out here).
    plugin = AgentRunPlugin(tools=[search_docs])
    client = Client(server.client.service_client, namespace=NAMESPACE, plugins=[plugin])
    async with Worker(client, task_queue=queue):
        runs = AgentRunClient(client, queue)
        await runs.start(owner, "scripted", planner_script(with_mcp=False), run_id=ROOT_RUN)
        await runs.wait(owner, ROOT_RUN, timeout=TREE_TIMEOUT)
        root = await _run_url(server, ROOT_RUN)
        child = await _run_url(server, f"{ROOT_RUN}.1-scripted")
        metadata, relationships, history, listed, *_ = await asyncio.gather(
            _browse(f"{root}/user-metadata"),
            _browse(f"{root}/relationships"),
            _browse(f"{child}/history"),
            _browse(f"{server.ui_url}/namespaces/default/workflows"),
            *([_browse(f"{root}/relationships", screenshot)] if screenshot else []),
        )
    # The UI renders each markdown field in an iframe of its own /render page.
    frames = await asyncio.gather(*(_browse(server.ui_url + src) for src in metadata.frames))
    if len(frames) != 3:
        raise RuntimeError(
            f"Expected 3 rendered fields (summary, details, current details) on "
            f"{root}/user-metadata, found {len(frames)}: {metadata.text[:500]}"
        )
    summary, details, current = (frame.text for frame in frames)
    return WebUIPages(
        owner, ROOT_RUN, summary, details, current, relationships.text, history.text, listed.text
    )


async def _run_url(server: EmbeddedServer, run_id: str) -> str:
    """The Web UI's page of the run's latest execution (tabs hang below it)."""
    described = await server.client.get_workflow_handle(run_id).describe()
    return f"{server.ui_url}/namespaces/default/workflows/{run_id}/{described.run_id}"


def expected_texts(pages: WebUIPages) -> dict[str, tuple[str, str]]:
    """What each page must show: name → (the page's text, the text it must contain)."""
    root = pages.root_run
    return {
        "summary: agent and prompt": (pages.summary, 'scripted: {"steps": [{"say": "Plan:'),
        "details: owner thread": (pages.details, f"owner thread {pages.owner}"),
        "details: root run": (pages.details, "parent run none (root run)"),
        "details: how to stop": (pages.details, f"temporal workflow cancel --workflow-id {root}"),
        "current details: stopped child": (pages.current_details, f"{root}.3-scripted (stopped)"),
        "relationships: child run": (pages.relationships, f"{root}.1-scripted"),
        "relationships: stopped child": (pages.relationships, "Canceled AgentRun"),
        "child history: turn summary": (pages.child_history, "scripted turn 1"),
        "run list: a child's id names its agent": (pages.run_list, f"{root}.2-scripted.1-scripted"),
    }


def unwanted_texts(pages: WebUIPages) -> dict[str, tuple[str, str]]:
    """What a page must not show: name → (the page's text, the text it must not contain)."""
    shown = pages.details + pages.current_details
    return {"a completed run offers no resume": (shown, "agentrun resume")}


def missing_texts(pages: WebUIPages) -> list[str]:
    """The expectations the pages do not meet, each with the text that was looked for."""
    missing = [
        f"{name}: {wanted!r} not in {text[:300]!r}"
        for name, (text, wanted) in expected_texts(pages).items()
        if wanted not in text
    ]
    return missing + [
        f"{name}: {unwanted!r} in {text[:300]!r}"
        for name, (text, unwanted) in unwanted_texts(pages).items()
        if unwanted in text
    ]


async def _check(screenshot: Path) -> list[str]:
    with tempfile.TemporaryDirectory(prefix="agentrun-webui-") as workdir:
        async with EmbeddedServer(db=Path(workdir) / "webui.db") as server:
            pages = await read_tree_pages(server, "webui-demo", screenshot)
    return missing_texts(pages)


def main(argv: list[str] | None = None) -> int:
    """Check the Web UI's pages of a run tree and save the screenshot; the exit code."""
    args = sys.argv[1:] if argv is None else argv
    screenshot = Path(args[0]) if args else SCREENSHOT
    try:
        chromium_binary()
        missing = asyncio.run(_check(screenshot))
    except ChromiumMissing as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    for line in missing:
        print(f"missing from the Web UI: {line}", file=sys.stderr)
    print(f"Web UI screenshot of the run tree: {screenshot}")
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
