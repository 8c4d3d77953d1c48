"""What a run spends: model requests, tokens, tool calls and their cost.

Plain data (the workflow sandbox imports it): a model response's figures are read in
the turn activity (``agentrun._agents._model``), summed per turn in its checkpoint, and
per run in the workflow, carried across continue-as-new and resume.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["Budget", "BudgetScope", "BudgetStop", "ModelPrice", "Usage", "runs_exceeded"]


class ModelPrice(BaseModel):
    """An agent's own price for its model, in US dollars per million tokens: for local
    or unlisted models, or to override ``genai-prices``."""

    model_config = ConfigDict(extra="forbid")

    input: float = Field(ge=0)
    output: float = Field(ge=0)
    cache_read: float | None = Field(default=None, ge=0)  # default: the input price

    def cost(self, usage: Usage) -> float:
        """The cost of ``usage``'s tokens at this price."""
        cache_read = self.input if self.cache_read is None else self.cache_read
        uncached = max(0, usage.input_tokens - usage.cache_read_tokens)
        spent = uncached * self.input + usage.cache_read_tokens * cache_read
        return (spent + usage.output_tokens * self.output) / 1_000_000


class Usage(BaseModel):
    """Requests, tokens (input includes cache reads and writes), tool calls and cost.

    ``cost_usd`` sums the requests whose price is known; ``unpriced_requests`` counts the
    others (a model neither ``genai-prices`` nor the agent's ``price`` knows), whose
    tokens are counted all the same.
    """

    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    tool_calls: int = 0
    cost_usd: float = 0.0
    unpriced_requests: int = 0

    def __add__(self, other: Usage) -> Usage:
        """Both together."""
        fields = type(self).model_fields
        return Usage(**{name: getattr(self, name) + getattr(other, name) for name in fields})

    @property
    def tokens(self) -> int:
        """Input and output tokens."""
        return self.input_tokens + self.output_tokens

    def describe(self) -> str:
        """One line for people: ``1,234 tokens (1,000 in, 234 out) in 3 requests, ...``."""
        if not self.requests and not self.tool_calls:
            return "nothing yet"
        text = (
            f"{self.tokens:,} tokens ({self.input_tokens:,} in, {self.output_tokens:,} out) "
            f"in {self.requests} request{'s' if self.requests != 1 else ''}, "
            f"{self.tool_calls} tool call{'s' if self.tool_calls != 1 else ''}"
        )
        if self.requests > self.unpriced_requests:
            text += f", ${self.cost_usd:.4f}"
        if self.unpriced_requests:
            text += f" ({self.unpriced_requests} request(s) of unknown price)"
        return text


class Budget(BaseModel):
    """What a run and everything it delegates may spend together; a limit left out is
    no limit. Set on a root run, on an agent entry (a default for runs of it), or on a
    resumed run; every run of a tree checks its ancestors' budgets too, so a child's own
    budget is in effect never more than what its parents have left."""

    model_config = ConfigDict(extra="forbid")

    tokens: int | None = Field(default=None, ge=1)
    cost_usd: float | None = Field(default=None, gt=0)
    runs: int | None = Field(default=None, ge=1)
    tool_calls: int | None = Field(default=None, ge=0)

    def spent(self, usage: Usage) -> str | None:
        """``Budget exceeded: 120345 of 100000 tokens`` for the first of tokens, cost and
        tool calls that ``usage`` has used up; None while something is left of each."""
        if self.tokens is not None and usage.tokens >= self.tokens:
            return f"Budget exceeded: {usage.tokens} of {self.tokens} tokens"
        if self.cost_usd is not None and usage.cost_usd >= self.cost_usd:
            return f"Budget exceeded: ${usage.cost_usd:.4f} of ${self.cost_usd:.4f}"
        if self.tool_calls is not None and usage.tool_calls >= self.tool_calls:
            return f"Budget exceeded: {usage.tool_calls} of {self.tool_calls} tool calls"
        return None

    def limits_spending(self) -> bool:
        """Whether it limits what model requests and tool calls may spend (not only runs)."""
        return any(x is not None for x in (self.tokens, self.cost_usd, self.tool_calls))

    def describe(self) -> str:
        """``100,000 tokens, $2.0000, 50 runs``: its limits for people."""
        parts = []
        if self.tokens is not None:
            parts.append(f"{self.tokens:,} tokens")
        if self.cost_usd is not None:
            parts.append(f"${self.cost_usd:.4f}")
        if self.runs is not None:
            parts.append(f"{self.runs:,} runs")
        if self.tool_calls is not None:
            parts.append(f"{self.tool_calls:,} tool calls")
        return ", ".join(parts) or "no limit"


class BudgetScope(BaseModel):
    """A budget and the run whose subtree it covers."""

    run_id: str
    budget: Budget


class BudgetStop(BaseModel):
    """A budget found spent: the run whose tree stops, and why."""

    run_id: str
    message: str


def runs_exceeded(runs: int, limit: int) -> str:
    """The error of a tree whose ``runs`` budget is used up and that asked for more."""
    return f"Budget exceeded: {runs} of {limit} runs"
