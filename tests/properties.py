"""Hypothesis properties against the session's Temporal server: the loop bridge, settings,
JSON strategies, and how a run that must end is watched.

Why a bridge: hypothesis calls a plain (sync) function once per example, but the
Temporal client, the test's worker and every fixture live on the session's asyncio
loop, and that loop must keep running while an example waits on its runs. So a
property test is an ``async`` test that hands the hypothesis engine to a worker thread
(``LoopBridge.check``); each example submits its coroutine back to the session loop
(``LoopBridge.run``) and blocks that thread, never the loop, until it is done. The
examples stay ordinary independent ``@given`` calls, so hypothesis keeps its usual
guarantees (generation, health checks, the failing example in the report).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError

from tests.helpers import history_events

T = TypeVar("T")


# The default suite draws a third of each property's examples; `make stress` all of them.
STRESS = os.environ.get("AGENTRUN_STRESS") == "1"


def property_settings(max_examples: int, **extra: Any) -> settings:
    """Few examples, no deadline, no example database, no shrinking.

    Each example costs real workflows, so shrinking (dozens of extra examples) would
    outlast the test's timeout; the report shows the failing example as drawn. No
    database: nothing is written into the work tree. ``max_examples`` is the count
    ``make stress`` draws; the default suite draws a third (at least two).
    """
    return settings(
        max_examples=max_examples if STRESS else max(2, max_examples // 3),
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        print_blob=True,
        **extra,
    )


class LoopBridge:
    """Runs a hypothesis property in a thread and its examples on the session loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        """Bridge to ``loop``, the running session loop."""
        self.loop = loop

    @classmethod
    def here(cls) -> LoopBridge:
        """A bridge to the loop the calling coroutine runs on."""
        return cls(asyncio.get_running_loop())

    async def check(self, prop: Callable[[], None]) -> None:
        """Run ``prop`` (a ``@given`` function) in a thread while this loop keeps going."""
        await asyncio.to_thread(prop)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 90.0) -> T:
        """From the property's thread: run ``coro`` on the session loop, wait for it."""
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout)
        except TimeoutError:
            future.cancel()
            raise


def json_values(max_leaves: int = 8) -> st.SearchStrategy[Any]:
    """Any JSON value (no NaN or infinities, which JSON does not have)."""
    scalars = (
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.text(max_size=12)
    )
    return st.recursive(
        scalars,
        lambda inner: (
            st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
        ),
        max_leaves=max_leaves,
    )


@st.composite
def near(
    draw: st.DrawFn,
    valid: st.SearchStrategy[dict[str, Any]],
    odd: dict[str, st.SearchStrategy[Any]],
    changes: int = 2,
) -> dict[str, Any]:
    """An object near a valid one: up to ``changes`` fields dropped, made odd, or junk.

    A third of the draws are left valid, so the code behind the validation runs too.
    """
    value = dict(draw(valid))
    for _ in range(draw(st.integers(0, changes))):
        key = draw(st.sampled_from(sorted(odd)) | st.text(max_size=6))
        action = draw(st.sampled_from(["drop", "odd", "junk"]))
        if action == "drop":
            value.pop(key, None)
        elif action == "odd" and key in odd:
            value[key] = draw(odd[key])
        else:
            value[key] = draw(json_values(4))
    return value


@dataclass
class Ending:
    """How a run's current execution ended, or why it is judged stuck."""

    status: WorkflowExecutionStatus | None
    result: Any = None
    failure: BaseException | None = None
    workflow_task_failures: list[str] = field(default_factory=list)
    activity_retries: list[str] = field(default_factory=list)
    elapsed: float = 0.0

    @property
    def stuck(self) -> bool:
        """Still open, or a task had to be retried: never a clear end."""
        return (
            self.status is None
            or self.status == WorkflowExecutionStatus.RUNNING
            or bool(self.workflow_task_failures)
            or bool(self.activity_retries)
        )


async def ending(client: Client, run_id: str, within: float = 20.0) -> Ending:
    """Wait until the run's current execution closes, at most ``within`` seconds.

    Returns early, as stuck, once a workflow task or a turn has failed and is being
    retried: a run that retries a task on bad input will retry it forever.
    """
    handle = client.get_workflow_handle(run_id)
    started = time.monotonic()
    while True:
        description = await handle.describe()
        raw = description.raw_description
        retries = [
            f"{a.activity_type.name} attempt {a.attempt}: {a.last_failure.message}"
            for a in raw.pending_activities
            if a.attempt > 1
        ]
        task_retry = raw.pending_workflow_task.attempt > 1
        timed_out = time.monotonic() - started > within
        if description.status != WorkflowExecutionStatus.RUNNING or retries or task_retry:
            break
        if timed_out:
            return Ending(status=None, elapsed=time.monotonic() - started)
        await asyncio.sleep(0.2)
    found = Ending(status=description.status, activity_retries=retries)
    found.workflow_task_failures = [
        e.workflow_task_failed_event_attributes.failure.message
        for e in await history_events(client, run_id)
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED
    ]
    if description.status == WorkflowExecutionStatus.COMPLETED:
        found.result = await handle.result()
    elif description.status != WorkflowExecutionStatus.RUNNING:
        try:
            await handle.result()
        except WorkflowFailureError as err:
            found.failure = err.cause
    found.elapsed = time.monotonic() - started
    return found
