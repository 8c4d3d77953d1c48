"""``--budget-*`` options (a budget over a run and everything it delegates), and
``ls --sort`` by what a tree spent."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer
from pydantic import ValidationError

from agentrun._models import RunSummary, describe_errors
from agentrun._usage import Budget

BudgetTokens = Annotated[
    int | None,
    typer.Option(
        "--budget-tokens",
        help="Tokens (input and output) the run and all it delegates may use together.",
        show_default=False,
    ),
]
BudgetCost = Annotated[
    float | None,
    typer.Option(
        "--budget-cost", help="US dollars the run's tree may spend on models.", show_default=False
    ),
]
BudgetRuns = Annotated[
    int | None,
    typer.Option(
        "--budget-runs", help="Runs the tree may have, itself included.", show_default=False
    ),
]
BudgetToolCalls = Annotated[
    int | None,
    typer.Option("--budget-tool-calls", help="Tool calls the tree may make.", show_default=False),
]


def budget_of(
    tokens: int | None, cost: float | None, runs: int | None, tool_calls: int | None
) -> Budget | None:
    """The budget the options ask for; None when none is given.

    Raises:
        typer.BadParameter: naming the limit that is wrong and the value given.
    """
    if tokens is None and cost is None and runs is None and tool_calls is None:
        return None
    try:
        return Budget(tokens=tokens, cost_usd=cost, runs=runs, tool_calls=tool_calls)
    except ValidationError as err:
        raise typer.BadParameter(describe_errors(err), param_hint="--budget-*") from None


class SpendOrder(StrEnum):
    """What ``ls --sort`` orders runs by: their tree's tokens or cost, most first."""

    tokens = "tokens"
    cost = "cost"

    def ordered(self, summaries: list[RunSummary]) -> list[RunSummary]:
        """``summaries``, the tree that spent most first."""

        def spent(summary: RunSummary) -> float:
            tree = summary.tree_usage or summary.usage
            return tree.tokens if self is SpendOrder.tokens else tree.cost_usd

        return sorted(summaries, key=spent, reverse=True)
