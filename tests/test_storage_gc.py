"""Stored payloads go once no run can read them; what many runs share is stored once.

``collect_garbage`` is given ``older_than=0`` where a test needs a closed run to count
as closed longer than the retention period (the dev server's namespace keeps closed
runs for a day); workers keep no workflow cached, so every query of a run replays its
history and reads its stored payloads again.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from agentrun import AgentRunClient, AgentRunSettings, Message
from agentrun._blobs import BlobDirectory, Reference
from agentrun._chunks import cuts
from agentrun._models import AgentRunInput
from agentrun._plugin import PayloadSettings
from agentrun._storage import StorageSettings
from agentrun._storage_gc import GcReport, collect_garbage
from tests.conftest import server_address
from tests.helpers import ROOT, child, eventually, run, script, stored_blobs
from tests.test_payloads import connect_with, large_thread

MB = 1_000_000
NO_GRACE = timedelta(0)
SLEEPING = script({"sleep": 600})
CHILDREN = 20


@dataclass
class Stored:
    """A client and worker on local storage, and the runs' client."""

    client: Client
    storage: StorageSettings
    runs: AgentRunClient
    directory: Path

    async def collect(self, **options: Any) -> GcReport:
        return await collect_garbage(self.client, self.storage, **options)

    def blobs(self) -> list[Path]:
        return stored_blobs(self.directory)

    def references(self) -> dict[str, frozenset[Reference]]:
        return {blob.name: blob.references for blob in BlobDirectory(self.directory).blobs()}


async def stored_on(
    env: WorkflowEnvironment, queue: str, directory: Path, *, cached: bool
) -> AsyncIterator[Stored]:
    storage = StorageSettings.local(directory)
    client = await connect_with(env, PayloadSettings(storage))
    async with Worker(client, task_queue=queue, max_cached_workflows=1000 if cached else 0):
        yield Stored(client, storage, AgentRunClient(client, queue), directory)


@pytest.fixture
async def stored(env: WorkflowEnvironment, queue: str, tmp_path: Path) -> AsyncIterator[Stored]:
    """Local storage, and a worker that replays every run at each task and query."""
    async for ready in stored_on(env, queue, tmp_path / "blobs", cached=False):
        yield ready


@pytest.fixture
async def cached(env: WorkflowEnvironment, queue: str, tmp_path: Path) -> AsyncIterator[Stored]:
    """Local storage, and a worker that keeps runs cached (a tree of many runs is quick)."""
    async for ready in stored_on(env, queue, tmp_path / "blobs", cached=True):
        yield ready


async def listed(client: Client, run_id: str, *, running: bool) -> None:
    """Wait until visibility, which gc reads and which can lag, shows the run so."""
    status = f"ExecutionStatus {'=' if running else '!='} 'Running'"
    query = f"WorkflowId = '{run_id}' AND {status}"
    await eventually(lambda: client.count_workflows(query), lambda counted: counted.count == 1)


async def started_with(stored: Stored, owner: str, prior: list[Message], prompt: str) -> str:
    return await stored.runs.start(owner, "scripted", prompt, messages=prior)


async def stop(stored: Stored, owner: str, run_id: str) -> None:
    await stored.runs.stop_tree(owner, run_id)
    assert (await stored.runs.wait(owner, run_id, timeout=60)).status == "stopped"
    await listed(stored.client, run_id, running=False)


async def completed(stored: Stored, owner: str, run_id: str) -> None:
    assert (await stored.runs.wait(owner, run_id, timeout=60)).status == "completed"
    await listed(stored.client, run_id, running=False)


async def test_a_runs_payloads_go_once_its_tree_is_closed_longer_than_the_retention(
    stored: Stored, owner: str
):
    run_id = await started_with(stored, owner, large_thread(MB), script({"say": "ok"}))
    await completed(stored, owner, run_id)
    blobs = stored.blobs()
    assert blobs, "nothing went to external storage"
    total = sum(blob.stat().st_size for blob in blobs)

    within_retention = await stored.collect()  # the namespace keeps closed runs a day
    assert (within_retention.deleted, within_retention.kept) == ([], len(blobs))
    preview = await stored.collect(older_than=NO_GRACE, dry_run=True)
    assert len(preview.deleted) == len(blobs) and stored.blobs() == blobs

    report = await stored.collect(older_than=NO_GRACE)
    assert {blob.workflows for blob in report.deleted} == {(run_id,)}
    assert report.freed_bytes == total
    assert stored.blobs() == []
    assert "deleted" in report.describe() and "freed" in report.describe()


async def test_the_payloads_a_running_run_reads_are_kept(stored: Stored, owner: str):
    prior = large_thread(MB)
    run_id = await started_with(stored, owner, prior, SLEEPING)
    await listed(stored.client, run_id, running=True)
    blobs = stored.blobs()

    report = await stored.collect(older_than=NO_GRACE)
    assert (report.deleted, report.kept) == ([], len(blobs))
    thread = await stored.runs.thread(owner, run_id)  # replays: reads the stored input
    assert thread is not None and thread[: len(prior)] == prior

    await stop(stored, owner, run_id)
    await stored.collect(older_than=NO_GRACE)
    assert stored.blobs() == []


