"""Assistant text as it streams, for people: whole lines per run, as soon as they are.

A run streams its text in ``text_delta`` pieces (a word, a token). Printed one per
line they would be unreadable, and printed raw the pieces of several runs would mix
on one line. So each run's pieces are gathered, and printed as a ``text`` line,
prefixed by the run like every event, when the text reaches a line break or the
line's width, and whatever is left before the run's next event. A short text that
arrives whole before its ``message`` is not printed twice: the message line has it.
"""

from __future__ import annotations

from dataclasses import dataclass

from agentrun._client import StreamedEvent
from agentrun.cli._render import DETAIL_WIDTH, event_line, run_line

__all__ = ["TEXT_KIND", "TEXT_WIDTH", "TextLines"]

TEXT_KIND = "text"
TEXT_WIDTH = 100


@dataclass
class _Pending:
    offset: int  # of the first piece not printed yet
    text: str


class TextLines:
    """Turns a merged event stream into lines: events, and each run's text as it comes."""

    def __init__(self, width: int = TEXT_WIDTH) -> None:
        """Print text lines of at most ``width`` characters."""
        self._width = width
        self._pending: dict[str, _Pending] = {}
        self._styles: dict[str, str] = {}
        self._streamed: set[str] = set()  # runs with text lines since their last message
        # Each run's latest text: the message it is streaming, else its last message.
        self.latest: dict[str, str] = {}
        self._streaming: dict[str, str] = {}

    def lines(self, item: StreamedEvent) -> list[str]:
        """The lines ``item`` completes: text lines, then the event's own line."""
        run_id = item.event.run_id
        self._note_latest(item)
        if item.event.kind == "text_delta":
            pending = self._pending.setdefault(run_id, _Pending(item.offset, ""))
            pending.text += item.event.text or ""
            return self._whole_lines(run_id, pending, item.offset)
        line = event_line(item, self._styles)
        if item.event.kind == "message" and self._said_whole(run_id, item):
            self._pending.pop(run_id, None)
        self._streamed.discard(run_id)
        return [*self.flush(run_id), *([line] if line is not None else [])]

    def _note_latest(self, item: StreamedEvent) -> None:
        run_id, event = item.event.run_id, item.event
        if event.kind == "text_delta":
            self._streaming[run_id] = self._streaming.get(run_id, "") + (event.text or "")
            self.latest[run_id] = self._streaming[run_id]
        elif event.kind == "message":
            self._streaming.pop(run_id, None)
            if event.message is not None and event.message.content:
                self.latest[run_id] = event.message.content

    def _said_whole(self, run_id: str, item: StreamedEvent) -> bool:
        """Whether the message line shows all the text not printed yet, unclipped."""
        content = item.event.message.content if item.event.message else ""
        return run_id not in self._streamed and len(" ".join(content.split())) <= DETAIL_WIDTH

    def flush(self, run_id: str | None = None) -> list[str]:
        """What is left of one run's text (every run's when None), as lines."""
        runs = [run_id] if run_id is not None else list(self._pending)
        left = [(run, self._pending.pop(run)) for run in runs if run in self._pending]
        return [self._text_line(run, p.offset, p.text) for run, p in left if p.text.strip()]

    def _whole_lines(self, run_id: str, pending: _Pending, offset: int) -> list[str]:
        lines: list[str] = []
        while "\n" in pending.text or len(pending.text) >= self._width:
            cut = _cut(pending.text, self._width)
            head, pending.text = pending.text[:cut], pending.text[cut:].lstrip("\n")
            if head.strip():
                lines.append(self._text_line(run_id, pending.offset, head))
                self._streamed.add(run_id)
            pending.offset = offset  # what is left came with this piece at the latest
        return lines

    def _text_line(self, run_id: str, offset: int, text: str) -> str:
        return run_line(run_id, offset, TEXT_KIND, " ".join(text.split()), self._styles)


def _cut(text: str, width: int) -> int:
    """Where a line of ``text`` ends: at a line break, else the last space before
    ``width``, else at ``width``."""
    newline = text.find("\n")
    if 0 <= newline < width:
        return newline
    space = text.rfind(" ", 0, width)
    return space + 1 if space > 0 else width
