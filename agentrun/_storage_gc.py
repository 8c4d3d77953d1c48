"""Garbage collection of stored payloads: what no run can read any more is deleted.

A stored payload is read through the histories that reference it. Temporal keeps a
history while its run is open and, once closed, for the namespace's retention period;
the Web UI, ``agentrun thread`` and a resume all read closed runs' histories until then.

Who references a payload: the SDK names, for each payload it stores, the workflow it
is for (a child's input: the child; a child's result: its parent; an activity's input
and result: its workflow), and each blob records these workflows. Their references
also sit in the histories of the workflow's parent and children, which share its tree:
a child's run id extends its parent's (``run-1.2`` is a child of ``run-1``), so a tree
is every workflow whose id is its root's, or starts with the root's and a dot.

The rule: a blob is deleted when no workflow of any tree that stored it is open or
was closed less than the retention period ago (one visibility count per tree), and it
was last stored more than an hour ago (``FRESH``: a client stores a run's input before
the run exists, and visibility can lag). A blob whose record cannot be
judged (written before blobs recorded their workflows, stored for no workflow, or in
a namespace this client may not read) is kept.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Literal, NoReturn
from urllib.parse import unquote

from temporalio.api.workflowservice.v1 import (
    CountWorkflowExecutionsRequest,
    DescribeNamespaceRequest,
)
from temporalio.client import Client
from temporalio.service import RPCError

from agentrun._blobs import BlobDirectory, Reference, StoredBlob
from agentrun._payload_guard import describe_size
from agentrun._storage import LocalStorageDriver, StorageConfigError, StorageSettings
from agentrun._visibility import query_literal

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client

__all__ = ["CollectedBlob", "GcReport", "RunTrees", "collect_every", "collect_garbage"]

Verdict = Literal["delete", "keep", "unattributed"]
# A blob stored this recently is kept whatever visibility says: a client stores a new
# run's input before it starts the run, and visibility can lag a start by a moment.
# (A shorter --older-than shortens it too.)
FRESH = timedelta(hours=1)
_S3_PREFIX = "v0/"
_S3_DELETE_BATCH = 1000  # the most one DeleteObjects request takes
_log = logging.getLogger("agentrun.storage")


@dataclass(frozen=True)
class CollectedBlob:
    """A blob gc deleted (or would delete): its name or key, its size, its workflows."""

    name: str
    size: int
    workflows: tuple[str, ...]


@dataclass
class GcReport:
    """What a collection deleted (or, with ``dry_run``, would delete) and what it kept."""

    where: str
    dry_run: bool
    deleted: list[CollectedBlob] = field(default_factory=list)
    kept: int = 0
    kept_bytes: int = 0
    unattributed: int = 0
    unattributed_bytes: int = 0

    @property
    def freed_bytes(self) -> int:
        """The bytes the deleted blobs took."""
        return sum(blob.size for blob in self.deleted)

    def count(self, verdict: Verdict, size: int) -> None:
        """Count a blob kept, as readable or as unattributed."""
        if verdict == "unattributed":
            self.unattributed += 1
            self.unattributed_bytes += size
        else:
            self.kept += 1
            self.kept_bytes += size

    def describe(self) -> str:
        """One line: what was (or would be) deleted and freed, and what was kept."""
        done = "would delete" if self.dry_run else "deleted"
        line = (
            f"{self.where}: {done} {len(self.deleted)} blobs, "
            f"{describe_size(self.freed_bytes)} {'to free' if self.dry_run else 'freed'}; "
            f"kept {self.kept} ({describe_size(self.kept_bytes)}) that runs can still read"
        )
        if self.unattributed:
            line += (
                f"; kept {self.unattributed} ({describe_size(self.unattributed_bytes)}) "
                "that record no workflow"
            )
        return line


class RunTrees:
    """Whether any run of a workflow's tree may still read what it stored."""

    def __init__(self, client: Client, older_than: timedelta | None = None) -> None:
        """Judge runs through ``client``.

        Args:
            client: Reads namespaces and visibility.
            older_than: How long a closed run stays readable; default the namespace's
                retention period.
        """
        self._client = client
        self._older_than = older_than
        self._now = datetime.now(UTC)
        self._retentions: dict[str, timedelta | None] = {}
        self._readable: dict[tuple[str, str], bool] = {}

    async def retention(self, namespace: str) -> timedelta | None:
        """How long after its tree closed a blob is kept; None: cannot tell."""
        if namespace not in self._retentions:
            retention = self._older_than
            if retention is None:
                try:
                    described = await self._client.workflow_service.describe_namespace(
                        DescribeNamespaceRequest(namespace=namespace)
                    )
                except RPCError as err:
                    _log.warning("Storage gc keeps namespace %r's blobs: %s", namespace, err)
                else:
                    retention = described.config.workflow_execution_retention_ttl.ToTimedelta()
            self._retentions[namespace] = retention
        return self._retentions[namespace]

    async def readable(self, reference: Reference) -> bool:
        """Whether a run of ``reference``'s tree is open, or closed after the cutoff."""
        root = tree_root(reference.workflow_id)
        key = (reference.namespace, root)
        if key not in self._readable:
            self._readable[key] = await self._count_readable(reference.namespace, root) != 0
        return self._readable[key]

    async def _count_readable(self, namespace: str, root: str) -> int:
        retention = await self.retention(namespace)
        if retention is None:
            return -1  # the namespace cannot be read: keep its blobs
        cutoff = self._now - retention
        query = (
            f"(WorkflowId = {query_literal(root)} OR WorkflowId STARTS_WITH "
            f"{query_literal(root + '.')}) AND (ExecutionStatus = 'Running' OR "
            f"CloseTime > {query_literal(cutoff.isoformat())})"
        )
        try:
            counted = await self._client.workflow_service.count_workflow_executions(
                CountWorkflowExecutionsRequest(namespace=namespace, query=query)
            )
        except RPCError as err:
            _log.warning("Storage gc keeps the blobs of tree %r: %s", root, err)
            return -1
        return counted.count

    async def verdict(self, references: frozenset[Reference], stored_at: datetime) -> Verdict:
        """What becomes of a blob stored for ``references``, last at ``stored_at``."""
        if not references:
            return "unattributed"
        for reference in sorted(references):
            retention = await self.retention(reference.namespace)
            if retention is None or self._now - stored_at < min(retention, FRESH):
                return "keep"
            if await self.readable(reference):
                return "keep"
        return "delete"


