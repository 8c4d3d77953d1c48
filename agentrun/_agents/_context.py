"""What an agent that can delegate is told before each step (docs/delegation.md section 4)."""

from __future__ import annotations

from collections.abc import Callable

from agentrun._models import RunSummary

# Bounds keep the instructions small however many agents or children there are.
MAX_AGENTS_LISTED = 20
MAX_CHILDREN_LISTED = 20

TOOL_USAGE = (
    "Tools:\n"
    "- agent_run(agent_id, prompt, fork_context?, background?): run a registry agent; "
    "background=true returns at once with status running.\n"
    "- agent_run(run_id, prompt?): check a run you started, or resume it if stopped.\n"
    "- agent_stop(run_id): stop a background run and everything it started.\n"
    "- agent_output(run_id): read the latest output of a run you started."
)


def delegation_instructions(
    visible_agents: list[str], describe: Callable[[str], str], children: list[RunSummary]
) -> str:
    """The agent list, tool usage and, while children are live, the reminder."""
    if not visible_agents:
        return ""
    lines = ["You can delegate to these agents:"]
    for agent_id in visible_agents[:MAX_AGENTS_LISTED]:
        description = describe(agent_id)
        lines.append(f"- {agent_id}: {description}" if description else f"- {agent_id}")
    if len(visible_agents) > MAX_AGENTS_LISTED:
        lines.append(f"- ... and {len(visible_agents) - MAX_AGENTS_LISTED} more")
    lines.append(TOOL_USAGE)
    reminder = children_reminder(children)
    if reminder:
        lines.append(reminder)
    return "\n".join(lines)


def children_reminder(children: list[RunSummary]) -> str:
    """The reminder of running and stopped runs, or empty when there are none."""
    live = [c for c in children if c.status in ("running", "stopped")]
    if not live:
        return ""
    lines = ["<agent_runs>"]
    for child in sorted(live, key=lambda c: c.run_id)[:MAX_CHILDREN_LISTED]:
        lines.append(f'<run id="{child.run_id}" agent="{child.agent_id}" status="{child.status}"/>')
    if len(live) > MAX_CHILDREN_LISTED:
        lines.append(f"<!-- {len(live) - MAX_CHILDREN_LISTED} more not shown -->")
    lines.append("</agent_runs>")
    lines.append(
        "Use agent_run with run_id to check or resume a run, agent_stop to stop it, "
        "agent_output to read its output."
    )
    return "\n".join(lines)
