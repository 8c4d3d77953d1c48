"""A scripted prompt with a typo is an error that says where, not an echo."""

from __future__ import annotations

from agentrun import AgentRunClient

# A comma missing between two steps: column 25 of the one line.
TYPO = '{"steps": [{"say": "a"} {"say": "b"}]}'


async def test_a_script_that_is_not_json_fails_naming_the_position(
    runs: AgentRunClient, owner: str
):
    run_id = await runs.start(owner, "scripted", TYPO)
    summary = await runs.wait(owner, run_id, timeout=30)
    assert summary.status == "failed", summary
    assert summary.error is not None
    assert summary.error.startswith("Invalid script: the prompt starts with '{' but is not JSON")
    assert "Expecting ',' delimiter: line 1 column 25 (char 24)" in summary.error


async def test_a_prompt_that_is_clearly_not_json_is_still_echoed(runs: AgentRunClient, owner: str):
    prompt = "hello {name}, see [1]"
    run_id = await runs.start(owner, "scripted", prompt)
    summary = await runs.wait(owner, run_id, timeout=30)
    assert (summary.status, summary.assistant) == ("completed", prompt)
