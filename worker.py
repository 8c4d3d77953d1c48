"""The agentrun worker: connect through Temporal's environment configuration, serve
the ``agentrun`` task queue, stop gracefully on SIGINT or SIGTERM.

``python worker.py`` is the same as ``agentrun worker``. A worker of your own is a few
lines of public API instead (README, "A worker of your own").
"""

from agentrun._worker import main

if __name__ == "__main__":
    main()
