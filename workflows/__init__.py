"""Workflows: deterministic code only (the ``AgentRun`` workflow and its children table)."""

from workflows.agent_run import AgentRunWorkflow

__all__ = ["AgentRunWorkflow"]
