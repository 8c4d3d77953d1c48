"""External storage for large payloads: threads, checkpoints and tool results by reference.

Temporal refuses any payload over 2 MiB, and every payload it accepts stays in the
run's history. Payloads at or above a threshold therefore go to a blob store through
the SDK's ``ExternalStorage``; the history keeps a small reference. The store is a
local directory by default (one machine, or a volume every process mounts) or an
S3-compatible bucket for clusters. Configuration comes from the environment (see
``docs/reliability.md``):

- ``AGENTRUN_STORAGE``: ``local`` (default), ``s3`` or ``off``.
- ``AGENTRUN_STORAGE_DIR``: the local directory (default ``.temporal/payloads``).
- ``AGENTRUN_STORAGE_THRESHOLD``: smallest payload stored by reference (default 256KiB).
- ``AGENTRUN_STORAGE_MAX_PAYLOAD``: largest payload stored at all (default 50MiB).
- ``AGENTRUN_S3_BUCKET``: the bucket, with ``AGENTRUN_STORAGE=s3``; endpoint, region
  and credentials come from the standard AWS variables (``AWS_ENDPOINT_URL_S3``, ...).
- ``AGENTRUN_STORAGE_GC_INTERVAL``: how often a worker deletes what no run can read
  (``agentrun._storage_gc``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import re
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path

from temporalio.api.common.v1 import Payload
from temporalio.contrib.aws.s3driver import S3StorageDriver, S3StorageDriverClient
from temporalio.converter import (
    ExternalStorage,
    StorageDriver,
    StorageDriverClaim,
    StorageDriverRetrieveContext,
    StorageDriverStoreContext,
    StorageDriverWorkflowInfo,
)

from agentrun._blobs import BlobDirectory, Reference
from agentrun._chunks import cuts
from agentrun._payload_guard import PayloadTooLargeError, describe_size
from agentrun._settings import AgentRunSettings

__all__ = [
    "DEFAULT_MAX_PAYLOAD",
    "DEFAULT_STORAGE_DIR",
    "DEFAULT_THRESHOLD",
    "LocalStorageDriver",
    "StorageConfigError",
    "StorageSettings",
]

STORAGE_ENV = "AGENTRUN_STORAGE"
STORAGE_DIR_ENV = "AGENTRUN_STORAGE_DIR"
THRESHOLD_ENV = "AGENTRUN_STORAGE_THRESHOLD"
MAX_PAYLOAD_ENV = "AGENTRUN_STORAGE_MAX_PAYLOAD"
S3_BUCKET_ENV = "AGENTRUN_S3_BUCKET"

DEFAULT_STORAGE_DIR = Path(".temporal/payloads")
# The SDK's own default: payloads under it stay inline, cheap to read with the history.
DEFAULT_THRESHOLD = 256 * 1024
# The SDK's S3 driver's default: a bound on what one worker holds in memory per payload.
DEFAULT_MAX_PAYLOAD = 50 * 1024 * 1024

LOCAL_DRIVER_TYPE = "agentrun.local"
# A claim's layout when the payload is stored in chunks (see LocalStorageDriver).
CHUNKED = "chunks"
CHUNKS_SUFFIX = ".chunks"
_SHA256 = re.compile(r"[0-9a-f]{64}")


class StorageConfigError(ValueError):
    """The storage configuration in the environment is unusable; the message says why."""


class LocalStorageDriver(StorageDriver):
    """Content-addressed payload files under one directory, each stored once.

    A payload is stored as ``<dir>/<aa>/<sha256>``, or, when it holds a thread (see
    ``agentrun._chunks``), as chunks stored the same way and a list of them,
    ``<sha256>.chunks``: what many payloads share (a forked thread, a thread read turn
    after turn) is stored once. Each file records the workflows that stored it, for
    garbage collection (``agentrun._blobs``). Files are written to a temporary file
    and renamed into place, so a reader never sees half a file. The claim holds only
    the hash: the directory may be mounted at another path on another machine.
    """

    def __init__(
        self,
        directory: Path | str = DEFAULT_STORAGE_DIR,
        *,
        max_payload_size: int = DEFAULT_MAX_PAYLOAD,
        name: str = LOCAL_DRIVER_TYPE,
    ) -> None:
        """Store under ``directory`` (created on first store), at most ``max_payload_size``."""
        self.directory = Path(directory).expanduser().resolve()
        self.blobs = BlobDirectory(self.directory)
        self.max_payload_size = max_payload_size
        self._name = name

    def name(self) -> str:
        """The driver's name, recorded in each reference."""
        return self._name

    def type(self) -> str:
        """The driver's type."""
        return LOCAL_DRIVER_TYPE

    async def store(
        self, context: StorageDriverStoreContext, payloads: Sequence[Payload]
    ) -> list[StorageDriverClaim]:
        """Write each payload (unless already there); a claim per payload."""
        reference = _reference(context)
        # File I/O of megabytes would stall the worker's event loop: a thread does it.
        return await asyncio.to_thread(lambda: [self._store_one(p, reference) for p in payloads])

    async def retrieve(
        self, context: StorageDriverRetrieveContext, claims: Sequence[StorageDriverClaim]
    ) -> list[Payload]:
        """Read and verify the payload of each claim."""
        return await asyncio.to_thread(lambda: [self._retrieve_one(c) for c in claims])

    def _store_one(self, payload: Payload, reference: Reference | None) -> StorageDriverClaim:
        data = payload.SerializeToString()
        if len(data) > self.max_payload_size:
            raise PayloadTooLargeError(
                f"A payload of {describe_size(len(data))} is over the "
                f"{describe_size(self.max_payload_size)} that external storage accepts "
                f"({MAX_PAYLOAD_ENV})"
            )
        digest = hashlib.sha256(data).hexdigest()
        offsets = cuts(data)
        if not offsets:
            self.blobs.put(digest, data, reference)
            return StorageDriverClaim(claim_data={"sha256": digest})
        chunks = []
        for begin, end in zip([0, *offsets], [*offsets, len(data)], strict=True):
            chunk = data[begin:end]
            chunks.append(hashlib.sha256(chunk).hexdigest())
            self.blobs.put(chunks[-1], chunk, reference)
        # The list last: a reader that finds it finds every chunk it names.
        self.blobs.put(digest + CHUNKS_SUFFIX, json.dumps(chunks).encode(), reference)
        return StorageDriverClaim(claim_data={"sha256": digest, "layout": CHUNKED})

    def _retrieve_one(self, claim: StorageDriverClaim) -> Payload:
        digest = claim.claim_data.get("sha256", "")
        if not _SHA256.fullmatch(digest):
            raise ValueError(f"Not a local storage claim: {dict(claim.claim_data)!r}")
        if claim.claim_data.get("layout") == CHUNKED:
            listed = json.loads(self._read(digest + CHUNKS_SUFFIX, digest))
            if not isinstance(listed, list) or not all(
                isinstance(chunk, str) and _SHA256.fullmatch(chunk) for chunk in listed
            ):
                raise ValueError(f"Stored payload {digest} in {self.directory} is corrupt")
            data = b"".join(self._read(chunk, digest) for chunk in listed)
        else:
            data = self._read(digest, digest)
        if hashlib.sha256(data).hexdigest() != digest:
            raise ValueError(
                f"Stored payload {digest} in {self.directory} is corrupt: its content hash differs"
            )
        return Payload.FromString(data)

    def _read(self, name: str, payload: str) -> bytes:
        try:
            return self.blobs.path(name).read_bytes()
        except FileNotFoundError:
            raise FileNotFoundError(
                f"Stored payload {payload} is not in {self.directory}: every worker and "
                f"client must see the same {STORAGE_DIR_ENV} (a shared volume, or S3)"
            ) from None


