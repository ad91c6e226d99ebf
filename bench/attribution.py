"""Attribution benchmark: perfmark against ChannelAttribution and marketing-attribution-models.

Journeys are sampled from a known Markov chain over marketing channels, aggregated into
ChannelAttribution's input format (one row per distinct path with conversions, value and
nulls) and handed to every tool as the same pandas DataFrame. Each tool is timed end to end
from that DataFrame (parsing the path strings included). Distances are measured against the
exact answer for the sampled data: the removal effects of the chain estimated from the
aggregated paths, solved here a second, independent way (dense numpy solves); heuristics are
exact by definition and compared credit by credit.

Prints, never asserts. Default sizes finish in a few minutes on 2 cores; add 10M with
`--sizes 100000,1000000,10000000`. A timed step is one tool's whole run from the DataFrame
(perfmark: parse and models; marketing-attribution-models: its preparation and models;
nothing is kept between runs). Each step runs once; `--repeat 3` keeps the fastest of three
runs for every tool alike (after one untimed run), which steadies the ratios on a busy
machine; the heuristics against marketing-attribution-models also print the ratio of the
median runs, which moves less from run to run than the fastest. `--stages` adds
perfmark's parse and per-model times.

    .venv/bin/python bench/attribution.py
    .venv/bin/python bench/attribution.py --sizes 10000000 --long-paths 0
"""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import pandas as pd
import pyarrow as pa

from perfmark.attribution.domain import (
    AttributionResult,
    PathTable,
    first_touch,
    last_touch,
    linear,
    markov_model,
    shapley_model,
)
from perfmark.attribution.standalone import paths_from_arrow

CHANNEL_NAMES = (
    "paid_search",
    "organic_search",
    "paid_social",
    "email",
    "display",
    "affiliate",
    "direct",
    "referral",
    "retargeting",
    "video",
    "native",
    "push",
)
T = TypeVar("T")


@dataclass(frozen=True)
class KnownChain:
    """The generating chain: start probabilities and, per channel, next-channel/conv/null."""

    start: np.ndarray
    step: np.ndarray  # (n, n + 2): next channel 0..n-1, then conversion, then null


def make_chain(n_channels: int, rng: np.random.Generator, *, long_paths: bool) -> KnownChain:
    start = rng.dirichlet(np.ones(n_channels))
    conversion = rng.uniform(0.01, 0.03 if long_paths else 0.12, n_channels)
    null = rng.uniform(0.01, 0.03 if long_paths else 0.35, n_channels)
    moves = (
        rng.dirichlet(np.ones(n_channels) * 0.7, size=n_channels) * (1 - conversion - null)[:, None]
    )
    step = np.column_stack([moves, conversion, null])
    return KnownChain(start=start, step=step)


@dataclass(frozen=True)
class Journeys:
    """Sampled journeys as a padded (journeys x max_length) int8 channel matrix."""

    touches: np.ndarray
    lengths: np.ndarray
    converted: np.ndarray
    value: np.ndarray


def sample_journeys(
    chain: KnownChain, n: int, max_length: int, rng: np.random.Generator
) -> Journeys:
    n_channels = chain.start.size
    touches = np.full((n, max_length), -1, dtype=np.int8)
    lengths = np.ones(n, dtype=np.int64)
    outcome = np.full(n, -1, dtype=np.int8)  # -1 running, 1 converted, 0 null
    state = rng.choice(n_channels, size=n, p=chain.start)
    touches[:, 0] = state
    cumulative = np.cumsum(chain.step, axis=1)
    active = np.arange(n)
    for position in range(1, max_length + 1):
        if active.size == 0:
            break
        draws = rng.random(active.size)
        nxt = (draws[:, None] > cumulative[state[active]]).sum(axis=1)
        nxt = np.minimum(nxt, n_channels + 1)
        finished = nxt >= n_channels
        outcome[active[finished]] = (nxt[finished] == n_channels).astype(np.int8)
        moving = active[~finished]
        if position == max_length:
            # Journeys longer than the cap end there without converting.
            outcome[moving] = 0
            break
        touches[moving, position] = nxt[~finished]
        lengths[moving] += 1
        state[moving] = nxt[~finished]
        active = moving
    converted = outcome == 1
    last = touches[np.arange(n), lengths - 1]
    mean_value = np.linspace(20.0, 120.0, n_channels)
    value = np.where(converted, mean_value[last] * rng.gamma(2.0, 0.5, n), 0.0)
    return Journeys(touches=touches, lengths=lengths, converted=converted, value=value)


