"""The simulated day runs in slices, as `perfmark serve` runs all day: the bandit learns within it.

After each slice the processor fills the lake and the scheduler runs the due allocations, so
the page bandit reallocates several times a day from the day's clicks so far, while budgets
change only at midnight.
"""

from __future__ import annotations

import itertools
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

from perfmark.adapters.store.engine import transaction
from perfmark.optimize import store
from perfmark.services.container import build_container
from perfmark.settings import load_settings
from perfmark.simulation.market import Policy, SimulationConfig, simulate
from perfmark.simulation.truth import default_market


def test_the_bandit_reallocates_within_the_day_from_the_days_clicks(tmp_path: Path) -> None:
    config = SimulationConfig(days=2, total_budget=Decimal(100), policy=Policy.OPTIMIZER,
                              slice_minutes=360, bandit_interval_minutes=60, seed=3)  # fmt: skip
    result = simulate(default_market().scaled(0.5), config, home=tmp_path)

    container = build_container(load_settings({"PERFMARK_HOME": str(tmp_path)}))
    with transaction(container.engine) as conn:
        rows = store.list_audit(conn, result.workspace_id, source="bandit", limit=100)
    container.engine.dispose()
    allocations = sorted(rows, key=lambda row: row.at)
    offsets = [row.at - config.start for row in allocations]
    # Due hourly, run at the end of each 6-hour slice (and at midnight): 4 a day.
    assert offsets == [timedelta(hours=6 * k) for k in range(8)]
    visitors = [sum(arm["visitors"] for arm in row.data["arms"]) for row in allocations]
    # The first allocation has seen nothing; each later one more of the day's clicks.
    assert visitors[0] == 0
    assert all(later > earlier for earlier, later in itertools.pairwise(visitors[1:]))
    clicks_day_one = sum(result.days[0].clicks.values())
    assert 0 < visitors[1] < visitors[3] <= clicks_day_one == visitors[4]

    # The slices change the rotation, not the money: each day keeps to the total budget.
    assert all(sum(day.budgets.values()) <= config.total_budget for day in result.days)