def _reference(context: StorageDriverStoreContext) -> Reference | None:
    """The workflow a payload is stored for: the runs of its tree may read it.

    The SDK names the workflow a payload goes to (a child's input: the child; a
    child's result: its parent; an activity's input or result: its workflow). An
    activity of no workflow, or a payload of no workflow, has none.
    """
    target = context.target
    if isinstance(target, StorageDriverWorkflowInfo) and target.id:
        return Reference(target.namespace, target.id)
    return None


class _SessionS3Client(S3StorageDriverClient):
    """An S3 client per operation, from one aioboto3 session.

    The SDK's adapter needs an open aioboto3 client, which lives in an ``async with``;
    the data converter is built before any event loop runs and outlives several, so
    each operation opens its own (only payloads over the threshold get here).
    """

    def __init__(self) -> None:
        # Only here: the SDK's S3 driver modules need no AWS library, aioboto3 (the
        # ``s3`` extra) is needed only when S3 is configured.
        import aioboto3

        self._session = aioboto3.Session()

    async def put_object(self, *, bucket: str, key: str, data: bytes) -> None:
        """Upload ``data`` to ``bucket``/``key``."""
        async with self._opened() as s3:
            await s3.put_object(bucket=bucket, key=key, data=data)

    async def object_exists(self, *, bucket: str, key: str) -> bool:
        """Whether ``bucket``/``key`` exists."""
        async with self._opened() as s3:
            return await s3.object_exists(bucket=bucket, key=key)

    async def get_object(self, *, bucket: str, key: str) -> bytes:
        """Download ``bucket``/``key``."""
        async with self._opened() as s3:
            return await s3.get_object(bucket=bucket, key=key)

    def describe(self) -> Mapping[str, str]:
        """The region, for the driver's error messages."""
        region = self._session.region_name
        return {"client_region": region} if region else {}

    @contextlib.asynccontextmanager
    async def _opened(self) -> AsyncIterator[S3StorageDriverClient]:
        from temporalio.contrib.aws.s3driver.aioboto3 import new_aioboto3_client

        async with self._session.client("s3") as s3:
            yield new_aioboto3_client(s3)


