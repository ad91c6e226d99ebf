"""Page server time on the demo workspace, measured in-process (printed; bounded when warm)."""

from __future__ import annotations

import statistics
import time

from .conftest import ClientFactory, World

REPEATS = 5
#: The issue's target is 200 ms; the bound asserted here is looser because this machine is
#: shared (the printed figures are what to compare against the target).
WARM_MEDIAN_BOUND_MS = 500.0


def test_pages_answer_fast_once_the_lake_is_read(world: World, client_for: ClientFactory) -> None:
    client = client_for(world, world.owner)
    pages = (
        "/dashboard/", "/dashboard/campaigns", f"/dashboard/campaigns/{world.facts.lumen_campaign}",
        "/dashboard/reports", "/dashboard/conversions", "/dashboard/publishers",
        "/dashboard/advertisers", "/dashboard/settings",
    )  # fmt: skip
    medians = {}
    for path in pages:
        timings = []
        for _ in range(REPEATS + 1):
            started = time.perf_counter()
            assert client.get(path).status_code == 200
            timings.append((time.perf_counter() - started) * 1000)
        medians[path] = statistics.median(timings[1:])
        print(f"{path:70} first {timings[0]:7.1f} ms  then median {medians[path]:6.1f} ms")
    slowest = max(medians, key=lambda path: medians[path])
    assert medians[slowest] < WARM_MEDIAN_BOUND_MS, medians
