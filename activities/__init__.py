"""Activities: all of agentrun's I/O (agent turns, reading other runs)."""

from agentrun.activities.budgets import check_budget, reserve_runs, stop_for_budget
from agentrun.activities.runs import read_run, read_run_summary
from agentrun.activities.turn import TurnActivities

__all__ = [
    "TurnActivities",
    "check_budget",
    "read_run",
    "read_run_summary",
    "reserve_runs",
    "stop_for_budget",
]
