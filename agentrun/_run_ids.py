"""Run ids say which agent runs: ``run-<hex>-<agent>`` for a root, ``<parent>.<n>-<agent>``
for a child (docs/contract.md, "Run ids"). Deterministic: the workflow uses it too."""

from __future__ import annotations

import re

__all__ = ["RUN_ID_AGENT_CHARS", "TEMPORAL_ID_CHARS", "agent_part", "child_run_id"]

RUN_ID_AGENT_CHARS = 40
# Temporal's limit on a workflow id; a child id past it keeps its number only.
TEMPORAL_ID_CHARS = 1000
# Room a taken child id needs for its random suffix (``-`` and 8 hex digits).
_SUFFIX_ROOM = 9


def agent_part(agent_id: str) -> str:
    """The agent's id as far as it is letters, digits, ``_`` and ``-`` (others become
    ``-``), at most ``RUN_ID_AGENT_CHARS`` of it; never a ``.``, which separates a
    child's number."""
    return re.sub(r"[^A-Za-z0-9_-]+", "-", agent_id.strip())[:RUN_ID_AGENT_CHARS].strip("-")


def child_run_id(parent_run_id: str, number: int, agent_id: str) -> str:
    """``<parent>.<n>-<agent>``, or ``<parent>.<n>`` where the agent would not fit."""
    numbered = f"{parent_run_id}.{number}"
    part = agent_part(agent_id)
    with_agent = f"{numbered}-{part}" if part else numbered
    return with_agent if len(with_agent) + _SUFFIX_ROOM <= TEMPORAL_ID_CHARS else numbered
