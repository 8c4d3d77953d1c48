"""What a worker serves, in words: the lines it logs when it starts.

One line says where the agents came from (the registry file, or that there was
none); then one line per agent: its id, its model and the tools it is offered.
"""

from __future__ import annotations

from pathlib import Path

from agentrun._agents._model import ModelAgent
from agentrun._agents._registry import AgentRegistry, AgentSpec
from agentrun._agents._registry_file import DEFAULT_REGISTRY_FILE, REGISTRY_ENV
from agentrun._agents._scripted import ScriptedAgent
from agentrun._tools import DELEGATION_TOOLS

__all__ = ["agent_line", "registry_line"]


def registry_line(file: Path | None) -> str:
    """Where the worker's agents come from."""
    if file is not None:
        return f"Agents from {file.resolve()}"
    missing = Path(DEFAULT_REGISTRY_FILE).resolve()
    return f"No agent registry file ({missing} does not exist; set {REGISTRY_ENV} for another)"


def agent_line(registry: AgentRegistry, spec: AgentSpec) -> str:
    """``agent planner: model openai:gpt-4o-mini; tools agent_run, ...; mcp files``."""
    tools = [tool.name for tool in registry.tools_of(spec)]
    if registry.policy(spec).visible_agents:
        excluded = set(spec.excluded_tools)
        tools = [t.name for t in DELEGATION_TOOLS if t.name not in excluded] + tools
    servers = [server.name for server in registry.servers_of(spec)]
    line = f"agent {spec.id}: {_model(spec)}; tools {', '.join(tools) or 'none'}"
    return line + (f"; mcp servers {', '.join(servers)}" if servers else "")


def _model(spec: AgentSpec) -> str:
    runtime = spec.runtime
    if isinstance(runtime, ModelAgent):
        model = runtime.model
        base_url = getattr(model, "base_url", None)
        where = f" at {base_url}" if base_url and model.system == "openai" else ""
        return f"model {model.system}:{model.model_name}{where}"
    if isinstance(runtime, ScriptedAgent):
        return "no model (scripted)"
    return f"runtime {type(runtime).__name__}"
