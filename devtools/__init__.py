"""Developer tooling that users never run (not installed with agentrun)."""
