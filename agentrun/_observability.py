"""What an operator can watch: Prometheus metrics and OpenTelemetry traces of the worker.

Both are off unless turned on:

- Metrics: ``AGENTRUN_METRICS_ADDRESS=host:port`` (or ``agentrun worker
  --metrics-address``), read by the entry point and passed here, serves Temporal's SDK
  metrics and agentrun's own counters at ``http://host:port/metrics`` through a
  ``temporalio.runtime.Runtime`` with a
  ``PrometheusConfig``.
- Traces: ``AGENTRUN_OTEL=1`` (``console`` prints the spans instead), or an
  ``OTEL_EXPORTER_OTLP_ENDPOINT``, adds Temporal's replay-safe ``OpenTelemetryPlugin``
  to the client, so a run's span is the child of the span that started it, a delegated
  run's that of its parent's ``StartChildWorkflow``. Needs the ``otel`` extra
  (``pip install 'agentrun[otel]'``).

agentrun's counters come from ``RunMetricsInterceptor``, a worker interceptor, so the
workflow and activity code stays free of metrics. Workflow-side counters use
``workflow.metric_meter()``, which records nothing while a worker replays a history:
each run, outcome and event is counted once by the worker that saw it happen.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Mapping
from typing import Any

from temporalio import activity, workflow
from temporalio.common import MetricCounter
from temporalio.exceptions import FailureError
from temporalio.plugin import SimplePlugin as Plugin
from temporalio.runtime import LoggingConfig, PrometheusConfig, Runtime, TelemetryConfig
from temporalio.worker import (
    ActivityInboundInterceptor,
    ActivityOutboundInterceptor,
    ExecuteActivityInput,
    ExecuteWorkflowInput,
    HandleSignalInput,
    HandleUpdateInput,
    Interceptor,
    StartActivityInput,
    StartChildWorkflowInput,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
    WorkflowOutboundInterceptor,
)
from temporalio.workflow import ActivityHandle, ChildWorkflowHandle

from agentrun._constants import TURN_ACTIVITY
from agentrun._models import EncodedCheckpoint
from agentrun._usage import Usage

__all__ = [
    "COUNTERS",
    "ObservabilityError",
    "RunMetricsInterceptor",
    "count_tokens",
    "flush_tracing",
    "metrics_runtime",
    "tracing_enabled",
    "tracing_plugins",
]

OTLP_ENDPOINT_ENVS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
SERVICE_NAME = "agentrun"

RUNS_STARTED = "agentrun_runs_started"
RUNS_COMPLETED = "agentrun_runs_completed"
RUNS_FAILED = "agentrun_runs_failed"
RUNS_STOPPED = "agentrun_runs_stopped"
EVENTS_PUBLISHED = "agentrun_events_published"
CHECKPOINTS_WRITTEN = "agentrun_checkpoints_written"
TOKENS = "agentrun_tokens_total"
COUNTERS: Mapping[str, str] = {
    RUNS_STARTED: "Run epochs started (a resume starts the next epoch)",
    RUNS_COMPLETED: "Run epochs that ended completed",
    RUNS_FAILED: "Run epochs that ended failed",
    RUNS_STOPPED: "Run epochs that ended stopped",
    EVENTS_PUBLISHED: "Events appended to the runs' streams",
    CHECKPOINTS_WRITTEN: "Agent steps checkpointed (heartbeated, or in the turn's result)",
    TOKENS: "Model tokens, by agent and kind (input, output, cache_read, cache_write)",
}

# The stream's documented offset query (temporalio.contrib.workflow_streams): the
# number of events on the run's stream, read in-process by the interceptor.
_STREAM_OFFSET_QUERY = "__temporal_workflow_stream_offset"
_FALSE = ("0", "false", "no", "off")
# The provider this module installed, flushed by ``flush_tracing``.
_installed: list[Any] = []


class ObservabilityError(RuntimeError):
    """Metrics or tracing were asked for but cannot be set up; the message says why."""


def metrics_runtime(address: str | None, core_logs: LoggingConfig | None = None) -> Runtime | None:
    """A Runtime serving Prometheus metrics on ``host:port`` and logging as ``core_logs``
    says; None when neither is asked for (the SDK's default runtime).

    Args:
        address: ``host:port`` to serve ``/metrics`` on (``AGENTRUN_METRICS_ADDRESS``).
        core_logs: Where the SDK core's log lines go.

    Raises:
        ObservabilityError: the address is not ``host:port`` or cannot be bound.
    """
    if not address:
        return Runtime(telemetry=TelemetryConfig(logging=core_logs)) if core_logs else None
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ObservabilityError(f"Metrics address must be host:port, got {address!r}")
    metrics = PrometheusConfig(bind_address=address)
    try:
        return Runtime(telemetry=TelemetryConfig(metrics=metrics, logging=core_logs))
    except Exception as err:  # the core runtime reports a bind failure as a bare Exception
        raise ObservabilityError(f"Cannot serve metrics on {address}: {err}") from None


def tracing_enabled(otel: str | None) -> bool:
    """Whether tracing is on: ``AGENTRUN_OTEL`` set (not 0), or an OTLP endpoint set."""
    flag = (otel or "").strip().lower()
    if flag:
        return flag not in _FALSE
    return any(os.environ.get(name) for name in OTLP_ENDPOINT_ENVS)


def tracing_plugins(otel: str | None) -> list[Plugin]:
    """``[OpenTelemetryPlugin()]`` when tracing is on (installing an exporter), else ``[]``.

    Given to ``connect``: a client plugin applies to the workers built on that client
    too. Temporal's plugin is replay-safe: a worker replaying a history emits no span
    twice.

    Raises:
        ObservabilityError: tracing is on but the ``otel`` extra is not installed.
    """
    if not tracing_enabled(otel):
        return []
    _install_tracer_provider(console=(otel or "").strip().lower() == "console")
    from temporalio.contrib.opentelemetry import OpenTelemetryPlugin

    return [OpenTelemetryPlugin(add_temporal_spans=True)]


def _install_tracer_provider(*, console: bool) -> None:
    """Export spans over OTLP (or to the console), unless a provider is set already."""
    try:
        from opentelemetry import trace
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace.export import (
            BatchSpanProcessor,
            ConsoleSpanExporter,
            SpanExporter,
        )
        from temporalio.contrib.opentelemetry import (
            ReplaySafeTracerProvider,
            create_tracer_provider,
        )
    except ImportError:
        raise ObservabilityError(
            "Tracing is on but OpenTelemetry is not installed: pip install 'agentrun[otel]'"
        ) from None
    if isinstance(trace.get_tracer_provider(), ReplaySafeTracerProvider):
        return  # the operator's own set-up wins
    exporter: SpanExporter
    if console:
        exporter = ConsoleSpanExporter(out=sys.stderr)  # stdout may carry --json output
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter()  # reads OTEL_EXPORTER_OTLP_* itself
    service = os.environ.get("OTEL_SERVICE_NAME") or SERVICE_NAME
    provider = create_tracer_provider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    _installed.append(provider)


def flush_tracing(timeout_millis: int = 5000) -> None:
    """Export the spans still buffered (a process that leaves with ``os._exit`` must)."""
    for provider in _installed:
        provider.force_flush(timeout_millis)


class RunMetricsInterceptor(Interceptor):
    """Counts run outcomes, stream events and turn checkpoints (see ``COUNTERS``).

    Without a metrics runtime the SDK's meters are no-ops, so the worker always has
    this interceptor and the counters cost nothing until an operator turns them on.
    """

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        """Count the checkpoints of turn activities."""
        return _ActivityCounters(next)

    def workflow_interceptor_class(
        self, input: WorkflowInterceptorClassInput
    ) -> type[WorkflowInboundInterceptor]:
        """Count runs started and ended, and the events on their streams."""
        return _WorkflowCounters


class _WorkflowCounters(WorkflowInboundInterceptor):
    """One per workflow execution (one run epoch)."""

    def init(self, outbound: WorkflowOutboundInterceptor) -> None:
        self._meter = workflow.metric_meter()
        self._counters: dict[str, MetricCounter] = {}
        self._events_seen: int | None = None
        super().init(_WorkflowOutboundCounters(outbound, self))

    async def execute_workflow(self, input: ExecuteWorkflowInput) -> Any:
        self._meter = self._meter.with_additional_attributes(_agent_label(input.args))
        self._events_seen = self._stream_offset()  # a resumed run carries its stream
        if workflow.info().continued_run_id is None:
            self._count(RUNS_STARTED)  # a continue-as-new goes on with the same epoch
        try:
            result = await super().execute_workflow(input)
        except FailureError:
            self._ended(RUNS_FAILED)
            raise
        except asyncio.CancelledError:
            # A stop; an eviction also cancels, but the SDK marks it as a replay, so
            # nothing is counted then.
            self._ended(RUNS_STOPPED)
            raise
        except workflow.ContinueAsNewError:
            self.count_new_events()  # the run goes on in its next execution
            raise
        self._ended(RUNS_COMPLETED)
        return result

    def _ended(self, outcome: str) -> None:
        self.count_new_events()
        self._count(outcome)

    async def handle_signal(self, input: HandleSignalInput) -> None:
        await super().handle_signal(input)
        self.count_new_events()  # an activity's publish arrives as a signal

    async def handle_update_handler(self, input: HandleUpdateInput) -> Any:
        try:
            return await super().handle_update_handler(input)
        finally:
            self.count_new_events()

    def count_new_events(self) -> None:
        """Add the events appended to the stream since the last look."""
        if self._events_seen is None:
            return
        offset = self._stream_offset()
        if offset > self._events_seen:
            self._count(EVENTS_PUBLISHED, offset - self._events_seen)
            self._events_seen = offset

    def _stream_offset(self) -> int:
        handler = workflow.get_query_handler(_STREAM_OFFSET_QUERY)
        return int(handler()) if handler is not None else 0

    def _count(self, name: str, value: int = 1) -> None:
        counter = self._counters.get(name)
        if counter is None:
            counter = self._meter.create_counter(name, COUNTERS[name])
            self._counters[name] = counter
        counter.add(value)


class _WorkflowOutboundCounters(WorkflowOutboundInterceptor):
    """Counts the events the workflow itself published before each command it issues."""

    def __init__(self, next: WorkflowOutboundInterceptor, counters: _WorkflowCounters) -> None:
        super().__init__(next)
        self._counters = counters

    def start_activity(self, input: StartActivityInput) -> ActivityHandle[Any]:
        self._counters.count_new_events()
        return super().start_activity(input)

    async def start_child_workflow(
        self, input: StartChildWorkflowInput
    ) -> ChildWorkflowHandle[Any, Any]:
        self._counters.count_new_events()
        return await super().start_child_workflow(input)


class _ActivityCounters(ActivityInboundInterceptor):
    """One per activity attempt."""

    def init(self, outbound: ActivityOutboundInterceptor) -> None:
        self._checkpoints = _CheckpointCounter(outbound)
        super().init(self._checkpoints)

    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        result = await super().execute_activity(input)
        # A turn's last steps travel in its result, not in a heartbeat.
        steps = getattr(result, "steps", None)
        if isinstance(steps, int):
            self._checkpoints.count(steps)
        return result


class _CheckpointCounter(ActivityOutboundInterceptor):
    """A turn heartbeats its latest checkpoint all along; a new one has more ``steps``."""

    def __init__(self, next: ActivityOutboundInterceptor) -> None:
        super().__init__(next)
        info = next.info()
        self._is_turn = info.activity_type == TURN_ACTIVITY
        # A retry starts from the checkpoint its previous attempt wrote: not a new one.
        self._steps = _checkpoint_steps(info.heartbeat_details)
        self._counter: MetricCounter | None = None
        self._seen: Any = None  # the details last counted: a turn beats each many times

    def heartbeat(self, *details: Any) -> None:
        super().heartbeat(*details)
        first = details[0] if details else None
        if first is not self._seen:
            self._seen = first
            self.count(_checkpoint_steps(details))

    def count(self, steps: int) -> None:
        """Count the steps up to ``steps`` not counted yet."""
        if self._is_turn and steps > self._steps:
            if self._counter is None:
                self._counter = activity.metric_meter().create_counter(
                    CHECKPOINTS_WRITTEN, COUNTERS[CHECKPOINTS_WRITTEN]
                )
            self._counter.add(steps - self._steps)
            self._steps = steps


def _checkpoint_steps(details: Any) -> int:
    """``steps`` of a turn checkpoint (``TurnCheckpoint`` as JSON, or encoded already:
    activities/_beat.py), 0 if there is none."""
    checkpoint = details[0] if details else None
    if isinstance(checkpoint, EncodedCheckpoint):
        return checkpoint.steps
    if not isinstance(checkpoint, Mapping):
        return 0
    steps = checkpoint.get("steps")
    return steps if isinstance(steps, int) else 0


def _agent_label(args: Any) -> dict[str, str | int | float | bool]:
    """``agent_id`` as a metric label: a registry's agents, so few distinct values."""
    raw = args[0] if args else None
    agent_id = raw.get("agent_id") if isinstance(raw, Mapping) else None
    return {"agent_id": agent_id if isinstance(agent_id, str) else "unknown"}


def count_tokens(agent_id: str, usage: Usage | None) -> None:
    """Add a model response's tokens to ``agentrun_tokens_total`` (in a turn activity)."""
    if usage is None:
        return
    counter = activity.metric_meter().create_counter(TOKENS, COUNTERS[TOKENS])
    kinds = {
        "input": usage.input_tokens,
        "output": usage.output_tokens,
        "cache_read": usage.cache_read_tokens,
        "cache_write": usage.cache_write_tokens,
    }
    for kind, tokens in kinds.items():
        if tokens:
            counter.add(tokens, {"agent": agent_id, "kind": kind})
