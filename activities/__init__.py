"""Activities: all of agentrun's I/O (agent turns, reading other runs)."""

from activities.runs import read_run
from activities.turn import TurnActivities

__all__ = ["TurnActivities", "read_run"]
