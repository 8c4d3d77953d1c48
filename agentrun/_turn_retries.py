"""A turn retried for a provider error that may pass: one log line, not a traceback.

The SDK logs every failed activity attempt as a warning with its traceback. For a
turn that failed with ``RetryableStepError`` (a rate limit, an outage, a lost
connection) the traceback says nothing the provider's message does not, and a
worker retrying for minutes would print pages of them. This filter turns such a
record into one line naming the run, the attempt and the provider's message; every
other record passes unchanged.
"""

from __future__ import annotations

import logging

from agentrun._agents._runtime import RetryableStepError

__all__ = ["OneLineRetries", "log_retries_in_one_line"]

# The logger temporalio's activity worker reports failed attempts on.
ACTIVITY_LOGGER = "temporalio.activity"


class OneLineRetries(logging.Filter):
    """Rewrites a retried turn's failure record as one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Keep every record; a ``RetryableStepError`` one loses its traceback."""
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, RetryableStepError):
            details = getattr(record, "temporal_activity", None) or {}
            record.msg = "Turn of run %s failed (attempt %s) and will be retried: %s"
            record.args = (details.get("workflow_id", "?"), details.get("attempt", "?"), error)
            record.exc_info, record.exc_text = None, None
        return True


def log_retries_in_one_line() -> None:
    """Install ``OneLineRetries`` on the activity logger, once per process."""
    logger = logging.getLogger(ACTIVITY_LOGGER)
    if not any(isinstance(f, OneLineRetries) for f in logger.filters):
        logger.addFilter(OneLineRetries())