async def test_a_payload_shared_by_a_closed_and_a_running_run_is_kept(stored: Stored, owner: str):
    prior = large_thread(MB)
    closed = await started_with(stored, owner, prior, script({"say": "ok"}))
    await completed(stored, owner, closed)
    running = await started_with(stored, owner, prior, SLEEPING)
    await listed(stored.client, running, running=True)
    shared = {
        name
        for name, references in stored.references().items()
        if {r.workflow_id for r in references} == {closed, running}
    }
    assert shared, "the two runs share no stored chunk of their common thread"

    report = await stored.collect(older_than=NO_GRACE)
    assert report.deleted, "nothing of the closed run alone was deleted"
    assert all(blob.workflows == (closed,) for blob in report.deleted)
    assert shared <= {blob.name for blob in stored.blobs()}
    thread = await stored.runs.thread(owner, running)
    assert thread is not None and thread[: len(prior)] == prior

    await stop(stored, owner, running)
    await stored.collect(older_than=NO_GRACE)
    assert stored.blobs() == []


async def test_a_thread_forked_to_20_children_is_stored_once(cached: Stored, owner: str):
    stored = cached
    prior = large_thread(MB)
    forks = [
        run("scripted", child({"say": f"child {i}"}), fork_context=True, background=True)
        for i in range(CHILDREN)
    ]
    run_id = await started_with(stored, owner, prior, script(*forks, {"say": "done"}))
    assert (await stored.runs.wait(owner, run_id, timeout=180)).status == "completed"
    for i in range(1, CHILDREN + 1):
        thread = await stored.runs.thread(owner, f"{run_id}.{i}-scripted")
        assert thread is not None and thread[: len(prior)] == prior

    # Stored whole, each child's input and each child's read of its thread were 1 MB
    # apiece: 42 blobs, 42 MB.
    stored_bytes = sum(blob.stat().st_size for blob in stored.blobs())
    assert stored_bytes < 3 * MB, f"{stored_bytes} bytes stored for a 1 MB thread"
    readers = max(len(references) for references in stored.references().values())
    assert readers == CHILDREN + 1, "no chunk of the thread is shared by parent and children"


def chunks_of(value: object) -> dict[str, int]:
    """The chunks local storage cuts a value's payload into: hash to size."""
    [payload] = pydantic_data_converter.payload_converter.to_payloads([value])
    data = payload.SerializeToString()
    offsets = cuts(data)
    bounds = zip([0, *offsets], [*offsets, len(data)], strict=True)
    return {hashlib.sha256(data[a:b]).hexdigest(): b - a for a, b in bounds}


def test_payloads_of_one_thread_with_other_heads_and_tails_share_its_chunks():
    thread = large_thread(2 * MB, parts=200)
    child_input = AgentRunInput(
        owner_thread_id="o", agent_id="writer", messages=[*thread, Message.user("go")]
    )
    read_back = [*thread, Message.user("carry on " * 100), Message(role="assistant")]
    first, second = chunks_of(child_input), chunks_of(read_back)
    shared = sum(size for chunk, size in first.items() if chunk in second)
    assert shared > 1.8 * MB, f"{shared} bytes of a 2 MB thread shared"


async def test_a_blob_stored_again_while_it_is_judged_is_not_deleted(
    env: WorkflowEnvironment, tmp_path: Path
):
    blobs = BlobDirectory(tmp_path)
    blobs.put("ab" * 32, b"payload", Reference(env.client.namespace, "run-long-gone"))
    [judged] = blobs.blobs()
    blobs.put("ab" * 32, b"payload", Reference(env.client.namespace, "run-new"))
    assert not blobs.delete_unchanged(judged)
    assert [blob.name for blob in blobs.blobs()] == ["ab" * 32]
    # The same blob judged again, with both runs long gone, goes.
    report = await collect_garbage(env.client, StorageSettings.local(tmp_path), older_than=NO_GRACE)
    assert [blob.workflows for blob in report.deleted] == [("run-long-gone", "run-new")]


async def test_a_blob_that_records_no_workflow_is_kept_and_counted(
    env: WorkflowEnvironment, tmp_path: Path
):
    (tmp_path / "cd").mkdir()
    (tmp_path / "cd" / ("cd" * 32)).write_bytes(b"x" * 100)  # as written before records
    report = await collect_garbage(env.client, StorageSettings.local(tmp_path), older_than=NO_GRACE)
    assert (report.deleted, report.unattributed, report.unattributed_bytes) == ([], 1, 100)
    assert "record no workflow" in report.describe()


# --- S3 -------------------------------------------------------------------------------


