"""What a run spends: model requests, tokens, tool calls and their cost.

Plain data (the workflow sandbox imports it): a model response's figures are read in
the turn activity (``agentrun._agents._model``), summed per turn in its checkpoint, and
per run in the workflow, carried across continue-as-new and resume.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["ModelPrice", "Usage"]


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
