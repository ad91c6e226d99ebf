"""Conversions per second through pricing and ledger posting, in memory and in the store.

The baseline, measured in the same run, is the irreducible work of one conversion: two
Decimal prices rounded half-even to minor units and three balance updates in a dict. The
billing path adds rule selection, tiers, validation, immutable transactions and the
journal's double-charge checks; the ratio says what that costs. The stored path is what
the processor does per conversion (`charge_conversion` on a SQLite store in WAL mode):
price with the tier from the stored monthly volume, decide over the stored budget and cap
counters, reserve them with conditional UPDATEs and post the charge with its entries and
running balances, in one transaction per 1000 conversions (a processor batch).

    .venv/bin/python bench/billing.py [--stored 5000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path

from sqlalchemy import insert

from perfmark.adapters.store.engine import make_engine, migrate, transaction
from perfmark.adapters.store.schema import workspaces
from perfmark.billing.domain.budgets import (
    Budget,
    CampaignLimits,
    Cap,
    CapMetric,
    CapScope,
    CounterKey,
    LimitPeriod,
    Spend,
    check_spend,
)
from perfmark.billing.domain.ledger import Journal, build_charge
from perfmark.billing.domain.pricing import quote_event
from perfmark.billing.services.context import AdvertiserBilling, CampaignBilling
from perfmark.billing.services.posting import ChargeOutcome, ConversionInfo, charge_conversion
from perfmark.domain.campaigns import CampaignSpec
from perfmark.domain.campaigns import Cap as CampaignCap
from perfmark.domain.parties import BillingMode
from perfmark.domain.pricing import BillableEvent, PayoutTier, Price, PricingModel, PricingRule
from perfmark.money import Money

CONVERSIONS = 20_000
REPEATS = 3
START = datetime(2026, 1, 1, tzinfo=UTC)
RULES = [
    PricingRule(
        pays=Price(PricingModel.CPC, Decimal("0.40")),
        earns=Price(PricingModel.CPC, Decimal("0.25")),
    ),
    PricingRule(
        pays=Price(PricingModel.CPA, Decimal("12.345")),
        earns=Price(PricingModel.CPA, Decimal("8.005")),
        goal_id="goal_lead",
        tiers=(PayoutTier(1000, Price(PricingModel.CPA, Decimal("9.00"))),),
    ),
    PricingRule(
        pays=Price(PricingModel.CPA, Decimal("12.345")),
        earns=Price(PricingModel.CPA, Decimal("10.00")),
        goal_id="goal_lead",
        publisher_id="pub_3",
    ),
]
LIMITS = CampaignLimits(
    "cmp_bench",
    "USD",
    "Europe/Berlin",
    budgets=(Budget(LimitPeriod.TOTAL, Money.of("100000000", "USD")),),
    caps=(Cap("per_pub", CapScope.PUBLISHER, LimitPeriod.DAY, CapMetric.COUNT, Decimal(10**9)),),
)
CENT = Decimal("0.01")


def baseline(count: int) -> None:
    """Price and post with bare Decimal arithmetic and a dict of balances."""
    cost, payout = Decimal("12.345"), Decimal("8.005")
    balances: dict[str, int] = {}
    for _ in range(count):
        cost_minor = int(cost.quantize(CENT, rounding=ROUND_HALF_EVEN) * 100)
        payout_minor = int(payout.quantize(CENT, rounding=ROUND_HALF_EVEN) * 100)
        for key, minor in (
            ("advertiser", cost_minor),
            ("publisher", -payout_minor),
            ("revenue", payout_minor - cost_minor),
        ):
            balances[key] = balances.get(key, 0) + minor


def billing(count: int, *, with_limits: bool = False) -> None:
    """Quote each conversion, optionally check budget and caps, build and post the charge."""
    journal = Journal()
    counters: dict[CounterKey, Decimal] = {}
    for index in range(count):
        at = START + timedelta(seconds=index)
        publisher = f"pub_{index % 5}"
        quote = quote_event(
            RULES,
            event=BillableEvent.CONVERSION,
            goal_id="goal_lead",
            publisher_id=publisher,
            currency="USD",
            at=at,
            volume_this_month=index // 5 + 1,
        )
        if with_limits:
            spend = Spend(
                at, BillableEvent.CONVERSION, quote.cost.rounded(), publisher, "goal_lead"
            )
            decision = check_spend(LIMITS, counters, spend)
            assert decision.allowed
            for key, amount in decision.increments:
                counters[key] = counters.get(key, Decimal(0)) + amount
        journal.post(
            build_charge(
                advertiser_id="adv_bench",
                publisher_id=publisher,
                cost=quote.cost,
                payout=quote.payout,
                event=BillableEvent.CONVERSION,
                reference=f"cnv_{index}",
                occurred_at=at,
                campaign_id="cmp_bench",
                goal_id="goal_lead",
                on_hold=True,
                txn_id=f"txn_{index}",
            )
        )
    assert len(journal) == count


STORED_BATCH = 1000


def stored(count: int) -> None:
    """`charge_conversion` on a fresh SQLite store: pricing, reservation, posting, balances."""
    with tempfile.TemporaryDirectory() as directory:
        engine = make_engine(f"sqlite:///{Path(directory) / 'bench.db'}")
        migrate(engine)
        spec = CampaignSpec(
            name="bench", advertiser_id="adv_bench", offer_id="off_bench",
            goal_ids=("goal_lead",), pricing=tuple(RULES), currency="USD",
            total_budget=Decimal("100000000"),
            caps=(CampaignCap(limit=Decimal(10**9), scope="publisher"),),
        )  # fmt: skip
        advertiser = AdvertiserBilling("adv_bench", "USD", BillingMode.POSTPAID, None)
        ctx = CampaignBilling.build("cmp_bench", "ws_bench", spec, "Europe/Berlin", advertiser)
        with transaction(engine) as conn:
            conn.execute(insert(workspaces).values(id="ws_bench", name="bench", data={},
                                                   created_at=START, updated_at=START,
                                                   version=1))  # fmt: skip
        for first in range(0, count, STORED_BATCH):
            with transaction(engine) as conn:
                for index in range(first, min(first + STORED_BATCH, count)):
                    at = START + timedelta(seconds=index)
                    conversion = ConversionInfo(
                        conversion_id=f"cnv_{index}", workspace_id="ws_bench",
                        event_id=f"evt_{index}", campaign_id="cmp_bench",
                        publisher_id=f"pub_{index % 5}", advertiser_id="adv_bench",
                        goal_id="goal_lead", goal_key="lead", ts=at, value=None,
                        currency="USD", txid=None, click_id=None, status="pending", data={},
                    )  # fmt: skip
                    result = charge_conversion(conn, ctx, conversion, at)
                    assert result.outcome is ChargeOutcome.CHARGED, result.message
        engine.dispose()


def best_seconds(run: Callable[[int], None], count: int = CONVERSIONS) -> float:
    """The fastest of REPEATS timed runs."""
    times = []
    for _ in range(REPEATS):
        began = time.perf_counter()
        run(count)
        times.append(time.perf_counter() - began)
    return min(times)


def main() -> int:
    """Run the baseline and the billing paths; print absolute rates and ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--stored", type=int, default=5000, help="conversions through the store")
    options = parser.parse_args()
    base = best_seconds(baseline)
    version = sys.version.split()[0]
    print(f"billing bench: {CONVERSIONS} conversions, best of {REPEATS}, Python {version}")
    print(f"  baseline (bare Decimal + dict):     {CONVERSIONS / base:>10,.0f} conversions/s")
    for label, run in (
        ("pricing + ledger", lambda n: billing(n)),
        ("pricing + budgets/caps + ledger", lambda n: billing(n, with_limits=True)),
    ):
        seconds = best_seconds(run)
        print(
            f"  {label + ':':<35} {CONVERSIONS / seconds:>10,.0f} conversions/s "
            f"({seconds / base:.1f}x the baseline's time)"
        )
    seconds = best_seconds(stored, options.stored) / options.stored * CONVERSIONS
    print(
        f"  {'stored (SQLite): price+reserve+post:':<35} {CONVERSIONS / seconds:>10,.0f} "
        f"conversions/s ({seconds / base:.1f}x the baseline's time; {options.stored} "
        "conversions, a transaction per 1000)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
