"""``python -m bench``: every scenario on fresh embedded servers; table, JSON and plots.

``BENCH_QUICK=1`` runs fewer iterations (a smoke run); ``BENCH_ONLY=stop,memory``
runs some scenarios only, and the only way to run the ``OPTIONAL`` ones. Those write
``bench/results/quick.json`` or ``only-<names>.json`` and no plots; a full run writes
``latest.json`` and the plots.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import platform
import subprocess
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

from bench._harness import QUICK, Report
from bench.plots import draw
from bench.scenarios import (
    crash,
    delegation,
    memory,
    peer,
    running,
    stop,
    stop_load,
    streaming,
)

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "latest.json"
PLOTS = ROOT / "docs" / "bench"

SCENARIOS: dict[str, Callable[[Report], Awaitable[None]]] = {
    "delegation": delegation.run_latency,
    "throughput": delegation.run_throughput,
    "stop": stop.run,
    "streaming": streaming.run,
    "memory": memory.run,
    "running": running.run,
    "crash": crash.run,
    "peer": peer.run,
}
# Named in BENCH_ONLY only: a 1,000-run tree stopped while two scenarios run beside it
# takes some three minutes and loads the machine past the full run's 15 minutes.
OPTIONAL: dict[str, Callable[[Report], Awaitable[None]]] = {
    "stop_load": stop_load.run,
    # The embedded server's synchronous=full against the shipped normal: a one-off study.
    "tuning": delegation.run_tuning,
}


def machine() -> dict[str, str]:
    """What the figures ran on."""

    def shell(command: str) -> str:
        return subprocess.run(command, shell=True, capture_output=True, text=True).stdout.strip()

    return {
        "nproc": shell("nproc"),
        "memory": shell("free -h | awk '/Mem:/ {print $2}'"),
        "cpu": shell("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2").strip(),
        "python": platform.python_version(),
        "load_before": shell("cut -d' ' -f1-3 /proc/loadavg"),
    }


def markdown_table(report: Report) -> str:
    """The figures as a Markdown table, for BENCHMARKS.md."""
    lines = ["| scenario | figure | value | unit | target | met |", "|---|---|---:|---|---|---|"]
    for f in report.figures:
        met = "" if f.met is None else ("yes" if f.met else "**no**")
        lines.append(f"| {f.scenario} | {f.name} | {f.value:.3f} | {f.unit} | {f.target} | {met} |")
    return "\n".join(lines) + "\n"


def print_table(report: Report) -> None:
    print(f"\n{'scenario':<12} {'figure':<48} {'value':>12} {'unit':<8} {'target':<10} met")
    for f in report.figures:
        met = "" if f.met is None else ("yes" if f.met else "NO")
        print(f"{f.scenario:<12} {f.name:<48} {f.value:>12.3f} {f.unit:<8} {f.target:<10} {met}")


async def main() -> None:
    # Cancelled baseline activities and closing runs make the SDK warn by design
    # ("Completing activity as failed", "Task not found"): not news in a benchmark.
    logging.getLogger("temporalio").setLevel(logging.ERROR)
    only = [name for name in os.environ.get("BENCH_ONLY", "").split(",") if name]
    report = Report()
    host = machine()
    started = time.perf_counter()
    durations: dict[str, float] = {}
    for name, scenario in {**SCENARIOS, **OPTIONAL}.items():
        if (only and name not in only) or (not only and name in OPTIONAL):
            continue
        print(f"== {name}", flush=True)
        began = time.perf_counter()
        await scenario(report)
        durations[name] = round(time.perf_counter() - began, 1)
        print(f"== {name}: {durations[name]:.0f} s", flush=True)
    host["load_after"] = machine()["load_before"]
    elapsed = time.perf_counter() - started
    print_table(report)
    print(
        f"\n{elapsed:.0f} s on {host['nproc']} cores; "
        f"load {host['load_before']} -> {host['load_after']}"
    )
    # A partial or quick run never replaces the full run's figures and plots.
    partial = bool(only) or QUICK
    name = "-".join(["only", *only] if only else []) + ("-quick" if QUICK else "")
    results = RESULTS.with_name(f"{name.strip('-')}.json") if partial else RESULTS
    results.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": QUICK,
        "seconds": round(elapsed, 1),
        "scenario_seconds": durations,
        "machine": host,
        "figures": [dataclasses.asdict(f) for f in report.figures],
        "samples": report.samples,
    }
    results.write_text(json.dumps(document, indent=2) + "\n")
    results.with_suffix(".md").write_text(markdown_table(report))
    print(f"wrote {results.relative_to(ROOT)} and its .md table")
    for path in draw(report, PLOTS) if not partial else []:
        print(f"wrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    asyncio.run(main())
