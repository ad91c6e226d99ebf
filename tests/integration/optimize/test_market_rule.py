"""End to end: in the simulated market, a rule pauses the campaign whose CPA crosses the line.

Real clicks and postbacks go through the tracker, the processor fills the lake each night,
the scheduler runs the rule each morning over the reports, and the audit log says why.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from perfmark.adapters.store.kinds import CAMPAIGNS
from perfmark.domain.accounts import Role
from perfmark.services import catalog
from perfmark.services.container import Principal, build_container
from perfmark.settings import load_settings
from perfmark.simulation.market import Policy, SimulationConfig, simulate
from perfmark.simulation.truth import ChannelTruth, MarketTruth

#: Both channels convert 8 a day at $40 (CPA 5) until "leaky" drops to 2% of that on day 3.
TRUTH = MarketTruth(
    channels=(
        ChannelTruth("steady", Decimal("1.00"), 20, 60, 1.0, 40),
        ChannelTruth("leaky", Decimal("1.00"), 20, 60, 1.0, 40, decay_from_day=3,
                     decay_factor=0.02),
    ),
    arms=(("lp-a", 1.0), ("lp-b", 1.0)),
)  # fmt: skip
RULE = {
    "name": "Pause above CPA 30",
    "scope": {"kind": "campaign"},
    "window_days": 2,
    "conditions": [{"metric": "cpa", "operator": ">", "threshold": "30"}],
    "min_sample": [{"metric": "clicks", "minimum": "60"}],
    "actions": [{"kind": "pause"}],
    "interval_minutes": 1440,
}


def test_a_rule_pauses_the_campaign_whose_cpa_crosses_the_threshold(tmp_path: Path) -> None:
    config = SimulationConfig(days=7, total_budget=Decimal(80), policy=Policy.OPTIMIZER,
                              budget_allocation=False, bandit=False, rules=(RULE,))  # fmt: skip
    result = simulate(TRUTH, config, home=tmp_path)
    leaky, steady = result.campaign_ids["leaky"], result.campaign_ids["steady"]

    fired = [entry for entry in result.rule_audit if entry.status == "fired"]
    assert [entry.target_id for entry in fired] == [leaky]
    (entry,) = fired
    assert entry.applied is True
    assert entry.reason.startswith("fired: cpa ")
    assert "> 30 -> campaign " in entry.reason and entry.reason.endswith("active -> paused")
    condition = entry.data["evaluation"]["conditions"][0]
    assert condition["metric"] == "cpa" and condition["met"] is True
    now = entry.data["metrics_now"]
    assert now["clicks"] == 80 and Decimal(now["cost"]) == Decimal(80)  # 2 days x 40 clicks
    cpa = Decimal(now["cost"]) / now["conversions"] if now["conversions"] else None
    assert cpa is None or cpa > 30
    assert condition["value_now"] == ("Infinity" if cpa is None else str(cpa.normalize()))
    paused_on = entry.at.date()

    # Before the drop the leaky campaign was judged and left alone; the steady one never fired.
    earlier = [e for e in result.rule_audit if e.target_id == leaky and e.at.date() < paused_on]
    assert earlier and all(e.status != "fired" for e in earlier)
    assert all(e.status != "fired" for e in result.rule_audit if e.target_id == steady)

    container = build_container(load_settings({"PERFMARK_HOME": str(tmp_path)}))
    owner = Principal(result.workspace_id, Role.OWNER)
    status = {
        name: catalog.get_object(container, owner, CAMPAIGNS, cid).spec.status.value
        for name, cid in result.campaign_ids.items()
    }
    container.engine.dispose()
    # Billing caps a campaign whose day's budget is spent until the next day; not a pause.
    assert status["leaky"] == "paused" and status["steady"] in ("active", "capped")
    # Paused in the morning: no clicks that day or after, while the steady one kept buying.
    for day in result.days:
        if day.day >= paused_on:
            assert day.clicks.get("leaky", 0) == 0 and day.clicks["steady"] == 40
        else:
            assert day.clicks["leaky"] == 40
