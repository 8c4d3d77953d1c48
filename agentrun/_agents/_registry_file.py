"""The agent registry file (``agents.toml``, or the file ``AGENTRUN_AGENTS`` names).

Example::

    [agents.planner]
    model = "openai:gpt-4o-mini"
    instructions = "You plan research and delegate it."
    description = "plans and delegates"
    allowed_agents = ["researcher"]
    max_depth = 2

    [agents.researcher]
    model = "openai:llama3.2"
    base_url = "http://localhost:11434/v1"   # any OpenAI-compatible server
    settings = { temperature = 0.2 }

Everything is checked when the worker starts: a bad file stops it with a message that
names the file and the line or key, and never fails a run later. API keys come only
from the worker's environment (``OPENAI_API_KEY``, ``ANTHROPIC_API_KEY``, …).
"""

from __future__ import annotations

import difflib
import os
import sys
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_ai.models import Model, infer_model
from pydantic_ai.settings import ModelSettings
from typing_extensions import is_typeddict

from agentrun._agents._model import ModelAgent
from agentrun._agents._registry import AgentRegistry, AgentSpec
from agentrun._agents._tool_entries import (
    MCPServerEntry,
    ToolTable,
    build_servers,
    build_tools,
)
from agentrun._constants import MAX_DEPTH
from agentrun._tools import AgentTool, MCPServer
from agentrun._usage import Budget, ModelPrice

REGISTRY_ENV = "AGENTRUN_AGENTS"
DEFAULT_REGISTRY_FILE = "agents.toml"


class RegistryError(ValueError):
    """A registry file that cannot be used; the message names the file and the problem."""


