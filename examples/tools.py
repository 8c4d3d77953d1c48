"""Example tools for agents.example.toml: plain functions, each call an activity.

Type hints give a tool's argument schema and its docstring the description a model sees.
"""

from __future__ import annotations

from datetime import UTC, datetime


def word_count(text: str) -> int:
    """How many words ``text`` has.

    Args:
        text: Any text.
    """
    return len(text.split())


def utc_now() -> str:
    """The current time in UTC, ISO 8601."""
    return datetime.now(UTC).isoformat(timespec="seconds")
