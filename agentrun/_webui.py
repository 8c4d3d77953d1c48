"""What the Temporal Web UI shows for a run: its static summary and details.

Temporal renders these (markdown) on each workflow's page, so a reader sees a run's
purpose without opening its input. Prompt text is shown only here, never in search
attributes.
"""

from __future__ import annotations

from agentrun._models import AgentRunInput, RunSummary

SUMMARY_PROMPT_CHARS = 60


def static_summary(run: AgentRunInput) -> str:
    """One line: the agent and the start of what it was asked."""
    thread = run.initial_thread()
    asked = next((m.content for m in reversed(thread) if m.role == "user"), "")
    asked = " ".join(asked.split())
    if len(asked) > SUMMARY_PROMPT_CHARS:
        asked = asked[: SUMMARY_PROMPT_CHARS - 1] + "…"
    return f"{run.agent_id}: {asked}" if asked else run.agent_id


def static_details(run: AgentRunInput, run_id: str) -> str:
    """Owner, lineage, epoch, and how to stop the run (how to resume it is in its
    current details once it is stopped: ``resume_hint``)."""
    parent = f"`{run.parent_run_id}`" if run.parent_run_id else "none (root run)"
    return "\n".join(
        [
            f"**agent** `{run.agent_id}` · **owner thread** `{run.owner_thread_id}`",
            f"**parent run** {parent} · **epoch** {run.epoch} · **depth** {run.depth}",
            "",
            f"Stop this run and its subtree: `temporal workflow cancel --workflow-id {run_id}`",
        ]
    )


def resume_hint(run_id: str, owner_thread_id: str) -> str:
    """How to resume a stopped run, for its current details."""
    return f"**stopped**: resume it with `agentrun resume {run_id} --owner {owner_thread_id}`"


def current_details(last_event: str, children: list[RunSummary]) -> str:
    """The live view: the last event, and the children running and done."""
    running = [c.run_id for c in children if c.status == "running"]
    done = [f"{c.run_id} ({c.status})" for c in children if c.status != "running"]
    lines = [f"**last event** {last_event}"]
    if running:
        lines.append("**running** " + ", ".join(f"`{r}`" for r in running[:20]))
    if done:
        lines.append("**done** " + ", ".join(done[:20]))
    return "\n\n".join(lines)
