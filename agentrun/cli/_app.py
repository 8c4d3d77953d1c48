"""``agentrun``: see and steer your run trees, and run the server, a worker or the demo.

Every command on runs is scoped to an owner thread (``--owner`` or ``AGENTRUN_OWNER``):
another owner's run looks exactly like one that does not exist. Each has ``--json``
for scripts. Errors a user can cause print one line on stderr, never a traceback, and
the exit code says which kind it was (see ``EXIT_CODES``).
"""

from __future__ import annotations

import asyncio
import logging
import signal
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.live import Live
from rich.logging import RichHandler
from rich.markup import escape

from agentrun._client import AgentRunClient
from agentrun._connection import configured_address
from agentrun._delegation import unknown_run
from agentrun._models import Status
from agentrun._server import (
    DEFAULT_DB,
    DEFAULT_PORT,
    DEFAULT_UI_PORT,
    DatabaseInUseError,
    EmbeddedServer,
    ServerError,
)
from agentrun.cli import _render as render
from agentrun.cli._budget import (
    BudgetCost,
    BudgetRuns,
    BudgetTokens,
    BudgetToolCalls,
    SpendOrder,
    budget_of,
)
from agentrun.cli._common import (
    EXIT_CODES,
    EXIT_DATABASE_IN_USE,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_RUN_NOT_COMPLETED,
    EXIT_USAGE,
    Address,
    AgentrunApp,
    JsonOutput,
    NoWait,
    Owner,
    RunId,
    checked_owner,
    console,
    errors,
    execute,
    fail,
    now,
    print_json_line,
    settings,
    unreachable,
)
from agentrun.cli._live import print_events, redraw_tree
from agentrun.cli._steer import approve, deny, pending, send
from agentrun.cli._storage import storage_app
from agentrun.cli._views import owned_summary, run_details, run_tree
from agentrun.cli._workers import (
    WorkerNotice,
    require_worker,
    require_worker_for,
    warn_without_worker,
)

__all__ = ["EXIT_CODES", "app"]

