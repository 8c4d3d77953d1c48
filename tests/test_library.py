"""agentrun as a library: one installed name, a public API, a user's own worker."""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import uuid
import venv
import zipfile
from pathlib import Path

import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

import agentrun
from tests.conftest import server_address, temporal_binary
from tests.helpers import ROOT, eventually, script

# One pytest-xdist worker runs this module: the wheel is built once, not once a worker.
pytestmark = pytest.mark.xdist_group("wheel")

# What a checkout has that a build must not see (build artefacts, caches, the venv).
_NOT_SOURCES = shutil.ignore_patterns(
    ".git", ".venv", ".temporal", "build", "dist", "*.egg-info", "__pycache__", ".*_cache"
)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel built from a copy of the sources, as a release would be."""
    sources = tmp_path_factory.mktemp("sources") / "agentrun"
    shutil.copytree(ROOT, sources, symlinks=True, ignore=_NOT_SOURCES)
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(sources)],
        check=True,
        timeout=600,
    )
    (built,) = out.glob("agentrun-*.whl")
    return built


def test_the_wheel_installs_only_the_agentrun_name(wheel: Path):
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    top = {name.split("/")[0] for name in names}
    assert {name for name in top if not name.endswith(".dist-info")} == {"agentrun"}
    for module in ("agentrun/workflows/agent_run.py", "agentrun/activities/turn.py"):
        assert module in names
    assert "agentrun/py.typed" in names


def test_the_installed_wheel_imports_in_a_fresh_virtualenv(wheel: Path, tmp_path: Path):
    environment = tmp_path / "venv"
    venv.create(environment, with_pip=True)
    python = environment / "bin" / "python"
    subprocess.run(
        [python, "-m", "pip", "install", "-q", "--no-deps", str(wheel)], check=True, timeout=300
    )
    # Its dependencies come from this project's environment, added after its own
    # site-packages (the editable install there is not processed: no .pth of it runs).
    site = environment / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}"
    own_site = next(p for p in map(Path, sys.path) if p.name == "site-packages")
    (site / "site-packages" / "dependencies.pth").write_text(f"{own_site}\n")
    probe = textwrap.dedent(
        f"""
        import importlib.util, agentrun
        agentrun.AgentRunPlugin; agentrun.AgentRunClient
        assert agentrun.__file__.startswith({str(environment)!r}), agentrun.__file__
        print([n for n in ("workflows", "activities", "worker") if importlib.util.find_spec(n)])
        """
    )
    done = subprocess.run(
        [python, "-c", probe], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


USER_WORKER = """\
import asyncio

from temporalio.worker import Worker

from agentrun import AgentRunPlugin, AgentRunSettings, connect
from workflows import Greet  # this project's own workflows package


async def main() -> None:
    settings = AgentRunSettings()
    client = await connect(plugin=AgentRunPlugin(settings))
    await Worker(client, task_queue=settings.task_queue, workflows=[Greet]).run()


asyncio.run(main())
"""

USER_WORKFLOWS = """\
from temporalio import workflow


@workflow.defn
class Greet:
    @workflow.run
    async def run(self, name: str) -> str:
        return f"hello {name}"
"""


def test_the_user_worker_is_short_and_imports_only_public_names():
    assert len(USER_WORKER.splitlines()) <= 15
    for node in ast.walk(ast.parse(USER_WORKER)):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("agentrun"):
            assert node.module == "agentrun"
            assert {alias.name for alias in node.names} <= set(agentrun.__all__)


async def test_a_user_project_with_its_own_workflows_package_serves_agentrun(
    env: WorkflowEnvironment, tmp_path: Path, processes: list[subprocess.Popen[bytes]]
):
    project = tmp_path / "project"
    (project / "workflows").mkdir(parents=True)
    (project / "activities").mkdir()
    (project / "workflows" / "__init__.py").write_text(USER_WORKFLOWS)
    (project / "activities" / "__init__.py").write_text('"""The project\'s own activities."""\n')
    (project / "worker.py").write_text(USER_WORKER)
    queue = f"user-{uuid.uuid4().hex[:8]}"
    variables = {"TEMPORAL_ADDRESS": server_address(env), "AGENTRUN_TASK_QUEUE": queue}
    processes.append(
        subprocess.Popen(
            [sys.executable, "worker.py"], cwd=project, env={**_inherited(), **variables}
        )
    )
    run_id = f"user-run-{uuid.uuid4().hex[:8]}"
    prompt = script({"say": "served by the user's worker"})
    run_input = {"owner_thread_id": "t1", "agent_id": "scripted", "prompt": prompt}
    started = subprocess.run(
        [
            temporal_binary(),
            "workflow",
            "start",
            "--address",
            server_address(env),
            "--type",
            "AgentRun",
            "--task-queue",
            queue,
            "--workflow-id",
            run_id,
            "--input",
            json.dumps(run_input),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert started.returncode == 0, started.stderr
    summary = await env.client.get_workflow_handle(run_id).result()
    assert (summary["status"], summary["assistant"]) == ("completed", "served by the user's worker")
    greeting = await _greet(env.client, queue)
    assert greeting == "hello user"


async def _greet(client: Client, queue: str) -> str:
    handle = await client.start_workflow(
        "Greet", "user", id=f"greet-{uuid.uuid4().hex[:8]}", task_queue=queue
    )
    result: str = await eventually(handle.result, lambda value: bool(value), timeout=60)
    return result


def _inherited() -> dict[str, str]:
    """The test's environment without anything that would point Python at this checkout."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "AGENTRUN_AGENTS")}


def test_no_doc_or_example_imports_a_private_name():
    documents = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    documents += sorted((ROOT / "examples").rglob("*.py")) if (ROOT / "examples").exists() else []
    private = re.compile(r"(from|import)\s+agentrun\._|agentrun\._\w+\s+import")
    offenders = [str(doc) for doc in documents if private.search(doc.read_text())]
    assert offenders == []
