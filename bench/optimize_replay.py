"""Offline replay of the optimizer's loop on the simulator's market: many seeds in minutes.

`bench/optimize.py` runs the real tracker, processor and scheduler, about a minute a seed:
too slow to tell a change of 1 point from the ±5 points one seed moves. This replays the
same decisions with the same domain functions and no HTTP, log or lake:

  * each morning after the exploration days (`exploration_budgets`, 0.2x to 1.8x of an even
    share): `fit_page_mix` on the history's (campaign, day, page) cells, `fit_conversion_curves`
    with those exposures, `allocate_budget` inside the day's +/- box and `autopilot_step`;
  * each day in `--slices` slices: `thompson_weights` on the page test's counts (clicks and
    the conversions already visible), the slice's clicks of each campaign split among the
    pages multinomially, each click converting with the curve's chance at the day's spend
    x the page's multiplier.

Left out against the simulator: sub ids, conversion values, the tracker's rotation by integer
weights. Conversions arrive 1 minute to 3 hours after their click (as in the simulator) unless
`--no-delay`. Each seed's allocation, page test and traffic draw from their own random
streams, so two configurations on one seed differ by their decisions, not by shifted draws.

Prints, per configuration, the mean share of the oracle's expected conversions (the oracle:
the best split of the true curves and the best page from day one), the budget split's share
alone and the page test's regret; with `--variant`, the same seeds run a second
configuration and the mean paired difference is printed with its standard error.

Run: .venv/bin/python bench/optimize_replay.py [--seeds 100:160] [--scale 0.5]
        [--variant sharpness=3] [--variant page_mix=0] ...
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from dataclasses import dataclass, fields, replace
from datetime import date, timedelta
from decimal import ROUND_DOWN, ROUND_UP, Decimal

import numpy as np

from perfmark.optimize.domain.allocation import AllocationCandidate, allocate_budget
from perfmark.optimize.domain.autopilot import autopilot_step
from perfmark.optimize.domain.bandit import thompson_weights
from perfmark.optimize.domain.experiments import ArmObservation
from perfmark.optimize.domain.page_mix import MixCell, fit_page_mix
from perfmark.optimize.domain.response_curves import CurveModel, ResponseCurve
from perfmark.optimize.domain.response_posterior import CampaignHistory, fit_conversion_curves
from perfmark.simulation.market import exploration_budgets
from perfmark.simulation.truth import (
    CLICK_HOURS,
    MAX_CONVERSION_DELAY_S,
    MIN_CONVERSION_DELAY_S,
    MarketTruth,
    default_market,
)

_CENT = Decimal("0.01")
_START = date(2026, 1, 1)


@dataclass(frozen=True)
class Config:
    """The optimizer's settings replayed (the simulator's optimizer policy by default)."""

    days: int = 30
    explore_days: int = 3
    max_change_pct: int = 35
    slices: int = 7  #: page test allocations a day (the simulator: every 3 of 20 click hours)
    sharpness: float = 2.0
    floor_evidence: int = 50
    min_share: float = 0.05
    page_mix: int = 1  #: 1: curves read against the day's page mix
    delay: int = 1  #: 1: conversions arrive 1 minute to 3 hours after the click


@dataclass(frozen=True)
class Outcome:
    """One seed's result as shares of the oracle's expected conversions."""

    share: float
    split: float  #: the budget split alone (share / (1 - regret))
    regret: float  #: the page test's loss against the best page, as a share


class _Replay:
    def __init__(self, truth: MarketTruth, total: Decimal, config: Config, seed: int) -> None:
        self.truth, self.total, self.config = truth, total, config
        self.alloc_rng = np.random.default_rng([seed, 1])
        self.bandit_rng = np.random.default_rng([seed, 2])
        self.traffic_rng = np.random.default_rng([seed, 3])
        self.names = [channel.name for channel in truth.channels]
        self.pages = [key for key, _ in truth.arms]
        self.multipliers = np.array([value for _, value in truth.arms])
        self.history: dict[str, list[tuple[date, float, int]]] = {n: [] for n in self.names}
        self.cells: list[MixCell] = []
        self.clicks = np.zeros(len(self.pages))
        self.arrivals: list[tuple[float, int]] = []  #: (hour the conversion is seen, page)
        self.expected = self.regret = 0.0

    def morning(self, day: int, budgets: dict[str, Decimal]) -> dict[str, Decimal]:
        config = self.config
        if day < config.explore_days:
            return exploration_budgets(self.names, self.total, day)
        mix = fit_page_mix(self.cells) if config.page_mix else None
        histories = []
        for name in self.names:
            rows = self.history[name]
            exposure = None
            if mix is not None:
                exposure = [mix.exposures.get(name, {}).get(day_, 1.0) for day_, _, _ in rows]
            histories.append(
                CampaignHistory(name, [s for _, s, _ in rows], [y for _, _, y in rows], exposure)
            )
        curves = fit_conversion_curves(histories, rng=self.alloc_rng)
        pct = Decimal(config.max_change_pct)
        lows = {
            n: max((b - b * pct / 100).quantize(_CENT, ROUND_UP), Decimal(0))
            for n, b in budgets.items()
        }
        highs = {n: (b + b * pct / 100).quantize(_CENT, ROUND_DOWN) for n, b in budgets.items()}
        boxed = sum(lows.values(), Decimal(0)) <= self.total
        candidates = [
            AllocationCandidate(
                n,
                curves[n],
                min_spend=min(lows[n], highs[n]) if boxed else Decimal(0),
                max_spend=highs[n] if boxed else None,
            )
            for n in self.names
        ]
        split = {
            row.campaign_id: row.spend for row in allocate_budget(candidates, self.total).campaigns
        }
        plan = autopilot_step(budgets, split, max_change_pct=pct, total_cap=self.total)
        return {step.campaign_id: max(step.new, _CENT) for step in plan.steps}

    def weights(self, now_h: float) -> np.ndarray:
        seen = np.zeros(len(self.pages))
        for at, page in self.arrivals:
            if at <= now_h:
                seen[page] += 1
        arms = [
            ArmObservation(key, int(self.clicks[k]), int(min(seen[k], self.clicks[k])))
            for k, key in enumerate(self.pages)
        ]
        drawn = thompson_weights(
            arms,
            self.bandit_rng,
            min_share=self.config.min_share,
            sharpness=self.config.sharpness,
            floor_evidence=self.config.floor_evidence,
        )
        weights = np.asarray(drawn.weights)
        return weights / weights.sum()

    def day(self, day: int, budgets: dict[str, Decimal]) -> None:
        config, best = self.config, float(self.multipliers.max())
        slice_h = CLICK_HOURS / config.slices
        today = _START + timedelta(days=day)
        counts = {c.name: int(budgets[c.name] / c.cpc) for c in self.truth.channels}
        cells: dict[tuple[str, int], list[int]] = {}
        for piece in range(config.slices):
            start_h = day * 24.0 + piece * slice_h
            weights = self.weights(start_h)
            for channel in self.truth.channels:
                n = counts[channel.name]
                part = n * (piece + 1) // config.slices - n * piece // config.slices
                if part == 0:
                    continue
                chance = channel.expected(n * float(channel.cpc)) / n
                sent = self.traffic_rng.multinomial(part, weights)
                won = self.traffic_rng.binomial(sent, np.minimum(1.0, chance * self.multipliers))
                self.clicks += sent
                self.expected += float(sent @ (chance * self.multipliers))
                self.regret += float(sent @ (chance * (best - self.multipliers)))
                for k in range(len(self.pages)):
                    cell = cells.setdefault((channel.name, k), [0, 0])
                    cell[0] += int(sent[k])
                    cell[1] += int(won[k])
                    for _ in range(int(won[k])):
                        click_h = start_h + self.traffic_rng.uniform(0, slice_h)
                        lag_s = (
                            self.traffic_rng.uniform(MIN_CONVERSION_DELAY_S, MAX_CONVERSION_DELAY_S)
                            if config.delay
                            else 0.0
                        )
                        self.arrivals.append((click_h + lag_s / 3600, k))
        for channel in self.truth.channels:
            n = counts[channel.name]
            if n == 0:
                continue
            won_total = sum(cells.get((channel.name, k), [0, 0])[1] for k in range(len(self.pages)))
            self.history[channel.name].append((today, n * float(channel.cpc), won_total))
            for k, key in enumerate(self.pages):
                clicks, won = cells.get((channel.name, k), [0, 0])
                if clicks:
                    self.cells.append(MixCell(channel.name, today, key, clicks, won))


def oracle_per_day(truth: MarketTruth, total: Decimal) -> float:
    """Expected conversions a day of the best split of the true curves, with the best page."""
    candidates = [
        AllocationCandidate(
            c.name,
            ResponseCurve.exact(CurveModel.HILL, (c.ymax, c.ec50, c.shape), campaign_id=c.name),
        )
        for c in truth.channels
    ]
    split = {
        row.campaign_id: float(row.spend) for row in allocate_budget(candidates, total).campaigns
    }
    best = max(value for _, value in truth.arms)
    return best * sum(c.expected(split[c.name]) for c in truth.channels)


def replay(truth: MarketTruth, total: Decimal, config: Config, seed: int, oracle: float) -> Outcome:
    """One seed of the loop; shares of the oracle's expected conversions."""
    run = _Replay(truth, total, config, seed)
    budgets = {name: (total / len(run.names)).quantize(_CENT, ROUND_DOWN) for name in run.names}
    for day in range(config.days):
        budgets = run.morning(day, budgets)
        run.day(day, budgets)
    share = run.expected / (oracle * config.days)
    regret = run.regret / (run.expected + run.regret)
    return Outcome(share, share / (1 - regret), regret)


