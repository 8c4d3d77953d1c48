"""agentrun's Temporal wiring in one plugin, for the worker, the client and the tests."""

from __future__ import annotations

import dataclasses

from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter
from temporalio.plugin import SimplePlugin
from temporalio.worker import WorkflowRunner
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

# Modules the workflow sandbox imports once and shares instead of re-importing per run:
# - agentrun: the models and pure delegation rules the workflow uses; deterministic,
#   and re-importing pydantic models per workflow run is slow.
# - pydantic, pydantic_core: heavy, side-effect free at import, and what the models use.
PASSTHROUGH_MODULES = ("agentrun", "pydantic", "pydantic_core", "annotated_types")


def _data_converter(existing: DataConverter | None) -> DataConverter:
    # JSON through pydantic (CONTRACT.md), keeping any codec the operator configured.
    if existing is None or existing.payload_codec is None:
        return pydantic_data_converter
    return dataclasses.replace(pydantic_data_converter, payload_codec=existing.payload_codec)


def _workflow_runner(existing: WorkflowRunner | None) -> WorkflowRunner:
    runner = existing or SandboxedWorkflowRunner()
    if not isinstance(runner, SandboxedWorkflowRunner):
        return runner
    restrictions = runner.restrictions.with_passthrough_modules(*PASSTHROUGH_MODULES)
    return dataclasses.replace(runner, restrictions=restrictions)


class AgentRunPlugin(SimplePlugin):
    """Pydantic JSON payloads and the workflow sandbox's pass-through modules.

    Workflow streams need no wiring of their own: the ``AgentRun`` workflow hosts its
    stream, and their payloads go through this plugin's converter.
    """

    def __init__(self) -> None:
        """Build the plugin."""
        super().__init__(
            "agentrun",
            data_converter=_data_converter,
            workflow_runner=_workflow_runner,
        )
