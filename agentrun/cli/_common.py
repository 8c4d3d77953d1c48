"""What every ``agentrun`` command shares: options, output, errors and exit codes.

Errors a user can cause end a command with one line on stderr and an exit code from
``EXIT_CODES``; nothing a user can cause prints a traceback.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from temporalio.client import WorkflowUpdateRPCTimeoutOrCancelledError
from temporalio.runtime import (
    LogForwardingConfig,
    LoggingConfig,
    Runtime,
    TelemetryConfig,
    TelemetryFilter,
)
from temporalio.service import RPCError

from agentrun._client import AgentRunClient, DelegationError, NoAnswerError
from agentrun._connection import (
    EXIT_UNREACHABLE,
    configured_address,
    connect,
    unreachable_message,
)
from agentrun._observability import ObservabilityError, flush_tracing, tracing_plugins
from agentrun._plugin import AgentRunPlugin
from agentrun._settings import AgentRunSettings, SettingsError, load_settings
from agentrun._task_queue import (
    QUERIES_NEED_A_WORKER,
    NoWorkerError,
    no_worker_hint,
    worker_polls,
)
from agentrun.cli._watch import is_transient

EXIT_OK = 0
EXIT_USER = 1
EXIT_USAGE = 2
EXIT_RUN_NOT_COMPLETED = 4
EXIT_DATABASE_IN_USE = 5
EXIT_INTERRUPTED = 130
EXIT_CODES = {
    EXIT_OK: "success",
    EXIT_USER: "user error: unknown run, run not running or not resumable, bad input",
    EXIT_USAGE: "usage error: a missing or bad argument or option",
    EXIT_UNREACHABLE: "Temporal unreachable, or no worker polls the task queue or answers in time",
    EXIT_RUN_NOT_COMPLETED: "`run` followed a run that ended failed or stopped",
    EXIT_DATABASE_IN_USE: "`server` found its database in use by another server",
}
OWNER_ENV = "AGENTRUN_OWNER"

console = Console()
errors = Console(stderr=True)
_settings: AgentRunSettings | None = None

Owner = Annotated[
    str | None,
    typer.Option(
        "--owner", "-o", help=f"The owner thread id (default: {OWNER_ENV}).", show_default=False
    ),
]
JsonOutput = Annotated[bool, typer.Option("--json", help="JSON for scripts.")]
NoWait = Annotated[
    bool,
    typer.Option(
        "--no-wait", help="Exit 3 at once when no worker polls the task queue, not wait for one."
    ),
]
Address = Annotated[
    str | None,
    typer.Option(help="host:port of Temporal (default: TEMPORAL_ADDRESS or temporal.toml)."),
]
RunId = Annotated[str, typer.Argument(help="The run's id.", show_default=False)]


class AgentrunApp(typer.Typer):
    """The Typer app; as a program it leaves without tearing the interpreter down.

    temporalio's core threads can crash CPython's finalization after a client was
    used (temporalio/sdk-python#300: ``PyGILState_Release`` while finalizing, then
    SIGABRT), which would turn any exit code into 134. Scripts must be able to trust
    the code, so once the command is done the output is flushed and the process
    leaves with ``os._exit``. Test runners invoke the command, not this method.
    """

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run the command line, then exit the process with the command's code."""
        try:
            super().__call__(*args, **kwargs)
            code = EXIT_OK
        except SystemExit as done:
            code = _exit_status(done.code)
        flush_tracing()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _exit_status(code: object) -> int:
    if code is None:
        return EXIT_OK
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return EXIT_USER


def fail(message: str, code: int = EXIT_USER) -> NoReturn:
    """Print ``error: message`` on stderr and exit with ``code``."""
    # soft_wrap: one line, however long, so scripts and logs get it whole.
    errors.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def unreachable(target: str, err: RuntimeError) -> NoReturn:
    """Exit 3 for a failed connect, with the reason on the same line; re-raise another
    ``RuntimeError``."""
    message = unreachable_message(target, err)
    if message is None:
        raise err
    fail(message, EXIT_UNREACHABLE)


def settings() -> AgentRunSettings:
    """agentrun's settings, read once; a bad value ends the command (exit 2) naming it."""
    global _settings
    if _settings is None:
        try:
            _settings = load_settings()
        except SettingsError as err:
            fail(str(err), EXIT_USAGE)
    return _settings


def checked_owner(owner: str | None) -> str:
    """``--owner``, else ``AGENTRUN_OWNER``, trimmed; a usage error when missing or blank."""
    owner = owner if owner is not None else settings().owner
    if owner is None:
        raise typer.BadParameter(f"missing: pass --owner or set {OWNER_ENV}", param_hint="--owner")
    if not owner.strip():
        raise typer.BadParameter("must not be blank", param_hint="--owner")
    return owner.strip()


def now() -> datetime:
    """The time durations of running runs are measured to."""
    return datetime.now(UTC)


def print_json_line(line: str) -> None:
    """One JSON document on one line, whatever the terminal's width."""
    console.out(line, highlight=False)


def execute(address: str | None, command: Callable[[AgentRunClient], Awaitable[int]]) -> None:
    """Connect, run ``command``, and exit with its code or with the error's."""
    target = configured_address(address)
    try:
        code = asyncio.run(_connected(address, command))
    except (DelegationError, ObservabilityError) as err:
        fail(str(err))
    except RuntimeError as err:
        unreachable(target, err)
    except (NoAnswerError, NoWorkerError) as err:
        fail(str(err), EXIT_UNREACHABLE)  # names the task queue (and the run)
    except (RPCError, WorkflowUpdateRPCTimeoutOrCancelledError) as err:
        if not is_transient(err):
            fail(f"Temporal at {target} refused the request: {err}")
        fail(
            f"no answer from Temporal at {target} ({err}): is the server up, and a worker "
            "serving the runs' task queue?",
            EXIT_UNREACHABLE,
        )
    except KeyboardInterrupt:
        raise typer.Exit(EXIT_INTERRUPTED) from None
    raise typer.Exit(code)


async def _connected(
    address: str | None, command: Callable[[AgentRunClient], Awaitable[int]]
) -> int:
    config = settings()
    client = await connect(
        address,
        plugin=AgentRunPlugin(config),
        runtime=_quiet_runtime(),
        plugins=tracing_plugins(config.otel),
    )
    try:
        return await command(AgentRunClient(client, config.task_queue))
    except NoAnswerError:
        if await worker_polls(client, config.task_queue):
            raise  # a worker is there, and too busy to answer
        hint = no_worker_hint(client, config.task_queue, QUERIES_NEED_A_WORKER)
        raise NoWorkerError(hint) from None


def _quiet_runtime() -> Runtime:
    """A runtime whose core logs go to stderr (Python logging), errors only.

    The default one prints core warnings, such as each retry of an RPC while the
    server is down, on stdout, in the middle of ``--json`` output; the command
    reports what went wrong itself.
    """
    forwarding = LogForwardingConfig(logger=logging.getLogger("agentrun.cli.temporal"))
    core_logs = LoggingConfig(
        filter=TelemetryFilter(core_level="ERROR", other_level="ERROR"), forwarding=forwarding
    )
    return Runtime(telemetry=TelemetryConfig(logging=core_logs))
