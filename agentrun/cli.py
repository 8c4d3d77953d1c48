"""``agentrun``: run the embedded Temporal server, a worker, or the demo.

A minimal command line; errors a user can cause (the ``temporal`` binary missing, a
server that does not come up or cannot be reached) print one line and exit 1.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.logging import RichHandler
from temporalio.envconfig import ClientConfig

from agentrun import demo as demo_module
from agentrun.connection import DEFAULT_ADDRESS
from agentrun.server import DEFAULT_DB, EmbeddedServer, ServerError
from worker import run_worker

__all__ = ["app"]

app = typer.Typer(
    help="Durable delegation for trees of AI agents on Temporal.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
console = Console()
errors = Console(stderr=True)

# temporalio's message when Client.connect cannot reach the server.
_CONNECT_FAILED = "Failed client connect"
_INTERRUPTED = 130


def _fail(message: str) -> NoReturn:
    errors.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(1)


@app.command()
def server(
    port: Annotated[int | None, typer.Option(help="gRPC port (default: a free one).")] = None,
    ui_port: Annotated[int | None, typer.Option(help="Web UI port (default: a free one).")] = None,
    db: Annotated[Path, typer.Option(help="SQLite file that keeps the runs.")] = DEFAULT_DB,
) -> None:
    """Run the Temporal dev server with agentrun's search attributes until Ctrl-C."""
    try:
        asyncio.run(_serve(EmbeddedServer(db=db, port=port, ui_port=ui_port)))
    except ServerError as err:
        _fail(str(err))


async def _serve(embedded: EmbeddedServer) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with embedded:
        console.print(f"Temporal gRPC: [bold]{embedded.address}[/]", highlight=False)
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


@app.command()
def worker(
    address: Annotated[
        str | None,
        typer.Option(help="host:port of Temporal (default: TEMPORAL_ADDRESS or temporal.toml)."),
    ] = None,
) -> None:
    """Run a worker for AgentRun until Ctrl-C or SIGTERM."""
    logging.basicConfig(
        level=logging.INFO, format="%(message)s", handlers=[RichHandler(console=errors)]
    )
    try:
        asyncio.run(run_worker(address))
    except RuntimeError as err:
        if not str(err).startswith(_CONNECT_FAILED):
            raise
        target = address or _configured_address()
        _fail(f"cannot reach Temporal at {target} (start one with `agentrun server`): {err}")


def _configured_address() -> str:
    config = ClientConfig.load_client_connect_config()
    return str(config.get("target_host") or DEFAULT_ADDRESS)


@app.command()
def demo(
    directory: Annotated[
        Path, typer.Option("--dir", help="Where the demo's database and server log go.")
    ] = demo_module.DEMO_DIR,
) -> None:
    """Run a scripted delegation tree on an embedded server and show it live."""
    try:
        code = demo_module.main(directory)
    except ServerError as err:
        _fail(str(err))
    except KeyboardInterrupt:
        raise typer.Exit(_INTERRUPTED) from None
    raise typer.Exit(code)


if __name__ == "__main__":
    app()
