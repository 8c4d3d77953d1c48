"""Stable addresses: the server takes the default ports when free, and a worker that
cannot reach Temporal says so in one line, however it was started."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from pathlib import Path

from agentrun._server import DEFAULT_PORT, DEFAULT_UI_PORT, EmbeddedServer, free_ports
from tests.helpers import ROOT, eventually, worker_log_once


def test_the_server_takes_its_preferred_ports_when_free_and_others_when_not(tmp_path: Path):
    port, ui_port = free_ports(2)
    preferred = EmbeddedServer(tmp_path / "a.db", preferred_ports=(port, ui_port))
    assert (preferred.port, preferred.ui_port) == (port, ui_port)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", port))
        busy.listen()
        elsewhere = EmbeddedServer(tmp_path / "b.db", preferred_ports=(port, ui_port))
        assert elsewhere.port != port and elsewhere.ui_port == ui_port


def test_agentrun_server_prefers_temporals_default_ports():
    done = subprocess.run(
        [sys.executable, "-m", "agentrun.cli", "server", "--help"],
        cwd=ROOT,
        env={**os.environ, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert f"default: {DEFAULT_PORT} when free" in done.stdout
    assert f"default: {DEFAULT_UI_PORT} when free" in done.stdout


def worker_exit(command: list[str], address: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command,
        cwd=ROOT,
        env={**os.environ, "TEMPORAL_ADDRESS": address, "COLUMNS": "300"},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_both_workers_print_the_same_line_and_code_when_temporal_is_unreachable():
    (port,) = free_ports(1)
    address = f"127.0.0.1:{port}"
    script = worker_exit([sys.executable, str(ROOT / "worker.py")], address)
    command = worker_exit([sys.executable, "-m", "agentrun.cli", "worker"], address)
    assert script.returncode == command.returncode == 3, (script.stderr, command.stderr)
    assert script.stderr == command.stderr
    assert script.stderr.startswith(f"error: cannot reach Temporal at {address}")
    assert len(script.stderr.strip().splitlines()) == 1 and "Traceback" not in script.stderr


async def test_a_worker_whose_server_went_away_says_so_in_one_line(
    tmp_path: Path, processes: list[subprocess.Popen[bytes]]
):
    async with EmbeddedServer(tmp_path / "runs.db") as server:
        log = await worker_log_once(server.address, tmp_path, processes, "agent ")
    said = await eventually(
        lambda: asyncio.to_thread(log.read_text), lambda t: "is unreachable" in t, 60
    )
    await asyncio.sleep(5)  # the core retries several times a second meanwhile
    said = log.read_text()
    unreachable = [line for line in said.splitlines() if "is unreachable" in line]
    assert unreachable[0].endswith(
        f"WARNING Temporal at {server.address} is unreachable; the worker keeps retrying "
        "(said at most every 30 s)"
    )
    assert len(unreachable) == 1, said
    assert "tcp connect error" not in said and " WARN " not in said, said
