"""A worker's copies of the long threads its turns have read.

A run's thread only grows within one workflow execution (a resume, a continue-as-new
or a reset is a new execution, with a new Temporal run id), so a turn of a long thread
is sent only the messages added since the previous turn began (``TurnInput.messages`` from index
``tail_from``). A worker that ran the previous turn adds them to its copy; any other
worker reads the whole thread once with the ``thread`` query. Without this a run of
thousands of turns would read its whole thread every turn.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable

from agentrun._models import Message, TurnInput

# Copies kept, newest first; the oldest go beyond either bound.
MAX_THREADS = 256
MAX_CHARACTERS = 64 * 1024 * 1024


class ThreadCache:
    """Threads by workflow execution, least recently used dropped first."""

    def __init__(self) -> None:
        self._threads: OrderedDict[tuple[str, str], tuple[list[Message], int]] = OrderedDict()
        self._characters = 0

    async def thread(
        self, execution: str, turn: TurnInput, read: Callable[[], Awaitable[list[Message]]]
    ) -> list[Message]:
        """The turn's whole thread: the copy plus the turn's tail, or ``read()``.

        ``execution`` is the Temporal run id of the workflow execution the turn is of.
        """
        key = (turn.run_id, execution)
        known = self._threads.pop(key, None)
        if known is not None:
            self._characters -= known[1]
        if known is not None and len(known[0]) == turn.tail_from:
            thread = [*known[0], *turn.messages]
            size = known[1] + _characters(turn.messages)
        else:
            thread = await read()
            size = _characters(thread)
        self._threads[key] = (thread, size)
        self._characters += size
        while len(self._threads) > MAX_THREADS or (
            self._characters > MAX_CHARACTERS and len(self._threads) > 1
        ):
            _, (_, dropped) = self._threads.popitem(last=False)
            self._characters -= dropped
        return thread


def _characters(messages: list[Message]) -> int:
    return sum(len(m.content) + sum(len(str(c.args)) for c in m.tool_calls) for m in messages)
