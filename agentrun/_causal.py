"""Merging a run tree's event streams so that a cause comes before its effect.

Each run's stream is read by a follower of its own, and they deliver at their own
pace: a parent's ``child_finished`` can arrive before the child's own ``finish``.
``CauseFirst`` holds a run's events from such a ``child_finished`` on until the
child's ``finish`` is out (or its stream has ended), so a reader of the merged
stream never sees an effect before its cause. Both ``AgentRunClient.events`` and
``agentrun watch`` merge through it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agentrun._client import StreamedEvent

__all__ = ["CauseFirst"]


class CauseFirst:
    """Orders the events of a tree's followers, and says when to follow a child."""

    def __init__(self, follow_child: Callable[[str], None]) -> None:
        """Call ``follow_child(run_id)`` when a ``child_started`` event goes out."""
        self._follow_child = follow_child
        self._streaming: Counter[str] = Counter()  # live followers per run
        self._finished: set[str] = set()  # runs whose current epoch's finish went out
        self._held: dict[str, tuple[str, list[StreamedEvent]]] = {}  # run: (child, events)

    def following(self, run_id: str) -> None:
        """A follower of ``run_id`` started."""
        self._streaming[run_id] += 1

    def arrived(self, item: StreamedEvent) -> list[StreamedEvent]:
        """The events that may go out now that ``item`` arrived, in order."""
        run, kind, child = item.event.run_id, item.event.kind, item.event.summary
        if run in self._held:
            self._held[run][1].append(item)
            return []
        if kind == "child_finished" and child is not None and self._unfinished(child.run_id):
            self._held[run] = (child.run_id, [item])
            return []
        if kind == "child_started" and child is not None:
            self._follow_child(child.run_id)
        if kind == "run_started":
            self._finished.discard(run)
        if kind == "finish":
            self._finished.add(run)
            return [item, *self._release(run)]
        return [item]

    def ended(self, run_id: str) -> list[StreamedEvent]:
        """A follower of ``run_id`` ended: the events held for it may go out."""
        self._streaming[run_id] -= 1
        return self._release(run_id)

    def _unfinished(self, child: str) -> bool:
        return self._streaming[child] > 0 and child not in self._finished

    def _release(self, child: str) -> list[StreamedEvent]:
        released: list[StreamedEvent] = []
        for parent, (awaited, events) in list(self._held.items()):
            if awaited == child:
                del self._held[parent]
                for event in events:
                    released += self.arrived(event)
        return released
