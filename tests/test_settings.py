"""agentrun's settings: one model, read at the edge, every field documented."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from agentrun import AgentRunSettings, SettingsError
from agentrun._settings import ENV_PREFIX, load_settings

ROOT = Path(__file__).resolve().parent.parent


def variables() -> set[str]:
    """Every AGENTRUN_* variable the settings model reads."""
    return {f"{ENV_PREFIX}{name.upper()}" for name in AgentRunSettings.model_fields}


def test_settings_default_and_read_the_environment(monkeypatch: pytest.MonkeyPatch):
    for name in variables():
        monkeypatch.delenv(name, raising=False)
    defaults = load_settings()
    assert (defaults.stream_batch_interval, defaults.max_concurrent_turns) == (
        timedelta(milliseconds=50),
        100,
    )
    assert (defaults.task_queue, defaults.storage, defaults.owner) == ("agentrun", "local", None)
    monkeypatch.setenv("AGENTRUN_STREAM_BATCH_MS", "250")
    monkeypatch.setenv("AGENTRUN_MAX_CONCURRENT_TURNS", "400")
    monkeypatch.setenv("AGENTRUN_STORAGE_THRESHOLD", "1MiB")
    monkeypatch.setenv("AGENTRUN_OWNER", " ")  # blank is unset
    read = load_settings()
    assert (read.stream_batch_ms, read.max_concurrent_turns) == (250, 400)
    assert (read.storage_threshold, read.owner) == (1024 * 1024, None)


def test_a_bad_value_is_one_line_naming_variable_value_and_what_is_allowed(
    monkeypatch: pytest.MonkeyPatch,
):
    monkeypatch.setenv("AGENTRUN_STORAGE", "tape")
    with pytest.raises(SettingsError) as raised:
        load_settings()
    assert str(raised.value) == "AGENTRUN_STORAGE='tape': Input should be 'local', 's3' or 'off'"


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        (
            "AGENTRUN_STREAM_BATCH_MS",
            "5",
            "AGENTRUN_STREAM_BATCH_MS='5': Input should be greater than or equal to 10",
        ),
        ("AGENTRUN_STREAM_BATCH_MS", "fast", "AGENTRUN_STREAM_BATCH_MS='fast': Input should be"),
        (
            "AGENTRUN_MAX_CONCURRENT_TURNS",
            "0",
            "AGENTRUN_MAX_CONCURRENT_TURNS='0': Input should be greater than or equal to 1",
        ),
        ("AGENTRUN_MAX_CONCURRENT_TURNS", "1e3", "AGENTRUN_MAX_CONCURRENT_TURNS='1e3'"),
        ("AGENTRUN_STORAGE_THRESHOLD", "big", "AGENTRUN_STORAGE_THRESHOLD='big': expected bytes"),
        (
            "AGENTRUN_STORAGE_GC_INTERVAL",
            "0s",
            "AGENTRUN_STORAGE_GC_INTERVAL='0s': must be longer than 0s",
        ),
    ],
)
def test_a_bad_setting_stops_the_worker_before_it_connects(name: str, value: str, expected: str):
    environment = {**os.environ, name: value, "TEMPORAL_ADDRESS": "127.0.0.1:1"}
    worker = subprocess.run(
        [sys.executable, "worker.py"],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert worker.returncode != 0
    lines = worker.stderr.strip().splitlines()
    assert lines == [f"agentrun worker: {lines[0].removeprefix('agentrun worker: ')}"]
    assert expected in lines[0]


def test_the_command_line_reports_a_bad_setting_in_one_line_and_exit_2():
    environment = {**os.environ, "AGENTRUN_TASK_QUEUE": "", "AGENTRUN_OWNER": "t1"}
    done = subprocess.run(
        [sys.executable, "-m", "agentrun.cli", "ls"],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().startswith("error: AGENTRUN_TASK_QUEUE='': String should have")


def test_every_setting_is_documented_with_its_default():
    documented = (ROOT / "docs" / "settings.md").read_text()
    rows = dict(re.findall(r"^\| `(AGENTRUN_[A-Z0-9_]+)` \| ([^|]+) \|", documented, re.M))
    assert set(rows) >= variables(), f"missing from docs/settings.md: {variables() - set(rows)}"
    for name, field in AgentRunSettings.model_fields.items():
        if field.default is not None:
            default = str(field.default)
            assert default in rows[f"{ENV_PREFIX}{name.upper()}"], name


def test_the_package_reads_no_agentrun_variable_outside_the_settings_model():
    named: set[str] = set()
    for source in (ROOT / "agentrun").rglob("*.py"):
        named |= set(re.findall(r"AGENTRUN_[A-Z0-9_]+[A-Z0-9]", source.read_text()))
    assert named <= variables(), f"not settings fields: {named - variables()}"
