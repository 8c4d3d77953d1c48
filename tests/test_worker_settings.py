"""Worker settings from the environment: a bad value stops the worker, naming it."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from agentrun.constants import STREAM_BATCH_ENV, stream_batch_interval
from worker import MAX_TURNS_ENV, max_concurrent_turns

ROOT = Path(__file__).resolve().parent.parent


def test_stream_batch_and_turn_slots_default_and_read_the_environment(
    monkeypatch: pytest.MonkeyPatch,
):
    monkeypatch.delenv(STREAM_BATCH_ENV, raising=False)
    monkeypatch.delenv(MAX_TURNS_ENV, raising=False)
    assert (stream_batch_interval(), max_concurrent_turns()) == (timedelta(milliseconds=50), 100)
    monkeypatch.setenv(STREAM_BATCH_ENV, "250")
    monkeypatch.setenv(MAX_TURNS_ENV, "400")
    assert (stream_batch_interval(), max_concurrent_turns()) == (timedelta(milliseconds=250), 400)


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        (STREAM_BATCH_ENV, "5", "AGENTRUN_STREAM_BATCH_MS='5': expected milliseconds from 10"),
        (STREAM_BATCH_ENV, "fast", "AGENTRUN_STREAM_BATCH_MS='fast'"),
        (MAX_TURNS_ENV, "0", "AGENTRUN_MAX_CONCURRENT_TURNS='0': expected a whole number"),
        (MAX_TURNS_ENV, "1e3", "AGENTRUN_MAX_CONCURRENT_TURNS='1e3'"),
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
    assert expected in worker.stderr
