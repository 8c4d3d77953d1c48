"""Printing a run tree as it happens: its events line by line, and its tree redrawn.

In a terminal the tree stays under the events and is redrawn as runs start and end;
elsewhere (a pipe, a file, a test) the events are printed and then the final tree,
and ``--json`` prints only the events, one JSON object per line.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping

from rich.console import Console
from rich.live import Live
from temporalio.client import WorkflowUpdateRPCTimeoutOrCancelledError
from temporalio.service import RPCError

from agentrun._client import AgentRunClient, StreamedEvent
from agentrun.cli import _render as render
from agentrun.cli._common import console, errors, now, print_json_line
from agentrun.cli._text import TextLines
from agentrun.cli._views import RunNode, run_tree
from agentrun.cli._watch import RetryPolicy, StreamLost, follow_tree, is_transient

__all__ = ["print_events", "redraw_tree", "report_lost"]

TREE_REFRESH_SECONDS = 1.0
# Events after which the tree has changed shape or status.
_TREE_EVENTS = ("child_started", "child_finished", "finish")


def report_lost(lost: StreamLost) -> None:
    """Tell the user (on stderr, off any ``--json`` output) that a stream is resumed:
    once, not at every attempt while it stays broken."""
    if lost.attempt > 1:
        return
    errors.print(
        f"watch: lost the stream of {lost.run_id} ({type(lost.error).__name__}: "
        f"{lost.error}); following it again from offset {lost.next_offset}",
        highlight=False,
        markup=False,
    )


async def print_events(
    runs: AgentRunClient,
    owner: str,
    run_id: str,
    from_offset: int,
    json_output: bool,
    with_tree: bool = False,
    retry_for: float = 300.0,
    paused: Callable[[], bool] = lambda: False,
) -> None:
    """Print the events of the run and its descendants until every stream has ended.

    Args:
        runs: The owner's client.
        owner: The owner thread.
        run_id: The run at the top.
        from_offset: Where the run's own stream starts.
        json_output: One JSON object per event, nothing else.
        with_tree: Show the tree too: live in a terminal, else once at the end.
        retry_for: Seconds a broken stream is reconnected before the watch fails.
        paused: While true, a broken stream is retried quietly and for as long as it
            takes (no worker polls, and the user was told).
    """
    policy = RetryPolicy(give_up_after=retry_for, on_lost=report_lost, paused=paused)
    events = follow_tree(runs, owner, run_id, from_offset, policy)
    if json_output:
        async for item in events:
            print_json_line(render.event_json(item))
        return
    if with_tree and console.is_terminal:
        await _print_under_live_tree(runs, owner, run_id, events)
        return
    text = TextLines()
    async for item in events:
        _print_lines(console, text.lines(item))
    _print_lines(console, text.flush())
    if with_tree:
        console.print(render.tree_view(await run_tree(runs, owner, run_id), now()))


async def _print_under_live_tree(
    runs: AgentRunClient, owner: str, run_id: str, events: AsyncIterator[StreamedEvent]
) -> None:
    text = TextLines()
    with Live(console=console, refresh_per_second=4) as live:
        changed = asyncio.Event()
        redraw = asyncio.create_task(redraw_tree(live, runs, owner, run_id, changed, text.latest))
        try:
            async for item in events:
                _print_lines(live.console, text.lines(item))
                if item.event.kind in _TREE_EVENTS:
                    changed.set()
        finally:
            redraw.cancel()
        _print_lines(live.console, text.flush())
        live.update(render.tree_view(await run_tree(runs, owner, run_id), now()))


def _print_lines(target: Console, lines: list[str]) -> None:
    for line in lines:
        # One event, one line, however narrow the terminal.
        target.print(line, highlight=False, no_wrap=True, overflow="ellipsis")


async def redraw_tree(
    live: Live,
    runs: AgentRunClient,
    owner: str,
    run_id: str,
    changed: asyncio.Event | None = None,
    latest: Mapping[str, str] | None = None,
) -> RunNode:
    """Redraw the tree every second, and at once when ``changed`` is set; a running run
    shows the text ``latest`` has for it (what it is streaming).

    Without ``changed`` it returns the tree once nothing in it runs; with it, it
    redraws until cancelled. A server or worker that does not answer for a while
    leaves the last drawing in place.
    """
    while True:
        try:
            tree = await run_tree(runs, owner, run_id)
        except (RPCError, WorkflowUpdateRPCTimeoutOrCancelledError) as err:
            if not is_transient(err):
                raise
        else:
            live.update(render.tree_view(tree, now(), latest=latest))
            if changed is None and all(n.summary.status != "running" for n in tree.walk()):
                return tree
        if changed is None:
            await asyncio.sleep(TREE_REFRESH_SECONDS)
            continue
        changed.clear()
        await _first_of(changed.wait(), asyncio.sleep(TREE_REFRESH_SECONDS))


async def _first_of(*waits: Awaitable[object]) -> None:
    tasks = [asyncio.ensure_future(wait) for wait in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