def _path_strings(touches: np.ndarray, lengths: np.ndarray, names: list[str]) -> list[str]:
    return [
        " > ".join(names[c] for c in row[:length])
        for row, length in zip(touches, lengths, strict=True)
    ]


def aggregate(journeys: Journeys, n_channels: int, names: list[str]) -> pd.DataFrame:
    """Distinct paths with total conversions, value and nulls (ChannelAttribution's format)."""
    base = n_channels + 1
    codes = np.zeros(journeys.lengths.size, dtype=np.int64)
    for column in range(journeys.touches.shape[1]):
        codes = codes * base + (journeys.touches[:, column].astype(np.int64) + 1)
    unique, first, inverse = np.unique(codes, return_index=True, return_inverse=True)
    conversions = np.bincount(inverse, weights=journeys.converted, minlength=unique.size)
    nulls = np.bincount(inverse, weights=~journeys.converted, minlength=unique.size)
    value = np.bincount(inverse, weights=journeys.value, minlength=unique.size)
    paths = _path_strings(journeys.touches[first], journeys.lengths[first], names)
    return pd.DataFrame(
        {
            "path": paths,
            "total_conversions": conversions.astype(np.int64),
            "total_conversion_value": value,
            "total_null": nulls.astype(np.int64),
        }
    )


def unaggregated(journeys: Journeys, names: list[str]) -> pd.DataFrame:
    """One row per journey (long paths are nearly all distinct)."""
    return pd.DataFrame(
        {
            "path": _path_strings(journeys.touches, journeys.lengths, names),
            "total_conversions": journeys.converted.astype(np.int64),
            "total_conversion_value": journeys.value,
            "total_null": (~journeys.converted).astype(np.int64),
        }
    )


# --- the exact reference, solved independently of perfmark's sparse code -------------------


def dense_reference_markov(table: PathTable) -> tuple[np.ndarray, np.ndarray]:
    """Order-1 removal effects by dense numpy solves on a chain rebuilt from the flat arrays."""
    n = table.n_channels
    rows = table.row_of_touch
    keep = np.ones(table.n_touches, dtype=bool)
    keep[1:] = (table.channels[1:] != table.channels[:-1]) | (rows[1:] != rows[:-1])
    states = table.channels[keep].astype(np.int64) + 1  # 0 = start
    state_rows = rows[keep]
    first = np.ones(states.size, dtype=bool)
    first[1:] = state_rows[1:] != state_rows[:-1]
    last = np.ones(states.size, dtype=bool)
    last[:-1] = state_rows[1:] != state_rows[:-1]
    previous = np.where(first, 0, np.roll(states, 1))
    weight = table.conversions + table.nulls
    counts = np.zeros((n + 1, n + 1))
    np.add.at(counts, (previous, states), weight[state_rows])
    conv = np.zeros(n + 1)
    null = np.zeros(n + 1)
    val = np.zeros(n + 1)
    np.add.at(conv, states[last], table.conversions[state_rows[last]])
    np.add.at(null, states[last], table.nulls[state_rows[last]])
    np.add.at(val, states[last], np.where(table.conversions > 0, table.value, 0)[state_rows[last]])
    out = counts.sum(axis=1) + conv + null
    out[out == 0] = 1
    q = counts / out[:, None]
    rewards = np.column_stack([conv / out, val / out])

    def absorbed(kept: np.ndarray) -> np.ndarray:
        system = np.eye(kept.size) - q[np.ix_(kept, kept)]
        return np.linalg.solve(system, rewards[kept])[0]

    everything = np.arange(n + 1)
    base = absorbed(everything)
    effects = np.array([1 - absorbed(everything[everything != c + 1]) / base for c in range(n)])
    return effects[:, 0], effects[:, 1]


def _share_distance(tool: dict[str, float], exact: dict[str, float]) -> tuple[float, float]:
    """(max relative error of a channel's credit, total-variation distance of the shares)."""
    total = sum(exact.values())
    tool_total = sum(tool.get(k, 0.0) for k in exact) or 1.0
    worst = max(abs(tool.get(k, 0.0) - v) / v for k, v in exact.items() if v > 1e-9 * total)
    tv = 0.5 * sum(abs(tool.get(k, 0.0) / tool_total - v / total) for k, v in exact.items())
    return worst, tv


