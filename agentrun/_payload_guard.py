"""A size check on every payload agentrun sends, before Temporal refuses it.

Temporal rejects a payload over 2 MiB, and how it rejects one depends on where it
was: a workflow start fails at once, but an oversized activity input, child input,
heartbeat or result fails the workflow task or the activity, and both are retried
forever. This guard measures each value where it leaves (client, workflow, activity)
and raises ``PayloadTooLargeError``, a non-retryable error whose message names the
value, its size and the limit, so the run fails once, clearly.

The limit is Temporal's 2 MiB when external storage is off, and the storage's own
largest payload when it is on (large payloads then travel by reference).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, NoReturn

from temporalio import activity, client, workflow
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.common import RawValue
from temporalio.converter import PayloadConverter
from temporalio.exceptions import ApplicationError
from temporalio.worker import (
    ActivityInboundInterceptor,
    ActivityOutboundInterceptor,
    ContinueAsNewInput,
    ExecuteActivityInput,
    ExecuteWorkflowInput,
    HandleQueryInput,
    HandleUpdateInput,
    Interceptor,
    StartActivityInput,
    StartChildWorkflowInput,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
    WorkflowOutboundInterceptor,
)

__all__ = [
    "CODEC_HEADROOM",
    "TEMPORAL_PAYLOAD_LIMIT",
    "PayloadGuard",
    "PayloadLimit",
    "PayloadTooLargeError",
    "describe_size",
]

# The server's default `limit.blobSize.error`: any payload above it is refused.
TEMPORAL_PAYLOAD_LIMIT = 2 * 1024 * 1024
# The guard measures values before the codec, which adds a nonce, a tag and a key id:
# this much is kept free for it.
CODEC_HEADROOM = 4 * 1024
PAYLOAD_TOO_LARGE = "PayloadTooLarge"
# Workflow streams' own signal and update, named for what they carry.
_STREAM_HANDLERS = {
    "__temporal_workflow_stream_publish": "Events published",
    "__temporal_workflow_stream_poll": "Events read",
}
# How the guard's messages read; an activity recognises one in a failed query's message.
_GUARD_MESSAGE = re.compile(r" is [0-9.]+ (bytes|KiB|MiB), over the [0-9.]+ (bytes|KiB|MiB) of ")


class PayloadTooLargeError(ApplicationError):
    """A value is too large to send through Temporal; the message says which and why.

    Non-retryable: the same value would be refused again.
    """

    def __init__(self, message: str) -> None:
        """An error with ``message``, of type ``PayloadTooLarge``."""
        super().__init__(message, type=PAYLOAD_TOO_LARGE, non_retryable=True)


def describe_size(size: int) -> str:
    """``12 bytes``, ``300.0 KiB``, ``20.0 MiB``."""
    if size < 1024:
        return f"{size} bytes"
    if size < 1024 * 1024:
        return f"{size / 1024:.1f} KiB"
    return f"{size / (1024 * 1024):.1f} MiB"


@dataclass(frozen=True)
class PayloadLimit:
    """The largest value one payload may carry, and what to do about a larger one."""

    limit: int
    remedy: str
    converter: PayloadConverter

    @classmethod
    def inline(cls, converter: PayloadConverter) -> PayloadLimit:
        """Temporal's own limit: no external storage."""
        return cls(
            TEMPORAL_PAYLOAD_LIMIT,
            "Temporal's limit for one payload; turn on external storage "
            "(AGENTRUN_STORAGE=local or s3) to send it by reference",
            converter,
        )

    @classmethod
    def stored(cls, largest: int, converter: PayloadConverter) -> PayloadLimit:
        """External storage's limit: the largest payload it takes."""
        return cls(
            largest, "the limit of external storage (AGENTRUN_STORAGE_MAX_PAYLOAD)", converter
        )

    def check(self, what: str, values: Sequence[Any]) -> None:
        """Raise ``PayloadTooLargeError`` if ``values`` encode to more than the limit.

        Args:
            what: The value in words, e.g. ``The input of activity 'agent_turn'``.
            values: What is about to be sent, before conversion.
        """
        if values:
            self._check_size(what, self.converter.to_payloads(list(values)))

    def encoded(self, what: str, value: Any) -> RawValue:
        """``value`` encoded once, checked, and wrapped so the SDK sends it as it is (a
        ``RawValue``: no second encoding; a codec and external storage still apply).

        Raises:
            PayloadTooLargeError: it encodes to more than the limit.
        """
        [payload] = self.converter.to_payloads([value])
        self._check_size(what, [payload])
        return RawValue(payload)

    def _check_size(self, what: str, payloads: Sequence[Payload]) -> None:
        size = Payloads(payloads=payloads).ByteSize()
        if size > self.limit - CODEC_HEADROOM:
            raise PayloadTooLargeError(
                f"{what} is {describe_size(size)}, over the {describe_size(self.limit)} "
                f"of {self.remedy}"
            )


