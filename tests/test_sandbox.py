"""The workflow sandbox re-imports only agentrun's workflow code for each run.

Each run's sandbox executes again every module it imports that is not passed through;
an import hook a dependency installs (``beartype.claw``, from the MCP client's
dependencies) once made that about 370 modules, 20 times the cost of a run's start.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from tests.helpers import ROOT

_PROBE = textwrap.dedent(
    """
    import asyncio, importlib._bootstrap_external as loaders, json
    import pydantic_ai.mcp  # what a worker with MCP servers has imported
    from temporalio.workflow import _Definition
    from agentrun._plugin import _workflow_runner
    from agentrun.workflows import AgentRunWorkflow

    executed = []
    execute = loaders._LoaderBasics.exec_module
    def record(loader, module):
        executed.append(module.__name__)
        return execute(loader, module)
    loaders._LoaderBasics.exec_module = record

    async def main():
        runner = _workflow_runner(None)
        definition = _Definition.must_from_class(AgentRunWorkflow)
        runner.prepare_workflow(definition)  # the first instance may import for the host
        executed.clear()
        runner.prepare_workflow(definition)
        print(json.dumps(sorted(executed)))
    asyncio.run(main())
    """
)


def test_a_run_re_imports_only_the_workflow_modules_even_with_mcp_loaded():
    done = subprocess.run(
        [sys.executable, "-c", _PROBE], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    executed = json.loads(done.stdout.splitlines()[-1])
    assert executed, "the probe saw no import at all: it no longer measures anything"
    assert [m for m in executed if not m.startswith("agentrun")] == []
    assert len(executed) <= 8, executed
