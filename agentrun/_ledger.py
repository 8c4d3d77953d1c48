"""The runs of a tree, counted by its root: at most ``max_runs_per_tree`` in the
tree, and no more than each ``runs`` budget of a subtree allows.

Deterministic, for the ``AgentRun`` workflow (the workflow sandbox shares it, as it
shares every module of agentrun: agentrun/_plugin.py). Every run of
a tree that starts children asks the root first: the root itself in its own code, the
others through the ``reserve_runs`` update (activities/budgets.py), one for all the
children a turn starts at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from temporalio.exceptions import ApplicationError

from agentrun._delegation import unknown_run
from agentrun._models import ReserveRuns, RunGrant
from agentrun._usage import BudgetScope, BudgetStop, runs_exceeded


class Ledger:
    """The root's count of its tree's runs, and of each subtree with a ``runs`` budget."""

    def __init__(self, root_run_id: str, owner_thread_id: str, counts: dict[str, int]) -> None:
        """Start from the counts an earlier epoch or execution left."""
        self.root = root_run_id
        self._owner = owner_thread_id
        self.counts = dict(counts)

    def validate(self, request: ReserveRuns, cap: int) -> None:
        """Refuse, with no history written, a request from outside the tree or one
        that gets nothing."""
        inside = request.requester == self.root or request.requester.startswith(self.root + ".")
        if request.owner_thread_id != self._owner or not inside:
            raise ApplicationError(str(unknown_run(self.root)), type="unknown_run")
        answer = self._answer(request, cap)
        if not answer.granted:
            raise ApplicationError(
                answer.refused or "", answer.model_dump(mode="json"), type="no_runs_left"
            )

    def grant(self, request: ReserveRuns, cap: int) -> RunGrant:
        """Grant what fits, count it, and say why the rest does not."""
        answer = self._answer(request, cap)
        for scope in {self.root, *request.budgets}:
            self.counts[scope] = self._count(scope) + answer.granted
        return answer

    def _answer(self, request: ReserveRuns, cap: int) -> RunGrant:
        left = {scope: limit - self._count(scope) for scope, limit in request.budgets.items()}
        room = cap - self._count(self.root)
        granted = max(0, min(request.count, room, *left.values()))
        if granted == request.count:
            return RunGrant(granted=granted)
        # A spent budget, the outermost first, stops its subtree; the cap only refuses.
        for scope, limit in request.budgets.items():
            if left[scope] <= granted and left[scope] <= room:
                message = runs_exceeded(self._count(scope) + granted, limit)
                stop = BudgetStop(run_id=scope, message=message)
                return RunGrant(granted=granted, refused=message, stop=stop)
        refused = (
            f"the tree of run '{self.root}' has {self._count(self.root)} runs, "
            f"the most one tree may have (AGENTRUN_MAX_RUNS_PER_TREE={cap})"
        )
        return RunGrant(granted=granted, refused=refused)

    def _count(self, scope: str) -> int:
        return self.counts.get(scope, 1)  # a subtree counts its own run


class RunPermits:
    """Runs a run's children may start as: the asks of one workflow task (a turn that
    starts several children at once) go to the root as one."""

    def __init__(self, ask: Callable[[int], Awaitable[RunGrant]]) -> None:
        """``ask`` gets a number of runs and returns the root's grant."""
        self._ask = ask
        self._waiting: list[asyncio.Future[RunGrant]] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def take(self) -> RunGrant:
        """A grant of one run, or the refusal (``granted`` 0) with its reason."""
        future: asyncio.Future[RunGrant] = asyncio.get_running_loop().create_future()
        self._waiting.append(future)
        if len(self._waiting) == 1:
            task = asyncio.create_task(self._flush())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return await future

    async def _flush(self) -> None:
        await asyncio.sleep(0)  # the other calls of the turn ask meanwhile
        waiting, self._waiting = self._waiting, []
        try:
            grant = await self._ask(len(waiting))
        except asyncio.CancelledError:
            for future in waiting:
                future.cancel()
            raise
        except Exception as err:  # the asker's own error, in each call
            for future in waiting:
                future.set_exception(err)
            return
        for index, future in enumerate(waiting):
            granted = 1 if index < grant.granted else 0
            future.set_result(grant.model_copy(update={"granted": granted}))


@dataclass(frozen=True)
class TreeAccess:
    """What a run's children table needs of its tree: runs to start as, the budgets a
    child is under, and whom to tell when a budget is found spent."""

    root_run_id: str | None
    grant_now: Callable[[int], RunGrant | None]  # None: ask the root
    ask_root: Callable[[int], Awaitable[RunGrant]]
    scopes: Callable[[], list[BudgetScope]]
    spent: Callable[[BudgetStop], None]

    def permits(self) -> RunPermits:
        """Batched asks of the root."""
        return RunPermits(self.ask_root)