async def test_s3_gc_deletes_a_closed_runs_objects_and_keeps_a_running_runs(
    env: WorkflowEnvironment, queue: str, owner: str, s3_bucket: Any
):
    storage = StorageSettings.from_settings(
        AgentRunSettings(storage="s3", s3_bucket="agentrun-payloads")
    )
    client = await connect_with(env, PayloadSettings(storage))
    runs = AgentRunClient(client, queue)
    prior = large_thread(MB, parts=4)

    async def keys() -> list[str]:
        listed = await asyncio.to_thread(s3_bucket.list_objects_v2, Bucket="agentrun-payloads")
        return [item["Key"] for item in listed.get("Contents", [])]

    async with Worker(client, task_queue=queue, max_cached_workflows=0):
        closed = await runs.start(owner, "scripted", script({"say": "ok"}), messages=prior)
        assert (await runs.wait(owner, closed, timeout=60)).status == "completed"
        await listed(client, closed, running=False)
        running = await runs.start(owner, "scripted", SLEEPING, messages=prior)
        await listed(client, running, running=True)
        report = await collect_garbage(client, storage, older_than=NO_GRACE)
        assert report.deleted and all(b.workflows == (closed,) for b in report.deleted)
        assert not [key for key in await keys() if f"/wi/{closed}/" in key]
        assert [key for key in await keys() if f"/wi/{running}/" in key]
        thread = await runs.thread(owner, running)
        assert thread is not None and thread[: len(prior)] == prior
        await runs.stop_tree(owner, running)
        assert (await runs.wait(owner, running, timeout=60)).status == "stopped"
        await listed(client, running, running=False)
    await collect_garbage(client, storage, older_than=NO_GRACE)
    assert await keys() == []


# --- the command line and the worker --------------------------------------------------


def storage_environment(env: WorkflowEnvironment, directory: Path, **more: str) -> dict[str, str]:
    return {
        **os.environ,
        "TEMPORAL_ADDRESS": server_address(env),
        "AGENTRUN_STORAGE": "local",
        "AGENTRUN_STORAGE_DIR": str(directory),
        **more,
    }


async def agentrun(environment: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "agentrun.cli", *args],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=90,
    )


async def test_storage_gc_prints_what_it_would_delete_then_deletes_it(
    env: WorkflowEnvironment, cached: Stored, owner: str
):
    stored = cached
    run_id = await started_with(stored, owner, large_thread(MB), script({"say": "ok"}))
    await completed(stored, owner, run_id)
    blobs = stored.blobs()
    environment = storage_environment(env, stored.directory)

    preview = await agentrun(
        environment, "storage", "gc", "--dry-run", "--older-than", "0s", "--json"
    )
    assert preview.returncode == 0, preview.stderr
    previewed = json.loads(preview.stdout)
    assert (previewed["dry_run"], len(previewed["deleted"])) == (True, len(blobs))
    assert previewed["freed_bytes"] == sum(blob.stat().st_size for blob in blobs)
    assert stored.blobs() == blobs

    done = await agentrun(environment, "storage", "gc", "--older-than", "0s")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == len(blobs) + 1
    assert all(line.startswith("deleted ") and run_id in line for line in lines[:-1])
    assert f"deleted {len(blobs)} blobs" in lines[-1] and "freed" in lines[-1]
    assert stored.blobs() == []

    bad = await agentrun(environment, "storage", "gc", "--older-than", "soon")
    assert bad.returncode == 2 and "expected a duration" in bad.stderr


async def test_a_worker_with_a_gc_interval_collects_storage_as_it_starts(
    env: WorkflowEnvironment,
    queue: str,
    tmp_path: Path,
    processes: list[subprocess.Popen[bytes]],
):
    log = tmp_path / "worker.log"
    environment = storage_environment(
        env,
        tmp_path / "blobs",
        AGENTRUN_TASK_QUEUE=queue,
        AGENTRUN_STORAGE_GC_INTERVAL="6h",
    )
    with log.open("wb") as output:
        processes.append(
            subprocess.Popen(
                [sys.executable, "worker.py"],
                cwd=ROOT,
                env=environment,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        )

    async def logged() -> str:
        return log.read_text()

    text = await eventually(logged, lambda text: "Storage gc:" in text, timeout=60)
    assert f"{(tmp_path / 'blobs').resolve()}: deleted 0 blobs" in text
    assert processes[0].poll() is None, "the worker exited"


async def test_a_gc_interval_with_storage_off_stops_the_worker_naming_both(
    env: WorkflowEnvironment, tmp_path: Path
):
    environment = storage_environment(
        env, tmp_path, AGENTRUN_STORAGE="off", AGENTRUN_STORAGE_GC_INTERVAL="6h"
    )
    worker = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "worker.py"],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert worker.returncode != 0
    assert worker.stderr.strip() == (
        "agentrun worker: AGENTRUN_STORAGE_GC_INTERVAL is set, "
        "but AGENTRUN_STORAGE=off stores nothing"
    )
