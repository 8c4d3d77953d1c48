"""The ``[tools]`` and ``[mcp_servers]`` tables of the agent registry file.

Example::

    [tools]
    add = "tools:add"                                   # name = "module:function"
    search_web = { function = "tools:search_web", timeout = 30, retries = 3 }
    send_mail = { function = "tools:send_mail", approval = true, approval_timeout = 3600 }

    [mcp_servers.files]                                 # a stdio server the worker starts
    command = "python"
    args = ["mcp_files.py"]
    [mcp_servers.docs]                                  # a streamable HTTP server
    url = "http://127.0.0.1:8765/mcp"

``module:function`` is imported with the worker's working directory on ``sys.path``.
"""

from __future__ import annotations

import importlib
import os
import sys
from datetime import timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from agentrun._tools import (
    DEFAULT_TOOL_HEARTBEAT,
    DEFAULT_TOOL_RETRIES,
    DELEGATION_TOOL_NAMES,
    AgentTool,
    MCPServer,
    as_tool,
)

_NAME = r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$"


class ToolEntry(BaseModel):
    """One ``[tools]`` entry written as a table."""

    model_config = ConfigDict(extra="forbid")

    function: str = Field(pattern=r"^[\w.]+:[\w.]+$")
    timeout: float | None = Field(default=None, gt=0, le=7 * 24 * 3600)
    retries: int | None = Field(default=None, ge=0, le=100)
    heartbeat_timeout: float | None = Field(default=None, gt=0, le=3600)
    task_queue: str | None = Field(default=None, min_length=1)
    approval: bool = False
    approval_timeout: float | None = Field(default=None, gt=0, le=7 * 24 * 3600)


class MCPServerEntry(BaseModel):
    """One ``[mcp_servers.<name>]`` table."""

    model_config = ConfigDict(extra="forbid")

    command: str | None = Field(default=None, min_length=1)
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] | None = None
    cwd: str | None = None
    url: str | None = Field(default=None, pattern=r"^https?://")
    prefix: str | None = Field(default=None, pattern=_NAME)
    timeout: float = Field(default=60, gt=0, le=7 * 24 * 3600)
    retries: int = Field(default=DEFAULT_TOOL_RETRIES, ge=0, le=100)
    heartbeat_timeout: float = Field(default=DEFAULT_TOOL_HEARTBEAT.total_seconds(), gt=0, le=3600)
    task_queue: str | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _command_or_url(self) -> MCPServerEntry:
        if (self.command is None) == (self.url is None):
            raise ValueError("give exactly one of 'command' (stdio) and 'url' (streamable HTTP)")
        return self


ToolTable = dict[str, str | ToolEntry]


def build_tools(table: ToolTable) -> list[AgentTool]:
    """An ``AgentTool`` per entry, named by its key.

    Raises:
        ValueError: ``tools.<name>: ...``, naming the entry and what is wrong with it.
    """
    return [_tool(name, entry) for name, entry in table.items()]


def _tool(name: str, entry: str | ToolEntry) -> AgentTool:
    if name in DELEGATION_TOOL_NAMES:
        raise ValueError(f"tools.{name}: clashes with the delegation tool of that name")
    spec = entry if isinstance(entry, ToolEntry) else _entry(name, entry)
    function = _import(name, spec.function)
    try:
        return as_tool(
            function,
            name=name,
            timeout=spec.timeout,
            retries=spec.retries,
            heartbeat_timeout=spec.heartbeat_timeout,
            task_queue=spec.task_queue,
            approval=spec.approval,
            approval_timeout=spec.approval_timeout,
        )
    except Exception as err:  # pydantic-ai's schema errors: an unsupported signature
        raise ValueError(f"tools.{name}: {spec.function} cannot be a tool: {err}") from None


def _entry(name: str, target: str) -> ToolEntry:
    if ":" not in target:
        raise ValueError(f"tools.{name}: expected 'module:function', got {target!r}")
    return ToolEntry(function=target)


def _import(name: str, target: str) -> Any:
    module_name, _, attribute = target.partition(":")
    # The worker's working directory, as for `python -m`: a project's own tools module.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except Exception as err:
        raise ValueError(
            f"tools.{name}: cannot import {module_name!r}: {type(err).__name__}: {err}"
        ) from None
    function: Any = module
    for part in attribute.split("."):
        function = getattr(function, part, None)
        if function is None:
            raise ValueError(f"tools.{name}: {module_name!r} has no {attribute!r}")
    if not callable(function):
        raise ValueError(f"tools.{name}: {target} is not callable")
    return function


def build_servers(table: dict[str, MCPServerEntry]) -> list[MCPServer]:
    """An ``MCPServer`` per ``[mcp_servers.<name>]`` table."""
    return [
        MCPServer(
            name=name,
            command=entry.command,
            args=tuple(entry.args),
            env=entry.env,
            cwd=entry.cwd,
            url=entry.url,
            prefix=entry.prefix,
            timeout=timedelta(seconds=entry.timeout),
            retries=entry.retries,
            heartbeat_timeout=timedelta(seconds=entry.heartbeat_timeout),
            task_queue=entry.task_queue,
        )
        for name, entry in table.items()
    ]
