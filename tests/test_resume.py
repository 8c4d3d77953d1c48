"""Resume: a stopped run continues as its next epoch (docs/delegation.md sections 1, 3, 6)."""

from __future__ import annotations

import pytest
from temporalio.client import Client
from temporalio.service import RPCError

from agentrun import AgentRunClient, DelegationError
from agentrun._constants import SIGNAL_ASSISTANT_OUTPUT
from agentrun._models import AssistantOutput
from tests.helpers import child, eventually, run, script, tool, tool_results


async def test_start_stop_resume_completes_with_epoch_two(
    runs: AgentRunClient, temporal: Client, owner: str
):
    run_id = await runs.start(
        owner, "scripted", script({"say": "one"}, {"sleep": 60}, {"say": "x"})
    )
    await eventually(lambda: runs.summary(owner, run_id), lambda s: s and s.assistant == "one")
    await runs.stop_tree(owner, run_id)
    epoch_one = (await temporal.get_workflow_handle(run_id).describe()).run_id

    resumed = await runs.resume(owner, run_id, script({"sleep": 1}, {"say": "two"}))
    assert (resumed.run_id, resumed.epoch, resumed.status) == (run_id, 2, "running")
    # A late word from epoch 1 reaches neither the closed epoch nor the new one.
    late = AssistantOutput(epoch=1, turn=1, text="stale")
    with pytest.raises(RPCError):
        await temporal.get_workflow_handle(run_id, run_id=epoch_one).signal(
            SIGNAL_ASSISTANT_OUTPUT, late
        )
    await temporal.get_workflow_handle(run_id).signal(SIGNAL_ASSISTANT_OUTPUT, late)
    final = await runs.wait(owner, run_id, timeout=20)
    assert (final.status, final.epoch, final.assistant) == ("completed", 2, "two")
    thread = await runs.thread(owner, run_id)
    assert thread is not None
    assert [m.content for m in thread if m.role == "assistant"] == ["one", "two"]
    assert [m.role for m in thread] == ["user", "assistant", "user", "assistant"]


async def test_resume_without_prompt_continues_the_script(runs: AgentRunClient, owner: str):
    run_id = await runs.start(owner, "scripted", script({"sleep": 60}, {"say": "after the nap"}))
    await runs.stop_tree(owner, run_id)
    await runs.resume(owner, run_id)
    # The stopped sleep step is taken up where it stopped: the run then naps again.
    await runs.stop_tree(owner, run_id)
    summary = await runs.summary(owner, run_id)
    assert summary is not None and (summary.status, summary.epoch) == ("stopped", 2)


async def test_resume_of_a_run_in_another_status_names_the_status(runs: AgentRunClient, owner: str):
    run_id = await runs.start(owner, "scripted", "hello")
    await runs.wait(owner, run_id, timeout=20)
    with pytest.raises(DelegationError) as err:
        await runs.resume(owner, run_id, "again")
    assert "current status: completed" in str(err.value)
    with pytest.raises(DelegationError, match=r"^Unknown run_id: nope$"):
        await runs.resume(owner, "nope")


async def test_agent_resumes_a_stopped_child_through_agent_run(runs: AgentRunClient, owner: str):
    run_id = await runs.start(
        owner,
        "scripted",
        script(
            run("scripted", child({"say": "first"}, {"sleep": 60}), background=True),
            {"sleep": 0.5},
            tool("agent_stop", run_id="$1"),
            tool("agent_run", run_id="$1", prompt=child({"say": "second"})),
            tool("agent_output", run_id="$1"),
        ),
    )
    final = await runs.wait(owner, run_id, timeout=30)
    assert final.status == "completed"
    results = tool_results(await runs.thread(owner, run_id))
    assert results[1]["status"] == "stopped"
    assert results[2]["status"] == "completed" and results[2]["assistant"] == "second"
    assert results[3] == {
        "run_id": f"{run_id}.1-scripted",
        "agent_id": "scripted",
        "status": "completed",
        "output": "second",
    }
    resumed = await runs.summary(owner, f"{run_id}.1-scripted")
    assert resumed is not None and resumed.epoch == 2 and resumed.parent_run_id == run_id


async def test_owner_resumes_a_child_and_it_stays_in_its_parents_tree(
    runs: AgentRunClient, temporal: Client, owner: str
):
    run_id = await runs.start(
        owner,
        "scripted",
        script(
            run("scripted", child({"sleep": 60}), background=True),
            run("scripted", child({"sleep": 60}), background=True),
            {"sleep": 60},
        ),
    )
    await eventually(lambda: runs.summary(owner, f"{run_id}.2-scripted"), lambda s: s is not None)
    await runs.stop_tree(owner, f"{run_id}.1-scripted")
    resumed = await runs.resume(owner, f"{run_id}.1-scripted", script({"say": "back"}))
    assert resumed.epoch == 2
    done = await runs.wait(owner, f"{run_id}.1-scripted", timeout=20)
    assert done.assistant == "back"
    description = await temporal.get_workflow_handle(f"{run_id}.1-scripted").describe()
    assert description.parent_id == run_id
    await runs.stop_tree(owner, run_id)
