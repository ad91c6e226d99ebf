"""When an experiment may stop, and whether its traffic split matches the intended one (SRM)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from scipy import stats

from perfmark.errors import ValidationError
from perfmark.optimize.domain.experiments import ArmObservation, ExperimentAnalysis, check_arms

__all__ = [
    "DEFAULT_SRM_P_THRESHOLD",
    "SampleRatioCheck",
    "StopReason",
    "StoppingDecision",
    "StoppingPolicy",
    "check_sample_ratio",
    "decide_stop",
]

# 0.001 rather than 0.05: the check runs on every look at a live experiment, and a false
# alarm stops a healthy test, so it only fires on a split that is clearly broken.
DEFAULT_SRM_P_THRESHOLD = 0.001


@dataclass(frozen=True, slots=True)
class SampleRatioCheck:
    """Chi-square goodness of fit of observed visitors to the intended allocation."""

    statistic: float  #: Pearson's chi-square, sum of (observed - expected)^2 / expected
    degrees_of_freedom: int
    p_value: float
    threshold: float
    mismatch: bool  #: p_value < threshold: the split is broken, do not trust the results
    expected_visitors: tuple[float, ...]
    observed_visitors: tuple[int, ...]


def _check_probability(field: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1:
        raise ValidationError(f"{field} is {value!r}; give a number between 0 and 1", field=field)
    return float(value)


def check_sample_ratio(
    arms: Sequence[ArmObservation],
    intended_weights: Sequence[float],
    *,
    threshold: float = DEFAULT_SRM_P_THRESHOLD,
) -> SampleRatioCheck:
    """Compare each arm's visitors with its intended share; flag a mismatch when p < threshold.

    The weights are the intended split in arm order (any positive scale: 50/50, 1/1, 0.5/0.5).
    It assumes a fixed split over the whole period: for a bandit whose weights moved, pass the
    visitor-weighted average of the weights that were served.
    """
    arms = check_arms(arms)
    limit = _check_probability("srm_threshold", threshold)
    weights = [float(w) for w in intended_weights]
    if len(weights) != len(arms):
        raise ValidationError(
            f"intended_weights has {len(weights)} values for {len(arms)} arms; give one per arm",
            field="intended_weights",
        )
    if any(not math.isfinite(w) or w < 0 for w in weights) or sum(weights) <= 0:
        raise ValidationError(
            f"intended_weights is {weights}; give finite weights of at least 0, not all 0",
            field="intended_weights",
        )
    observed = tuple(arm.visitors for arm in arms)
    total = sum(observed)
    expected = tuple(total * w / sum(weights) for w in weights)
    cells = [(o, e) for o, e in zip(observed, expected, strict=True) if e > 0]
    degrees = len(cells) - 1
    if any(o > 0 and e == 0 for o, e in zip(observed, expected, strict=True)):
        # Traffic reached an arm meant to get none: broken whatever the counts say.
        statistic, p_value = math.inf, 0.0
    elif total == 0 or degrees == 0:
        statistic, p_value = 0.0, 1.0
    else:
        statistic = sum((o - e) ** 2 / e for o, e in cells)
        p_value = float(stats.chi2.sf(statistic, degrees))
    return SampleRatioCheck(
        statistic=statistic,
        degrees_of_freedom=max(degrees, 0),
        p_value=p_value,
        threshold=limit,
        mismatch=p_value < limit,
        expected_visitors=expected,
        observed_visitors=observed,
    )


class StopReason(StrEnum):
    """Why an experiment should stop or keep running."""

    MIN_SAMPLE_NOT_REACHED = "min_sample_not_reached"
    SAMPLE_RATIO_MISMATCH = "sample_ratio_mismatch"
    LOSS_BELOW_THRESHOLD = "loss_below_threshold"
    MAX_SAMPLE_REACHED = "max_sample_reached"
    KEEP_RUNNING = "keep_running"


@dataclass(frozen=True, slots=True)
class StoppingPolicy:
    """Stop when choosing the leader now costs less than `loss_threshold`, after a minimum sample.

    With `relative_threshold` the threshold is a share of the leader's posterior mean (0.01:
    stop when the expected loss is under 1% of the leader's rate or value per visitor);
    otherwise it is in the metric's own units (0.0005 of conversion rate, 0.02 per visitor).
    """

    loss_threshold: float = 0.01
    relative_threshold: bool = True
    min_visitors_per_arm: int = 1000
    min_conversions_per_arm: int = 0
    max_visitors_per_arm: int | None = None  #: stop anyway (no clear winner) past this

    def __post_init__(self) -> None:
        value = self.loss_threshold
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
            raise ValidationError(
                f"loss_threshold is {value!r}; give a number above 0", field="loss_threshold"
            )
        if not math.isfinite(value):
            raise ValidationError(
                f"loss_threshold is {value!r}; give a finite number", field="loss_threshold"
            )
        for name in ("min_visitors_per_arm", "min_conversions_per_arm"):
            count = getattr(self, name)
            if isinstance(count, bool) or not isinstance(count, int) or count < 0:
                raise ValidationError(
                    f"{name} is {count!r}; give a whole number of at least 0", field=name
                )
        cap = self.max_visitors_per_arm
        if cap is not None and (
            isinstance(cap, bool) or not isinstance(cap, int) or cap < self.min_visitors_per_arm
        ):
            raise ValidationError(
                f"max_visitors_per_arm is {cap!r}; give a whole number of at least "
                f"min_visitors_per_arm ({self.min_visitors_per_arm}) or leave it empty",
                field="max_visitors_per_arm",
            )


@dataclass(frozen=True, slots=True)
class StoppingDecision:
    """Whether to stop now, which arm wins if so, and why, with the numbers behind it."""

    stop: bool
    reason: StopReason
    message: str
    winner: str | None  #: set only when stopping with a winner
    leader: str
    leader_probability_best: float
    leader_expected_loss: float
    loss_threshold: float  #: the threshold in the metric's units, after any relative scaling


def decide_stop(
    analysis: ExperimentAnalysis,
    policy: StoppingPolicy,
    *,
    sample_ratio: SampleRatioCheck | None = None,
) -> StoppingDecision:
    """Apply the stopping policy to an analysis.

    Order: a sample-ratio mismatch blocks any winner (the data is suspect: stop=False, fix the
    split); then the minimum sample per arm; then expected loss of the leader against the
    threshold; then the optional maximum sample, which stops with no winner.
    """
    leader = analysis.arm(analysis.leader)
    scale = abs(leader.mean) if policy.relative_threshold else 1.0
    threshold = policy.loss_threshold * scale

    def decision(
        stop: bool, reason: StopReason, message: str, winner: str | None
    ) -> StoppingDecision:
        return StoppingDecision(
            stop=stop,
            reason=reason,
            message=message,
            winner=winner,
            leader=leader.name,
            leader_probability_best=leader.probability_best,
            leader_expected_loss=leader.expected_loss,
            loss_threshold=threshold,
        )

    if sample_ratio is not None and sample_ratio.mismatch:
        return decision(
            False,
            StopReason.SAMPLE_RATIO_MISMATCH,
            f"visitors {list(sample_ratio.observed_visitors)} do not match the intended split "
            f"(expected {[round(e, 1) for e in sample_ratio.expected_visitors]}, "
            f"chi-square p = {sample_ratio.p_value:.3g} < {sample_ratio.threshold}); "
            "fix the traffic split before reading the results",
            None,
        )
    short = [
        arm.name
        for arm in analysis.arms
        if arm.visitors < policy.min_visitors_per_arm
        or arm.conversions < policy.min_conversions_per_arm
    ]
    if short:
        return decision(
            False,
            StopReason.MIN_SAMPLE_NOT_REACHED,
            f"arms {short} have fewer than {policy.min_visitors_per_arm} visitors or "
            f"{policy.min_conversions_per_arm} conversions",
            None,
        )
    if leader.expected_loss < threshold:
        return decision(
            True,
            StopReason.LOSS_BELOW_THRESHOLD,
            f"choosing {leader.name!r} now loses {leader.expected_loss:.6g} {analysis.metric} in "
            f"expectation, under the threshold {threshold:.6g} "
            f"(P(best) = {leader.probability_best:.3f})",
            leader.name,
        )
    cap = policy.max_visitors_per_arm
    if cap is not None and all(arm.visitors >= cap for arm in analysis.arms):
        return decision(
            True,
            StopReason.MAX_SAMPLE_REACHED,
            f"every arm has at least {cap} visitors and the leader {leader.name!r} still loses "
            f"{leader.expected_loss:.6g} in expectation (threshold {threshold:.6g}); "
            "no arm is clearly better",
            None,
        )
    return decision(
        False,
        StopReason.KEEP_RUNNING,
        f"the leader {leader.name!r} would lose {leader.expected_loss:.6g} {analysis.metric} "
        f"in expectation, above the threshold {threshold:.6g}",
        None,
    )