def _max_abs(tool: dict[str, float], exact: dict[str, float]) -> float:
    return max(abs(tool.get(k, 0.0) - v) for k, v in exact.items())


def timed(action: Callable[[], T], repeat: int = 1) -> tuple[T, float]:
    """Run `action` `repeat` times; its last result and its fastest wall time."""
    result, fastest, _median = timed_spread(action, repeat)
    return result, fastest


def timed_spread(action: Callable[[], T], repeat: int = 1) -> tuple[T, float, float]:
    """Run `action` `repeat` times; its last result, its fastest and its median wall time.

    With `repeat` > 1 an untimed run comes first: the first run after another tool pays for
    the state that tool left (its allocator's heap, its thread pool), which here made
    perfmark's 1M-journey runs after marketing-attribution-models' up to 2.5x slower.
    """
    times = []
    with contextlib.redirect_stdout(io.StringIO()):
        if repeat > 1:
            action()
        for _ in range(repeat):
            started = time.perf_counter()
            result = action()
            times.append(time.perf_counter() - started)
    return result, min(times), statistics.median(times)


@contextlib.contextmanager
def section(title: str) -> Iterator[None]:
    print(f"\n== {title}")
    yield
    sys.stdout.flush()


# --- the tools ---------------------------------------------------------------------------


def perfmark_parse(frame: pd.DataFrame) -> PathTable:
    # Column by column: pandas 3 keeps the path strings in Arrow, so they convert without a
    # copy (`Table.from_pandas` adds about half a millisecond of metadata work).
    return paths_from_arrow(pa.table({name: frame[name].array for name in frame.columns}))


def perfmark_heuristics(frame: pd.DataFrame) -> tuple[AttributionResult, ...]:
    """First touch, last touch and linear from the DataFrame: parse included, nothing kept."""
    table = perfmark_parse(frame)
    return first_touch(table), last_touch(table), linear(table)


def load_channel_attribution() -> Any:
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            import ChannelAttribution
    except ImportError as exc:
        print(f"ChannelAttribution unavailable ({exc}); pip install ChannelAttribution matplotlib")
        return None
    return ChannelAttribution


def load_mam() -> Any:
    try:
        import mam
    except ImportError as exc:
        print(f"marketing-attribution-models unavailable ({exc})")
        return None
    return mam


def mam_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """MAM's grouped-journey format: one row per (path, converted or not) with its count."""
    converted = frame[frame.total_conversions > 0]
    lost = frame[frame.total_null > 0]
    return pd.concat(
        [
            pd.DataFrame(
                {
                    "path": converted.path,
                    "has_conv": True,
                    "occurrences": converted.total_conversions,
                }
            ),
            pd.DataFrame({"path": lost.path, "has_conv": False, "occurrences": lost.total_null}),
        ],
        ignore_index=True,
    )


def mam_credits(result: Any) -> dict[str, float]:
    table = result.to_pandas()
    return {str(k): float(v) for k, v in zip(table.iloc[:, 0], table["attribution"], strict=True)}


def fmt_ratio(baseline: float, ours: float) -> str:
    return f"{baseline / ours:8.1f}x" if ours > 0 else "     n/a"


