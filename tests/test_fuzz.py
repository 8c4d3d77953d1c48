"""Bad input everywhere (hypothesis): random JSON at the workflow input, the scripted
agent's language, the delegation tools' arguments and the owner's client.

Every case ends within seconds, completed or failed with a clear message, never with a
task that Temporal retries; runs started beside the fuzzing complete. What is generated
and what each case must give back is in tests/fuzz_inputs.py; the engine bugs the
fuzzing found are pinned by the regression tests at the end of this file.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from temporalio.api.common.v1 import Payload
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError
from temporalio.common import RawValue
from temporalio.exceptions import ApplicationError

from agentrun import AgentRunClient, DelegationError
from agentrun._constants import WORKFLOW_TYPE
from tests.fuzz_inputs import (
    PARENTS,
    PROMPTS,
    TOOL_CALLS,
    WORKFLOW_INPUTS,
    ClientCall,
    Expected,
    Known,
    check_client_outcome,
    check_input_ending,
    check_script_ending,
    client_calls,
    tool_oracle,
)
from tests.helpers import child, eventually, run, script, tool, tool_results, turn_results
from tests.properties import Ending, LoopBridge, ending, property_settings


@contextlib.asynccontextmanager
async def good_runs_alongside(runs: AgentRunClient, owner: str) -> AsyncIterator[None]:
    """Three good runs started before the fuzzing; each must complete after it."""
    good_owner = f"{owner}-good"
    good = [
        await runs.start(
            good_owner,
            "scripted",
            script(
                {"say": f"good {i}"},
                run("scripted", child({"sleep": 2}, {"say": "bg"}), background=True),
                {"sleep": 2},
                run("scripted", child({"say": f"child {i}"})),
                {"say": f"done {i}"},
            ),
        )
        for i in range(3)
    ]
    yield
    for i, run_id in enumerate(good):
        summary = await runs.wait(good_owner, run_id, timeout=30)
        assert (summary.status, summary.assistant) == ("completed", f"done {i}")


async def test_random_workflow_input_ends_at_once_completed_or_with_a_clear_error(
    temporal: Client, runs: AgentRunClient, owner: str, queue: str
):
    bridge = LoopBridge.here()
    numbers = itertools.count()

    async def start_all(payloads: list[Any]) -> list[Ending]:
        run_ids = [f"fuzz-{queue}-{next(numbers)}" for _ in payloads]
        for run_id, payload in zip(run_ids, payloads, strict=True):
            await temporal.start_workflow(WORKFLOW_TYPE, payload, id=run_id, task_queue=queue)
        return list(await asyncio.gather(*(ending(temporal, r) for r in run_ids)))

    # Each example is a batch of inputs started together, so the worker sees them at once.
    @property_settings(max_examples=12)
    @given(st.lists(WORKFLOW_INPUTS, min_size=1, max_size=6))
    def every_input_ends(payloads: list[Any]) -> None:
        endings = bridge.run(start_all(payloads))
        for payload, end in zip(payloads, endings, strict=True):
            check_input_ending(payload, end)

    async with good_runs_alongside(runs, owner):
        await bridge.check(every_input_ends)


async def test_random_scripts_complete_or_fail_naming_the_bad_step(
    temporal: Client, runs: AgentRunClient, owner: str
):
    bridge = LoopBridge.here()

    async def start_all(prompts: list[str]) -> list[Ending]:
        run_ids = [await runs.start(owner, "scripted", p) for p in prompts]
        return list(await asyncio.gather(*(ending(temporal, r) for r in run_ids)))

    @property_settings(max_examples=10)
    @given(st.lists(PROMPTS, min_size=1, max_size=4))
    def every_script_ends(cases: list[Expected]) -> None:
        endings = bridge.run(start_all([c.prompt for c in cases]))
        for expected, end in zip(cases, endings, strict=True):
            check_script_ending(expected, end)

    async with good_runs_alongside(runs, owner):
        await bridge.check(every_script_ends)


ToolScript = tuple[str, list[tuple[str, dict[str, Any]]]]


async def test_random_tool_arguments_give_a_summary_or_a_documented_error(
    temporal: Client, runs: AgentRunClient, owner: str
):
    bridge = LoopBridge.here()

    async def run_all(cases: list[ToolScript]) -> list[str]:
        run_ids = []
        for agent_id, calls in cases:
            steps = [{"tool": name, "args": args} for name, args in calls]
            run_ids.append(await runs.start(owner, agent_id, script(*steps, {"say": "end"})))
        for end in await asyncio.gather(*(ending(temporal, r) for r in run_ids)):
            assert not end.stuck and end.status == WorkflowExecutionStatus.COMPLETED, end
            assert end.result["assistant"] == "end", end
        return run_ids

    @property_settings(max_examples=10)
    @given(st.lists(st.tuples(PARENTS, st.lists(TOOL_CALLS, min_size=1, max_size=4)), max_size=3))
    def every_tool_call_answers(cases: list[ToolScript]) -> None:
        run_ids = bridge.run(run_all(cases))
        for run_id, (agent_id, calls) in zip(run_ids, cases, strict=True):
            oracle = tool_oracle(run_id, agent_id)
            results = tool_results(bridge.run(runs.thread(owner, run_id)))
            assert len(results) == len(calls)
            for (name, args), result in zip(calls, results, strict=True):
                oracle.check(name, args, result)

    async with good_runs_alongside(runs, owner):
        await bridge.check(every_tool_call_answers)


async def plant(runs: AgentRunClient, owner: str) -> Known:
    """A running tree, a completed run and a stopped run of ``owner``."""
    sleeper = script(run("scripted", child({"sleep": 300}), background=True), {"sleep": 300})
    known = Known(
        owner=owner,
        running=await runs.start(owner, "scripted", sleeper),
        completed=await runs.start(owner, "scripted", "done"),
        stopped=await runs.start(owner, "scripted", script({"sleep": 300})),
    )
    await runs.wait(owner, known.completed, timeout=20)
    await runs.stop_tree(owner, known.stopped)
    await eventually(
        lambda: runs.summary(owner, f"{known.running}.1-scripted"), lambda s: s is not None
    )
    return known


_STARTS = itertools.count()


async def call_client(runs: AgentRunClient, call: ClientCall) -> object:
    """Make the call; its result, or the exception it raised."""
    name, owner, *rest = call
    try:
        if name == "start":
            agent_id, prompt, suffix = rest
            run_id = None if suffix is None else f"fuzz-{next(_STARTS)}-{suffix}"
            return await runs.start(owner, agent_id, prompt, run_id=run_id)
        if name == "events":
            return await first_event(runs, owner, rest[0])
        if name == "wait":
            return await runs.wait(owner, rest[0], timeout=2)
        return await getattr(runs, name)(owner, *rest)
    except Exception as err:
        return err


async def first_event(runs: AgentRunClient, owner: str, run_id: str) -> object:
    events = runs.events(owner, run_id)
    assert isinstance(events, AsyncGenerator)
    try:
        return await asyncio.wait_for(anext(events), 10)
    finally:
        await events.aclose()


async def test_random_client_calls_return_nothing_or_raise_a_clear_error(
    runs: AgentRunClient, owner: str
):
    bridge = LoopBridge.here()

    async def call_all(calls: list[ClientCall]) -> list[object]:
        return list(await asyncio.gather(*(call_client(runs, c) for c in calls)))

    async with good_runs_alongside(runs, owner):
        known = await plant(runs, owner)

        @property_settings(max_examples=15)
        @given(st.lists(client_calls(known), min_size=1, max_size=8))
        def every_call_answers(calls: list[ClientCall]) -> None:
            results = bridge.run(call_all(calls))
            for call, result in zip(calls, results, strict=True):
                check_client_outcome(known, call, result)

        await bridge.check(every_call_answers)
        for run_id in (known.running, known.stopped):
            with contextlib.suppress(DelegationError):
                await runs.stop_tree(owner, run_id)


# --- Regression tests: engine bugs that the properties above found --------------------


async def _raw_ending(temporal: Client, queue: str, name: str, payload: Any) -> Ending:
    run_id = f"bug-{queue}-{name}"
    await temporal.start_workflow(WORKFLOW_TYPE, payload, id=run_id, task_queue=queue)
    try:
        return await ending(temporal, run_id)
    finally:
        with contextlib.suppress(Exception):
            await temporal.get_workflow_handle(run_id).terminate("test cleanup")


def _fails_at_once_naming(end: Ending, *names: str) -> None:
    assert not end.stuck, end
    assert end.status == WorkflowExecutionStatus.FAILED, end
    assert isinstance(end.failure, ApplicationError) and end.failure.type == "InvalidInput", end
    assert all(name in end.failure.message for name in names), end


# Regression (found by fuzzing; the engine used to do this): epoch beyond int64 passes validation,
# then the DelegationEpoch search attribute upsert fails every workflow task (BadSearchAttributes):
# retried forever
async def test_epoch_beyond_int64_fails_at_once_as_invalid_input(
    temporal: Client, runs: AgentRunClient, queue: str
):
    payload = {"owner_thread_id": "t", "agent_id": "scripted", "prompt": "hi", "epoch": 2**63}
    _fails_at_once_naming(await _raw_ending(temporal, queue, "epoch", payload), "epoch")


# Regression (found by fuzzing; the engine used to do this): owner_thread_id/agent_id over
# Temporal's 2048-byte Keyword limit are accepted; the server then fails the workflow task and
# closes the run with BadSearchAttributes
@pytest.mark.parametrize("field_name", ["owner_thread_id", "agent_id"])
async def test_ids_over_the_keyword_limit_fail_at_once_as_invalid_input(
    temporal: Client, runs: AgentRunClient, queue: str, field_name: str
):
    payload = {"owner_thread_id": "t", "agent_id": "scripted", "prompt": "hi"}
    payload[field_name] = "x" * 3000
    _fails_at_once_naming(await _raw_ending(temporal, queue, field_name, payload), field_name)


# Regression (found by fuzzing; the engine used to do this): the client's start accepts an owner
# over the 2048-byte Keyword limit; the server fails the run before its first workflow task, and
# summary/wait/thread then raise RPCError FAILED_PRECONDITION ('Workflow execution closed before
# WorkflowTaskStarted event') instead of answering
async def test_client_start_rejects_an_owner_over_the_keyword_limit(runs: AgentRunClient):
    owner = "o" * 3000
    try:
        run_id = await runs.start(owner, "scripted", "hi")
    except ValueError:
        return  # rejected up front with a message: the fix
    summary = await runs.wait(owner, run_id, timeout=20)
    assert summary.status == "failed" and summary.error


# Regression (found by fuzzing; the engine used to do this): a 'running' entry in the input's
# children (a resume-path field) is trusted: the run finishes its script, then waits forever for a
# child that does not exist
async def test_a_running_child_in_the_input_does_not_hold_the_run_open(
    temporal: Client, runs: AgentRunClient, queue: str
):
    run_id = f"bug-{queue}-children"
    payload = {
        "owner_thread_id": "t",
        "agent_id": "scripted",
        "prompt": "hi",
        "children": [{"run_id": "ghost", "agent_id": "scripted", "status": "running"}],
    }
    await temporal.start_workflow(WORKFLOW_TYPE, payload, id=run_id, task_queue=queue)
    try:
        await eventually(lambda: turn_results(temporal, run_id), bool)
        end = await ending(temporal, run_id, within=10)
        assert not end.stuck, end
    finally:
        with contextlib.suppress(Exception):
            await temporal.get_workflow_handle(run_id).terminate("test cleanup")


# Regression (found by fuzzing; the engine used to do this): agent_state (a resume-path field) is
# trusted: with script_at matching the script and a negative step the scripted agent indexes past
# the script, and the turn activity raises IndexError on every attempt (retried forever)
async def test_a_bad_agent_state_in_the_input_does_not_retry_forever(
    temporal: Client, runs: AgentRunClient, queue: str
):
    payload = {
        "owner_thread_id": "t",
        "agent_id": "scripted",
        "prompt": script({"say": "one"}),
        "agent_state": {"script_at": 0, "step": -5},
    }
    end = await _raw_ending(temporal, queue, "agent-state", payload)
    assert not end.stuck, end


# Regression (found by fuzzing; the engine used to do this): an input payload the pydantic
# converter cannot decode (not JSON, or JSON with a lone-surrogate escape) fails every workflow
# task with 'Failed decoding arguments', retried forever, instead of failing the run as invalid
# input
@pytest.mark.parametrize(
    ("name", "encoding", "data"),
    [
        ("not-json", b"json/plain", b"not json"),
        (
            "surrogate",
            b"json/plain",
            b'{"owner_thread_id":"t","agent_id":"scripted","prompt":"\\ud800"}',
        ),
    ],
    ids=["not-json", "surrogate"],
)
async def test_an_undecodable_input_fails_the_run_at_once(
    temporal: Client, runs: AgentRunClient, queue: str, name: str, encoding: bytes, data: bytes
):
    payload = RawValue(Payload(metadata={"encoding": encoding}, data=data))
    end = await _raw_ending(temporal, queue, name, payload)
    assert not end.stuck and end.status == WorkflowExecutionStatus.FAILED, end


# Regression (found by fuzzing; the engine used to do this): a script string with a lone-surrogate
# escape (plain ASCII JSON such as "\ud800") reaches the turn's events and result, which cannot be
# encoded as UTF-8: the turn activity fails with UnicodeEncodeError on every attempt, retried
# forever
@pytest.mark.parametrize(
    "step",
    [
        {"say": "\ud800"},
        run("\ud800", "x"),
        run("scripted", "\ud800"),
        tool("agent_output", run_id="\ud800"),
    ],
    ids=["say", "agent_id", "prompt", "run_id"],
)
async def test_a_lone_surrogate_in_a_script_ends_the_run(
    temporal: Client, runs: AgentRunClient, owner: str, step: dict[str, Any]
):
    run_id = await runs.start(owner, "scripted", script(step))
    try:
        end = await ending(temporal, run_id)
        assert not end.stuck, end
    finally:
        with contextlib.suppress(Exception):
            await temporal.get_workflow_handle(run_id).terminate("test cleanup")


# Regression (found by fuzzing; the engine used to do this): a fail step whose message is a lone
# surrogate: the turn's result cannot be encoded, and the retried turn resumes from the checkpoint
# heartbeated after the fail step, so the error is lost and the run completes
async def test_a_fail_step_fails_the_run_even_when_its_message_cannot_be_encoded(
    temporal: Client, runs: AgentRunClient, owner: str
):
    run_id = await runs.start(owner, "scripted", script({"say": "before"}, {"fail": "\ud800"}))
    with pytest.raises(WorkflowFailureError):
        await asyncio.wait_for(temporal.get_workflow_handle(run_id).result(), 20)


# Regression (found by fuzzing; the engine used to do this): all() (and so running_or_stopped())
# quotes the owner into a visibility query without handling NUL: the server answers UNAVAILABLE
# 'SQL logic error: unrecognized token', retried by the client for ~8 s, then raised as RPCError
async def test_listing_an_owner_with_a_nul_character_finds_nothing(runs: AgentRunClient):
    assert await runs.all("a\x00b") == []


# Regression (found by fuzzing; the engine used to do this): start does not check the run_id
# against Temporal's 1000-character WorkflowId limit: it raises temporalio.service.RPCError
# INVALID_ARGUMENT, not ValueError
async def test_client_start_rejects_an_over_long_run_id_with_value_error(
    runs: AgentRunClient, owner: str
):
    with pytest.raises(ValueError, match="run_id"):
        await runs.start(owner, "scripted", "hi", run_id="r" * 1001)
