"""How the command line shows runs: rich tables and trees for people, JSON for scripts.

Every ``--json`` shape is built here, from the models' own JSON (``model_dump(mode=
"json")``), so the fields a script reads are the contract's names.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime

from pydantic import JsonValue
from rich.console import Group, RenderableType
from rich.markup import escape
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from agentrun._client import StreamedEvent
from agentrun._models import EVENT_KINDS, AgentEvent, Message, RunSummary, Status
from agentrun.cli._views import Retrying, RunDetails, RunNode, Timing

__all__ = [
    "details_json",
    "details_view",
    "dumps",
    "duration",
    "event_json",
    "event_line",
    "run_line",
    "runs_table",
    "summaries_json",
    "thread_json",
    "thread_view",
    "tree_json",
    "tree_view",
]

STATUS_STYLE: dict[Status, str] = {
    "running": "yellow",
    "completed": "green",
    "failed": "red",
    "stopped": "magenta",
}
RUN_STYLES = ("cyan", "blue", "green", "magenta", "yellow", "bright_cyan", "bright_blue")
DETAIL_WIDTH = 120
ROLE_STYLE = {"user": "bold", "assistant": "cyan", "system": "dim", "tool": "green"}


def dumps(value: JsonValue) -> str:
    """One line of JSON."""
    return json.dumps(value, ensure_ascii=False)


def clip(text: str, width: int = DETAIL_WIDTH) -> str:
    """``text`` on one line, at most ``width`` characters."""
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def status_markup(status: Status) -> str:
    """The status, coloured."""
    return f"[{STATUS_STYLE[status]}]{status}[/]"


def duration(seconds: float | None) -> str:
    """``4.2s``, ``3m05s``, ``2h07m``; ``-`` when unknown."""
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


# --- events -------------------------------------------------------------------------


def event_json(item: StreamedEvent) -> str:
    """An event as one JSON line: ``{"run_id", "offset", "event"}``."""
    return dumps(
        {
            "run_id": item.event.run_id,
            "offset": item.offset,
            "event": item.event.model_dump(mode="json", exclude_none=True),
        }
    )


def event_line(item: StreamedEvent, styles: dict[str, str]) -> str | None:
    """An event as one line of markup prefixed by its run; None for a text delta.

    Deltas are gathered into lines elsewhere (``agentrun.cli._text``).
    A kind this version does not know (a newer worker's) is shown as ``<kind>``.
    """
    detail = event_detail(item.event)
    if detail is None:
        return None
    kind = item.event.kind if item.event.kind in EVENT_KINDS else f"<{item.event.kind}>"
    return run_line(item.event.run_id, item.offset, kind, clip(detail), styles)


def run_line(run_id: str, offset: int, kind: str, detail: str, styles: dict[str, str]) -> str:
    """One line of markup: the run (in its colour), the offset, the kind, the detail."""
    style = styles.setdefault(run_id, RUN_STYLES[len(styles) % len(RUN_STYLES)])
    return (
        f"[{style}]{escape(run_id):<18}[/] [dim]{offset:>4}[/] "
        f"{escape(clip(kind, 40)):<14} {escape(detail)}"
    )


def event_detail(event: AgentEvent) -> str | None:
    """What one event says, or None for a text delta."""
    if event.kind == "text_delta":
        return None
    if event.kind == "message" and event.message is not None:
        calls = ", ".join(call.name for call in event.message.tool_calls)
        return event.message.content or (f"(calls {calls})" if calls else "")
    if event.kind == "tool_call" and event.tool_call is not None:
        args = {k: v for k, v in event.tool_call.args.items() if k != "prompt"}
        return f"{event.tool_call.name} {dumps(args)}"
    if event.kind == "tool_result" and event.message is not None:
        return _tool_result_detail(event.message.content)
    if event.kind == "user_message" and event.message is not None:
        return event.message.content
    if event.summary is not None:
        return f"{event.summary.run_id} {event.summary.status}"
    return event.text or ""


def _tool_result_detail(content: str) -> str:
    """A tool result: ``[code] message`` for an error, ``run_id status: text`` for a
    delegation, the result itself (on one line) for any other tool."""
    try:
        result = json.loads(content)
    except ValueError:
        return " ".join(content.split())
    if not isinstance(result, dict):
        return content
    error = result.get("error")
    if isinstance(error, dict):
        return f"[{error.get('code')}] {error.get('message')}"
    if "run_id" not in result or "status" not in result:
        return dumps(result)
    text = result.get("output", result.get("assistant"))
    head = f"{result.get('run_id')} {result.get('status')}"
    return f"{head}: {text}" if text else head


# --- lists, trees, details ----------------------------------------------------------


def summaries_json(summaries: list[RunSummary]) -> str:
    """Summaries as a JSON array."""
    return dumps([summary.model_dump(mode="json") for summary in summaries])


def runs_table(summaries: list[RunSummary]) -> Table:
    """One row per run: id, agent, status, epoch, parent, latest output or error; and
    what its tree spent, when the summaries carry it (``ls --sort``)."""
    spent = any(summary.tree_usage is not None for summary in summaries)
    table = Table(box=None, header_style="bold", pad_edge=False)
    columns = ["RUN", "AGENT", "STATUS", "EPOCH", "PARENT"]
    columns += ["TREE TOKENS", "TREE COST"] if spent else []
    for column in [*columns, "OUTPUT"]:
        table.add_column(column, overflow="ellipsis", no_wrap=column != "OUTPUT")
    for summary in summaries:
        row = [
            escape(summary.run_id),
            escape(summary.agent_id or "-"),
            status_markup(summary.status),
            str(summary.epoch),
            escape(summary.parent_run_id or "-"),
        ]
        if spent:
            tree = summary.tree_usage or summary.usage
            row += [f"{tree.tokens:,}", f"${tree.cost_usd:.4f}"]
        table.add_row(*row, escape(clip(summary.error or summary.assistant or "", 60)))
    return table


def _timing_json(timing: Timing, now: datetime) -> dict[str, JsonValue]:
    dumped: dict[str, JsonValue] = timing.model_dump(mode="json")
    return {**dumped, "duration_seconds": _rounded(timing.seconds(now))}


def _rounded(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 3)


def tree_json(node: RunNode, now: datetime) -> dict[str, JsonValue]:
    """The tree as nested summaries with timing and ``children``."""
    return {
        **node.summary.model_dump(mode="json"),
        **_timing_json(node.timing, now),
        "children": [tree_json(child, now) for child in node.children],
    }


def tree_view(
    node: RunNode,
    now: datetime,
    parent: Tree | None = None,
    latest: Mapping[str, str] | None = None,
) -> Tree:
    """The tree with each run's status, epoch, duration and latest output: for a running
    run, the text it is streaming when ``latest`` has it."""
    summary = node.summary
    streaming = (latest or {}).get(summary.run_id) if summary.status == "running" else None
    text = clip(summary.error or streaming or summary.assistant or "", 80)
    label = (
        f"[bold]{escape(summary.run_id)}[/] {status_markup(summary.status)} "
        f"[dim]{escape(summary.agent_id)} · epoch {summary.epoch} · "
        f"{duration(node.timing.seconds(now))}{_spent(node)}[/]  {escape(text)}"
    )
    branch = parent.add(label) if parent is not None else Tree(label)
    for child in node.children:
        tree_view(child, now, branch, latest)
    return branch


def _spent(node: RunNode) -> str:
    """`` · 120 tokens, tree 480`` : the run's own tokens, and its subtree's when it
    has children; nothing when neither spent any."""
    own, tree = node.summary.usage, node.summary.tree_usage
    if not own.tokens and (tree is None or not tree.tokens):
        return ""
    text = f" · {own.tokens:,} tokens"
    if node.children and tree is not None:
        text += f", tree {tree.tokens:,}"
    return text


def details_json(details: RunDetails, now: datetime) -> str:
    """``show --json``: the summary's fields, timing, lineage and children."""
    return dumps(
        {
            **details.summary.model_dump(mode="json"),
            **_timing_json(details.timing, now),
            "lineage": list(details.lineage),
            "children": [child.model_dump(mode="json") for child in details.children],
            "retrying": [retry.model_dump(mode="json") for retry in details.retrying],
        }
    )


def details_view(details: RunDetails, now: datetime) -> Table:
    """``show``: one field per line."""
    summary, timing = details.summary, details.timing
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    lineage = [*details.lineage, summary.run_id]
    children = ", ".join(f"{c.run_id} {status_markup(c.status)}" for c in details.children)
    rows = [
        ("run", f"[bold]{escape(summary.run_id)}[/] {status_markup(summary.status)}"),
        ("agent", escape(summary.agent_id)),
        ("owner", escape(summary.owner_thread_id)),
        ("epoch", str(summary.epoch)),
        ("lineage", escape(" › ".join(lineage))),
        ("children", children or "-"),
        ("started", _when(timing.started_at)),
        ("closed", _when(timing.closed_at)),
        ("duration", duration(timing.seconds(now))),
        ("assistant", escape(clip(summary.assistant or "-", 200))),
        ("usage", escape(summary.usage.describe())),
    ]
    if summary.tree_usage is not None:
        rows.append(("tree usage", escape(summary.tree_usage.describe())))
    if summary.budget is not None:
        rows.append(("budget", escape(summary.budget.describe() + " over its tree")))
    if summary.error:
        rows.append(("error", f"[red]{escape(summary.error)}[/]"))
    rows += [("retrying", f"[yellow]{escape(_retry_line(retry))}[/]") for retry in details.retrying]
    for name, value in rows:
        grid.add_row(name, value)
    return grid


def _retry_line(retry: Retrying) -> str:
    """``agent_turn, attempt 3 at 12:00:05: <the last failure>``."""
    when = f" at {_when(retry.next_attempt_at)}" if retry.next_attempt_at else ""
    return f"{retry.activity}, attempt {retry.attempt}{when}: {clip(retry.error, 200)}"


def _when(moment: datetime | None) -> str:
    return moment.isoformat(timespec="seconds") if moment is not None else "-"


# --- threads ------------------------------------------------------------------------


def thread_json(messages: list[Message]) -> str:
    """The thread as a JSON array of messages."""
    return dumps([message.model_dump(mode="json") for message in messages])


def thread_view(messages: list[Message]) -> RenderableType:
    """The thread, one block per message, tool calls under their message."""
    blocks: list[RenderableType] = []
    for message in messages:
        role = message.role if message.name is None else f"{message.role} ({message.name})"
        head = Text(f"{role}: ", style=ROLE_STYLE.get(message.role, ""))
        head.append(message.content, style="")
        blocks.append(head)
        for call in message.tool_calls:
            blocks.append(Text(f"  → {call.name} {dumps(call.args)}", style="dim"))
    return Group(*blocks)
