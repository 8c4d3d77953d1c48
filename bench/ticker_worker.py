"""A worker of one's own (README, "A worker of your own") with a ``ticker`` agent, for
scenario 9: ``python -m bench.ticker_worker``, configured as ``worker.py`` is
(``TEMPORAL_ADDRESS``, ``AGENTRUN_*``), until SIGTERM.

``ticker`` streams like a model's response: one step that emits a word every
``every`` seconds (its prompt is ``{"words": N, "every": S}``), then one message. Its
turn's checkpoint stays small however long it streams, as a model turn's does.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal

from temporalio.client import Client
from temporalio.worker import Worker

from agentrun import AgentRunPlugin, AgentSpec, Message, Step, StepContext
from agentrun._observability import metrics_runtime
from agentrun._settings import load_settings


class TickerAgent:
    """Streams ``words`` words, one every ``every`` seconds, then answers with them."""

    replays_exactly = False

    async def step(self, ctx: StepContext) -> Step:
        prompt = json.loads(ctx.thread[-1].content)
        words, every = int(prompt["words"]), float(prompt["every"])
        for _ in range(words):
            ctx.emit_text("word ")
            await asyncio.sleep(every)
        return Step(messages=[Message(role="assistant", content="word " * words)], finished=True)


async def main() -> None:
    settings = load_settings()
    plugin = AgentRunPlugin(settings, agents=[AgentSpec(id="ticker", runtime=TickerAgent())])
    client = await Client.connect(
        os.environ["TEMPORAL_ADDRESS"],
        plugins=[plugin],
        runtime=metrics_runtime(settings.metrics_address),
    )
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with Worker(client, task_queue=settings.task_queue):
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(main())
