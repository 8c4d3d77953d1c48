"""Tools the tests give agents: plain functions, as a user's ``tools.py`` would hold."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from pydantic_ai import RunContext

from agentrun import ToolContext

ROOT_MARKER = "not a function"  # for the registry test of a name that is not callable


def add(a: int, b: int) -> int:
    """Add two whole numbers.

    Args:
        a: The first.
        b: The second.
    """
    return a + b


def shout(text: str) -> str:
    """The text in capitals."""
    return text.upper()


def where() -> dict[str, int]:
    """The process id of the worker that ran the call."""
    return {"pid": os.getpid()}


def boom(marker: str) -> str:
    """Always fails; each attempt leaves a line in ``marker``."""
    with Path(marker).open("a") as file:
        file.write("attempt\n")
    raise RuntimeError("the tool broke")


async def slow(ctx: RunContext[ToolContext], seconds: float, marker: str) -> str:
    """Sleep ``seconds``, streaming progress; leaves ``started``/``cancelled`` in ``marker``."""
    with Path(marker).open("a") as file:
        file.write(f"started {ctx.deps.attempt} {os.getpid()}\n")
    ctx.deps.progress(f"sleeping {seconds}s")
    try:
        await asyncio.sleep(seconds)
    except asyncio.CancelledError:
        with Path(marker).open("a") as file:
            file.write("cancelled\n")
        raise
    return f"slept {seconds}s in {ctx.deps.run_id}"


def tally(ctx: RunContext[ToolContext], items: list[str]) -> int:
    """Count ``items``, streaming a line each: a sync tool, which runs in a thread."""
    for index, item in enumerate(items, 1):
        ctx.deps.progress(f"{index} {item}")
    return len(items)
