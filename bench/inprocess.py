"""The same semantics without durability: an in-process asyncio run manager.

Runs are asyncio tasks; the same ``ScriptedAgent`` takes the same steps, and an
``agent_run`` tool call starts a child task (awaited in the foreground, left running in
the background; a parent finishes after its background children). Nothing survives
the process: this is what the work costs without Temporal.
"""

from __future__ import annotations

import asyncio
import json
import uuid

from agentrun import Message, ScriptedAgent, StepContext, ToolCall


class InProcessRuns:
    """Runs as tasks in this process; ``start`` returns the run's task."""

    def __init__(self) -> None:
        self._agent = ScriptedAgent()
        self.events: asyncio.Queue[str] = asyncio.Queue()

    def start(self, prompt: str, run_id: str | None = None) -> asyncio.Task[str]:
        """Start a run of the scripted agent on ``prompt``; its task answers the text."""
        return asyncio.create_task(self._run(run_id or uuid.uuid4().hex[:12], prompt))

    async def _run(self, run_id: str, prompt: str) -> str:
        thread = [Message.user(prompt)]
        state: dict[str, object] = {}
        background: list[asyncio.Task[str]] = []
        delegated = 0
        while True:
            ctx = StepContext(
                run_id=run_id,
                agent_id="scripted",
                epoch=1,
                turn=1,
                thread=thread,
                state=state,  # type: ignore[arg-type]
                instructions="",
                emit_text=self.events.put_nowait,
            )
            step = await self._agent.step(ctx)
            thread.extend(step.messages)
            state = dict(step.state)
            for call in step.tool_calls:
                delegated += 1
                thread.append(await self._tool(f"{run_id}.{delegated}", call, background))
            if step.finished or step.error is not None:
                break
        await asyncio.gather(*background)
        return next((m.content for m in reversed(thread) if m.role == "assistant"), "")

    async def _tool(
        self, child_id: str, call: ToolCall, background: list[asyncio.Task[str]]
    ) -> Message:
        child = self.start(str(call.args.get("prompt", "")), child_id)
        if call.args.get("background"):
            background.append(child)
            result = {"run_id": child_id, "status": "running"}
        else:
            result = {"run_id": child_id, "status": "completed", "assistant": await child}
        return Message(
            role="tool", tool_call_id=call.id, name=call.name, content=json.dumps(result)
        )
