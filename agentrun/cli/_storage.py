"""``agentrun storage``: the stored payloads of runs.

``agentrun storage gc`` deletes the payloads no run can read any more (the rule:
``agentrun._storage_gc``, docs/reliability.md, "Storage retention").
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

import typer
from pydantic import JsonValue

from agentrun._client import AgentRunClient
from agentrun._payload_guard import describe_size
from agentrun._settings import parse_duration
from agentrun._storage import StorageConfigError, StorageSettings
from agentrun._storage_gc import GcReport, collect_garbage
from agentrun.cli import _render as render
from agentrun.cli._common import (
    EXIT_OK,
    EXIT_USAGE,
    Address,
    JsonOutput,
    console,
    execute,
    fail,
    print_json_line,
    settings,
)

__all__ = ["storage_app"]

storage_app = typer.Typer(help="The stored payloads of runs (AGENTRUN_STORAGE).")


def _duration(value: str | None) -> timedelta | None:
    if value is None:
        return None
    try:
        parsed = parse_duration(value)
    except ValueError as err:
        raise typer.BadParameter(str(err)) from None
    assert isinstance(parsed, timedelta)
    return parsed


@storage_app.command("gc")
def gc(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print what would be deleted; delete nothing.")
    ] = False,
    older_than: Annotated[
        str | None,
        typer.Option(
            help="Delete a tree's payloads this long after its last run closed (e.g. 7d); "
            "default: the namespace's retention period. Shorter, the Web UI and "
            "`agentrun thread` can fail on runs closed since.",
            show_default=False,
        ),
    ] = None,
    json_output: JsonOutput = False,
    address: Address = None,
) -> None:
    """Delete the stored payloads that no run can read any more, and print them.

    A payload goes when every tree of runs that stored it has been closed longer
    than the retention period; a payload a run still reads stays. With --json:
    {"where", "dry_run", "deleted": [{"name", "bytes", "workflows"}], "freed_bytes",
    "kept", "kept_bytes", "unattributed", "unattributed_bytes"}.
    """
    cutoff = _duration(older_than)
    try:
        storage = StorageSettings.from_settings(settings())
    except StorageConfigError as err:
        fail(str(err), EXIT_USAGE)
    if storage.driver is None:
        fail("AGENTRUN_STORAGE=off: no payloads are stored, there is nothing to collect")

    async def collect(runs: AgentRunClient) -> int:
        report = await collect_garbage(runs.temporal, storage, older_than=cutoff, dry_run=dry_run)
        if json_output:
            print_json_line(render.dumps(_report_json(report)))
            return EXIT_OK
        done = "would delete" if dry_run else "deleted"
        for blob in report.deleted:
            console.out(
                f"{done} {blob.name} ({describe_size(blob.size)}; {', '.join(blob.workflows)})",
                highlight=False,
            )
        console.out(report.describe(), highlight=False)
        return EXIT_OK

    execute(address, collect)


def _report_json(report: GcReport) -> JsonValue:
    deleted: list[JsonValue] = [
        {"name": blob.name, "bytes": blob.size, "workflows": list(blob.workflows)}
        for blob in report.deleted
    ]
    return {
        "where": report.where,
        "dry_run": report.dry_run,
        "deleted": deleted,
        "freed_bytes": report.freed_bytes,
        "kept": report.kept,
        "kept_bytes": report.kept_bytes,
        "unattributed": report.unattributed,
        "unattributed_bytes": report.unattributed_bytes,
    }