class AgentEntry(BaseModel):
    """One ``[agents.<id>]`` table."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1)
    instructions: str = ""
    description: str = ""
    allowed_agents: list[str] | None = None
    excluded_agents: list[str] = Field(default_factory=list)
    max_depth: int = Field(default=MAX_DEPTH, ge=0, le=32)
    base_url: str | None = None
    settings: dict[str, Any] = Field(default_factory=dict)
    tools: list[str] = Field(default_factory=list)
    mcp_servers: list[str] = Field(default_factory=list)
    excluded_tools: list[str] = Field(default_factory=list)
    approval_tools: list[str] = Field(default_factory=list)
    price: ModelPrice | None = None
    budget: Budget | None = None


class RegistryFile(BaseModel):
    """The whole file."""

    model_config = ConfigDict(extra="forbid")

    agents: dict[str, AgentEntry] = Field(default_factory=dict)
    tools: ToolTable = Field(default_factory=dict)
    mcp_servers: dict[str, MCPServerEntry] = Field(default_factory=dict)


def load_registry(
    path: str | Path | None = None,
    builtins: AgentRegistry | None = None,
    extra: Sequence[AgentSpec] = (),
    tools: Sequence[AgentTool] = (),
    mcp_servers: Sequence[MCPServer] = (),
) -> AgentRegistry:
    """The built-in agents, the registry file's and ``extra`` ones, checked.

    Args:
        path: The file (``AGENTRUN_AGENTS``); default ``agents.toml`` in the working
            directory, which may be absent (then only the built-in and extra agents).
        builtins: The built-in agents (default: ``scripted``).
        extra: Agents defined in code.
        tools: Tools defined in code, beside the file's ``[tools]``.
        mcp_servers: MCP servers defined in code, beside the file's ``[mcp_servers]``.

    Raises:
        RegistryError: naming the file and the line or key that is wrong.
    """
    from agentrun._agents import default_registry

    base = builtins or default_registry()
    builtin_specs = base.specs()
    file = registry_file(path)
    if file is None:
        return _combined(builtin_specs, extra, tools, mcp_servers)
    document = _read(file)
    entries = document.agents
    specs = [_spec(file, agent_id, entry, base) for agent_id, entry in entries.items()]
    known = set(base.ids()) | set(entries) | {spec.id for spec in extra}
    for agent_id, entry in entries.items():
        _check_references(file, agent_id, entry, known)
    try:
        file_tools = build_tools(document.tools)
        file_servers = build_servers(document.mcp_servers)
    except ValueError as err:
        raise RegistryError(f"{file}: {err}") from None
    return _combined(
        [*builtin_specs, *specs],
        extra,
        [*file_tools, *tools],
        [*file_servers, *mcp_servers],
        file,
    )


def registry_file(path: str | Path | None = None) -> Path | None:
    """The registry file to read: ``path``, else ``agents.toml`` in the working
    directory; None when there is none to read.

    Raises:
        RegistryError: ``path`` names a file that does not exist.
    """
    file = Path(path or DEFAULT_REGISTRY_FILE)
    if file.exists():
        return file
    if path:
        raise RegistryError(f"{file}: agent registry file not found ({REGISTRY_ENV})")
    return None


def _combined(
    specs: Sequence[AgentSpec],
    extra: Sequence[AgentSpec],
    tools: Sequence[AgentTool],
    mcp_servers: Sequence[MCPServer],
    file: Path | None = None,
) -> AgentRegistry:
    try:
        return AgentRegistry([*specs, *extra], tools, mcp_servers)
    except ValueError as err:
        raise RegistryError(f"{file}: {err}" if file else str(err)) from None


def _read(file: Path) -> RegistryFile:
    try:
        document = tomllib.loads(file.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise RegistryError(f"{file}: invalid TOML: {err}") from None
    except OSError as err:
        raise RegistryError(f"{file}: cannot read: {err.strerror}") from None
    try:
        return RegistryFile.model_validate(document)
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in item['loc'])}: {item['msg']}" for item in err.errors()
        )
        raise RegistryError(f"{file}: {problems}") from None


def _spec(file: Path, agent_id: str, entry: AgentEntry, base: AgentRegistry) -> AgentSpec:
    if base.get(agent_id) is not None:
        raise RegistryError(f"{file}: agents.{agent_id}: '{agent_id}' is a built-in agent")
    try:
        model = build_model(entry.model, entry.base_url)
    except Exception as err:  # provider errors vary: unknown model, missing package or key
        raise RegistryError(f"{file}: agents.{agent_id}.model: {err}") from None
    _check_settings(file, agent_id, entry.settings, model)
    return AgentSpec(
        id=agent_id,
        runtime=ModelAgent(model, entry.instructions, entry.settings or None, entry.price),  # type: ignore[arg-type]
        description=entry.description,
        allowed_agents=tuple(entry.allowed_agents) if entry.allowed_agents is not None else None,
        excluded_agents=tuple(entry.excluded_agents),
        max_depth=entry.max_depth,
        tools=tuple(entry.tools),
        mcp_servers=tuple(entry.mcp_servers),
        excluded_tools=tuple(entry.excluded_tools),
        approval_tools=tuple(entry.approval_tools),
        budget=entry.budget,
    )


def _check_settings(file: Path, agent_id: str, settings: dict[str, Any], model: Model) -> None:
    """Each key of ``settings`` is one pydantic-ai's ``ModelSettings`` or the model's
    provider settings (``openai_*``, ...) have: a misspelt one would be ignored."""
    known = model_setting_keys(model)
    for key in settings:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"known: {', '.join(sorted(known))}"
            raise RegistryError(
                f"{file}: agents.{agent_id}.settings.{key}: unknown model setting; {hint}"
            )


def model_setting_keys(model: Model) -> set[str]:
    """The setting names ``model`` takes: ``ModelSettings``'s and, for a provider's model,
    those of the ``*ModelSettings`` TypedDicts its module defines."""
    # The model class may live in a private submodule of its provider's package.
    module = type(model).__module__
    namespaces = [
        vars(m) for m in (sys.modules.get(module.rpartition(".")[0]), sys.modules.get(module)) if m
    ]
    typed_dicts = [ModelSettings] + [
        value
        for names in namespaces
        for name, value in names.items()
        if name.endswith("ModelSettings") and is_typeddict(value)
    ]
    return {key for typed in typed_dicts for key in typed.__annotations__}


def _check_references(file: Path, agent_id: str, entry: AgentEntry, known: set[str]) -> None:
    for key in ("allowed_agents", "excluded_agents"):
        unknown = sorted(set(getattr(entry, key) or []) - known)
        if unknown:
            raise RegistryError(f"{file}: agents.{agent_id}.{key}: unknown agents {unknown}")


def build_model(model: str, base_url: str | None = None) -> Model:
    """A pydantic-ai model from its ``provider:name`` string.

    ``base_url`` points an ``openai:`` model at any OpenAI-compatible server; the key is
    ``OPENAI_API_KEY`` when set (local servers usually need none).
    """
    if base_url is None:
        return infer_model(model)
    provider, _, name = model.partition(":")
    if provider != "openai" or not name:
        raise ValueError(f"base_url works with 'openai:<model>' models, got {model!r}")
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai import OpenAIProvider

    api_key = os.environ.get("OPENAI_API_KEY") or "not-needed"
    return OpenAIChatModel(name, provider=OpenAIProvider(base_url=base_url, api_key=api_key))