app = AgentrunApp(
    help="Durable delegation for trees of AI agents on Temporal.\n\n"
    + "Exit codes: "
    + "; ".join(f"{code} {meaning}" for code, meaning in EXIT_CODES.items())
    + ".",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
app.add_typer(storage_app, name="storage")


class StatusChoice(StrEnum):
    """A run status, as ``ls --status`` takes it."""

    running = "running"
    completed = "completed"
    failed = "failed"
    stopped = "stopped"


# --- starting and following ---------------------------------------------------------


@app.command()
def run(
    agent: Annotated[str, typer.Argument(help="The agent id, e.g. scripted.")],
    prompt: Annotated[
        str | None, typer.Argument(help="What the agent is asked.", show_default=False)
    ] = None,
    owner: Owner = None,
    from_run: Annotated[
        str | None,
        typer.Option(
            "--from",
            help="Go on from this closed run's thread: AGENT may then be left out "
            "(the run's own agent).",
            show_default=False,
        ),
    ] = None,
    detach: Annotated[bool, typer.Option(help="Print the run id and return at once.")] = False,
    no_wait: NoWait = False,
    budget_tokens: BudgetTokens = None,
    budget_cost: BudgetCost = None,
    budget_runs: BudgetRuns = None,
    budget_tool_calls: BudgetToolCalls = None,
    json_output: JsonOutput = False,
    address: Address = None,
) -> None:
    """Start a run and follow it to its end: events live, the tree as it grows.

    With --json: one line per event ({"run_id", "offset", "event"}), then
    {"summary": ...}; with --detach just {"run_id": ...}. Exits 4 when the run
    ends failed or stopped. When no worker polls the task queue it says so once and
    waits for one; with --no-wait it exits 3 instead, without starting the run.
    A --budget-* caps what the run and all it delegates spend together: when the
    tree has spent it, every run of it stops (docs/budgets.md).
    """
    owner = checked_owner(owner)
    budget = budget_of(budget_tokens, budget_cost, budget_runs, budget_tool_calls)
    agent_id, asked = (None, agent) if from_run and prompt is None else (agent, prompt)
    for value, name in ((agent_id, "AGENT"), (asked, "PROMPT")):
        if value is not None and not value.strip():
            raise typer.BadParameter("must not be blank", param_hint=name)
    if asked is None:
        raise typer.BadParameter("missing", param_hint="PROMPT")

    async def start_and_follow(runs: AgentRunClient) -> int:
        if no_wait and not detach:
            await require_worker(runs, "the run was not started")
        follow = not detach  # printed from its first event on
        if from_run:
            agent_or_none = agent_id.strip() if agent_id else None
            run_id = await runs.start_from(owner, from_run, asked, agent_or_none, budget, follow)
        else:
            agent_or_blank = (agent_id or "").strip()
            run_id = await runs.start(owner, agent_or_blank, asked, budget=budget, follow=follow)
        if detach:
            _print_started(run_id, owner, json_output)
            return EXIT_OK
        if not json_output:
            errors.print(f"Started [bold]{escape(run_id)}[/] (Ctrl-C detaches; the run goes on)")
        async with WorkerNotice(runs, "the run waits in the queue until one comes") as notice:
            await print_events(
                runs, owner, run_id, 0, json_output, with_tree=True, paused=lambda: notice.waiting
            )
        summary = await runs.wait(owner, run_id)
        if json_output:
            print_json_line(render.dumps({"summary": summary.model_dump(mode="json")}))
        return EXIT_OK if summary.status == "completed" else EXIT_RUN_NOT_COMPLETED

    execute(address, start_and_follow)


def _print_started(run_id: str, owner: str, json_output: bool) -> None:
    if json_output:
        print_json_line(render.dumps({"run_id": run_id}))
        return
    console.print(run_id, highlight=False)
    _print_follow_hint(run_id, owner)


def _print_follow_hint(run_id: str, owner: str) -> None:
    errors.print(
        f"Follow it with: agentrun watch {run_id} --owner {owner}", highlight=False, markup=False
    )


@app.command()
def watch(
    run_id: RunId,
    owner: Owner = None,
    from_offset: Annotated[
        int, typer.Option(min=0, help="Start the run's own stream at this offset.")
    ] = 0,
    retry_for: Annotated[
        float, typer.Option(min=0, help="Seconds to keep reconnecting before giving up.")
    ] = 300.0,
    no_wait: NoWait = False,
    json_output: JsonOutput = False,
    address: Address = None,
) -> None:
    """Stream the events of a run and all its descendants, merged, until they end.

    Each line names its run and the event's offset in that run's stream. A broken
    connection is followed again from the next offset: no event twice, none lost.
    Descendants are followed from their first event. With --json: one
    {"run_id", "offset", "event"} object per line, text deltas included. When no
    worker polls the task queue it says so once and waits for one (--no-wait: exits 3).
    """
    owner = checked_owner(owner)

    async def stream(runs: AgentRunClient) -> int:
        queue = await runs.task_queue_of(owner, run_id)
        if queue is None:
            raise unknown_run(run_id)
        consequence = "only a worker can read a run's events"
        if no_wait:
            await require_worker(runs, consequence, queue)
        async with WorkerNotice(runs, consequence, queue) as notice:
            await print_events(
                runs,
                owner,
                run_id,
                from_offset,
                json_output,
                retry_for=retry_for,
                paused=lambda: notice.waiting,
            )
        return EXIT_OK

    execute(address, stream)


# --- reading ------------------------------------------------------------------------


@app.command("ls")
def list_runs(
    owner: Owner = None,
    all_runs: Annotated[
        bool, typer.Option("--all", "-a", help="Also completed and failed runs.")
    ] = False,
    status: Annotated[
        list[StatusChoice] | None,
        typer.Option(help="Only runs with this status (repeatable; implies --all)."),
    ] = None,
    agent: Annotated[
        list[str] | None, typer.Option(help="Only runs of this agent (repeatable).")
    ] = None,
    sort: Annotated[
        SpendOrder | None,
        typer.Option(help="Most first by what each run's tree spent (adds those columns)."),
    ] = None,
    json_output: JsonOutput = False,
    address: Address = None,
) -> None:
    """List the owner's runs: running and stopped ones unless --all or --status.

    Listing reads Temporal's visibility store, which can lag a start by a moment,
    then each listed run's latest output, a few runs at a time. A run that cannot
    tell its output (no worker answers, or its input was invalid) is listed without
    it. With --json: an array of run summaries.
    """
    owner = checked_owner(owner)
    statuses: set[Status] = {choice.value for choice in status or []}
    agents = set(agent or [])

    async def list_them(runs: AgentRunClient) -> int:
        wanted = statuses or (None if all_runs else {"running", "stopped"})
        found = await runs.all(owner, statuses=wanted, agents=agents)
        if sort is not None:
            found = sort.ordered(await runs.with_spend(owner, found))
        await warn_without_worker(runs, "runs are listed without their latest output")
        if json_output:
            print_json_line(render.summaries_json(found))
        elif found:
            console.print(render.runs_table(found))
        else:
            errors.print(f"No {'' if all_runs or statuses else 'running or stopped '}runs.")
        return EXIT_OK

    execute(address, list_them)


@app.command()
def show(
    run_id: RunId, owner: Owner = None, json_output: JsonOutput = False, address: Address = None
) -> None:
    """Show a run: summary, lineage (root first), children, epoch and timing.

    Timing is the current epoch's. A turn waiting to be retried (a rate limit, a
    provider outage) is shown with its last error and when the next attempt is.
    With --json: the summary's fields plus started_at, closed_at, duration_seconds,
    lineage (ancestor run ids), children and retrying ({activity, attempt, error,
    next_attempt_at} per activity awaiting a retry).
    """
    owner = checked_owner(owner)

    async def show_it(runs: AgentRunClient) -> int:
        await require_worker_for(runs, owner, run_id)
        details = await run_details(runs, owner, run_id)
        if json_output:
            print_json_line(render.details_json(details, now()))
        else:
            console.print(render.details_view(details, now()))
        return EXIT_OK

    execute(address, show_it)


@app.command()
def thread(
    run_id: RunId, owner: Owner = None, json_output: JsonOutput = False, address: Address = None
) -> None:
    """Print a run's thread: its messages, with tool calls and results.

    With --json: an array of messages.
    """
    owner = checked_owner(owner)

    async def print_thread(runs: AgentRunClient) -> int:
        await require_worker_for(runs, owner, run_id)
        messages = await runs.thread(owner, run_id)
        if messages is None:
            raise unknown_run(run_id)
        if json_output:
            print_json_line(render.thread_json(messages))
        else:
            console.print(render.thread_view(messages), highlight=False)
        return EXIT_OK

    execute(address, print_thread)


@app.command()
def tree(
    run_id: RunId,
    owner: Owner = None,
    once: Annotated[bool, typer.Option(help="Print the tree once, even in a terminal.")] = False,
    json_output: JsonOutput = False,
    address: Address = None,
) -> None:
    """Show a run's tree with statuses and durations, live while any of it runs.

    Redraws in a terminal until every run in the tree has ended (Ctrl-C leaves);
    otherwise, and with --once or --json, prints it once. With --json: nested
    summaries with timing and "children".
    """
    owner = checked_owner(owner)

    async def show_tree(runs: AgentRunClient) -> int:
        if json_output or once or not console.is_terminal:
            node = await run_tree(runs, owner, run_id)
            if json_output:
                print_json_line(render.dumps(render.tree_json(node, now())))
            else:
                console.print(render.tree_view(node, now()))
            return EXIT_OK
        await owned_summary(runs, owner, run_id)  # unknown: one line, not a live view
        with Live(console=console, refresh_per_second=4) as live:
            await redraw_tree(live, runs, owner, run_id)
        return EXIT_OK

    execute(address, show_tree)


# --- steering -----------------------------------------------------------------------


@app.command()
def stop(
    run_id: RunId, owner: Owner = None, json_output: JsonOutput = False, address: Address = None
) -> None:
    """Stop a run and every run below it that is still running.

    With --json: the summaries of the whole subtree, the run first.
    """
    owner = checked_owner(owner)

    async def stop_it(runs: AgentRunClient) -> int:
        await require_worker_for(runs, owner, run_id)
        subtree = await runs.stop_tree(owner, run_id)
        if json_output:
            print_json_line(render.summaries_json(subtree))
        else:
            console.print(render.runs_table(subtree))
            stopped = sum(s.status == "stopped" for s in subtree)
            errors.print(
                f"Stopped {run_id}: {stopped} of {len(subtree)} runs in its tree.", markup=False
            )
        return EXIT_OK

    execute(address, stop_it)


@app.command()
def resume(
    run_id: RunId,
    owner: Owner = None,
    prompt: Annotated[
        str | None, typer.Argument(help="A new user message for the run.", show_default=False)
    ] = None,
    budget_tokens: BudgetTokens = None,
    budget_cost: BudgetCost = None,
    budget_runs: BudgetRuns = None,
    budget_tool_calls: BudgetToolCalls = None,
    json_output: JsonOutput = False,
    address: Address = None,
) -> None:
    """Resume a stopped run as its next epoch, with an optional new prompt.

    A --budget-* replaces the run's budget: a tree stopped over budget carries on with
    a larger one (what it spent so far counts). With --json: the run's summary.
    """
    owner = checked_owner(owner)
    budget = budget_of(budget_tokens, budget_cost, budget_runs, budget_tool_calls)

    async def resume_it(runs: AgentRunClient) -> int:
        await require_worker_for(runs, owner, run_id)
        summary = await runs.resume(owner, run_id, prompt or None, budget)
        if json_output:
            print_json_line(render.dumps(summary.model_dump(mode="json")))
        else:
            console.print(
                f"Resumed [bold]{escape(run_id)}[/] as epoch {summary.epoch} "
                f"({render.status_markup(summary.status)})"
            )
            _print_follow_hint(run_id, owner)
        return EXIT_OK

    execute(address, resume_it)


# --- server, worker, demo -----------------------------------------------------------


@app.command()
def server(
    port: Annotated[
        int | None,
        typer.Option(help=f"gRPC port (default: {DEFAULT_PORT} when free, else a free one)."),
    ] = None,
    ui_port: Annotated[
        int | None,
        typer.Option(help=f"Web UI port (default: {DEFAULT_UI_PORT} when free, else a free one)."),
    ] = None,
    db: Annotated[Path, typer.Option(help="SQLite file that keeps the runs.")] = DEFAULT_DB,
) -> None:
    """Run the Temporal dev server with agentrun's search attributes until Ctrl-C.

    One server per database: while one runs (it locks <db>.lock), another on
    the same --db exits 5, naming the process that holds it. On Linux the dev
    server dies with this command, even when this command is killed.
    """
    try:
        preferred = (DEFAULT_PORT, DEFAULT_UI_PORT)
        embedded = EmbeddedServer(db=db, port=port, ui_port=ui_port, preferred_ports=preferred)
        asyncio.run(_serve(embedded))
    except DatabaseInUseError as err:
        fail(str(err), EXIT_DATABASE_IN_USE)
    except ServerError as err:
        fail(str(err))


async def _serve(embedded: EmbeddedServer) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with embedded:
        console.print(f"Temporal gRPC: [bold]{embedded.address}[/]", highlight=False)
        console.print(_where_clients_look(embedded.port), highlight=False)
        console.print(f"Web UI:        {embedded.ui_url}", highlight=False)
        console.print(f"Database:      {embedded.db} (log: {embedded.log_path})", highlight=False)
        console.print(f"export TEMPORAL_ADDRESS={embedded.address}", highlight=False)
        exited = asyncio.create_task(embedded.wait())
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({exited, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if exited.done():
            raise ServerError(
                f"Temporal dev server exited with code {exited.result()} (log: {embedded.log_path})"
            )
        exited.cancel()
        console.print("Stopping the server...")


def _where_clients_look(port: int) -> str:
    if port == DEFAULT_PORT:
        return "               the default port: workers and commands find it unconfigured"
    return (
        f"               not the default {DEFAULT_PORT} (in use, or --port): "
        "clients need TEMPORAL_ADDRESS, below"
    )


@app.command()
def worker(
    address: Address = None,
    metrics_address: Annotated[
        str | None,
        typer.Option(
            help="host:port to serve Prometheus metrics on (/metrics); "
            "default AGENTRUN_METRICS_ADDRESS, off when unset.",
        ),
    ] = None,
) -> None:
    """Run a worker for AgentRun until Ctrl-C or SIGTERM.

    Tracing is on with AGENTRUN_OTEL=1 or OTEL_EXPORTER_OTLP_ENDPOINT (needs the
    otel extra).
    """
    # The worker's imports (workflows, activities, model agents) only when serving.
    from agentrun._worker import LOG_FORMAT, STARTUP_ERRORS, run_worker

    if errors.is_terminal:
        logging.basicConfig(
            level=logging.INFO, format="%(message)s", handlers=[RichHandler(console=errors)]
        )
    else:  # a file or a pipe: one line per record, as python worker.py writes them
        logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    try:
        asyncio.run(run_worker(settings(), address, metrics_address))
    except STARTUP_ERRORS as err:
        fail(str(err))
    except RuntimeError as err:
        unreachable(configured_address(address), err)


@app.command()
def demo(
    directory: Annotated[
        Path, typer.Option("--dir", help="Where the demo's database and server log go.")
    ] = Path(".temporal"),
) -> None:
    """Run a scripted delegation tree on an embedded server and show it live."""
    from agentrun import _demo as demo_module  # starts a worker: its imports only here

    try:
        code = demo_module.main(directory, settings())
    except ServerError as err:
        fail(str(err))
    except KeyboardInterrupt:
        raise typer.Exit(EXIT_INTERRUPTED) from None
    raise typer.Exit(code)


@app.command()
def healthcheck() -> None:
    """Exit 0 when a worker on this host polls the task queue, else 1 saying why.

    The worker image's health check (Dockerfile, docker-compose.yml).
    """
    from agentrun._healthcheck import main as check

    check()


@app.command("codec-key")
def codec_key(
    key_id: Annotated[str, typer.Argument(help="The key's id, e.g. 2026-11.")],
) -> None:
    """Print a new random AES-256 key entry for AGENTRUN_ENCRYPTION_KEYS (kid:base64key)."""
    from agentrun._codec import CodecError, generate_key

    try:
        console.out(generate_key(key_id), highlight=False)
    except CodecError as err:
        fail(str(err), EXIT_USAGE)


@app.command("codec-server")
def codec_server(
    port: Annotated[int, typer.Option(help="Port to listen on (0: a free one).")] = 8081,
    host: Annotated[
        str, typer.Option(help="Address to listen on; keep it on loopback.")
    ] = "127.0.0.1",
    web_origin: Annotated[
        list[str] | None,
        typer.Option(
            help="A Web UI origin allowed to call it from a browser (repeatable; '*': any). "
            "Default: http://localhost:8233 and http://127.0.0.1:8233."
        ),
    ] = None,
    allowed_host: Annotated[
        list[str] | None,
        typer.Option(
            help="A Host header value to accept (repeatable; '*.example.com' patterns). "
            "Default: localhost, 127.0.0.1, ::1 and --host."
        ),
    ] = None,
    token_file: Annotated[
        Path | None,
        typer.Option(help="A file holding the bearer token (else AGENTRUN_CODEC_TOKEN)."),
    ] = None,
    jwks_url: Annotated[
        str | None,
        typer.Option(help="Also accept JWTs (the Web UI's access tokens) signed by this JWKS."),
    ] = None,
    jwt_audience: Annotated[
        str | None, typer.Option(help="The audience those JWTs must be issued for.")
    ] = None,
    no_auth: Annotated[
        bool, typer.Option("--no-auth", help="Serve without a token: loopback only.")
    ] = False,
    allow_encode: Annotated[
        bool, typer.Option("--allow-encode", help="Serve /encode (encrypts what it is sent).")
    ] = False,
) -> None:
    """Decrypt payloads for the Temporal Web UI and CLI, for holders of a token.

    Keys: AGENTRUN_ENCRYPTION_KEYS. Clients send 'Authorization: Bearer <token>'.
    """
    from agentrun import _codec_server as server  # needs the crypto extra: only here

    arguments = ["--host", host, "--port", str(port)]
    for origin in web_origin or []:
        arguments += ["--web-origin", origin]
    for name in allowed_host or []:
        arguments += ["--allowed-host", name]
    if token_file is not None:
        arguments += ["--token-file", str(token_file)]
    if jwks_url is not None:
        arguments += ["--jwks-url", jwks_url]
    if jwt_audience is not None:
        arguments += ["--jwt-audience", jwt_audience]
    arguments += ["--no-auth"] * no_auth + ["--allow-encode"] * allow_encode
    server.main(arguments)


# --- a person in the loop (agentrun/cli/_steer.py) ----------------------------------

for _command in (pending, approve, deny, send):
    app.command()(_command)
