"""Model settings in agents.toml are checked like every other key: a typo stops the worker."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from agentrun._agents._registry_file import RegistryError, load_registry
from agentrun._server import free_ports
from tests.helpers import ROOT

TYPO = """
[agents.writer]
model = "test"
settings = { temprature = 0.3 }
"""


def test_a_misspelt_model_setting_stops_the_worker_naming_the_key(tmp_path: Path):
    registry = tmp_path / "agents.toml"
    registry.write_text(TYPO)
    (port,) = free_ports(1)  # nothing listens: the file is read before connecting
    variables = {
        **os.environ,
        "AGENTRUN_AGENTS": str(registry),
        "TEMPORAL_ADDRESS": f"127.0.0.1:{port}",
    }
    done = subprocess.run(
        [sys.executable, str(ROOT / "worker.py")],
        cwd=ROOT,
        env=variables,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip() == (
        f"agentrun worker: {registry}: agents.writer.settings.temprature: "
        "unknown model setting; did you mean 'temperature'?"
    )


def test_settings_of_the_base_and_of_the_models_provider_are_accepted(tmp_path: Path):
    registry = tmp_path / "agents.toml"
    registry.write_text(
        "[agents.local]\n"
        'model = "openai:llama3.2"\n'
        'base_url = "http://127.0.0.1:9/v1"\n'
        'settings = { temperature = 0.2, max_tokens = 100, openai_reasoning_effort = "low" }\n'
    )
    assert "local" in load_registry(registry).ids()
    registry.write_text(
        '[agents.plain]\nmodel = "test"\nsettings = { openai_reasoning_effort = "low" }\n'
    )
    with pytest.raises(RegistryError, match=r"agents\.plain\.settings\.openai_reasoning_effort"):
        load_registry(registry)
