"""``make demo``: a scripted delegation tree on an embedded server, streamed live.

Everything runs in this process except the Temporal dev server: the server starts on
free ports with a fresh SQLite file, a worker serves a task queue of its own, and a
``scripted`` planner fans out to three background workers. One of them delegates
further, one sleeps until the planner stops it. The events of the whole tree are
printed as they happen, then the final tree with each run's status.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import JsonValue
from rich.console import Console
from rich.markup import escape
from rich.tree import Tree
from temporalio.client import Client
from temporalio.worker import Worker

from agentrun._agents import AgentRegistry, AgentSpec, default_registry
from agentrun._agents._model import ModelAgent
from agentrun._agents._registry_file import build_model
from agentrun._client import AgentRunClient, StreamedEvent
from agentrun._constants import QUERY_CHILDREN
from agentrun._demo_tools import MCP_EXAMPLE, docs_server, search_docs
from agentrun._models import AgentEvent, RunSummary
from agentrun._plugin import AgentRunPlugin
from agentrun._server import NAMESPACE, EmbeddedServer, temporal_binary
from agentrun._settings import AgentRunSettings, load_settings
from agentrun.cli._render import DETAIL_WIDTH, RUN_STYLES, STATUS_STYLE, event_detail

__all__ = ["DEMO_DIR", "RunNode", "ended_as_scripted", "main", "planner_script", "run_demo"]

DEMO_DIR = Path(".temporal")
PLANNER_INSTRUCTIONS = (
    "You are a planner. Split the task into three parts and give each to a 'writer' "
    "with agent_run, background=true. Stop one of them with agent_stop if it is not "
    "needed, read the others with agent_output once they are done, then answer in "
    "three sentences."
)
MODEL_TASK = "Explain why durable execution matters for AI agents: cost, safety, and users."
RUN_TIMEOUT = 60.0
EVENTS_DRAIN_TIMEOUT = 10.0

Script = dict[str, JsonValue]


def _script(*steps: JsonValue) -> Script:
    return {"steps": list(steps)}


def _tool(tool: str, **args: JsonValue) -> JsonValue:
    return {"tool": tool, "args": args}


def _background(prompt: Script) -> JsonValue:
    return {
        "tool": "agent_run",
        "args": {"agent_id": "scripted", "prompt": prompt, "background": True},
    }


def planner_script(with_mcp: bool = True) -> str:
    """The planner's JSON script: fan out, stop the slow worker, collect, answer.

    ``$1``..``$3`` are the run ids the first three tool steps (the fan-out) returned.
    The sources researcher uses real tools: a search of docs/ (a Python function) and,
    with ``with_mcp``, the example MCP server's ``read_doc``; each call an activity.
    """
    reading = [_tool("docs_read_doc", name="reliability")] if with_mcp else []
    sources = _script(
        {"say": "Collecting sources..."},
        _tool("search_docs", query="checkpoint"),
        *reading,
        {"say": "Sources: the design and reliability docs, on checkpoints."},
    )
    numbers = _script({"say": "Crunching the numbers..."}, {"sleep": 1}, {"say": "Growth: 12%."})
    analysis = _script(
        {"say": "Splitting the analysis; my helper takes the numbers."},
        {"tool": "agent_run", "args": {"agent_id": "scripted", "prompt": numbers}},
        {"say": "Analysis: the trend holds (growth 12%)."},
    )
    crawler = _script({"say": "Crawling the whole web..."}, {"sleep": 120}, {"say": "Done."})
    planner = _script(
        {"say": "Plan: sources, analysis and a crawl, in parallel."},
        _background(sources),
        _background(analysis),
        _background(crawler),
        {"sleep": 1.5},
        {"tool": "agent_stop", "args": {"run_id": "$3"}},
        {"sleep": 2},
        {"tool": "agent_run", "args": {"run_id": "$1"}},
        {"tool": "agent_output", "args": {"run_id": "$1"}},
        {"tool": "agent_output", "args": {"run_id": "$2"}},
        {"say": "Final answer: growth is 12% a year, per three papers; the crawl was cut short."},
    )
    return json.dumps(planner)


def demo_registry(model: str | None, base_url: str | None = None) -> AgentRegistry:
    """``scripted``, plus, with a model, a model-driven ``planner`` and ``writer``.

    Args:
        model: A pydantic-ai model string (``openai:gpt-4o-mini``), or None for the
            offline scripted demo (``AGENTRUN_DEMO_MODEL``).
        base_url: Points an ``openai:`` model at any OpenAI-compatible server
            (``AGENTRUN_DEMO_BASE_URL``).
    """
    builtins = default_registry()
    if not model:
        return builtins
    llm = build_model(model, base_url)
    scripted = builtins.get("scripted")
    assert scripted is not None
    return AgentRegistry(
        [
            scripted,
            AgentSpec(
                id="planner",
                runtime=ModelAgent(llm, PLANNER_INSTRUCTIONS),
                description="plans the work and delegates it",
                allowed_agents=("writer",),
                max_depth=1,
            ),
            AgentSpec(
                id="writer",
                runtime=ModelAgent(llm, "You write one short, precise paragraph."),
                description="writes one short paragraph on a topic",
                allowed_agents=(),
            ),
        ]
    )


@dataclass
class RunNode:
    """A run and the runs it delegated, as the ``summary`` and ``children`` queries say."""

    summary: RunSummary
    children: list[RunNode] = field(default_factory=list)


async def run_demo(
    console: Console, demo_dir: Path = DEMO_DIR, settings: AgentRunSettings | None = None
) -> bool:
    """Run the demo; True when the tree ended as scripted.

    Args:
        console: Where the live events and the tree are printed.
        demo_dir: Where the demo's SQLite file and server log go.
        settings: agentrun's settings (the demo model among them); from the
            environment when None.
    """
    settings = settings or load_settings()
    tag = f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:4]}"
    server = EmbeddedServer(db=demo_dir / f"demo-{tag}.db")
    async with server:
        console.print(
            f"Temporal dev server on [bold]{server.address}[/] while the demo runs, "
            f"Web UI {_ui(server)}",
            soft_wrap=True,
        )
        queue = f"demo-{tag}"
        model = settings.demo_model
        agents = demo_registry(model, settings.demo_base_url)
        mcp = docs_server()
        if mcp is None:
            console.print(f"[yellow]No {MCP_EXAMPLE} here: the demo runs without its MCP server[/]")
        plugin = AgentRunPlugin(
            settings, agents=agents, tools=[search_docs], mcp_servers=[mcp] if mcp else []
        )
        client = Client(server.client.service_client, namespace=NAMESPACE, plugins=[plugin])
        async with Worker(client, task_queue=queue):
            runs = AgentRunClient(client, queue)
            # The database is the demo's own, so short fixed names cannot collide.
            script = planner_script(with_mcp=mcp is not None)
            agent, prompt = ("planner", MODEL_TASK) if model else ("scripted", script)
            tree = await _run_tree(console, runs, "demo", "planner", agent, prompt)
        console.print(_render(tree))
        # A model plans its own tree; only the scripted one has a known shape.
        ok = tree.summary.status == "completed" if model else ended_as_scripted(tree)
    _print_where(console, server, tree.summary.run_id)
    if not ok:
        console.print(
            "[red]The tree did not end as scripted[/] (expected: planner completed, "
            "the crawl stopped, every other run completed)"
        )
    return ok


async def _run_tree(
    console: Console, runs: AgentRunClient, owner: str, run_id: str, agent: str, prompt: str
) -> RunNode:
    """Start the planner, print the tree's events until it ends; the final tree."""
    await runs.start(owner, agent, prompt, run_id=run_id, follow=True)
    console.rule(f"events of {run_id} and its descendants")
    printer = asyncio.create_task(_print_events(console, runs, owner, run_id))
    try:
        await runs.wait(owner, run_id, timeout=RUN_TIMEOUT)
    except TimeoutError:
        # Still show the tree: which run hangs is what the reader needs to know.
        console.print(f"[red]{run_id} was still running after {RUN_TIMEOUT:.0f}s[/]")
    else:
        await _drain(console, printer)
    finally:
        printer.cancel()
    console.rule("final tree")
    return await _tree(runs, owner, run_id)


