"""What a run does outside its workflow for its tree's budgets: read what a subtree
spent (visibility, no query to any run), ask the root for runs, stop a subtree."""

from __future__ import annotations

import logging

from temporalio import activity
from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from agentrun._constants import (
    CHECK_BUDGET_ACTIVITY,
    RESERVE_RUNS_ACTIVITY,
    STOP_FOR_BUDGET_ACTIVITY,
    UPDATE_RESERVE_RUNS,
)
from agentrun._models import CheckBudgetInput, ReserveInput, RunGrant, StopForBudget
from agentrun._spend import subtree_spend
from agentrun._usage import BudgetScope, BudgetStop

logger = logging.getLogger(__name__)

# The server's rejection of an update that the root's worker completed a workflow task
# without taking (the task had timed out or moved meanwhile, under load; or a worker of
# a version without the update): not the root's answer.
UNPROCESSED_UPDATE = "UnprocessedUpdate"
# Attempts of the activity (ASK_ROOT_RETRY's backoff, about 15 s in all) before such a
# rejection refuses the runs, saying so.
UNPROCESSED_ATTEMPTS = 10


async def spent_budget(owner_thread_id: str, scopes: list[BudgetScope]) -> BudgetStop | None:
    """The first of ``scopes`` whose subtree has spent its tokens, cost or tool calls."""
    for scope in scopes:
        if not scope.budget.limits_spending():
            continue
        spend = await subtree_spend(activity.client(), owner_thread_id, scope.run_id)
        message = scope.budget.spent(spend.usage)
        if message is not None:
            return BudgetStop(run_id=scope.run_id, message=message)
    return None


@activity.defn(name=CHECK_BUDGET_ACTIVITY)
async def check_budget(request: CheckBudgetInput) -> str | None:
    """Which limit of its budget the subtree exceeded (its runs included), or None."""
    scope = request.scope
    spend = await subtree_spend(activity.client(), request.owner_thread_id, scope.run_id)
    runs = scope.budget.runs
    if runs is not None and spend.runs >= runs:
        return f"Budget exceeded: {spend.runs} of {runs} runs"
    return scope.budget.spent(spend.usage)


@activity.defn(name=RESERVE_RUNS_ACTIVITY)
async def reserve_runs(request: ReserveInput) -> RunGrant:
    """Runs a run may start: none when a budget it is under is spent, else what the
    tree's root grants."""
    stop = await spent_budget(request.request.owner_thread_id, request.spending)
    if stop is not None:
        return RunGrant(refused=stop.message, stop=stop)
    handle = activity.client().get_workflow_handle(request.root_run_id)
    try:
        grant: RunGrant = await handle.execute_update(
            UPDATE_RESERVE_RUNS, request.request, result_type=RunGrant
        )
        return grant
    except WorkflowUpdateFailedError as err:
        cause = err.cause
        if isinstance(cause, ApplicationError) and cause.type == "no_runs_left":
            return RunGrant.model_validate(cause.details[0])
        message = f"the tree's root '{request.root_run_id}' refused: {cause}"
        if _unprocessed(cause) and activity.info().attempt < UNPROCESSED_ATTEMPTS:
            raise ApplicationError(f"{message} (asking again)") from None
        return RunGrant(refused=message)
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:  # the root has closed: so does the tree
            return RunGrant(refused=f"the tree's root '{request.root_run_id}' has closed")
        raise  # too many updates in flight at the root, say: asked again


def _unprocessed(cause: BaseException | None) -> bool:
    return isinstance(cause, ApplicationError) and cause.type == UNPROCESSED_UPDATE


@activity.defn(name=STOP_FOR_BUDGET_ACTIVITY)
async def stop_for_budget(request: StopForBudget) -> None:
    """Cancel the subtree whose budget is spent (its cancel cascades), then the run
    that found it, with the budget's message as the reason."""
    client = activity.client()
    for run_id in dict.fromkeys([request.stop.run_id, request.requester]):
        try:
            await client.get_workflow_handle(run_id).cancel(reason=request.stop.message)
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND:
                raise
            logger.info("Run %s has closed: nothing to stop", run_id)
