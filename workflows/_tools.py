"""Tool calls the workflow schedules as activities, one each, with the tool's options.

The turn's worker resolved each call into a ``ToolRoute``. A call that raised on every
attempt (or timed out) gives the model an error result naming the problem, and the run
goes on; a stop cancels the call and ends the run ``stopped``.
"""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, TimeoutError
from temporalio.workflow import ActivityCancellationType

from agentrun._delegation import error_result
from agentrun._models import ToolCallInput, ToolOutcome, ToolRoute

# Backoff between attempts of a call that raised: the tool's own retries, not forever.
MAXIMUM_RETRY_INTERVAL = timedelta(seconds=10)


async def call_tool(route: ToolRoute, call: ToolCallInput) -> str:
    """The tool message's content for ``call``: its result, or the error after the last try."""
    assert route.activity is not None
    try:
        outcome: ToolOutcome = await workflow.execute_activity(
            route.activity,
            call,
            result_type=ToolOutcome,
            start_to_close_timeout=timedelta(seconds=route.start_to_close),
            heartbeat_timeout=timedelta(seconds=route.heartbeat),
            retry_policy=RetryPolicy(
                maximum_attempts=route.attempts, maximum_interval=MAXIMUM_RETRY_INTERVAL
            ),
            task_queue=route.task_queue,
            summary=route.summary,
            # A stop waits until the call has seen its cancel (a heartbeat away).
            cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
        )
    except ActivityError as err:
        if workflow.cancellation_reason() is not None:
            raise asyncio.CancelledError from err
        attempts = f"{route.attempts} attempt{'s' if route.attempts != 1 else ''}"
        message = f"{route.tool} failed after {attempts}: {_cause(err)}"
        return json.dumps(error_result("tool_failed", message))
    return outcome.content


def _cause(err: ActivityError) -> str:
    cause = err.cause
    if isinstance(cause, ApplicationError):
        return f"{cause.type}: {cause.message}" if cause.type else cause.message
    if isinstance(cause, TimeoutError):
        return f"timed out ({cause.type.name if cause.type else 'timeout'})"
    return str(cause or err)
