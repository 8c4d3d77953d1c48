"""agentrun's benchmarks: what durability costs, measured against hand-written baselines.

Run with ``make bench`` (or ``python -m bench``); ``BENCH_QUICK=1`` for a short run.
Not part of the product packages and not part of ``make test``.
"""
