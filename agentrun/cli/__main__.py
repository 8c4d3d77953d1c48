"""``python -m agentrun.cli``: the same as the ``agentrun`` command."""

from agentrun.cli._app import app

app()
