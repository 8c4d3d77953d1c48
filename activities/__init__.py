"""Activities: all of agentrun's I/O (agent turns, reading other runs)."""

from agentrun.activities.runs import read_run, read_run_summary
from agentrun.activities.turn import TurnActivities

__all__ = ["TurnActivities", "read_run", "read_run_summary"]
