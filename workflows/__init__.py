"""Workflows: deterministic code only (the ``AgentRun`` workflow and its children table)."""

from agentrun.workflows.agent_run import AgentRunWorkflow

__all__ = ["AgentRunWorkflow"]
