"""The workflow sandbox re-imports nothing of agentrun for a run, and agentrun's
workflow code still passes the strict sandbox, which re-imports it for every run.

Each run's sandbox executes again every module it imports that is not passed through:
agentrun's workflow modules cost each run's start 15 ms that way, and an import hook a
dependency installs (``beartype.claw``, from the MCP client's dependencies) once made
it about 370 modules. They are passed through now (``agentrun/_plugin.py``); the
strict sandbox's checks (no clock, no I/O, no restricted module in workflow code) are
kept for agentrun's own workflow code by running it here with it re-imported.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import uuid

import pytest
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from agentrun import AgentRunClient, _plugin
from tests.conftest import agentrun_client, registry_for_tests
from tests.helpers import ROOT, eventually, run, script, tool

_PROBE = textwrap.dedent(
    """
    import asyncio, importlib._bootstrap_external as loaders, json, sys
    import pydantic_ai.mcp  # what a worker with MCP servers has imported
    from temporalio.workflow import _Definition
    from agentrun import _plugin
    from agentrun.workflows import AgentRunWorkflow

    if sys.argv[1] == "strict":
        shared = _plugin._passthrough_modules()
        _plugin._passthrough_modules = lambda: tuple(
            m for m in shared if m != "agentrun.workflows"
        )
    executed = []
    execute = loaders._LoaderBasics.exec_module
    def record(loader, module):
        executed.append(module.__name__)
        return execute(loader, module)
    loaders._LoaderBasics.exec_module = record

    async def main():
        runner = _plugin._workflow_runner(None)
        definition = _Definition.must_from_class(AgentRunWorkflow)
        runner.prepare_workflow(definition)  # the first instance may import for the host
        executed.clear()
        runner.prepare_workflow(definition)
        print(json.dumps(sorted(executed)))
    asyncio.run(main())
    """
)


def _re_imported(mode: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, mode], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    executed: list[str] = json.loads(done.stdout.splitlines()[-1])
    return executed


def test_a_run_re_imports_no_module_even_with_mcp_loaded():
    # The probe sees the workflow modules when they are not passed through: it measures.
    strict = _re_imported("strict")
    assert "agentrun.workflows.agent_run" in strict, strict
    assert all(m.split(".")[:2] in (["agentrun"], ["agentrun", "workflows"]) for m in strict)
    assert _re_imported("shared") == []


@pytest.fixture
def strict_sandbox(monkeypatch: pytest.MonkeyPatch) -> None:
    """Workers built from here on re-import agentrun's workflow modules for every run."""
    shared = _plugin._passthrough_modules()
    strict = tuple(m for m in shared if m != "agentrun.workflows")
    monkeypatch.setattr(_plugin, "_passthrough_modules", lambda: strict)


@pytest.mark.usefixtures("strict_sandbox")
async def test_delegation_tools_and_a_tree_stop_pass_the_strict_sandbox(
    env: WorkflowEnvironment, owner: str
):
    """A restricted call in agentrun's workflow code would fail the workflow task in
    this sandbox, and the runs below would never reach these states."""
    queue = f"strict-{uuid.uuid4().hex[:8]}"
    async with Worker(agentrun_client(env.client, registry_for_tests()), task_queue=queue):
        runs = AgentRunClient(env.client, queue)
        waiting = {"steps": [{"say": "child waiting"}, {"sleep": 60}]}
        root = await runs.start(
            owner,
            "scripted",
            script(
                tool("add", a=2, b=3),
                run("scripted", {"steps": [{"say": "child done"}]}),
                run("scripted", waiting, background=True),
                {"say": "parent waiting"},
                {"sleep": 60},
            ),
        )
        await eventually(
            lambda: runs.summary(owner, f"{root}.2-scripted"),
            lambda s: s is not None and s.assistant == "child waiting",
        )
        stopped = await runs.stop_tree(owner, root)
        thread = await runs.thread(owner, root)
    assert [(s.run_id, s.status) for s in stopped] == [
        (root, "stopped"),
        (f"{root}.1-scripted", "completed"),
        (f"{root}.2-scripted", "stopped"),
    ]
    assert thread is not None
    answers = [json.loads(message.content) for message in thread if message.role == "tool"]
    assert answers[0] == 5
    assert answers[1]["assistant"] == "child done"
