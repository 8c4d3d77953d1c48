"""Which patched paths a run takes, and when it takes them without a marker.

The first time a live run asks ``workflow.patched``, the SDK writes a marker and
upserts ``TemporalChangeVersion``: two history events and a visibility write for each
patch in each run, six of a delegated child's forty events. A run whose starter knew
every patch of the workflow code (``AgentRunInput.version`` ``PATCHES_TAKEN`` or later, set by
every starter since it exists) takes them all without asking. A run from before has
version 0 and asks its history, so it replays as it ran.
"""

from __future__ import annotations

from temporalio import workflow

# From this version on, a run takes every patch without asking.
PATCHES_TAKEN = 1


def taken(version: int, patch_id: str) -> bool:
    """Whether a run of ``version`` takes the path ``patch_id`` brought."""
    return version >= PATCHES_TAKEN or workflow.patched(patch_id)
