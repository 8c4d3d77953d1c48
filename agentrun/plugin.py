"""agentrun's Temporal wiring in one plugin, for the worker, the client and the tests."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping

from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import (
    DataConverter,
    DefaultFailureConverterWithEncodedAttributes,
    PayloadCodec,
)
from temporalio.plugin import SimplePlugin
from temporalio.worker import WorkflowRunner
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from agentrun.codec import EncryptionCodec, codec_from_env
from agentrun.payload_guard import PayloadGuard, PayloadLimit
from agentrun.storage import StorageSettings

# Modules the workflow sandbox imports once and shares instead of re-importing per run:
# - agentrun: the models and pure delegation rules the workflow uses; deterministic,
#   and re-importing pydantic models per workflow run is slow.
# - pydantic, pydantic_core: heavy, side-effect free at import, and what the models use.
PASSTHROUGH_MODULES = ("agentrun", "pydantic", "pydantic_core", "annotated_types")


@dataclasses.dataclass(frozen=True)
class PayloadSettings:
    """How payloads travel: large ones by reference, all of them encrypted if asked."""

    storage: StorageSettings = dataclasses.field(default_factory=StorageSettings.off)
    codec: PayloadCodec | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> PayloadSettings:
        """``AGENTRUN_STORAGE*`` and ``AGENTRUN_ENCRYPTION_*`` (docs/reliability.md).

        Raises:
            ValueError: a setting is malformed (``StorageConfigError``, ``CodecError``).
        """
        return cls(StorageSettings.from_env(environ), codec_from_env(environ))

    def describe(self) -> str:
        """One line for a worker's log: where large payloads go, and the encryption."""
        codec = self.codec
        if isinstance(codec, EncryptionCodec):
            sealed = f"encrypted with key {codec.key_id!r} (reads {', '.join(codec.key_ids)})"
        else:
            sealed = "not encrypted" if codec is None else f"encoded by {type(codec).__name__}"
        return f"{self.storage.describe()}; {sealed}"

    def limit(self) -> PayloadLimit:
        """The largest value one payload may carry with these settings."""
        converter = pydantic_data_converter.payload_converter
        if self.storage.driver is None:
            return PayloadLimit.inline(converter)
        return PayloadLimit.stored(self.storage.max_payload_size, converter)


def _data_converter(existing: DataConverter | None, settings: PayloadSettings) -> DataConverter:
    # JSON through pydantic (CONTRACT.md), keeping any codec the operator configured.
    codec = settings.codec or (existing.payload_codec if existing else None)
    storage = settings.storage.external_storage()
    if storage is None and existing is not None:
        storage = existing.external_storage
    # The SDK encodes before it stores, so the blobs in external storage are
    # encrypted as well. With a codec, failure messages (which can quote a prompt)
    # are encoded too instead of staying readable in the history.
    failures = (
        DefaultFailureConverterWithEncodedAttributes
        if codec
        else pydantic_data_converter.failure_converter_class
    )
    return dataclasses.replace(
        pydantic_data_converter,
        payload_codec=codec,
        external_storage=storage,
        failure_converter_class=failures,
    )


def _workflow_runner(existing: WorkflowRunner | None) -> WorkflowRunner:
    runner = existing or SandboxedWorkflowRunner()
    if not isinstance(runner, SandboxedWorkflowRunner):
        return runner
    restrictions = runner.restrictions.with_passthrough_modules(*PASSTHROUGH_MODULES)
    return dataclasses.replace(runner, restrictions=restrictions)


class AgentRunPlugin(SimplePlugin):
    """Pydantic JSON payloads, large-payload storage, encryption, and the sandbox.

    Workflow streams need no wiring of their own: the ``AgentRun`` workflow hosts its
    stream, and their payloads go through this plugin's converter.
    """

    def __init__(self, payloads: PayloadSettings | None = None) -> None:
        """Build the plugin.

        Args:
            payloads: Storage and encryption; from the environment when None.

        Raises:
            ValueError: the environment's payload settings are malformed.
        """
        settings = payloads or PayloadSettings.from_env()
        self.payloads = settings
        super().__init__(
            "agentrun",
            data_converter=functools.partial(_data_converter, settings=settings),
            workflow_runner=_workflow_runner,
            # Checks every payload's size where it leaves, so an oversized one fails
            # its run with a clear message instead of a task retried forever.
            interceptors=[PayloadGuard(settings.limit())],
        )
