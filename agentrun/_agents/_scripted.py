"""The built-in ``scripted`` agent: deterministic, no model, same path as every agent.

Its prompt is a JSON script (docs/contract.md). Its position in the script is kept in the
checkpointed state, and a ``sleep`` advances in short slices so a killed worker's
retry sleeps only what was left.
"""

from __future__ import annotations

import asyncio
import functools
import json
import re
from collections.abc import Callable

from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError

from agentrun._agents._runtime import Step, StepContext
from agentrun._models import Message, ToolCall, describe_errors, encodable

SLEEP_SLICE = 0.25
MAX_SLEEP = 7 * 24 * 3600.0
# A script is one prompt: its steps run in one turn, each checkpointed with the turn's
# messages so far. Bounded, so no prompt can keep a turn from its heartbeats.
MAX_SCRIPT_STEPS = 5000
# The calls one ``tools`` step makes at once (a run has at most 100 children).
MAX_CALLS_PER_STEP = 100
_RUN_REF = re.compile(r"^\$(\d+)$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SayStep(_Strict):
    say: str


class SleepStep(_Strict):
    sleep: float = Field(ge=0, le=MAX_SLEEP)


class ToolStep(_Strict):
    tool: str = Field(min_length=1, max_length=200)
    args: dict[str, JsonValue] = Field(default_factory=dict)


class ToolsStep(_Strict):
    """Several calls in one step, as a model's response with parallel tool calls: a
    delegating run asks its root for all of their runs at once."""

    tools: list[ToolStep] = Field(min_length=1, max_length=MAX_CALLS_PER_STEP)


class FailStep(_Strict):
    fail: str


ScriptStep = SayStep | SleepStep | ToolStep | ToolsStep | FailStep
_STEP_TYPES: dict[str, type[_Strict]] = {
    "say": SayStep,
    "sleep": SleepStep,
    "tool": ToolStep,
    "tools": ToolsStep,
    "fail": FailStep,
}


class ScriptError(ValueError):
    """A prompt that is a script but not a valid one."""


@functools.lru_cache(maxsize=64)
def parse_script(text: str) -> tuple[ScriptStep, ...] | None:
    """The script's steps, or None when ``text`` is not a script (it is echoed).

    Parsed once per script and kept (a run takes a step at a time, thousands of them).

    Raises:
        ScriptError: naming the bad step, when ``text`` is a JSON object with
            ``steps`` that do not follow the scripted agent's language; naming the
            parser's complaint and position, when ``text`` starts with ``{`` but is
            not JSON (a script with a typo is an error, not an echo).
    """
    try:
        document = json.loads(text)
    except json.JSONDecodeError as err:
        if text.lstrip().startswith("{"):
            raise ScriptError(
                f"Invalid script: the prompt starts with '{{' but is not JSON: {err}"
            ) from None
        return None
    if not isinstance(document, dict) or "steps" not in document:
        return None
    try:
        # A "\ud800" escape decodes to text no event or message could carry.
        encodable(json.dumps(document, ensure_ascii=False))
    except ValueError as err:
        raise ScriptError(f"Invalid script: a string {err}") from None
    steps = document["steps"]
    if not isinstance(steps, list):
        raise ScriptError(f"Invalid script: 'steps' must be a list, got {type(steps).__name__}")
    if len(steps) > MAX_SCRIPT_STEPS:
        raise ScriptError(f"Invalid script: {len(steps)} steps, at most {MAX_SCRIPT_STEPS}")
    return tuple(_parse_step(index, raw) for index, raw in enumerate(steps, start=1))


def _parse_step(index: int, raw: object) -> ScriptStep:
    kinds = [k for k in _STEP_TYPES if isinstance(raw, dict) and k in raw]
    if len(kinds) != 1:
        raise ScriptError(
            f"Invalid script: step {index} must have exactly one of "
            f"'say', 'sleep', 'tool', 'tools', 'fail', got {json.dumps(raw)[:80]}"
        )
    try:
        step = _STEP_TYPES[kinds[0]].model_validate(raw)
    except ValidationError as err:
        raise ScriptError(f"Invalid script: step {index}: {describe_errors(err)}") from None
    assert isinstance(step, SayStep | SleepStep | ToolStep | ToolsStep | FailStep)
    return step


class ScriptedAgent:
    """Runs the script in the thread's last user message, one step at a time."""

    replays_exactly = True

    async def step(self, ctx: StepContext) -> Step:
        """Advance the script by one step (or one slice of a sleep)."""
        script_at = _last_user_index(ctx.thread)
        state = dict(ctx.state)
        if state.get("script_at") != script_at or not _valid_state(state):
            state = {"script_at": script_at, "step": 0, "slept": 0.0}
        prompt = ctx.thread[script_at].content if script_at >= 0 else ""
        try:
            steps = parse_script(prompt)
        except ScriptError as err:
            return Step(state=state, error=str(err))
        if steps is None:
            return _say(ctx, prompt, state, finished=True)
        position = _as_int(state.get("step"))
        if position >= len(steps):
            return Step(state=state, finished=True)
        return await self._run(ctx, steps[position], state, script_at)

    async def _run(
        self, ctx: StepContext, current: ScriptStep, state: dict[str, JsonValue], script_at: int
    ) -> Step:
        position = _as_int(state.get("step"))
        advanced = {**state, "step": position + 1, "slept": 0.0}
        if isinstance(current, SayStep):
            return _say(ctx, current.say, advanced, finished=False)
        if isinstance(current, FailStep):
            return Step(state=advanced, error=current.fail)
        if isinstance(current, SleepStep):
            return await _sleep_slice(current.sleep, state, advanced)
        tools = current.tools if isinstance(current, ToolsStep) else [current]
        prefix = f"call-{ctx.epoch}-{script_at}-{position + 1}"
        calls = [
            ToolCall(
                id=prefix if len(tools) == 1 else f"{prefix}-{index}",
                name=tool.tool,
                args=_resolve_args(tool.args, lambda: _run_refs(ctx.thread, script_at)),
            )
            for index, tool in enumerate(tools, start=1)
        ]
        message = Message(role="assistant", tool_calls=calls)
        return Step(messages=[message], state=advanced, tool_calls=calls)


def _say(ctx: StepContext, text: str, state: dict[str, JsonValue], *, finished: bool) -> Step:
    for piece in re.findall(r"\S+\s*|\s+", text):
        ctx.emit_text(piece)
    return Step(messages=[Message(role="assistant", content=text)], state=state, finished=finished)


async def _sleep_slice(
    total: float, state: dict[str, JsonValue], advanced: dict[str, JsonValue]
) -> Step:
    slept = _as_float(state.get("slept"))
    chunk = min(SLEEP_SLICE, max(0.0, total - slept))
    await asyncio.sleep(chunk)
    if slept + chunk >= total:
        return Step(state=advanced)
    return Step(state={**state, "slept": slept + chunk})


def _valid_state(state: dict[str, JsonValue]) -> bool:
    """Whether a checkpointed (or resumed) state is one this agent could have written."""
    step, slept = state.get("step"), state.get("slept")
    return (
        isinstance(step, int)
        and not isinstance(step, bool)
        and step >= 0
        and isinstance(slept, int | float)
        and slept >= 0
    )


def _last_user_index(thread: list[Message]) -> int:
    for index in range(len(thread) - 1, -1, -1):
        if thread[index].role == "user":
            return index
    return -1


def _run_refs(thread: list[Message], script_at: int) -> list[str]:
    """The run_id each tool step of the current script got back, in order."""
    refs = []
    for message in thread[script_at + 1 :]:
        if message.role != "tool":
            continue
        try:
            result = json.loads(message.content)
        except ValueError:
            result = None
        run_id = result.get("run_id") if isinstance(result, dict) else None
        refs.append(run_id if isinstance(run_id, str) else "")
    return refs


def _resolve_args(
    args: dict[str, JsonValue], read_refs: Callable[[], list[str]]
) -> dict[str, JsonValue]:
    resolved: dict[str, JsonValue] = {}
    refs: list[str] | None = None  # read only when an argument refers to a run
    for key, value in args.items():
        if key == "prompt" and isinstance(value, dict | list):
            resolved[key] = json.dumps(value)
        elif isinstance(value, str) and (match := _RUN_REF.match(value)):
            refs = read_refs() if refs is None else refs
            number = int(match.group(1))
            known = 1 <= number <= len(refs) and refs[number - 1]
            resolved[key] = refs[number - 1] if known else value
        else:
            resolved[key] = value
    return resolved


def _as_int(value: JsonValue) -> int:
    return value if isinstance(value, int) else 0


def _as_float(value: JsonValue) -> float:
    return float(value) if isinstance(value, int | float) else 0.0