def tree_root(workflow_id: str) -> str:
    """The id of the root of a run's tree: children's ids extend their parent's."""
    return workflow_id.split(".", 1)[0]


async def collect_garbage(
    client: Client,
    storage: StorageSettings,
    *,
    older_than: timedelta | None = None,
    dry_run: bool = False,
) -> GcReport:
    """Delete the stored payloads no run can read any more (see the module's rule).

    Args:
        client: Judges runs through Temporal's visibility, in the namespaces the
            blobs record.
        storage: The storage to collect: local or S3.
        older_than: How long after its tree closed a blob goes; default the
            namespace's retention period. Shorter, a closed run's history may outlive
            what it references.
        dry_run: Only report what would be deleted.

    Raises:
        StorageConfigError: storage is off, or a driver gc does not know.
    """
    trees = RunTrees(client, older_than)
    driver = storage.driver
    if isinstance(driver, LocalStorageDriver):
        return await _collect_local(driver.blobs, trees, dry_run)
    if storage.s3_bucket is not None:
        return await _collect_s3(storage.s3_bucket, trees, dry_run)
    raise StorageConfigError(
        "storage gc collects local or S3 storage (AGENTRUN_STORAGE=local or s3), "
        f"not {'storage that is off' if driver is None else driver.type()}"
    )


async def collect_every(
    client: Client,
    storage: StorageSettings,
    interval: timedelta,
    *,
    older_than: timedelta | None = None,
) -> NoReturn:
    """Collect now and then every ``interval``, logging each pass, until cancelled."""
    while True:
        try:
            report = await collect_garbage(client, storage, older_than=older_than)
        except (RPCError, OSError, StorageConfigError) as err:
            _log.warning("Storage gc failed, next pass in %s: %s", interval, err)
        else:
            _log.info("Storage gc: %s", report.describe())
        await asyncio.sleep(interval.total_seconds())


