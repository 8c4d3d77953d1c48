"""agentrun: durable delegation for trees of AI agents on Temporal."""

__version__ = "0.1.0"