async def _drain(console: Console, printer: asyncio.Task[None]) -> None:
    """Let the printer reach the end of every run's stream, for a bounded time."""
    done, _ = await asyncio.wait({printer}, timeout=EVENTS_DRAIN_TIMEOUT)
    if printer in done:
        printer.result()  # an error while following is the demo's error
    else:
        console.print("[yellow]Some event streams had not ended; not waiting longer[/]")


async def _print_events(console: Console, runs: AgentRunClient, owner: str, run_id: str) -> None:
    styles: dict[str, str] = {}
    async for item in runs.events(owner, run_id, descendants=True):
        line = _event_line(item, styles)
        if line is not None:
            # One event, one line, however narrow the terminal.
            console.print(line, highlight=False, no_wrap=True, overflow="ellipsis")


def _event_line(item: StreamedEvent, styles: dict[str, str]) -> str | None:
    event = item.event
    detail = _event_detail(event)
    if detail is None:
        return None
    style = styles.setdefault(event.run_id, RUN_STYLES[len(styles) % len(RUN_STYLES)])
    return f"[{style}]{escape(event.run_id):<12}[/] {event.kind:<14} {escape(_clip(detail))}"


def _event_detail(event: AgentEvent) -> str | None:
    """What one event says; a tool-calling message is shown by its tool_call events."""
    if event.kind == "message" and event.message is not None and not event.message.content:
        return None
    return event_detail(event)


