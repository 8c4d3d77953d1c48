"""Model-driven agents on pydantic-ai: one model response per step.

Each step streams one model response (text deltas go out as they arrive) and is
checkpointed, so a retried turn never repeats a model call that had answered. A
response that calls tools ends the turn: the workflow executes the calls (delegation
itself, every other tool as an activity of its own) and the next turn gives the model
their results. The model is offered exactly the tools of its agent (``ctx.tools``).

Transient provider errors (rate limits, overload, server errors, lost connections)
raise, and Temporal retries the turn from its last checkpoint with backoff; permanent
ones (credentials, unknown model, context too long, rejected request) end the run
``failed`` with the provider's message.
"""

from __future__ import annotations

from pydantic_ai.direct import model_request, model_request_stream
from pydantic_ai.exceptions import (
    ModelAPIError,
    ModelQuotaExceededError,
    ModelRequestRejectedError,
    UserError,
)
from pydantic_ai.messages import (
    ModelMessage,
    ModelResponse,
    ModelResponseStreamEvent,
    PartDeltaEvent,
    PartStartEvent,
    TextPart,
    TextPartDelta,
)
from pydantic_ai.models import Model, ModelRequestParameters, infer_model
from pydantic_ai.models.function import FunctionModel
from pydantic_ai.settings import ModelSettings
from pydantic_ai.tools import ToolDefinition

from agentrun._agents._messages import from_model_response, to_model_messages
from agentrun._agents._runtime import RetryableStepError, Step, StepContext
from agentrun._usage import ModelPrice, Usage


class ModelAgent:
    """An agent whose steps are pydantic-ai model responses."""

    replays_exactly = False

    def __init__(
        self,
        model: Model | str,
        instructions: str = "",
        settings: ModelSettings | None = None,
        price: ModelPrice | None = None,
    ) -> None:
        """Bind the model, the agent's own instructions, model settings and price.

        Args:
            model: A pydantic-ai model, or its ``provider:name`` (``openai:gpt-4o-mini``);
                the provider's key comes from the worker's environment.
            instructions: The agent's own instructions (its system prompt).
            settings: pydantic-ai model settings (temperature, max tokens, ...).
            price: US dollars per million tokens, for a model ``genai-prices`` does not
                list (or to override it); None: ``genai-prices``' price, if it has one.
        """
        self.model = infer_model(model) if isinstance(model, str) else model
        self.instructions = instructions
        self.settings = settings
        self.price = price

    async def step(self, ctx: StepContext) -> Step:
        """One model response on the thread; a response that calls tools ends the turn."""
        system = "\n\n".join(part for part in (self.instructions, ctx.instructions) if part)
        messages = to_model_messages(ctx.thread, system)
        try:
            response = await self._respond(messages, ctx.tools, ctx)
        except (ModelRequestRejectedError, ModelQuotaExceededError, UserError) as err:
            return Step(state=ctx.state, error=_provider_message(err))
        except ModelAPIError as err:
            # Transient: Temporal retries the turn from its checkpoint, with backoff. The
            # message says it all; without the chain (the provider client's exceptions,
            # their tracebacks and contexts) the failure stays small enough for Temporal
            # to keep it, and the Web UI and `agentrun show` can say why the turn waits.
            raise RetryableStepError(_provider_message(err)) from None
        except Exception as err:
            # Anything else will not get better by retrying: the run fails, saying why.
            return Step(state=ctx.state, error=f"{type(err).__name__}: {err}")
        reply = from_model_response(response)
        # The workflow executes the calls (each tool an activity) and the next turn
        # gives the model their results.
        return Step(
            messages=[reply],
            state=ctx.state,
            tool_calls=reply.tool_calls,
            finished=not reply.tool_calls,
            usage=response_usage(response, self.price),
        )

    async def _respond(
        self, messages: list[ModelMessage], tools: list[ToolDefinition], ctx: StepContext
    ) -> ModelResponse:
        parameters = ModelRequestParameters(function_tools=tools)
        options = {"model_settings": self.settings, "model_request_parameters": parameters}
        if not _streams(self.model):
            response = await model_request(self.model, messages, **options)  # type: ignore[arg-type]
            text = from_model_response(response).content
            if text:
                ctx.emit_text(text)
            return response
        async with model_request_stream(self.model, messages, **options) as stream:  # type: ignore[arg-type]
            async for event in stream:
                text = _streamed_text(event)
                if text:
                    ctx.emit_text(text)
            return stream.get()


def response_usage(response: ModelResponse, price: ModelPrice | None) -> Usage:
    """One response's requests, tokens and cost: at ``price`` when the agent sets one,
    else by ``genai-prices``; a model neither knows is counted with no cost."""
    tokens = response.usage
    usage = Usage(
        requests=1,
        input_tokens=tokens.input_tokens,
        output_tokens=tokens.output_tokens,
        cache_read_tokens=tokens.cache_read_tokens,
        cache_write_tokens=tokens.cache_write_tokens,
    )
    if price is not None:
        return usage.model_copy(update={"cost_usd": price.cost(usage)})
    try:
        cost = float(response.cost().total_price)
    except Exception:  # genai-prices knows no such model (or provider): no cost
        return usage.model_copy(update={"unpriced_requests": 1})
    return usage.model_copy(update={"cost_usd": cost})


def _streamed_text(event: ModelResponseStreamEvent) -> str:
    """The text an event adds: a text part's start, or a text delta."""
    if isinstance(event, PartStartEvent) and isinstance(event.part, TextPart):
        return event.part.content
    if isinstance(event, PartDeltaEvent) and isinstance(event.delta, TextPartDelta):
        return event.delta.content_delta
    return ""


def _streams(model: Model) -> bool:
    """Whether the model can stream (a FunctionModel needs a stream function for it)."""
    return not (isinstance(model, FunctionModel) and model.stream_function is None)


def _provider_message(err: Exception) -> str:
    """The provider's own words, without anything that could carry a credential."""
    if isinstance(err, ModelAPIError):
        return f"{type(err).__name__}: {err.message}"
    return str(err)
