"""The agent registry file: good files load, bad files stop the worker at start."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentrun import ModelAgent, RunSummary
from agentrun._agents import children_reminder, delegation_instructions
from agentrun._agents._registry_file import RegistryError, load_registry

GOOD = """
[agents.planner]
model = "test"
instructions = "You plan."
description = "plans and delegates"
allowed_agents = ["researcher"]
max_depth = 2

[agents.researcher]
model = "openai:llama3.2"
base_url = "http://127.0.0.1:9/v1"
settings = { temperature = 0.2 }
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "agents.toml"
    path.write_text(text)
    return path


def test_a_good_file_adds_model_agents_to_the_builtin_scripted(tmp_path: Path):
    registry = load_registry(write(tmp_path, GOOD))
    assert registry.ids() == ["planner", "researcher", "scripted"]
    planner = registry.get("planner")
    assert planner is not None and isinstance(planner.runtime, ModelAgent)
    assert registry.policy(planner).visible_agents == ["researcher"]
    assert registry.policy(planner).max_depth == 2
    assert registry.describe("planner") == "plans and delegates"


def test_no_file_means_only_builtin_agents(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("AGENTRUN_AGENTS", raising=False)
    assert load_registry().ids() == ["scripted"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "[agents.a]\nmodel = 'test'\nmodle = 'x'\n",
            "agents.a.modle: Extra inputs are not permitted",
        ),
        ("[agents.a]\ninstructions = 'hi'\n", "agents.a.model: Field required"),
        (
            "[agents.a\nmodel = 'test'\n",
            "invalid TOML: Expected ']' at the end of a table declaration (at line 1, column 10)",
        ),
        ("[agents.a]\nmodel = 'bogus:thing'\n", "agents.a.model: Unknown model: bogus:thing"),
        (
            "[agents.a]\nmodel = 'test'\nallowed_agents = ['ghost']\n",
            "agents.a.allowed_agents: unknown agents ['ghost']",
        ),
        ("[agents.scripted]\nmodel = 'test'\n", "agents.scripted: 'scripted' is a built-in agent"),
        (
            "[agents.a]\nmodel = 'test'\nmax_depth = -1\n",
            "agents.a.max_depth: Input should be greater than or equal to 0",
        ),
        (
            "[agents.a]\nmodel = 'anthropic:claude'\nbase_url = 'http://x'\n",
            "base_url works with 'openai:<model>' models",
        ),
    ],
)
def test_a_bad_file_names_the_file_and_the_key_or_line(tmp_path: Path, text: str, expected: str):
    path = write(tmp_path, text)
    with pytest.raises(RegistryError) as err:
        load_registry(path)
    assert str(err.value).startswith(f"{path}: ")
    assert expected in str(err.value)


def test_a_named_file_that_is_missing_is_an_error(tmp_path: Path):
    with pytest.raises(RegistryError, match="agent registry file not found"):
        load_registry(tmp_path / "nope.toml")


def test_agent_list_and_reminder_are_bounded():
    agents = [f"agent-{i:02}" for i in range(50)]
    children = [
        RunSummary(run_id=f"r.{i:02}", agent_id="a", status="running" if i % 2 else "stopped")
        for i in range(50)
    ]
    told = delegation_instructions(agents, lambda _: "does things", children)
    assert "- agent-19: does things" in told and "- agent-20" not in told
    assert "... and 30 more" in told
    assert told.count("<run ") == 20 and "30 more not shown" in told
    assert len(told) < 4000
    assert delegation_instructions([], lambda _: "", children) == ""
    done = [RunSummary(run_id="r.1", agent_id="a", status="completed")]
    assert children_reminder(done) == ""


def test_threads_convert_both_ways_without_loss():
    from agentrun._agents._messages import from_model_messages, to_model_messages
    from agentrun._models import Message, ToolCall

    thread = [
        Message(role="system", content="be brief"),
        Message.user("plan it"),
        Message(
            role="assistant",
            content="delegating",
            tool_calls=[ToolCall(id="c1", name="agent_run", args={"agent_id": "w", "prompt": "x"})],
        ),
        Message(
            role="tool", tool_call_id="c1", name="agent_run", content='{"status": "completed"}'
        ),
        Message(role="assistant", content="done"),
    ]
    assert from_model_messages(to_model_messages(thread)) == thread
