"""``agentrun approve``, ``deny``, ``pending`` and ``send``: a person in the loop.

Registered on the app by ``agentrun.cli._app``. Each is owner-scoped like every other
command; a decision or message a run refuses prints its reason on one line.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from agentrun._client import AgentRunClient
from agentrun._models import PendingApproval
from agentrun.cli import _render as render
from agentrun.cli._common import (
    EXIT_OK,
    Address,
    JsonOutput,
    Owner,
    RunId,
    checked_owner,
    console,
    execute,
    print_json_line,
)

__all__ = ["approve", "deny", "pending", "send"]

CallId = Annotated[
    str | None,
    typer.Argument(
        help="The call's id (may be left out when exactly one call of the run waits).",
        show_default=False,
    ),
]


def approve(
    run_id: RunId,
    call_id: CallId = None,
    owner: Owner = None,
    json_output: JsonOutput = False,
    address: Address = None,
) -> None:
    """Let a tool call that awaits your decision run."""
    owner = checked_owner(owner)

    async def decide(runs: AgentRunClient) -> int:
        decided = await runs.approve(owner, run_id, call_id)
        _print_decision(run_id, decided, "approved", json_output)
        return EXIT_OK

    execute(address, decide)


def deny(
    run_id: RunId,
    call_id: CallId = None,
    reason: Annotated[
        str | None, typer.Option(help="Why: the agent is told.", show_default=False)
    ] = None,
    owner: Owner = None,
    json_output: JsonOutput = False,
    address: Address = None,
) -> None:
    """Refuse a tool call that awaits your decision; the agent goes on without it.

    The agent is told "User denied the action" and the reason, when given.
    """
    owner = checked_owner(owner)

    async def decide(runs: AgentRunClient) -> int:
        decided = await runs.deny(owner, run_id, call_id, reason)
        _print_decision(run_id, decided, "denied", json_output)
        return EXIT_OK

    execute(address, decide)


def pending(
    run_id: Annotated[
        str | None, typer.Argument(help="Only this run's calls.", show_default=False)
    ] = None,
    owner: Owner = None,
    json_output: JsonOutput = False,
    address: Address = None,
) -> None:
    """List the tool calls awaiting your decision, with the commands that decide them.

    Oldest first. With --json: a list of {run_id, agent_id, call_id, tool, args, ...}.
    """
    owner = checked_owner(owner)

    async def show(runs: AgentRunClient) -> int:
        calls = await runs.pending(owner, run_id)
        if json_output:
            print_json_line(render.dumps([c.model_dump(mode="json") for c in calls]))
        elif not calls:
            console.print("No call awaits a decision.")
        else:
            console.print(_pending_table(calls, owner))
        return EXIT_OK

    execute(address, show)


def send(
    run_id: RunId,
    text: Annotated[str, typer.Argument(help="The message.", show_default=False)],
    owner: Owner = None,
    json_output: JsonOutput = False,
    address: Address = None,
) -> None:
    """Send a running run a user message: its agent sees it at its next turn."""
    owner = checked_owner(owner)
    if not text.strip():
        raise typer.BadParameter("must not be blank", param_hint="TEXT")

    async def send_it(runs: AgentRunClient) -> int:
        await runs.send(owner, run_id, text)
        if json_output:
            print_json_line(render.dumps({"run_id": run_id, "sent": True}))
        else:
            console.print(f"Sent to [bold]{escape(run_id)}[/]: its next turn sees it.")
        return EXIT_OK

    execute(address, send_it)


def _print_decision(run_id: str, call_id: str, decision: str, json_output: bool) -> None:
    if json_output:
        print_json_line(render.dumps({"run_id": run_id, "call_id": call_id, "decision": decision}))
    else:
        console.print(f"{decision.capitalize()} call {escape(call_id)} of {escape(run_id)}.")


def _pending_table(calls: list[PendingApproval], owner: str) -> Table:
    table = Table("run", "agent", "call", "tool and arguments", "decide with")
    for call in calls:
        args = render.clip(f"{call.tool} {render.dumps(call.args)}", 60)
        how = (
            f"agentrun approve {call.run_id} {call.call_id} --owner {owner}\n"
            f"agentrun deny {call.run_id} {call.call_id} --owner {owner} --reason TEXT"
        )
        table.add_row(call.run_id, call.agent_id, call.call_id, escape(args), escape(how))
    return table
