"""External storage that no crafted reference can wedge.

Any client of the namespace can send a signal or start a run whose payload is an
external-storage reference: to a driver this worker does not have, or with a claim no
blob answers. The SDK resolves references before the workflow sees them, so its error
fails the workflow task, and Temporal retries that task forever. Here a reference that
can never be read becomes an *unreadable payload*: a JSON object naming the problem,
which no agentrun type accepts. A signal carrying one is dropped with a warning (the
SDK drops a signal it cannot decode), a run started with one fails as invalid input,
and a result that became one fails its run naming it. Errors that may pass (the bucket
is down) still fail the task, so it is retried until the store answers.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence

from temporalio.api.common.v1 import Payload
from temporalio.converter import (
    ExternalStorage,
    StorageDriver,
    StorageDriverClaim,
    StorageDriverRetrieveContext,
    StorageDriverSelectContext,
    StorageDriverStoreContext,
)

__all__ = ["UNREADABLE_PAYLOAD", "tolerant_storage", "unreadable_payload", "unreadable_reason"]

UNREADABLE_PAYLOAD = "agentrun_unreadable_payload"
# S3 error codes of an object that is not there: no retry brings it back.
_MISSING_OBJECT_CODES = frozenset({"NoSuchKey", "NotFound", "404"})
Selector = Callable[[StorageDriverSelectContext, Payload], StorageDriver | None]


def tolerant_storage(storage: ExternalStorage | None) -> ExternalStorage | None:
    """``storage`` with references that can never be read turned into unreadable payloads."""
    if storage is None or isinstance(storage, _TolerantStorage):
        return storage
    drivers = {driver.name(): _Tolerant(driver) for driver in storage.drivers}
    chosen = storage.driver_selector
    selector: Selector | None = None
    if chosen is not None:

        def selector(context: StorageDriverSelectContext, payload: Payload) -> StorageDriver | None:
            driver = chosen(context, payload)
            return None if driver is None else drivers[driver.name()]

    return _TolerantStorage(
        drivers=list(drivers.values()),
        driver_selector=selector,
        payload_size_threshold=storage.payload_size_threshold,
    )


def unreadable_reason(value: object) -> str | None:
    """The problem an unreadable payload names, or None for any other value."""
    if isinstance(value, dict) and set(value) == {UNREADABLE_PAYLOAD}:
        return str(value[UNREADABLE_PAYLOAD])
    return None


def unreadable_payload(reason: str) -> Payload:
    """The payload that stands for one that can never be read, naming why."""
    data = json.dumps({UNREADABLE_PAYLOAD: reason[:500]}).encode()
    return Payload(metadata={"encoding": b"json/plain"}, data=data)


@dataclasses.dataclass(frozen=True)
class _TolerantStorage(ExternalStorage):
    def _get_driver_by_name(self, name: str) -> StorageDriver:
        known = self._driver_map.get(name)
        return known if known is not None else _NoSuchDriver(name)


class _Tolerant(StorageDriver):
    """A driver whose claims that cannot be read (bad, or no blob) read as unreadable."""

    def __init__(self, driver: StorageDriver) -> None:
        self.driver = driver

    def name(self) -> str:
        return self.driver.name()

    def type(self) -> str:
        return self.driver.type()

    async def store(
        self, context: StorageDriverStoreContext, payloads: Sequence[Payload]
    ) -> list[StorageDriverClaim]:
        return await self.driver.store(context, payloads)

    async def retrieve(
        self, context: StorageDriverRetrieveContext, claims: Sequence[StorageDriverClaim]
    ) -> list[Payload]:
        try:
            return await self.driver.retrieve(context, claims)
        except Exception as err:
            if not _never_readable(err):
                raise
            if len(claims) == 1:
                return [unreadable_payload(f"stored payload cannot be read: {err}")]
        # Several claims: read them one by one to tell the bad ones from the rest.
        return [payload for claim in claims for payload in await self.retrieve(context, [claim])]


class _NoSuchDriver(StorageDriver):
    def __init__(self, missing: str) -> None:
        self.missing = missing

    def name(self) -> str:
        return self.missing

    async def store(
        self, context: StorageDriverStoreContext, payloads: Sequence[Payload]
    ) -> list[StorageDriverClaim]:
        raise ValueError(f"No storage driver named {self.missing!r}")

    async def retrieve(
        self, context: StorageDriverRetrieveContext, claims: Sequence[StorageDriverClaim]
    ) -> list[Payload]:
        reason = f"no storage driver named {self.missing[:80]!r} on this worker"
        return [unreadable_payload(reason) for _ in claims]


def _never_readable(err: Exception) -> bool:
    """A bad claim, a corrupt blob or a missing one: reading again cannot help."""
    if isinstance(err, ValueError | LookupError | FileNotFoundError):
        return True
    response = getattr(err, "response", None)
    code = response.get("Error", {}).get("Code") if isinstance(response, dict) else None
    return code in _MISSING_OBJECT_CODES