def run_size(label: str, frame: pd.DataFrame, args: argparse.Namespace, ca: Any, mam: Any) -> None:
    journeys = int(frame.total_conversions.sum() + frame.total_null.sum())

    def best(action: Callable[[], T]) -> tuple[T, float]:
        return timed(action, args.repeat)

    with section(
        f"{label}: {journeys:,} journeys, {len(frame):,} distinct paths, "
        f"{int(frame.total_conversions.sum()):,} conversions"
    ):
        table, parse_s = best(lambda: perfmark_parse(frame))
        rows: list[tuple[str, float, str]] = []
        print(f"perfmark parse (path strings -> arrays): {parse_s:.3f} s")
        if args.stages:
            for name, model in (
                ("first_touch", first_touch),
                ("last_touch", last_touch),
                ("linear", linear),
            ):
                _, model_s = best(lambda model=model: model(table))
                print(f"perfmark {name} on the parsed table: {model_s:.4f} s")

        # Heuristics: perfmark's first, last, linear versus ChannelAttribution's heuristic_models.
        # Timed as one step (parse and the three models each run), like every perfmark figure.
        heuristics, pm_heur, pm_heur_median = timed_spread(
            lambda: perfmark_heuristics(frame), args.repeat
        )
        rows.append(("perfmark heuristics (parse + first/last/linear)", pm_heur, ""))
        exact_heur = {r.model: r.conversions_by_channel() for r in heuristics}
        exact_heur_value = {r.model: r.value_by_channel() for r in heuristics}
        if ca is not None:
            ca_heur, ca_heur_s = best(
                lambda: ca.heuristic_models(
                    frame,
                    "path",
                    "total_conversions",
                    var_value="total_conversion_value",
                    sep=">",
                    flg_pro=False,
                )
            )
            diff = 0.0
            for ours, theirs in (
                ("first_touch", "first_touch"),
                ("last_touch", "last_touch"),
                ("linear", "linear_touch"),
            ):
                got = dict(zip(ca_heur.channel_name, ca_heur[f"{theirs}_conversions"], strict=True))
                got_value = dict(zip(ca_heur.channel_name, ca_heur[f"{theirs}_value"], strict=True))
                diff = max(
                    diff,
                    _max_abs(got, exact_heur[ours]),
                    _max_abs(got_value, exact_heur_value[ours]),
                )
            rows.append(
                (
                    "ChannelAttribution heuristic_models",
                    ca_heur_s,
                    f"ratio {fmt_ratio(ca_heur_s, pm_heur)}; max |credit diff| {diff:.2e}",
                )
            )

        # Markov: perfmark exact versus ChannelAttribution's simulation at its defaults.
        first_order_s = math.nan
        for order in args.orders:
            result, pm_markov = best(lambda order=order: markov_model(perfmark_parse(frame), order))
            if order == 1:
                first_order_s = pm_markov
            exact = result.conversions_by_channel()
            exact_value = result.value_by_channel()
            note = ""
            if order == 1:
                ref_conv, ref_value = dense_reference_markov(table)
                ours_re = np.array([c.removal_effect_conversions for c in result.credits])
                ours_rv = np.array([c.removal_effect_value for c in result.credits])
                gap = max(np.abs(ours_re - ref_conv).max(), np.abs(ours_rv - ref_value).max())
                note = f"|removal effect - dense solve| <= {gap:.1e}"
            rows.append((f"perfmark markov order {order} (parse + exact solve)", pm_markov, note))
            if ca is not None and order <= args.ca_max_order:
                ca_out, ca_markov_s = best(
                    lambda order=order: ca.markov_model(
                        frame,
                        "path",
                        "total_conversions",
                        var_value="total_conversion_value",
                        var_null="total_null",
                        order=order,
                        sep=">",
                        verbose=False,
                        flg_pro=False,
                    )
                )
                got = dict(zip(ca_out.channel_name, ca_out.total_conversions, strict=True))
                got_value = dict(
                    zip(ca_out.channel_name, ca_out.total_conversion_value, strict=True)
                )
                worst, tv = _share_distance(got, exact)
                worst_v, tv_v = _share_distance(got_value, exact_value)
                rows.append(
                    (
                        f"ChannelAttribution markov_model order {order} (defaults)",
                        ca_markov_s,
                        f"ratio {fmt_ratio(ca_markov_s, pm_markov)}; conversions: worst channel "
                        f"{worst:.1%}, TV {tv:.2%}; value: worst {worst_v:.1%}, TV {tv_v:.2%}",
                    )
                )

        if args.shapley:
            _, shap_s = best(lambda: shapley_model(perfmark_parse(frame)))
            rows.append((f"perfmark shapley (exact, {table.n_channels} channels)", shap_s, ""))

        if mam is not None and journeys <= args.mam_max_journeys:
            mam_input = mam_frame(frame)

            def mam_model() -> Any:
                return mam.MAM(
                    mam_input,
                    format_type="grouped_journey",
                    channels_colname="path",
                    journey_with_conv_colname="has_conv",
                    occurrences_colname="occurrences",
                    path_separator=" > ",
                )

            def mam_heuristics() -> tuple[Any, Any, Any]:
                model = mam_model()
                return model.run_first_click(), model.run_last_click(), model.run_linear()

            # Timed as one step (its preparation and the three models each run), like perfmark.
            mam_outs, mam_heur_s, mam_heur_median = timed_spread(mam_heuristics, args.repeat)
            diff = 0.0
            for ours, out in zip(("first_touch", "last_touch", "linear"), mam_outs, strict=True):
                diff = max(diff, _max_abs(mam_credits(out), exact_heur[ours]))
            rows.append(
                (
                    "marketing-attribution-models heuristics (prep + first/last/linear)",
                    mam_heur_s,
                    f"ratio {fmt_ratio(mam_heur_s, pm_heur)} (of medians "
                    f"{fmt_ratio(mam_heur_median, pm_heur_median).strip()}: "
                    f"{mam_heur_median * 1e3:.1f} vs {pm_heur_median * 1e3:.1f} ms); "
                    f"max |credit diff| {diff:.2e}",
                )
            )
            mam_markov, mam_markov_s = best(lambda: mam_model().run_markov())
            order_one = markov_model(table, 1).conversions_by_channel()
            worst, tv = _share_distance(mam_credits(mam_markov), order_one)
            rows.append(
                (
                    "marketing-attribution-models markov (prep + run)",
                    mam_markov_s,
                    f"ratio {fmt_ratio(mam_markov_s, first_order_s)} vs perfmark order 1;"
                    f" worst channel {worst:.1%}, TV {tv:.2%} (it splits each journey's "
                    "conversion by removal effects: another convention)",
                )
            )
        elif mam is not None:
            print(f"marketing-attribution-models skipped above {args.mam_max_journeys:,} journeys")

        width = max(len(name) for name, _, _ in rows)
        for name, seconds, note in rows:
            print(f"  {name:<{width}}  {seconds:9.3f} s  {note}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes",
        default="100000,1000000",
        help="journey counts, comma-separated (add 10000000 for the 10M run)",
    )
    parser.add_argument("--channels", type=int, default=8, help="number of channels (<= 12)")
    parser.add_argument(
        "--long-paths", type=int, default=20000, help="journeys in the long-path set (0 = skip)"
    )
    parser.add_argument("--orders", default="1", help="Markov orders to time, e.g. 1,2,3")
    parser.add_argument(
        "--ca-max-order", type=int, default=2, help="highest order run through ChannelAttribution"
    )
    parser.add_argument(
        "--mam-max-journeys", type=int, default=1_000_000, help="skip MAM above this size"
    )
    parser.add_argument("--no-shapley", dest="shapley", action="store_false")
    parser.add_argument(
        "--stages",
        action="store_true",
        help="also print perfmark's time per heuristic model on a parsed table",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="runs per timed step after an untimed one, the fastest kept (every tool alike)",
    )
    parser.add_argument("--seed", type=int, default=20240501)
    args = parser.parse_args(argv)
    args.sizes = [int(s) for s in args.sizes.split(",") if s]
    args.orders = [int(o) for o in args.orders.split(",") if o]
    if not 1 <= args.channels <= len(CHANNEL_NAMES):
        parser.error(f"--channels must be 1..{len(CHANNEL_NAMES)}")
    if args.repeat < 1:
        parser.error("--repeat must be >= 1")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    rng = np.random.default_rng(args.seed)
    names = list(CHANNEL_NAMES[: args.channels])
    ca = load_channel_attribution()
    mam = load_mam()
    print(
        f"channels: {args.channels}; orders: {args.orders}; numpy {np.__version__}; "
        f"fastest of {args.repeat} run(s) per timed step (after an untimed one when more than "
        "one), every tool alike; "
        "times include parsing the path strings"
    )
    chain = make_chain(args.channels, rng, long_paths=False)
    # Path codes pack one digit per touch into an int64, which caps the sampled path length.
    max_length = int(62 // math.log2(args.channels + 1))
    for size in args.sizes:
        journeys = sample_journeys(chain, size, max_length, rng)
        frame = aggregate(journeys, args.channels, names)
        del journeys
        run_size(f"{size:,} journeys", frame, args, ca, mam)
    if args.long_paths:
        long_chain = make_chain(args.channels, rng, long_paths=True)
        journeys = sample_journeys(long_chain, args.long_paths, 200, rng)
        frame = unaggregated(journeys, names)
        mean = float(journeys.lengths.mean())
        run_size(f"long paths (mean length {mean:.0f}, cap 200)", frame, args, ca, mam)


if __name__ == "__main__":
    main()
