"""perfmark against ChannelAttribution on shared inputs: identical heuristics, same Markov chain.

ChannelAttribution (GPL, needs matplotlib) is a test dependency only. Without it these tests
skip with a reason on a developer's machine and fail when PERFMARK_REQUIRE_SERVICES is set.
"""

from __future__ import annotations

import contextlib
import io
import os
from types import ModuleType
from typing import Any

import pytest
from attribution_oracles import SmallPaths, small_paths
from hypothesis import HealthCheck, given, settings

from perfmark.attribution.domain import (
    build_markov_chain,
    first_touch,
    last_touch,
    linear,
    markov_model,
)
from perfmark.attribution.standalone import paths_from_strings

REQUIRE_SERVICES = os.environ.get("PERFMARK_REQUIRE_SERVICES", "") not in ("", "0", "false")
EXACT = 1e-9


@pytest.fixture(scope="module")
def channel_attribution() -> ModuleType:
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # it prints a banner on import
            import ChannelAttribution
    except ImportError as exc:
        reason = (
            f"ChannelAttribution is not installed ({exc}); "
            "pip install ChannelAttribution matplotlib"
        )
        if REQUIRE_SERVICES:
            pytest.fail(f"PERFMARK_REQUIRE_SERVICES is set but {reason}", pytrace=False)
        pytest.skip(reason)
    return ChannelAttribution


def _frame(data: SmallPaths) -> Any:
    import pandas as pd

    return pd.DataFrame(
        {
            "path": data.strings,
            "total_conversions": data.conversions,
            "total_conversion_value": data.value,
            "total_null": data.nulls,
        }
    )


def _check_heuristics(ca: ModuleType, data: SmallPaths) -> None:
    table = paths_from_strings(data.strings, data.conversions, data.value, data.nulls)
    theirs = ca.heuristic_models(
        _frame(data),
        "path",
        "total_conversions",
        var_value="total_conversion_value",
        sep=">",
        flg_pro=False,
    ).set_index("channel_name")
    for name, result in (
        ("first_touch", first_touch(table)),
        ("last_touch", last_touch(table)),
        ("linear_touch", linear(table)),
    ):
        assert set(theirs.index) == set(result.channels)
        for credit in result.credits:
            row = theirs.loc[credit.channel]
            assert credit.conversions == pytest.approx(
                row[f"{name}_conversions"], rel=EXACT, abs=EXACT
            ), (name, credit.channel)
            assert credit.value == pytest.approx(row[f"{name}_value"], rel=EXACT, abs=EXACT), (
                name,
                credit.channel,
            )


def test_heuristics_equal_channelattribution_on_a_fixed_input(
    channel_attribution: ModuleType,
) -> None:
    data = SmallPaths(
        paths=[["a", "b", "a"], ["b"], ["a", "c"], ["c", "c", "b"], ["d", "a", "b", "a"]],
        conversions=[3, 1, 0, 2, 5],
        value=[30.0, 5.0, 0.0, 8.0, 12.25],
        nulls=[1, 4, 2, 0, 3],
    )
    _check_heuristics(channel_attribution, data)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=small_paths(max_channels=6, max_rows=10))
def test_heuristics_equal_channelattribution_on_random_inputs(
    channel_attribution: ModuleType, data: SmallPaths
) -> None:
    _check_heuristics(channel_attribution, data)


def _their_chain(ca: ModuleType, data: SmallPaths, order: int) -> tuple[dict[Any, float], Any]:
    with contextlib.redirect_stdout(io.StringIO()):
        out = ca.markov_model(
            _frame(data),
            "path",
            "total_conversions",
            var_value="total_conversion_value",
            var_null="total_null",
            order=order,
            out_more=True,
            sep=">",
            verbose=False,
            flg_pro=False,
            nsim_start=1e6,
            max_step=10_000,
            seed=1,
        )
    names = list(out["removal_effects"]["channel_name"])

    def label(state: str) -> str:
        if state.startswith("("):
            return state
        return " > ".join(names[int(k) - 1] for k in state.split())

    matrix = {
        (label(row.channel_from), label(row.channel_to)): row.transition_probability
        for row in out["transition_matrix"].itertuples()
    }
    return matrix, out["removal_effects"].set_index("channel_name")


@pytest.mark.parametrize("order", [1, 2, 3])
def test_markov_chain_matches_channelattribution_and_simulation_converges_to_exact(
    channel_attribution: ModuleType, order: int
) -> None:
    data = SmallPaths(
        paths=[["a", "b", "a"], ["b"], ["a", "c"], ["c", "c", "b", "b"], ["d", "a", "a", "a"]],
        conversions=[3, 1, 0, 2, 1],
        value=[30.0, 5.0, 0.0, 8.0, 2.5],
        nulls=[1, 4, 2, 0, 3],
    )
    table = paths_from_strings(data.strings, data.conversions, data.value, data.nulls)
    chain = build_markov_chain(table, order)
    ours: dict[tuple[str, str], float] = {}
    dense = chain.transitions.toarray()
    for s in range(chain.n_states):
        for t in range(chain.n_states):
            if dense[s, t] > 0:
                ours[(chain.state_label(s), chain.state_label(t))] = dense[s, t]
        if chain.to_conversion[s] > 0:
            ours[(chain.state_label(s), "(conversion)")] = chain.to_conversion[s]
        if chain.to_null[s] > 0:
            ours[(chain.state_label(s), "(null)")] = chain.to_null[s]
    theirs, their_effects = _their_chain(channel_attribution, data, order)
    assert ours.keys() == theirs.keys()
    for key, probability in ours.items():
        assert probability == pytest.approx(theirs[key], abs=1e-12), key
    # With journeys never cut short and a million simulations, the simulated removal effects
    # approach the exact ones (Monte-Carlo error ~0.001 here).
    result = markov_model(table, order)
    for credit in result.credits:
        assert credit.removal_effect_conversions == pytest.approx(
            their_effects.loc[credit.channel, "removal_effects_conversion"], abs=0.01
        )
        assert credit.removal_effect_value == pytest.approx(
            their_effects.loc[credit.channel, "removal_effects_conversion_value"], abs=0.01
        )
