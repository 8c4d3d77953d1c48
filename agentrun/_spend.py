"""What a subtree of runs spent, from visibility: each run's ``usage`` memo.

A run writes its own usage (all its epochs) to its memo after each turn that changed
it (workflows/agent_run.py); visibility lists the memo with the run. A subtree is the
run and every run whose id extends it with ``.``: ``<parent>.<n>-<agent>`` is how a
child is named (agentrun/_run_ids.py), so one listing reads a whole subtree, running
and closed, resumed epochs included, without a query to any run.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import ValidationError
from temporalio.client import Client, WorkflowExecution

from agentrun._constants import USAGE_MEMO
from agentrun._listing import LIST_PAGE_SIZE, owner_query, quote
from agentrun._usage import Usage

__all__ = ["Spend", "spend_by_run", "subtree_query", "subtree_spend", "tree_total"]


@dataclass
class Spend:
    """A subtree's usage and how many runs it has."""

    usage: Usage = field(default_factory=Usage)
    runs: int = 0


def subtree_query(owner_thread_id: str, run_id: str) -> str:
    """The visibility query of every execution of ``run_id`` and its descendants."""
    subtree = f"WorkflowId = {quote(run_id)} OR WorkflowId STARTS_WITH {quote(run_id + '.')}"
    return f"{owner_query(owner_thread_id)} AND ({subtree})"


async def subtree_spend(client: Client, owner_thread_id: str, run_id: str) -> Spend:
    """What ``run_id`` and every run below it spent, as visibility has it now."""
    by_run = await spend_by_run(client, subtree_query(owner_thread_id, run_id))
    return tree_total(by_run, run_id)


async def spend_by_run(client: Client, query: str) -> dict[str, Usage]:
    """Each run's own usage: the largest its executions have (it only grows, and every
    epoch and continue-as-new carries it on)."""
    most: dict[str, Usage] = {}
    async for execution in client.list_workflows(query, page_size=LIST_PAGE_SIZE):
        usage = await _usage(execution)
        known = most.get(execution.id)
        if known is None or _size(usage) > _size(known):
            most[execution.id] = usage
    return most


def tree_total(by_run: dict[str, Usage], run_id: str) -> Spend:
    """The total of ``run_id`` and the runs below it, out of ``by_run``."""
    spend = Spend()
    prefix = run_id + "."
    for other, usage in by_run.items():
        if other == run_id or other.startswith(prefix):
            spend.usage += usage
            spend.runs += 1
    return spend


async def _usage(execution: WorkflowExecution) -> Usage:
    try:
        raw = await execution.memo_value(USAGE_MEMO, None)
        return Usage.model_validate(raw) if raw is not None else Usage()
    except (ValidationError, ValueError, TypeError):
        return Usage()  # written by something else: counts as nothing spent


def _size(usage: Usage) -> tuple[int, int, int]:
    return (usage.requests, usage.tool_calls, usage.tokens)
