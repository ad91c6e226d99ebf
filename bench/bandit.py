"""Regret of Thompson-sampling rotation against always showing the best arm, beside an even split.

Run: .venv/bin/python bench/bandit.py [--seeds 10] [--days 30] [--visitors-per-day 1000]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from perfmark.optimize.domain.bandit import simulate_bandit

SCENARIOS: dict[str, list[float]] = {
    "4 landing pages, best +50%": [0.030, 0.036, 0.040, 0.045],
    "3 creatives, close (best +10%)": [0.050, 0.052, 0.055],
    "6 offers, one clear winner": [0.010, 0.012, 0.011, 0.020, 0.013, 0.012],
}


def main() -> None:
    """Print, per scenario, conversions lost against the best arm as a share of its total."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--visitors-per-day", type=int, default=1000)
    parser.add_argument("--min-share", type=float, default=0.05)
    args = parser.parse_args()
    print(
        f"{args.days} days x {args.visitors_per_day} visitors/day, min share {args.min_share}, "
        f"mean of {args.seeds} seeds; regret = expected conversions lost vs always the best arm"
    )
    header = f"{'scenario':34} {'best arm conv':>13} {'thompson regret':>18} {'even regret':>15}"
    print(header + f" {'thompson/even':>13}")
    started = time.perf_counter()
    for name, rates in SCENARIOS.items():
        thompson, even, best = [], [], []
        for seed in range(args.seeds):
            run = simulate_bandit(
                rates,
                np.random.default_rng(seed),
                rounds=args.days,
                visitors_per_round=args.visitors_per_day,
                min_share=args.min_share,
            )
            thompson.append(run.thompson.regret)
            even.append(run.even_split.regret)
            best.append(run.best_arm_expected_conversions)
        b, t, e = statistics.mean(best), statistics.mean(thompson), statistics.mean(even)
        print(f"{name:34} {b:13.1f} {t:9.1f} ({t / b:5.1%}) {e:6.1f} ({e / b:5.1%}) {t / e:13.2f}")
    print(f"elapsed {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
