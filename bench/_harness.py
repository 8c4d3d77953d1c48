"""What every scenario shares: a fresh server, a worker, percentiles, a result row."""

from __future__ import annotations

import contextlib
import os
import statistics
import tempfile
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from temporalio import activity
from temporalio.client import Client
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
    Worker,
)
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from agentrun import AgentRegistry, AgentRunPlugin
from agentrun._server import SQLITE_PRAGMAS, EmbeddedServer

QUICK = os.environ.get("BENCH_QUICK", "") not in ("", "0")


@dataclass
class Figure:
    """One measured figure: a name, a value with its unit, and its target if it has one."""

    scenario: str
    name: str
    value: float
    unit: str
    target: str = ""
    met: bool | None = None
    note: str = ""


@dataclass
class Report:
    """All figures of one run, plus raw samples for the plots."""

    figures: list[Figure] = field(default_factory=list)
    samples: dict[str, list[float]] = field(default_factory=dict)

    def add(self, figure: Figure) -> Figure:
        self.figures.append(figure)
        print(f"  {figure.scenario:<12} {figure.name:<44} {figure.value:>10.3f} {figure.unit}")
        return figure


class TunedServer(EmbeddedServer):
    """The embedded server with another SQLite ``synchronous`` pragma (for the tuning run).

    agentrun._server is left as it is; only the command line differs.
    """

    def __init__(self, db: Path, synchronous: str) -> None:
        super().__init__(db)
        self._synchronous = synchronous

    def command(self) -> list[str]:
        wanted = f"synchronous={self._synchronous}"
        return [
            wanted if arg in SQLITE_PRAGMAS and arg.startswith("synchronous=") else arg
            for arg in super().command()
        ]


@contextlib.asynccontextmanager
async def fresh_server(synchronous: str = "normal") -> AsyncIterator[EmbeddedServer]:
    """A new embedded dev server on a temporary SQLite file (WAL), removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="agentrun-bench-") as directory:
        server = TunedServer(Path(directory) / "bench.db", synchronous)
        async with server:
            yield server


class ActivityStarts(Interceptor):
    """Counts the activities a worker has started, by type: a scenario can wait until
    every leaf of a tree is inside its turn, not only until visibility lists it."""

    def __init__(self) -> None:
        self.started: Counter[str] = Counter()

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        # Called for every activity: a class made here each time cost 50 us a call.
        return _Counting(next, self.started)


class _Counting(ActivityInboundInterceptor):
    def __init__(self, next: ActivityInboundInterceptor, started: Counter[str]) -> None:
        super().__init__(next)
        self._started = started

    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        self._started[activity.info().activity_type] += 1
        return await super().execute_activity(input)


# Both sides' workers in this process count into it.
ACTIVITY_STARTS = ActivityStarts()


@contextlib.asynccontextmanager
async def agentrun_worker(
    client: Client, registry: AgentRegistry | None = None
) -> AsyncIterator[str]:
    """agentrun's own worker on a fresh task queue; yields the queue.

    Its plugin reads agentrun's settings from the environment when it is built, as a
    worker process would (scenarios set ``AGENTRUN_*`` variables around it).
    """
    queue = new_queue("agentrun")
    plugin = AgentRunPlugin(agents=registry or ())
    served = Client(client.service_client, namespace=client.namespace, plugins=[plugin])
    async with Worker(served, task_queue=queue, interceptors=[ACTIVITY_STARTS]):
        yield queue


def shared_process_runner() -> SandboxedWorkflowRunner:
    """The workflow sandbox for a baseline's or a peer's worker in the bench's process.

    agentrun's worker imports an MCP client, whose dependency ``py-key-value-aio``
    installs ``beartype.claw``'s import hook for the whole process: from then on every
    module a sandbox imports goes through it, which imports beartype's ~370 modules
    into each new workflow's sandbox (a third of a second and more on this machine).
    agentrun's plugin passes beartype through; a baseline or peer in its own process
    would never see the hook, so theirs passes it through too.
    """
    return SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules("beartype")
    )


def new_queue(prefix: str) -> str:
    """A task queue no other scenario or engineer uses."""
    return f"bench-{prefix}-{uuid.uuid4().hex[:8]}"


def new_owner() -> str:
    """An owner thread of its own, so visibility counts see only this scenario's runs."""
    return f"bench-{uuid.uuid4().hex[:8]}"


def percentile(values: list[float], pct: float) -> float:
    """The ``pct`` percentile, interpolated (``statistics.quantiles``, inclusive)."""
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(pct) - 1]
