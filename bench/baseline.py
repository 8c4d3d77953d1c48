"""The hand-written Temporal baseline: the same shape as an agentrun delegation, no agentrun.

A parent workflow runs a "turn" activity, starts a child workflow per delegation (each
child runs one activity and answers), runs a last turn, and waits for its children, as
an ``AgentRun`` parent does. The worker gets the same settings as ``build_worker``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import timedelta

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.worker import Worker

with workflow.unsafe.imports_passed_through():
    from agentrun._constants import HEARTBEAT_EVERY, HEARTBEAT_THROTTLE, TURN_HEARTBEAT_TIMEOUT
    from agentrun._plugin import (
        GRACEFUL_SHUTDOWN,
        NONSTICKY_POLL_RATIO,
        STICKY_TIMEOUT,
        WORKFLOW_TASK_POLLS,
    )
    from agentrun._settings import load_settings
    from bench._harness import ACTIVITY_STARTS, shared_process_runner

TURN_TIMEOUT = timedelta(minutes=5)


@dataclass
class ParentInput:
    """How many children the parent delegates, and whether it waits for each."""

    children: int = 1
    background: bool = False


@activity.defn(name="baseline_turn")
async def baseline_turn(text: str) -> str:
    """A trivial turn: answers at once."""
    return text


@workflow.defn(name="BaselineChild")
class BaselineChild:
    """A child that runs one turn and answers."""

    @workflow.run
    async def run(self, prompt: str) -> str:
        return await workflow.execute_activity(
            baseline_turn, prompt, start_to_close_timeout=TURN_TIMEOUT
        )


@workflow.defn(name="BaselineParent")
class BaselineParent:
    """A parent that delegates like a scripted agentrun parent: turn, child, ..., turn."""

    @workflow.run
    async def run(self, request: ParentInput) -> str:
        me = workflow.info().workflow_id
        background: list[workflow.ChildWorkflowHandle[BaselineChild, str]] = []
        for index in range(request.children):
            await workflow.execute_activity(
                baseline_turn, "call", start_to_close_timeout=TURN_TIMEOUT
            )
            child_id = f"{me}.{index + 1}"
            if request.background:
                background.append(
                    await workflow.start_child_workflow(BaselineChild.run, "hi", id=child_id)
                )
            else:
                await workflow.execute_child_workflow(BaselineChild.run, "hi", id=child_id)
        answer = await workflow.execute_activity(
            baseline_turn, "done", start_to_close_timeout=TURN_TIMEOUT
        )
        await asyncio.gather(*background)
        return answer


@activity.defn(name="baseline_sleep")
async def baseline_sleep(seconds: float) -> None:
    """A leaf's turn: sleeps, heartbeating like an agentrun turn, until cancelled."""
    deadline = asyncio.get_running_loop().time() + seconds
    while asyncio.get_running_loop().time() < deadline:
        activity.heartbeat()
        await asyncio.sleep(HEARTBEAT_EVERY)


@workflow.defn(name="BaselineTree")
class BaselineTree:
    """A node of a stop-cascade tree: ``fanout[0]`` children of ``fanout[1:]`` each, or a
    sleeping leaf. A cancel cascades the SDK's way (the awaiting child handles cancel),
    and a node closes only once every child has closed, as an agentrun run does: a
    plain ``gather`` would close it at its first cancelled child, and Temporal would
    terminate the rest (parent close policy) before their sleeps saw the cancel."""

    @workflow.run
    async def run(self, fanout: list[int]) -> None:
        if not fanout:
            await workflow.execute_activity(
                baseline_sleep,
                600.0,
                start_to_close_timeout=TURN_TIMEOUT * 3,
                heartbeat_timeout=TURN_HEARTBEAT_TIMEOUT,
                cancellation_type=workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
            )
            return
        me = workflow.info().workflow_id
        children = [
            workflow.execute_child_workflow(BaselineTree.run, fanout[1:], id=f"{me}.{n + 1}")
            for n in range(fanout[0])
        ]
        # Cancelled, this gather cancels every child, waits for all, then raises.
        for result in await asyncio.gather(*children, return_exceptions=True):
            if isinstance(result, BaseException):
                raise result


def baseline_worker(client: Client, queue: str) -> Worker:
    """The baseline's worker, with agentrun's settings."""
    return Worker(
        client,
        task_queue=queue,
        workflows=[BaselineParent, BaselineChild, BaselineTree],
        workflow_runner=shared_process_runner(),
        activities=[baseline_turn, baseline_sleep],
        interceptors=[ACTIVITY_STARTS],
        max_concurrent_activities=load_settings().max_concurrent_turns,
        max_heartbeat_throttle_interval=HEARTBEAT_THROTTLE,
        default_heartbeat_throttle_interval=HEARTBEAT_THROTTLE,
        graceful_shutdown_timeout=GRACEFUL_SHUTDOWN,
        sticky_queue_schedule_to_start_timeout=STICKY_TIMEOUT,
        workflow_task_poller_behavior=WORKFLOW_TASK_POLLS,
        nonsticky_to_sticky_poll_ratio=NONSTICKY_POLL_RATIO,
    )


async def plain_client(address: str) -> Client:
    """A client without agentrun's plugin (default converter)."""
    return await Client.connect(address)
