"""The optimizer against an even split and an oracle, on the simulated market, same budget.

Each policy runs the market (real clicks and postbacks through the tracker; every 3 hours the
processor fills the lake and the scheduler runs the due bandit allocations and rules; budgets
change at midnight) for the same days, budget and seed. Printed as a share of the oracle's:
conversions and revenue as realised, and as expected from the hidden truth for the clicks
actually bought and pages actually shown (free of the conversions' coin flips). The
bandit's regret is the expected conversions lost by showing other landing pages than the
best one, beside what an even rotation of the same clicks would have lost.

Run: .venv/bin/python bench/optimize.py [--days 30] [--scale 0.5] [--seed 7]
"""

from __future__ import annotations

import argparse
import time
from decimal import Decimal

from perfmark.simulation.market import Policy, SimulationConfig, SimulationResult, simulate
from perfmark.simulation.truth import default_market

#: Share of the oracle's conversions the optimizer is expected to reach.
TARGET_SHARE = 0.90


def _share(value: float, reference: float) -> str:
    return f"{value / reference:7.1%}" if reference else "    n/a"


def main() -> None:
    """Run the three policies and print their outcomes as shares of the oracle's."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument(
        "--scale",
        type=float,
        default=0.5,
        help="traffic scale: 1 is about 570 clicks a day at $400",
    )
    parser.add_argument("--budget", type=str, default="400", help="daily total at scale 1")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--max-change-pct", type=str, default="35")
    args = parser.parse_args()
    truth = default_market().scaled(args.scale)
    total = (Decimal(args.budget) * Decimal(repr(args.scale))).quantize(Decimal("0.01"))
    results: dict[Policy, SimulationResult] = {}
    timings: dict[Policy, float] = {}
    for policy in (Policy.ORACLE, Policy.EVEN, Policy.OPTIMIZER):
        started = time.perf_counter()
        config = SimulationConfig(
            days=args.days,
            total_budget=total,
            policy=policy,
            seed=args.seed,
            max_change_pct=Decimal(args.max_change_pct),
        )
        results[policy] = simulate(truth, config)
        timings[policy] = time.perf_counter() - started
    oracle = results[Policy.ORACLE]
    print(
        f"{args.days} days, ${total}/day, scale {args.scale}, seed {args.seed}; shares are of "
        "the oracle's"
    )
    print(
        f"{'policy':10} {'clicks':>7} {'conv':>6} {'share':>7} {'exp conv':>9} {'share':>7} "
        f"{'revenue':>10} {'share':>7} {'exp rev':>9} {'share':>7} {'seconds':>8}"
    )
    for policy, run in results.items():
        print(
            f"{policy.value:10} {run.clicks:7d} {run.conversions:6d} "
            f"{_share(run.conversions, oracle.conversions)} {run.expected_conversions:9.1f} "
            f"{_share(run.expected_conversions, oracle.expected_conversions)} "
            f"{float(run.revenue):10.0f} {_share(float(run.revenue), float(oracle.revenue))} "
            f"{run.expected_revenue:9.0f} {_share(run.expected_revenue, oracle.expected_revenue)} "
            f"{timings[policy]:8.1f}"
        )
    optimizer, even = results[Policy.OPTIMIZER], results[Policy.EVEN]
    share = optimizer.expected_conversions / oracle.expected_conversions
    verdict = "meets" if share >= TARGET_SHARE else "misses"
    print(
        f"optimizer {share:.1%} of the oracle's expected conversions ({verdict} the "
        f"{TARGET_SHARE:.0%} target); even split "
        f"{even.expected_conversions / oracle.expected_conversions:.1%}"
    )
    best = optimizer.expected_conversions + optimizer.bandit_regret
    print(
        f"bandit regret: {optimizer.bandit_regret:.1f} expected conversions "
        f"({optimizer.bandit_regret / best:.1%} of always showing the best page on the same "
        f"clicks); an even rotation of those clicks would lose "
        f"{optimizer.even_rotation_regret:.1f} ({optimizer.even_rotation_regret / best:.1%}); "
        f"pages shown: {dict(sorted(optimizer.arm_clicks.items()))}"
    )


if __name__ == "__main__":
    main()
