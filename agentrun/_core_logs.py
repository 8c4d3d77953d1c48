"""The SDK core's log lines, forwarded to Python logging and kept readable.

While Temporal is unreachable, the core warns at every retry of every call: several
raw lines a second (``WARN temporalio_client::retry: gRPC call … tcp connect error``).
A worker says it in one line per interval instead, naming the address; any other
core warning passes through as it is.
"""

from __future__ import annotations

import logging
import time

from temporalio.runtime import LogForwardingConfig, LoggingConfig, TelemetryFilter

__all__ = ["UNREACHABLE_EVERY", "UnreachableOncePerInterval", "core_logging"]

UNREACHABLE_EVERY = 30.0
# What the core's warnings say when the server cannot be reached.
_UNREACHABLE_SIGNS = ("tcp connect error", "Unavailable", "transport error")


class UnreachableOncePerInterval(logging.Filter):
    """Turns the core's connection warnings into one line per ``every`` seconds."""

    def __init__(self, address: str, every: float = UNREACHABLE_EVERY) -> None:
        """Name ``address`` in the line; say it at most once per ``every`` seconds."""
        super().__init__()
        self._address = address
        self._every = every
        self._said_at: float | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        """Keep a line that is not about reaching the server; keep one that is, as one
        plain line, when the last was at least ``every`` seconds ago."""
        if not any(sign in record.getMessage() for sign in _UNREACHABLE_SIGNS):
            return True
        now = time.monotonic()
        if self._said_at is not None and now - self._said_at < self._every:
            return False
        self._said_at = now
        record.msg = (
            f"Temporal at {self._address} is unreachable; the worker keeps retrying "
            f"(said at most every {self._every:.0f} s)"
        )
        record.args = ()
        # The core says it as a warning or as an error (a failed poll): one level here.
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def core_logging(address: str, every: float = UNREACHABLE_EVERY) -> LoggingConfig:
    """Core warnings to the ``agentrun.temporal`` logger, connection ones condensed."""
    logger = logging.getLogger("agentrun.temporal")
    logger.propagate = True
    forwarding = LogForwardingConfig(
        logger=logger, append_target_to_name=False, prepend_target_on_message=True
    )
    if not any(isinstance(f, UnreachableOncePerInterval) for f in logger.filters):
        logger.addFilter(UnreachableOncePerInterval(address, every))
    return LoggingConfig(
        filter=TelemetryFilter(core_level="WARN", other_level="ERROR"), forwarding=forwarding
    )
