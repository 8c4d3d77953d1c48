"""Reads another run for a workflow (workflows cannot query each other)."""

from __future__ import annotations

from typing import TypeVar

from temporalio import activity
from temporalio.client import WorkflowQueryFailedError
from temporalio.service import RPCError, RPCStatusCode

from agentrun._constants import (
    QUERY_RUN_STATE,
    QUERY_SUMMARY,
    READ_RUN_ACTIVITY,
    READ_SUMMARY_ACTIVITY,
)
from agentrun._live_text import with_live_text
from agentrun._models import ReadRunInput, RunState, RunSummary

T = TypeVar("T")


@activity.defn(name=READ_RUN_ACTIVITY)
async def read_run(request: ReadRunInput) -> RunState | None:
    """The latest execution's state of ``request.run_id``, or None if there is none.
    A running run's summary carries its running turn's latest text."""
    state = await _query(request.run_id, QUERY_RUN_STATE, RunState)
    if state is None or state.summary.status != "running":
        return state
    handle = activity.client().get_workflow_handle(request.run_id)
    summary = await with_live_text(activity.client(), await handle.describe(), state.summary)
    return state.model_copy(update={"summary": summary})


@activity.defn(name=READ_SUMMARY_ACTIVITY)
async def read_run_summary(request: ReadRunInput) -> RunSummary | None:
    """The latest execution's summary of ``request.run_id`` (a closed one's replays its
    history on a worker), or None if there is none."""
    return await _query(request.run_id, QUERY_SUMMARY, RunSummary)


async def _query(run_id: str, name: str, result_type: type[T]) -> T | None:
    handle = activity.client().get_workflow_handle(run_id)
    try:
        answer: T = await handle.query(name, result_type=result_type)
        return answer
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            return None
        raise
    except WorkflowQueryFailedError:
        # The run failed its input validation and has no state to read.
        return None