class PayloadGuard(client.Interceptor, Interceptor):
    """Client and worker interceptor that checks payload sizes against one limit."""

    def __init__(self, limit: PayloadLimit) -> None:
        """Check against ``limit``."""
        self.limit = limit
        # Workflow interceptors are classes the worker instantiates per run: the limit
        # travels as a class attribute of a subclass made for this guard.
        self._workflow_class = type(
            "BoundWorkflowPayloadGuard", (_WorkflowInboundGuard,), {"limit": limit}
        )

    def intercept_client(self, next: client.OutboundInterceptor) -> client.OutboundInterceptor:
        """Check workflow inputs, signals and updates a client sends."""
        return _ClientGuard(next, self.limit)

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        """Check activity results and heartbeat details."""
        return _ActivityInboundGuard(next, self.limit)

    def workflow_interceptor_class(
        self, input: WorkflowInterceptorClassInput
    ) -> type[WorkflowInboundInterceptor]:
        """Check what a workflow schedules, starts, answers and returns."""
        return self._workflow_class


class _ClientGuard(client.OutboundInterceptor):
    def __init__(self, next: client.OutboundInterceptor, limit: PayloadLimit) -> None:
        super().__init__(next)
        self._limit = limit

    async def start_workflow(
        self, input: client.StartWorkflowInput
    ) -> client.WorkflowHandle[Any, Any]:
        self._limit.check(f"The input of workflow {input.id!r}", input.args)
        return await super().start_workflow(input)

    async def signal_workflow(self, input: client.SignalWorkflowInput) -> None:
        what = _STREAM_HANDLERS.get(input.signal, f"Signal {input.signal!r}")
        self._limit.check(f"{what} to workflow {input.id!r}", input.args)
        await super().signal_workflow(input)

    async def start_workflow_update(
        self, input: client.StartWorkflowUpdateInput
    ) -> client.WorkflowUpdateHandle[Any]:
        self._limit.check(f"Update {input.update!r} to workflow {input.id!r}", input.args)
        return await super().start_workflow_update(input)


class _ActivityInboundGuard(ActivityInboundInterceptor):
    def __init__(self, next: ActivityInboundInterceptor, limit: PayloadLimit) -> None:
        super().__init__(next)
        self._limit = limit

    def init(self, outbound: ActivityOutboundInterceptor) -> None:
        super().init(_ActivityOutboundGuard(outbound, self._limit))

    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        try:
            result = await super().execute_activity(input)
        except client.WorkflowQueryFailedError as err:
            # A query the activity made (e.g. for a long thread) whose answer was too
            # large fails the same way on every retry: fail the activity for good.
            if _GUARD_MESSAGE.search(err.message):
                raise PayloadTooLargeError(err.message) from err
            raise
        # Encoded here once, for the check and for the SDK, which sends it as it is.
        name = activity.info().activity_type
        return self._limit.encoded(f"The result of activity {name!r}", result)


class _ActivityOutboundGuard(ActivityOutboundInterceptor):
    def __init__(self, next: ActivityOutboundInterceptor, limit: PayloadLimit) -> None:
        super().__init__(next)
        self._limit = limit
        self._checked: tuple[Any, ...] = ()

    def heartbeat(self, *details: Any) -> None:
        # An oversized checkpoint would fail the attempt, and every retry would resume
        # from the checkpoint before it and fail the same way. The very objects the
        # last heartbeat checked are not encoded again: a turn beats its unchanged
        # checkpoint about three times a second, and encoding it was a twentieth of a busy
        # worker's time (BENCHMARKS.md, stop). Changed details are new objects.
        if not _same(details, self._checked):
            name = activity.info().activity_type
            what = f"The heartbeat details (checkpoint) of activity {name!r}"
            self._limit.check(what, details)
            self._checked = details
        super().heartbeat(*details)


def _same(these: tuple[Any, ...], those: tuple[Any, ...]) -> bool:
    return len(these) == len(those) and all(a is b for a, b in zip(these, those, strict=True))


class _WorkflowInboundGuard(WorkflowInboundInterceptor):
    limit: ClassVar[PayloadLimit]

    def init(self, outbound: WorkflowOutboundInterceptor) -> None:
        super().init(_WorkflowOutboundGuard(outbound, self.limit))

    async def execute_workflow(self, input: ExecuteWorkflowInput) -> Any:
        result = await super().execute_workflow(input)
        self.limit.check(f"The result of workflow {workflow.info().workflow_id!r}", [result])
        return result

    async def handle_query(self, input: HandleQueryInput) -> Any:
        result = await super().handle_query(input)
        self.limit.check(f"The result of query {input.query!r}", [result])
        return result

    async def handle_update_handler(self, input: HandleUpdateInput) -> Any:
        result = await super().handle_update_handler(input)
        what = _STREAM_HANDLERS.get(input.update, f"The result of update {input.update!r}")
        self.limit.check(what, [result])
        return result


class _WorkflowOutboundGuard(WorkflowOutboundInterceptor):
    def __init__(self, next: WorkflowOutboundInterceptor, limit: PayloadLimit) -> None:
        super().__init__(next)
        self._limit = limit

    def start_activity(self, input: StartActivityInput) -> workflow.ActivityHandle[Any]:
        self._limit.check(f"The input of activity {input.activity!r}", input.args)
        return super().start_activity(input)

    async def start_child_workflow(
        self, input: StartChildWorkflowInput
    ) -> workflow.ChildWorkflowHandle[Any, Any]:
        self._limit.check(f"The input of child workflow {input.id!r}", input.args)
        return await super().start_child_workflow(input)

    def continue_as_new(self, input: ContinueAsNewInput) -> NoReturn:
        what = f"The input of the continue-as-new of workflow {workflow.info().workflow_id!r}"
        self._limit.check(what, input.args)
        super().continue_as_new(input)