def _clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= DETAIL_WIDTH else text[: DETAIL_WIDTH - 3] + "..."


async def _tree(runs: AgentRunClient, owner: str, run_id: str) -> RunNode:
    """The run and its descendants, from the ``summary`` and ``children`` queries."""
    summary = await runs.summary(owner, run_id)
    if summary is None:
        raise RuntimeError(f"Run {run_id} vanished from the server")
    handle = runs.temporal.get_workflow_handle(run_id)
    children = await handle.query(QUERY_CHILDREN, result_type=list[RunSummary])
    nodes = await asyncio.gather(*(_tree(runs, owner, c.run_id) for c in children))
    return RunNode(summary, list(nodes))


def _render(node: RunNode, parent: Tree | None = None) -> Tree:
    summary = node.summary
    style = STATUS_STYLE[summary.status]
    label = (
        f"[bold]{escape(summary.run_id)}[/] [{style}]{summary.status}[/]"
        f"  {escape(_clip(summary.assistant or ''))}"
    )
    branch = parent.add(label) if parent else Tree(label)
    for child in node.children:
        _render(child, branch)
    return branch


def ended_as_scripted(tree: RunNode) -> bool:
    """Planner completed; of its three workers one stopped; everything else completed."""
    workers = sorted(child.summary.status for child in tree.children)
    grandchildren = [g for child in tree.children for g in child.children]
    return (
        tree.summary.status == "completed"
        and workers == ["completed", "completed", "stopped"]
        and len(grandchildren) == 1
        and all(node.summary.status == "completed" for node in grandchildren)
    )


def _ui(server: EmbeddedServer) -> str:
    return f"{server.ui_url}/namespaces/default/workflows"


def _print_where(console: Console, server: EmbeddedServer, run_id: str) -> None:
    """How to see the tree again: the demo's server has stopped, and its Web UI with it.

    Each command is one line however narrow the terminal (soft wrap), so it copies whole.
    """
    binary = temporal_binary()
    shown = "temporal" if shutil.which("temporal") == str(binary) else _relative(binary)
    console.print(
        "The demo's server has stopped: its Web UI link works only while a server runs. "
        "To browse this tree again, start one that stays (Ctrl-C stops it):",
        highlight=False,
    )
    commands = [
        f"agentrun server --db {server.db} --port {server.port} --ui-port {server.ui_port}",
        f"{shown} workflow list --address {server.address} --query \"RootWorkflowId='{run_id}'\"",
    ]
    console.print(f"  {commands[0]}", highlight=False, markup=False, soft_wrap=True)
    console.print(f"then open {_ui(server)} or list the tree:", highlight=False, soft_wrap=True)
    console.print(f"  {commands[1]}", highlight=False, markup=False, soft_wrap=True)


def _relative(path: Path) -> str:
    """``path`` relative to the working directory when it is below it (shorter to copy)."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def main(demo_dir: Path = DEMO_DIR, settings: AgentRunSettings | None = None) -> int:
    """Run the demo; the process exit code (0 when the tree ended as scripted)."""
    console = Console()
    ok = asyncio.run(run_demo(console, demo_dir, settings))
    return 0 if ok else 1
