"""Turn slots per owner thread on one worker, so no owner can take them all.

A turn holds its activity slot while it runs, sleeps or streams: 100 background runs of
one owner that each sleep would hold a worker's 100 slots, and every other owner's
turn would wait until they end. A turn beyond its owner's share gives its slot back at
once and is retried a little later (an activity retry, not a history event).
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta

from temporalio.exceptions import ApplicationError

OWNER_AT_CAPACITY = "OwnerAtCapacity"
# When a turn over its owner's share asks again: soon enough that it starts within
# seconds of a slot freeing, rarely enough that waiting turns cost little.
RETRY_DELAY = timedelta(seconds=5)


class OwnerSlots:
    """Counts each owner's running turns on this worker against a cap."""

    def __init__(self, cap: int) -> None:
        """Let each owner thread run at most ``cap`` turns at once."""
        self.cap = cap
        self._running: Counter[str] = Counter()

    @contextlib.contextmanager
    def slot(self, owner_thread_id: str) -> Iterator[None]:
        """Hold one of the owner's slots for the turn.

        Raises:
            ApplicationError: retryable, of type ``OwnerAtCapacity``, when the owner
                already runs ``cap`` turns here.
        """
        if self._running[owner_thread_id] >= self.cap:
            raise ApplicationError(
                f"Owner thread {owner_thread_id[:80]!r} already runs {self.cap} turns on "
                "this worker (AGENTRUN_MAX_TURNS_PER_OWNER); retried when one ends",
                type=OWNER_AT_CAPACITY,
                next_retry_delay=RETRY_DELAY,
            )
        self._running[owner_thread_id] += 1
        try:
            yield
        finally:
            self._running[owner_thread_id] -= 1
            if not self._running[owner_thread_id]:
                del self._running[owner_thread_id]
