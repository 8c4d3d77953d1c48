"""Load for the stop-under-load scenario: one bench scenario, run over and over in a
process of its own, until SIGTERM. ``python -m bench._load throughput``.

Its figures are thrown away; what it does to the machine is the point. Quick-sized
(``BENCH_QUICK=1``), so each round is short and a SIGTERM ends it within seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys

from bench._harness import Report


async def main(name: str) -> None:
    from bench.__main__ import SCENARIOS  # the scenarios, as ``python -m bench`` runs them

    logging.getLogger("temporalio").setLevel(logging.ERROR)
    scenario = SCENARIOS[name]
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)

    async def rounds() -> None:
        while True:
            await scenario(Report())

    task = asyncio.create_task(rounds())
    await asyncio.wait([task, asyncio.create_task(stop.wait())], return_when="FIRST_COMPLETED")
    task.cancel()
    # Cancelled, each scenario's servers and workers close on the way out.
    with contextlib.suppress(asyncio.CancelledError):
        await task


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
