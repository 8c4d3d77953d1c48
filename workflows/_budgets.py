"""A run's budgets and its tree's run count, as the run's workflow keeps them.

Deterministic workflow code. A run is under its own budget, if it has one, and its
ancestors': each covers that run's subtree. Turns check them before their model
request (activities/turn.py); a run checks them before it starts children, when it
asks the tree's root for runs (agentrun/_ledger.py). A budget found spent stops the
subtree it covers: the run that found it cancels that subtree's run (a Temporal
cancel, which cascades) and stops itself, saying why; the subtree's run, stopping,
reads what its subtree spent and says which budget it exceeded.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

from agentrun._constants import (
    CHECK_BUDGET_ACTIVITY,
    RESERVE_RUNS_ACTIVITY,
    STOP_FOR_BUDGET_ACTIVITY,
    USAGE_MEMO,
)
from agentrun._ledger import Ledger, TreeAccess
from agentrun._models import (
    AgentPolicy,
    AgentRunInput,
    CheckBudgetInput,
    ReserveInput,
    ReserveRuns,
    RunGrant,
    StopForBudget,
)
from agentrun._usage import BudgetScope, BudgetStop, Usage
from agentrun._versions import taken

# Runs that ask their tree's root before they start children (an activity and an
# update): patched, so runs from before replay as they ran.
TREE_LEDGER_PATCH = "tree-ledger"
# Runs that keep their usage in their memo, for a subtree's total (agentrun/_spend.py).
USAGE_MEMO_PATCH = "usage-memo"
# Asking the root is quick; an answer refused for too many updates in flight at the
# root (Temporal's limit) is asked again soon.
ASK_ROOT_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=200), maximum_interval=timedelta(seconds=2)
)


class TreeBudget:
    """One run's budgets, and its tree's ledger when the run is the tree's root."""

    def __init__(self, run_id: str, run_input: AgentRunInput, has_parent: bool) -> None:
        """From the run's input: its own budget, its ancestors', its root, its count."""
        self.run_id = run_id
        self._owner = run_input.owner_thread_id
        self._version = run_input.version
        self.budget = run_input.budget
        self._inherited = run_input.budgets
        self.root_run_id = run_input.root_run_id or (None if has_parent else run_id)
        self.ledger = (
            Ledger(run_id, self._owner, run_input.tree_runs) if self.root_run_id == run_id else None
        )
        self.policy = AgentPolicy()
        self.stop: BudgetStop | None = None  # a spent budget this run found
        self.stopping: asyncio.Task[None] | None = None
        self._full: RunGrant | None = None  # the root's refusal: the tree is at its cap
        self._memo_usage: Usage | None = None

    def scopes(self) -> list[BudgetScope]:
        """The budgets the run is under, its own last."""
        own = [BudgetScope(run_id=self.run_id, budget=self.budget)] if self.budget else []
        return [*self._inherited, *own]

    def adopt(self, policy: AgentPolicy) -> None:
        """The policy of the run's latest turn: the tree's cap, and the agent entry's
        default budget for a run that has none."""
        self.policy = policy
        if self.budget is None and policy.budget is not None:
            self.budget = policy.budget

    def spent(self, stop: BudgetStop) -> None:
        """A budget found spent: its subtree and this run stop, at once (the first
        budget found is the one the run's error names)."""
        if self.stop is None:
            self.stop = stop
            self.stopping = asyncio.create_task(self._stop_tree(stop))

    def access(self) -> TreeAccess:
        """What the run's children table uses."""
        return TreeAccess(self.root_run_id, self.grant_now, self.ask_root, self.scopes, self.spent)

    def grant_now(self, count: int) -> RunGrant | None:
        """A grant the run gives itself, with no activity: the root counting its own
        children (no spending budget to check first), or a run of a tree that is not
        counted. None: ask the root."""
        spending = [s for s in self.scopes() if s.budget.limits_spending()]
        if self.ledger is not None and not spending:
            return self.ledger.grant(self._request(count), self.policy.max_runs_per_tree)
        if self.root_run_id is None or not taken(self._version, TREE_LEDGER_PATCH):
            return RunGrant(granted=count)
        return None

    async def ask_root(self, count: int) -> RunGrant:
        """Check the spending budgets, then ask the root for ``count`` runs. A tree at
        its cap stays there (runs are counted as they start, never given back): once
        the root said so, the run knows it without asking again."""
        if self._full is not None:
            return self._full
        request = ReserveInput(
            root_run_id=self.root_run_id or self.run_id,
            request=self._request(count),
            spending=[s for s in self.scopes() if s.budget.limits_spending()],
        )
        grant: RunGrant = await workflow.execute_activity(
            RESERVE_RUNS_ACTIVITY,
            request,
            result_type=RunGrant,
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=ASK_ROOT_RETRY,
            summary=f"{count} run(s) from {request.root_run_id}",
        )
        if grant.granted < count and grant.stop is None:
            self._full = grant.model_copy(update={"granted": 0})
        return grant

    def _request(self, count: int) -> ReserveRuns:
        budgets = {s.run_id: s.budget.runs for s in self.scopes() if s.budget.runs is not None}
        return ReserveRuns(
            owner_thread_id=self._owner, requester=self.run_id, count=count, budgets=budgets
        )

    async def closing_error(self) -> str | None:
        """The error of a stopping run: the budget it found spent, or the limit of its
        own budget its subtree exceeded (None: neither)."""
        if self.stop is not None:
            return self.stop.message
        if self.budget is None:
            return None
        message: str | None = await workflow.execute_activity(
            CHECK_BUDGET_ACTIVITY,
            CheckBudgetInput(
                owner_thread_id=self._owner,
                scope=BudgetScope(run_id=self.run_id, budget=self.budget),
            ),
            result_type=str | None,  # type: ignore[arg-type]
            start_to_close_timeout=timedelta(seconds=30),
        )
        return message

    async def stopped(self) -> None:
        """Wait for the cancels this run sent for a spent budget, if any: a run that
        closed while the activity's completion was on its way would have its closing
        workflow task refused (``UnhandledCommand``) and run again."""
        if self.stopping is not None:
            with contextlib.suppress(Exception):
                await self.stopping

    async def _stop_tree(self, stop: BudgetStop) -> None:
        """Cancel the subtree whose budget is spent, and this run (a run cannot cancel
        itself from its own code)."""
        await workflow.execute_activity(
            STOP_FOR_BUDGET_ACTIVITY,
            StopForBudget(owner_thread_id=self._owner, requester=self.run_id, stop=stop),
            start_to_close_timeout=timedelta(seconds=60),
            summary=stop.message,
        )

    def record(self, usage: Usage) -> None:
        """Keep the run's usage in its memo when it changed (one history event)."""
        if usage == (self._memo_usage or Usage()):
            return
        if taken(self._version, USAGE_MEMO_PATCH):
            workflow.upsert_memo({USAGE_MEMO: usage.model_dump(mode="json")})
            self._memo_usage = usage
