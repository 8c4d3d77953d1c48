"""``python -m bench.tool_wrapper``: what agentrun's tool activity costs around a function.

No server: ``ActivityEnvironment`` runs the activity in this process, so the figure is
the wrapper's own CPU time (input to ``RunContext``, listing, validation, heartbeats,
progress stream, outcome), told apart from a server's and a busy machine's noise by
many calls. Three ways to call the scenario's ``lookup``: directly, as a bare activity
(the environment's own cost) and as agentrun's tool activity. Each is timed in rounds
of ``BENCH_WRAPPER_CALLS`` calls (default 3,000), alternating; the median round is
shown. Scenario 8 (``bench/scenarios/peer.py``) measures the same call on a server.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from collections.abc import Awaitable, Callable

from temporalio.client import Client
from temporalio.testing import ActivityEnvironment

from agentrun._models import ToolCallInput
from agentrun._tools import as_tool
from agentrun.activities.tools import function_tool_activity
from bench.scenarios.peer import lookup

CALLS = int(os.environ.get("BENCH_WRAPPER_CALLS", "3000"))
ROUNDS = 5


async def _microseconds(call: Callable[[], Awaitable[object]], count: int) -> float:
    start = time.perf_counter()
    for _ in range(count):
        await call()
    return (time.perf_counter() - start) / count * 1e6


async def main() -> None:
    """Print the median microseconds per call of each way, and the wrapper's share."""
    # Never connected: a call that reports no progress does not reach the server.
    client = await Client.connect("localhost:7233", lazy=True)
    environment = ActivityEnvironment(client=client)
    tool_activity = function_tool_activity(as_tool(lookup))
    call = ToolCallInput(
        run_id="r",
        owner_thread_id="o",
        agent_id="scripted",
        call_id="c",
        tool="lookup",
        args={"key": "k"},
    )
    ways: dict[str, Callable[[], Awaitable[object]]] = {
        "function": lambda: lookup("k"),
        "bare activity": lambda: environment.run(lookup, "k"),
        "agentrun tool activity": lambda: environment.run(tool_activity, call),
    }
    rounds: dict[str, list[float]] = {name: [] for name in ways}
    for way in ways.values():
        await _microseconds(way, 200)  # warm-up: first listing, imports, caches
    for _ in range(ROUNDS):
        for name, way in ways.items():
            rounds[name].append(await _microseconds(way, CALLS))
    medians = {name: statistics.median(values) for name, values in rounds.items()}
    for name, value in medians.items():
        print(f"{name:24s} {value:8.1f} us per call (median of {ROUNDS} rounds of {CALLS})")
    wrapper = medians["agentrun tool activity"] - medians["bare activity"]
    print(f"{'wrapper alone':24s} {wrapper:8.1f} us per call")


if __name__ == "__main__":
    asyncio.run(main())
