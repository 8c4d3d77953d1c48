"""The ``agentrun`` command line (the ``agentrun`` console script runs ``app``)."""

from agentrun.cli._app import app

__all__ = ["app"]
