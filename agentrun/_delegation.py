"""Pure delegation rules (docs/delegation.md section 4): tool arguments, errors, fork filter.

Deterministic and free of I/O, so the workflow can use it directly.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import JsonValue

from agentrun._models import Message, Status

ToolResult = dict[str, JsonValue]


class DelegationError(Exception):
    """An operation on runs that docs/delegation.md defines as an error; the message is exact."""

    def __init__(self, message: str, code: str = "invalid_state") -> None:
        """Keep the exact message and the tool error code."""
        super().__init__(message)
        self.code = code


def error_result(code: str, message: str) -> ToolResult:
    """A tool error as the agent receives it."""
    return {"error": {"code": code, "message": message}}


def unknown_run(run_id: str) -> DelegationError:
    """The error for a run that does not exist or that the caller may not see."""
    return DelegationError(f"Unknown run_id: {run_id}", code="unknown_run")


def not_running(run_id: str, status: Status) -> DelegationError:
    """The error for stopping a run (tree) with nothing running."""
    return DelegationError(f"Run '{run_id}' is not running (current status: {status})")


def not_resumable(run_id: str, status: Status) -> DelegationError:
    """The error for resuming a run that is not stopped."""
    return DelegationError(
        f"Run '{run_id}' cannot be resumed (current status: {status}); "
        "only a stopped run can be resumed"
    )


@dataclass(frozen=True)
class RunArgs:
    """``agent_run`` arguments after normalisation."""

    agent_id: str | None
    prompt: str | None
    run_id: str | None
    fork_context: bool
    background: bool


def _text(args: dict[str, JsonValue], key: str) -> str | None:
    value = args.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise DelegationError(
            f"'{key}' must be a string, got {type(value).__name__}", code="invalid_arguments"
        )
    return value.strip() or None


def _flag(args: dict[str, JsonValue], key: str) -> bool:
    # Only a real JSON boolean counts: "true" or 1 leave the default.
    return args.get(key) is True


def parse_run_args(args: dict[str, JsonValue]) -> RunArgs:
    """Normalise ``agent_run`` arguments: trim strings, empty is absent, real bools only."""
    return RunArgs(
        agent_id=_text(args, "agent_id"),
        prompt=_text(args, "prompt"),
        run_id=_text(args, "run_id"),
        fork_context=_flag(args, "fork_context"),
        background=_flag(args, "background"),
    )


def required_run_id(args: dict[str, JsonValue]) -> str:
    """The ``run_id`` argument of ``agent_stop`` / ``agent_output``."""
    run_id = _text(args, "run_id")
    if run_id is None:
        raise DelegationError("missing 'run_id'", code="invalid_arguments")
    return run_id


def fork_messages(messages: list[Message]) -> list[Message]:
    """The caller's thread as a forked child sees it.

    Drops system messages; keeps user messages; keeps a tool call and its result only
    when both are present; an assistant message keeps its text and its paired calls
    only; an unpaired tool result is dropped.
    """
    call_ids = {call.id for m in messages if m.role == "assistant" for call in m.tool_calls}
    result_ids = {m.tool_call_id for m in messages if m.role == "tool" and m.tool_call_id}
    paired = call_ids & result_ids
    forked: list[Message] = []
    for message in messages:
        if message.role == "user":
            forked.append(message)
        elif message.role == "assistant":
            calls = [call for call in message.tool_calls if call.id in paired]
            if message.content or calls:
                forked.append(message.model_copy(update={"tool_calls": calls}))
        elif message.role == "tool" and message.tool_call_id in paired:
            forked.append(message)
    return forked


def last_assistant_text(messages: list[Message]) -> str | None:
    """Text of the last assistant message that has text, or None."""
    for message in reversed(messages):
        if message.role == "assistant" and message.content:
            return message.content
    return None
