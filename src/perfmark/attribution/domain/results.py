"""The frozen result of an attribution model: credit per channel for conversions and value."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

__all__ = ["AttributionResult", "ChannelCredit", "build_result"]


@dataclass(frozen=True, slots=True)
class ChannelCredit:
    """One channel's share of the conversions and of the conversion value under one model.

    `removal_effect_*` is set by the Markov model (the relative drop in conversion probability,
    or expected value, when the channel is removed). `error_*` is set by sampled Shapley values:
    the half-width of a 95% normal confidence interval on the credit, in the credit's units.
    """

    channel: str
    conversions: float
    value: float
    removal_effect_conversions: float | None = None
    removal_effect_value: float | None = None
    error_conversions: float | None = None
    error_value: float | None = None


@dataclass(frozen=True, slots=True)
class AttributionResult:
    """Credits per channel for one model, the totals they add up to, and notes on the run.

    Value credits are analysis figures (float64), never money to book: billing keeps its own
    deterministic rule on exact amounts.
    """

    model: str
    credits: tuple[ChannelCredit, ...]
    total_conversions: float
    total_value: float
    parameters: tuple[tuple[str, str], ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def channels(self) -> tuple[str, ...]:
        """Channel names in the order of `credits`."""
        return tuple(credit.channel for credit in self.credits)

    def conversions_by_channel(self) -> dict[str, float]:
        """Conversion credit keyed by channel name."""
        return {credit.channel: credit.conversions for credit in self.credits}

    def value_by_channel(self) -> dict[str, float]:
        """Value credit keyed by channel name."""
        return {credit.channel: credit.value for credit in self.credits}

    def credit_for(self, channel: str) -> ChannelCredit:
        """The credit row of one channel; KeyError names the channel when it is unknown."""
        for credit in self.credits:
            if credit.channel == channel:
                return credit
        raise KeyError(channel)


def _optional(values: NDArray[np.float64] | None, index: int) -> float | None:
    return None if values is None else float(values[index])


def build_result(
    model: str,
    channel_names: Sequence[str],
    conversions: NDArray[np.float64],
    value: NDArray[np.float64],
    *,
    total_conversions: float,
    total_value: float,
    parameters: Sequence[tuple[str, object]] = (),
    notes: Sequence[str] = (),
    removal_effects_conversions: NDArray[np.float64] | None = None,
    removal_effects_value: NDArray[np.float64] | None = None,
    errors_conversions: NDArray[np.float64] | None = None,
    errors_value: NDArray[np.float64] | None = None,
) -> AttributionResult:
    """Assemble an `AttributionResult` from per-channel arrays aligned with `channel_names`."""
    credits = tuple(
        ChannelCredit(
            channel=name,
            conversions=float(conversions[i]),
            value=float(value[i]),
            removal_effect_conversions=_optional(removal_effects_conversions, i),
            removal_effect_value=_optional(removal_effects_value, i),
            error_conversions=_optional(errors_conversions, i),
            error_value=_optional(errors_value, i),
        )
        for i, name in enumerate(channel_names)
    )
    return AttributionResult(
        model=model,
        credits=credits,
        total_conversions=float(total_conversions),
        total_value=float(total_value),
        parameters=tuple((key, str(val)) for key, val in parameters),
        notes=tuple(notes),
    )