# --- local storage --------------------------------------------------------------------


async def _collect_local(blobs: BlobDirectory, trees: RunTrees, dry_run: bool) -> GcReport:
    report = GcReport(str(blobs.directory), dry_run)
    listed = await asyncio.to_thread(lambda: list(blobs.blobs()))
    for blob in listed:
        verdict = await _local_verdict(blob, trees)
        deleted = verdict == "delete" and (
            dry_run or await asyncio.to_thread(blobs.delete_unchanged, blob)
        )
        if deleted:
            workflows = tuple(sorted(r.workflow_id for r in blob.references))
            report.deleted.append(CollectedBlob(blob.name, blob.size, workflows))
        else:  # kept, or stored again while it was judged
            report.count("keep" if verdict == "delete" else verdict, blob.size)
    return report


async def _local_verdict(blob: StoredBlob, trees: RunTrees) -> Verdict:
    if blob.stored_at is None:
        return "unattributed"
    stored_at = datetime.fromtimestamp(blob.stored_at, UTC)
    return await trees.verdict(blob.references, stored_at)


# --- S3 -------------------------------------------------------------------------------


async def _collect_s3(bucket: str, trees: RunTrees, dry_run: bool) -> GcReport:
    """The SDK's S3 keys name the workflow: ``v0/ns/<ns>/wt/<type>/wi/<id>/...``."""
    import aioboto3  # the s3 extra, only with S3 storage

    report = GcReport(f"s3://{bucket}", dry_run)
    doomed: list[CollectedBlob] = []
    async with aioboto3.Session().client("s3") as s3:
        async for key, size, modified in _s3_objects(s3, bucket):
            reference = s3_reference(key)
            references = frozenset([reference] if reference else [])
            verdict = await trees.verdict(references, modified)
            if verdict == "delete":
                workflows = (reference.workflow_id,) if reference else ()
                doomed.append(CollectedBlob(key, size, workflows))
            else:
                report.count(verdict, size)
        failed = set() if dry_run else await _delete_s3(s3, bucket, [b.name for b in doomed])
    for blob in doomed:
        if blob.name in failed:
            report.count("keep", blob.size)
        else:
            report.deleted.append(blob)
    return report


async def _delete_s3(s3: S3Client, bucket: str, keys: list[str]) -> set[str]:
    """Delete ``keys``; the keys S3 could not delete (logged)."""
    failed: set[str] = set()
    for start in range(0, len(keys), _S3_DELETE_BATCH):
        batch = keys[start : start + _S3_DELETE_BATCH]
        answer = await s3.delete_objects(
            Bucket=bucket, Delete={"Objects": [{"Key": key} for key in batch], "Quiet": True}
        )
        for error in answer.get("Errors", []):
            failed.add(error.get("Key", ""))
            _log.warning(
                "Storage gc could not delete s3://%s/%s: %s",
                bucket,
                error.get("Key"),
                error.get("Message"),
            )
    return failed


async def _s3_objects(s3: S3Client, bucket: str) -> AsyncIterator[tuple[str, int, datetime]]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=_S3_PREFIX)
    async for page in pages:
        for listed in page.get("Contents", []):
            if "Key" in listed and "LastModified" in listed:
                yield listed["Key"], listed.get("Size", 0), listed["LastModified"]


def s3_reference(key: str) -> Reference | None:
    """The workflow an SDK S3 key was stored for; None for an activity's or no one's."""
    parts = key.split("/")
    if len(parts) < 7 or parts[:2] != ["v0", "ns"] or parts[3] != "wt" or parts[5] != "wi":
        return None
    namespace, workflow_id = unquote(parts[2]), unquote(parts[6])
    if namespace == "null" or workflow_id == "null":
        return None
    return Reference(namespace, workflow_id)