def s3_driver(bucket: str, max_payload_size: int) -> StorageDriver:
    """The SDK's S3 driver on ``bucket``; needs the ``s3`` extra (aioboto3)."""
    try:
        client = _SessionS3Client()
    except ImportError as err:
        raise StorageConfigError(
            f"{STORAGE_ENV}=s3 needs aioboto3: pip install 'agentrun[s3]' ({err})"
        ) from None
    return S3StorageDriver(client, bucket, max_payload_size=max_payload_size)


class StorageSettings:
    """External storage as the environment configures it."""

    def __init__(
        self,
        driver: StorageDriver | None,
        threshold: int = DEFAULT_THRESHOLD,
        max_payload_size: int = DEFAULT_MAX_PAYLOAD,
        *,
        s3_bucket: str | None = None,
    ) -> None:
        """Store payloads from ``threshold`` bytes with ``driver``; None turns storage off.

        ``s3_bucket`` names the bucket of an S3 driver, for garbage collection.
        """
        self.driver = driver
        self.threshold = threshold
        self.max_payload_size = max_payload_size
        self.s3_bucket = s3_bucket

    @classmethod
    def local(
        cls,
        directory: Path | str = DEFAULT_STORAGE_DIR,
        threshold: int = DEFAULT_THRESHOLD,
        max_payload_size: int = DEFAULT_MAX_PAYLOAD,
    ) -> StorageSettings:
        """Local files under ``directory``."""
        driver = LocalStorageDriver(directory, max_payload_size=max_payload_size)
        return cls(driver, threshold, max_payload_size)

    @classmethod
    def s3(
        cls,
        bucket: str,
        threshold: int = DEFAULT_THRESHOLD,
        max_payload_size: int = DEFAULT_MAX_PAYLOAD,
    ) -> StorageSettings:
        """The SDK's S3 driver on ``bucket`` (endpoint and credentials: the AWS variables).

        Raises:
            StorageConfigError: the ``s3`` extra (aioboto3) is not installed.
        """
        driver = s3_driver(bucket, max_payload_size)
        return cls(driver, threshold, max_payload_size, s3_bucket=bucket)

    @classmethod
    def off(cls) -> StorageSettings:
        """No external storage: every payload is inline and limited to 2 MiB."""
        return cls(None)

    @classmethod
    def from_settings(cls, settings: AgentRunSettings) -> StorageSettings:
        """The storage ``AGENTRUN_STORAGE*`` and ``AGENTRUN_S3_BUCKET`` configure.

        Raises:
            StorageConfigError: S3 without a bucket, or without the ``s3`` extra.
        """
        threshold, largest = settings.storage_threshold, settings.storage_max_payload
        if settings.storage == "off":
            return cls.off()
        if settings.storage == "local":
            return cls.local(settings.storage_dir, threshold, largest)
        bucket = (settings.s3_bucket or "").strip()
        if not bucket:
            raise StorageConfigError(f"{STORAGE_ENV}=s3 needs {S3_BUCKET_ENV} (a bucket name)")
        return cls.s3(bucket, threshold, largest)

    def external_storage(self) -> ExternalStorage | None:
        """The SDK's ``ExternalStorage`` for the data converter; None when off."""
        if self.driver is None:
            return None
        return ExternalStorage(drivers=[self.driver], payload_size_threshold=self.threshold)

    def describe(self) -> str:
        """One line for logs: where large payloads go."""
        if self.driver is None:
            return "external storage off (payloads over 2 MiB fail their run)"
        where = (
            str(self.driver.directory)
            if isinstance(self.driver, LocalStorageDriver)
            else self.driver.type()
        )
        return f"payloads from {describe_size(self.threshold)} stored in {where}"