def _config(base: Config, settings: list[str]) -> Config:
    types = {f.name: f.type for f in fields(Config)}
    changes: dict[str, float | int] = {}
    for setting in settings:
        key, _, value = setting.partition("=")
        if key not in types:
            raise SystemExit(f"--variant {setting!r}: unknown setting; use one of {sorted(types)}")
        changes[key] = float(value) if types[key] == "float" else int(value)
    return replace(base, **changes)


def _summary(label: str, outcomes: list[Outcome]) -> str:
    shares = [o.share for o in outcomes]
    return (
        f"{label:10} share {statistics.fmean(shares):6.1%} (median {statistics.median(shares):.1%}, "
        f"min {min(shares):.1%}); split alone {statistics.fmean(o.split for o in outcomes):6.1%}; "
        f"page regret {statistics.fmean(o.regret for o in outcomes):5.1%}"
    )


def main() -> None:
    """Replay the seeds under the base configuration (and a variant), print the means."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="100:160", help="first:last (exclusive)")
    parser.add_argument("--scale", type=float, default=0.5)
    parser.add_argument("--budget", default="400", help="daily total at scale 1")
    parser.add_argument(
        "--variant", action="append", default=[], help="a setting of the second run, key=value"
    )
    args = parser.parse_args()
    first, _, last = args.seeds.partition(":")
    seeds = range(int(first), int(last))
    truth = default_market().scaled(args.scale)
    total = (Decimal(args.budget) * Decimal(repr(args.scale))).quantize(_CENT)
    oracle = oracle_per_day(truth, total)
    configs = {"base": Config()}
    if args.variant:
        configs["variant"] = _config(Config(), args.variant)
    print(f"scale {args.scale}, ${total}/day, seeds {first}..{int(last) - 1}; " + "; ".join(
        f"{label}: {config}" for label, config in configs.items()
    ))  # fmt: skip
    started = time.perf_counter()
    results = {
        label: [replay(truth, total, config, seed, oracle) for seed in seeds]
        for label, config in configs.items()
    }
    for label, outcomes in results.items():
        print(_summary(label, outcomes))
    if "variant" in results:
        diffs = [
            v.share - b.share for b, v in zip(results["base"], results["variant"], strict=True)
        ]
        error = statistics.stdev(diffs) / math.sqrt(len(diffs)) if len(diffs) > 1 else float("nan")
        print(
            f"variant - base: {statistics.fmean(diffs):+.2%} of the oracle (standard error {error:.2%})"
        )
    print(f"{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
