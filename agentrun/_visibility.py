"""The search attributes a run starts with (docs/contract.md, "Search attributes"),
and how a visibility query quotes a value.

Set when the run is started, by the client or by the parent (children inherit none),
so the run need not upsert them in its first workflow task: one history event and one
visibility write less per run.
"""

from __future__ import annotations

from temporalio.common import SearchAttributePair, TypedSearchAttributes

from agentrun._constants import AGENT_ID, DELEGATION_EPOCH, DELEGATION_STATUS, OWNER_THREAD_ID
from agentrun._models import AgentRunInput


def start_search_attributes(run_input: AgentRunInput) -> TypedSearchAttributes:
    """Owner, agent, status ``running`` and epoch of a run about to start."""
    return TypedSearchAttributes(
        [
            SearchAttributePair(OWNER_THREAD_ID, run_input.owner_thread_id),
            SearchAttributePair(AGENT_ID, run_input.agent_id),
            SearchAttributePair(DELEGATION_STATUS, "running"),
            SearchAttributePair(DELEGATION_EPOCH, run_input.epoch),
        ]
    )


def query_literal(value: str) -> str:
    """A visibility-query string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
