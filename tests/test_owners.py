"""Owner scoping and listing (docs/delegation.md section 3 and 6)."""

from __future__ import annotations

import json

import pytest
from temporalio.client import Client
from temporalio.worker import Worker

from agentrun import AgentRunClient, DelegationError
from tests.helpers import eventually, run, script, tool_results

LONG = {"sleep": 60}


async def test_owners_cannot_see_read_stop_or_resume_each_others_runs(
    runs: AgentRunClient, owner: str
):
    mine = await runs.start(owner, "scripted", script({"say": "secret"}, LONG))
    await eventually(lambda: runs.summary(owner, mine), lambda s: s and s.assistant == "secret")
    intruder = f"{owner}-intruder"
    assert await runs.summary(intruder, mine) is None
    assert await runs.thread(intruder, mine) is None
    assert await runs.all(intruder) == []
    for attempt in (runs.stop_tree(intruder, mine), runs.resume(intruder, mine)):
        with pytest.raises(DelegationError) as err:
            await attempt
        # Exactly what a run that does not exist gives: nothing reveals it exists.
        assert str(err.value) == f"Unknown run_id: {mine}"
    with pytest.raises(DelegationError, match=f"^Unknown run_id: {mine}$"):
        async for _ in runs.events(intruder, mine):
            pass
    await runs.stop_tree(owner, mine)
    with pytest.raises(DelegationError, match=f"^Unknown run_id: {mine}$"):
        await runs.resume(intruder, mine)
    summary = await runs.summary(owner, mine)
    assert summary is not None and summary.status == "stopped"


async def test_running_or_stopped_excludes_completed_and_failed_sorted_by_run_id(
    runs: AgentRunClient, owner: str
):
    ids = {name: f"{owner}-{name}" for name in ("d-running", "a-stopped", "c-done", "b-failed")}
    await runs.start(owner, "scripted", script(LONG), run_id=ids["d-running"])
    await runs.start(owner, "scripted", script(LONG), run_id=ids["a-stopped"])
    await runs.start(owner, "scripted", "ok", run_id=ids["c-done"])
    await runs.start(owner, "scripted", script({"fail": "bad"}), run_id=ids["b-failed"])
    await runs.stop_tree(owner, ids["a-stopped"])
    await runs.wait(owner, ids["c-done"], timeout=20)
    await runs.wait(owner, ids["b-failed"], timeout=20)
    everything = await eventually(lambda: runs.all(owner), lambda found: len(found) == 4)
    assert [(s.run_id, s.status) for s in everything] == [
        (ids["a-stopped"], "stopped"),
        (ids["b-failed"], "failed"),
        (ids["c-done"], "completed"),
        (ids["d-running"], "running"),
    ]
    live = await runs.running_or_stopped(owner)
    assert [(s.run_id, s.status) for s in live] == [
        (ids["a-stopped"], "stopped"),
        (ids["d-running"], "running"),
    ]
    await runs.stop_tree(owner, ids["d-running"])


@pytest.mark.parametrize("state", ["running", "closed"])
async def test_a_run_id_another_owner_took_never_blocks_or_reveals_a_delegation(
    runs: AgentRunClient, owner: str, state: str
):
    # Child ids are predictable (<parent>.<n>): the intruder takes the first one.
    root = f"{owner}-root"
    intruder = f"{owner}-intruder"
    prompt = script({"say": "mine"}, {"sleep": 60}) if state == "running" else "mine"
    squatted = await runs.start(intruder, "scripted", prompt, run_id=f"{root}.1-scripted")
    before = await eventually(lambda: runs.summary(intruder, squatted), lambda s: s and s.assistant)
    await runs.start(owner, "scripted", script(run("scripted", "child says hi")), run_id=root)
    final = await runs.wait(owner, root, timeout=60)
    assert final.status == "completed"
    (result,) = tool_results(await runs.thread(owner, root))
    assert result["status"] == "completed" and result["assistant"] == "child says hi"
    assert result["run_id"].startswith(f"{root}.1-scripted-") and intruder not in json.dumps(result)
    assert await runs.summary(owner, squatted) is None  # the intruder's run stays its own
    assert await runs.summary(intruder, squatted) == before
    if state == "running":
        await runs.stop_tree(intruder, squatted)


async def test_another_owners_closed_run_is_refused_before_any_worker_is_asked(
    test_agents_client: Client, temporal: Client, queue: str, owner: str
):
    """Whose run it is comes from Temporal (describe) before any query: another owner's
    closed run costs what a missing one does, not a replay of its history on a worker
    (issue #18, finding 12)."""
    runs = AgentRunClient(temporal, queue)
    async with Worker(test_agents_client, task_queue=queue):
        run_id = await runs.start(owner, "scripted", script({"say": "secret"}))
        done = await runs.wait(owner, run_id, timeout=20)
    # No worker serves the queue now: a query of the run would wait for one, then fail.
    intruder = f"{owner}-intruder"
    assert await runs.summary(intruder, run_id) is None
    assert await runs.summary(intruder, f"{run_id}-missing") is None
    assert await runs.thread(intruder, run_id) is None
    with pytest.raises(DelegationError, match=f"^Unknown run_id: {run_id}$"):
        await runs.wait(intruder, run_id, timeout=20)
    # Its owner reads it without a worker too: a completed run's result is its summary.
    assert await runs.summary(owner, run_id) == done
    assert (done.status, done.assistant) == ("completed", "secret")
