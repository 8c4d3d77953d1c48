"""agentrun: durable delegation for trees of AI agents on Temporal.

Serve agentrun from any worker::

    from temporalio.client import Client
    from temporalio.worker import Worker
    from agentrun import AgentRunPlugin

    client = await Client.connect("localhost:7233", plugins=[AgentRunPlugin()])
    await Worker(client, task_queue="agentrun").run()

and steer runs, scoped to their owner thread, with ``AgentRunClient``. Everything not
in ``__all__`` is private. Names are imported on first use, so ``import agentrun``
stays cheap for the command line and inside the workflow sandbox.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agentrun._agents import (
        AgentRegistry,
        AgentRuntime,
        AgentSpec,
        RetryableStepError,
        ScriptedAgent,
        Step,
        StepContext,
    )
    from agentrun._agents._model import ModelAgent
    from agentrun._client import AgentRunClient, ListedRun, NoAnswerError, StreamedEvent
    from agentrun._connection import connect
    from agentrun._constants import DEFAULT_TASK_QUEUE, SEARCH_ATTRIBUTES
    from agentrun._delegation import DelegationError
    from agentrun._models import AgentEvent, Message, RunSummary, Status, ToolCall
    from agentrun._plugin import AgentRunPlugin
    from agentrun._settings import AgentRunSettings, SettingsError
    from agentrun._tools import AgentTool, MCPServer, ToolContext, as_tool
    from agentrun._usage import Budget, ModelPrice, Usage

__version__ = "0.1.0"

_EXPORTS = {
    "AgentEvent": "agentrun._models",
    "AgentRegistry": "agentrun._agents",
    "AgentRunClient": "agentrun._client",
    "AgentRunPlugin": "agentrun._plugin",
    "AgentRunSettings": "agentrun._settings",
    "AgentRuntime": "agentrun._agents",
    "AgentSpec": "agentrun._agents",
    "AgentTool": "agentrun._tools",
    "ListedRun": "agentrun._client",
    "NoAnswerError": "agentrun._client",
    "MCPServer": "agentrun._tools",
    "ToolContext": "agentrun._tools",
    "as_tool": "agentrun._tools",
    "DEFAULT_TASK_QUEUE": "agentrun._constants",
    "DelegationError": "agentrun._delegation",
    "Message": "agentrun._models",
    "ModelAgent": "agentrun._agents._model",
    "RetryableStepError": "agentrun._agents",
    "RunSummary": "agentrun._models",
    "SEARCH_ATTRIBUTES": "agentrun._constants",
    "ScriptedAgent": "agentrun._agents",
    "SettingsError": "agentrun._settings",
    "Status": "agentrun._models",
    "Step": "agentrun._agents",
    "StepContext": "agentrun._agents",
    "StreamedEvent": "agentrun._client",
    "ToolCall": "agentrun._models",
    "connect": "agentrun._connection",
    "Budget": "agentrun._usage",
    "ModelPrice": "agentrun._usage",
    "Usage": "agentrun._usage",
}

__all__ = [
    "DEFAULT_TASK_QUEUE",
    "SEARCH_ATTRIBUTES",
    "AgentEvent",
    "AgentRegistry",
    "AgentRunClient",
    "AgentRunPlugin",
    "AgentRunSettings",
    "AgentRuntime",
    "AgentSpec",
    "AgentTool",
    "Budget",
    "DelegationError",
    "ListedRun",
    "MCPServer",
    "Message",
    "ModelAgent",
    "ModelPrice",
    "NoAnswerError",
    "RetryableStepError",
    "RunSummary",
    "ScriptedAgent",
    "SettingsError",
    "Status",
    "Step",
    "StepContext",
    "StreamedEvent",
    "ToolCall",
    "ToolContext",
    "Usage",
    "as_tool",
    "connect",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'agentrun' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # the next look-up is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
