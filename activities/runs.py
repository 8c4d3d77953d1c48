"""Reads another run's state for a workflow (workflows cannot query each other)."""

from __future__ import annotations

from temporalio import activity
from temporalio.client import WorkflowQueryFailedError
from temporalio.service import RPCError, RPCStatusCode

from agentrun._constants import QUERY_RUN_STATE, READ_RUN_ACTIVITY
from agentrun._models import ReadRunInput, RunState


@activity.defn(name=READ_RUN_ACTIVITY)
async def read_run(request: ReadRunInput) -> RunState | None:
    """The latest execution's state of ``request.run_id``, or None if there is none."""
    handle = activity.client().get_workflow_handle(request.run_id)
    try:
        state: RunState = await handle.query(QUERY_RUN_STATE, result_type=RunState)
        return state
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            return None
        raise
    except WorkflowQueryFailedError:
        # The run failed its input validation and has no state to read.
        return None
