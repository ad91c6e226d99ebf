"""Budget allocation: fit each campaign's response curve from its daily history, split a total.

History is read by click date (a conversion counts on the day of the click that bought
it, so each day's outcome belongs to that day's spend), over the last `history_days`
complete local days. Each day's outcome is weighed against the campaign's landing-page mix
of that day (`perfmark.optimize.domain.page_mix`), so that a page test running beside the
budgets is not mistaken for a return on spend. The autopilot then sets each campaign's
daily budget to the best split within `max_change_pct` of its budget at the start of the
local day, however often it runs that day.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta
from decimal import ROUND_DOWN, ROUND_UP, Decimal
from typing import Any

import numpy as np

from perfmark.adapters.store.engine import transaction
from perfmark.adapters.store.kinds import CAMPAIGNS
from perfmark.domain.campaigns import CampaignSpec, CampaignStatus
from perfmark.domain.records import Record
from perfmark.domain.rules import check_decimal
from perfmark.errors import PerfmarkError, ValidationError
from perfmark.optimize import store
from perfmark.optimize.domain.allocation import (
    DEFAULT_INTERVAL_LEVEL,
    AllocationCandidate,
    BudgetAllocation,
    Objective,
    allocate_budget,
)
from perfmark.optimize.domain.autopilot import (
    DEFAULT_MAX_DAILY_CHANGE_PCT,
    AutopilotPlan,
    autopilot_step,
)
from perfmark.optimize.domain.page_mix import MixCell, PageMix, fit_page_mix
from perfmark.optimize.domain.response_curves import (
    OutcomeMetric,
    ResponseCurve,
    fit_response_curve,
)
from perfmark.optimize.domain.response_posterior import CampaignHistory, fit_conversion_curves
from perfmark.optimize.services.metrics import MetricQuery, grouped_metrics, workspace_zone
from perfmark.optimize.services.rule_actions import all_records
from perfmark.optimize.services.rules import require_optimizer_reader, require_optimizer_writer
from perfmark.reports.domain.request import DateBasis
from perfmark.services import catalog
from perfmark.services.container import Container, Principal

__all__ = [
    "DEFAULT_HISTORY_DAYS",
    "AutopilotResult",
    "BudgetRecommendation",
    "BudgetRequest",
    "CurveSummary",
    "apply_budget_autopilot",
    "campaign_history",
    "page_mix",
    "parse_budget_request",
    "recommend_budget",
]

DEFAULT_HISTORY_DAYS = 28
MAX_HISTORY_DAYS = 365
_CENT = Decimal("0.01")


@dataclass(frozen=True)
class BudgetRequest:
    """Split `total_budget` (per day) across campaigns for conversions (of a goal) or revenue."""

    total_budget: Decimal
    campaign_ids: tuple[str, ...] = ()  #: empty: every active campaign
    objective: Objective = Objective.CONVERSIONS
    goal: str | None = None
    target_cpa: Decimal | None = None
    target_roas: Decimal | None = None
    history_days: int = DEFAULT_HISTORY_DAYS
    min_spend: Mapping[str, Decimal] | None = None
    max_spend: Mapping[str, Decimal] | None = None
    interval_level: float = DEFAULT_INTERVAL_LEVEL


def _amounts(field: str, value: object) -> dict[str, Decimal] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ValidationError(f"{field} must map campaign ids to amounts", field=field)
    return {str(key): check_decimal(f"{field}.{key}", amount) for key, amount in value.items()}


def parse_budget_request(data: Mapping[str, Any]) -> BudgetRequest:
    """A BudgetRequest from JSON-like data; amounts are decimal strings."""
    if "total_budget" not in data:
        raise ValidationError(
            'total_budget is required (a daily amount such as "500")', field="total_budget"
        )
    total = check_decimal("total_budget", data["total_budget"])
    ids = data.get("campaign_ids") or ()
    if not isinstance(ids, list | tuple) or not all(isinstance(i, str) and i for i in ids):
        raise ValidationError("campaign_ids must be a list of campaign ids", field="campaign_ids")
    try:
        objective = Objective(data.get("objective", Objective.CONVERSIONS.value))
    except ValueError:
        raise ValidationError(
            f"objective {data.get('objective')!r} is unknown; use conversions or revenue",
            field="objective",
        ) from None
    history = data.get("history_days", DEFAULT_HISTORY_DAYS)
    if (
        isinstance(history, bool)
        or not isinstance(history, int)
        or not 1 <= history <= MAX_HISTORY_DAYS
    ):
        raise ValidationError(
            f"history_days is {history!r}; give a whole number from 1 to {MAX_HISTORY_DAYS}",
            field="history_days",
        )
    level = data.get("interval_level", DEFAULT_INTERVAL_LEVEL)
    if isinstance(level, bool) or not isinstance(level, int | float) or not 0 < level < 1:
        raise ValidationError(
            f"interval_level is {level!r}; give a number between 0 and 1", field="interval_level"
        )
    goal = data.get("goal")
    if goal is not None and not isinstance(goal, str):
        raise ValidationError(f"goal is {goal!r}; give a goal key", field="goal")
    return BudgetRequest(
        total_budget=total,
        campaign_ids=tuple(dict.fromkeys(ids)),
        objective=objective,
        goal=goal,
        target_cpa=None
        if data.get("target_cpa") is None
        else check_decimal("target_cpa", data["target_cpa"], exclusive_minimum=True),
        target_roas=None
        if data.get("target_roas") is None
        else check_decimal("target_roas", data["target_roas"], exclusive_minimum=True),
        history_days=history,
        min_spend=_amounts("min_spend", data.get("min_spend")),
        max_spend=_amounts("max_spend", data.get("max_spend")),
        interval_level=float(level),
    )


@dataclass(frozen=True)
class CurveSummary:
    """A fitted curve in words and numbers."""

    campaign_id: str
    model: str
    params: tuple[float, ...]
    n_days: int
    max_observed_spend: float
    warnings: tuple[str, ...]


@dataclass(frozen=True)
class BudgetRecommendation:
    """The recommended split, the curves behind it and today's budgets."""

    request: BudgetRequest
    allocation: BudgetAllocation
    curves: tuple[CurveSummary, ...]
    current_budgets: Mapping[str, Decimal | None]
    first_day: date
    last_day: date
    #: Each landing page's conversions per click relative to the history's average, which
    #: the curves were adjusted for (empty with a single page: nothing to adjust).
    page_effects: Mapping[str, float] = field(default_factory=dict)


def _campaigns(
    container: Container, principal: Principal, request: BudgetRequest
) -> list[Record[CampaignSpec]]:
    if not request.campaign_ids:
        found = [
            record
            for record in all_records(container, principal, CAMPAIGNS, {"status": "active"})
            if record.spec.status is CampaignStatus.ACTIVE
        ]
        if not found:
            raise ValidationError(
                "there is no active campaign to allocate to; name campaign_ids",
                field="campaign_ids",
            )
        return found
    records = []
    for campaign_id in request.campaign_ids:
        try:
            records.append(catalog.get_object(container, principal, CAMPAIGNS, campaign_id))
        except PerfmarkError:
            raise ValidationError(
                f"campaign_ids {campaign_id!r} names no campaign in this workspace",
                field="campaign_ids",
            ) from None
    return records


def campaign_history(
    container: Container,
    workspace_id: str,
    campaign_ids: tuple[str, ...],
    days: tuple[date, date],
    *,
    objective: Objective,
    goal: str | None,
    currency: str,
) -> dict[str, list[tuple[date, Decimal, Decimal]]]:
    """Each campaign's (day, spend, outcome) per day with any traffic, oldest first."""
    outcome = "revenue" if objective is Objective.REVENUE else "conversions"
    query = MetricQuery(
        workspace_id=workspace_id,
        start=days[0],
        end=days[1],
        dimensions=("campaign", "day"),
        metrics=("cost", outcome),
        filters={"campaign": campaign_ids},
        goal=goal,
        date_basis=DateBasis.CLICK,
        currency=currency,
    )
    history: dict[str, list[tuple[date, Decimal, Decimal]]] = {cid: [] for cid in campaign_ids}
    for (campaign_id, day), values in grouped_metrics(container, query).items():
        if campaign_id in history:
            history[campaign_id].append(
                (_day(day), values["cost"], max(values[outcome], Decimal(0)))
            )
    return {cid: sorted(rows) for cid, rows in history.items()}


def page_mix(
    container: Container,
    workspace_id: str,
    campaign_ids: tuple[str, ...],
    days: tuple[date, date],
    *,
    goal: str | None,
) -> PageMix:
    """The campaigns' clicks and conversions by day and landing page, fitted (`fit_page_mix`)."""
    query = MetricQuery(
        workspace_id=workspace_id,
        start=days[0],
        end=days[1],
        dimensions=("campaign", "day", "landing_page"),
        metrics=("clicks", "conversions"),
        filters={"campaign": campaign_ids},
        goal=goal,
        date_basis=DateBasis.CLICK,
    )
    cells = [
        MixCell(
            campaign_id,
            _day(day),
            page or None,
            float(max(values["clicks"], Decimal(0))),
            float(max(values["conversions"], Decimal(0))),
        )
        for (campaign_id, day, page), values in grouped_metrics(container, query).items()
    ]
    return fit_page_mix(cells)


def _day(text: str) -> date:
    return date.fromisoformat(text[:10])


def _exposures(
    mix: PageMix, campaign_id: str, rows: list[tuple[date, Decimal, Decimal]]
) -> list[float]:
    # A day with spend but no click through a page (cost without clicks) keeps exposure 1.
    days = mix.exposures.get(campaign_id, {})
    return [days.get(day, 1.0) for day, _spend, _result in rows]


def _history_days(
    container: Container, workspace_id: str, now: datetime, count: int
) -> tuple[date, date]:
    # Complete local days only: a day in progress would look like a day of low spend.
    last = now.astimezone(workspace_zone(container, workspace_id)).date() - timedelta(days=1)
    return last - timedelta(days=count - 1), last


def recommend_budget(
    container: Container,
    principal: Principal,
    request: BudgetRequest,
    *,
    rng: np.random.Generator | None = None,
) -> BudgetRecommendation:
    """Fit each campaign's curve and split the total budget (with the outcome's interval)."""
    require_optimizer_reader(principal)
    records = _campaigns(container, principal, request)
    currencies = {record.spec.currency for record in records}
    if len(currencies) > 1:
        raise ValidationError(
            f"the campaigns' budgets are in {', '.join(sorted(currencies))}; allocate one "
            "currency at a time",
            field="campaign_ids",
        )
    ids = tuple(record.id for record in records)
    days = _history_days(
        container, principal.workspace_id, container.clock.now(), request.history_days
    )
    history = campaign_history(
        container,
        principal.workspace_id,
        ids,
        days,
        objective=request.objective,
        goal=request.goal,
        currency=currencies.pop(),
    )
    mix = page_mix(container, principal.workspace_id, ids, days, goal=request.goal)
    generator = rng or np.random.default_rng()
    metric = OutcomeMetric(request.objective.value)
    curves: list[ResponseCurve] = []
    if metric is OutcomeMetric.CONVERSIONS:
        # Counts: a Poisson posterior, the campaigns pooling what they show about the shape.
        fitted = fit_conversion_curves(
            [
                CampaignHistory(
                    campaign_id,
                    [float(spend) for _, spend, _ in history[campaign_id]],
                    [float(result) for _, _, result in history[campaign_id]],
                    _exposures(mix, campaign_id, history[campaign_id]),
                )
                for campaign_id in ids
            ],
            rng=generator,
        )
        curves = [fitted[campaign_id] for campaign_id in ids]
    else:
        for campaign_id in ids:
            rows = history[campaign_id]
            exposure = _exposures(mix, campaign_id, rows)
            curves.append(
                fit_response_curve(
                    [float(spend) for _, spend, _ in rows],
                    # Revenue as today's page mix would have brought it.
                    [float(result) / e for (_, _, result), e in zip(rows, exposure, strict=True)],
                    rng=generator,
                    metric=metric,
                    campaign_id=campaign_id,
                )
            )
    lows, highs = request.min_spend or {}, request.max_spend or {}
    unknown = sorted((set(lows) | set(highs)) - set(ids))
    if unknown:
        raise ValidationError(
            f"min_spend/max_spend name {unknown[0]!r}, which is not one of the campaigns allocated",
            field="min_spend",
        )
    candidates = [
        AllocationCandidate(
            campaign_id=curve.campaign_id,
            curve=curve,
            min_spend=lows.get(curve.campaign_id, Decimal(0)),
            max_spend=highs.get(curve.campaign_id),
        )
        for curve in curves
    ]
    allocation = allocate_budget(
        candidates,
        request.total_budget,
        objective=request.objective,
        target_cpa=request.target_cpa,
        target_roas=request.target_roas,
        interval_level=request.interval_level,
    )
    return BudgetRecommendation(
        request=request,
        allocation=allocation,
        curves=tuple(
            CurveSummary(
                c.campaign_id, c.model.value, c.params, c.n_days, c.max_observed_spend, c.warnings
            )
            for c in curves
        ),
        current_budgets={record.id: record.spec.daily_budget for record in records},
        first_day=days[0],
        last_day=days[1],
        # One page (or none): nothing was adjusted, so nothing to show.
        page_effects=(
            {page or "": effect for page, effect in mix.effects.items()}
            if len(mix.effects) > 1
            else {}
        ),
    )


@dataclass(frozen=True)
class AutopilotResult:
    """The recommendation, the bounded step taken toward it, and the budgets written."""

    recommendation: BudgetRecommendation
    plan: AutopilotPlan
    written: Mapping[str, Decimal]
    applied: bool
    notes: tuple[str, ...]


def _day_start_budgets(
    container: Container, principal: Principal, ids: tuple[str, ...], now: datetime
) -> dict[str, Decimal]:
    """Each campaign's budget before the autopilot's first change of the local day."""
    zone = workspace_zone(container, principal.workspace_id)
    midnight = datetime.combine(now.astimezone(zone).date(), time(0), zone)
    with transaction(container.engine) as conn:
        rows = store.list_audit(
            conn,
            principal.workspace_id,
            source="autopilot",
            target_ids=ids,
            since=midnight,
            limit=1000,
        )
    earliest: dict[str, Decimal] = {}
    for entry in reversed(rows):  # oldest first
        before = entry.data.get("before")
        if entry.applied and before is not None and entry.target_id not in earliest:
            earliest[entry.target_id] = Decimal(str(before))
    return earliest


def apply_budget_autopilot(
    container: Container,
    principal: Principal,
    request: BudgetRequest,
    *,
    max_change_pct: Decimal | int | str = DEFAULT_MAX_DAILY_CHANGE_PCT,
    min_step: Decimal | int | str = Decimal(0),
    dry_run: bool = False,
    rng: np.random.Generator | None = None,
) -> AutopilotResult:
    """Recommend, then move each daily budget toward it within +/- max_change_pct per day."""
    if dry_run:
        require_optimizer_reader(principal)
    else:
        require_optimizer_writer(principal)
    now = container.clock.now()
    records = _campaigns(container, principal, request)
    ids = tuple(record.id for record in records)
    today = {record.id: record.spec.daily_budget or Decimal(0) for record in records}
    base = {**today, **_day_start_budgets(container, principal, ids, now)}
    bounded = _within_daily_bound(request, ids, base, max_change_pct, min_step)
    recommendation = recommend_budget(container, principal, bounded or request, rng=rng)
    recommended = {row.campaign_id: row.spend for row in recommendation.allocation.campaigns}
    plan = autopilot_step(
        base,
        recommended,
        max_change_pct=max_change_pct,
        min_step=min_step,
        total_cap=request.total_budget,
    )
    notes: list[str] = list(plan.notes)
    if bounded is None:
        notes.append(
            "the day-start budgets less the daily bound exceed total_budget: the unbounded "
            "recommendation is approached instead"
        )
    written: dict[str, Decimal] = {}
    for step in plan.steps:
        new = step.new
        record = catalog.get_object(container, principal, CAMPAIGNS, step.campaign_id)
        total = record.spec.total_budget
        if new < _CENT:
            notes.append(f"{step.campaign_id}: a daily budget must be above 0; kept at {_CENT}")
            new = _CENT
        if total is not None and new > total:
            notes.append(f"{step.campaign_id}: held at its total budget {total}")
            new = total
        current = today[step.campaign_id]
        changed = new != current and not dry_run
        if changed:
            catalog.update_object(
                container, principal, CAMPAIGNS, step.campaign_id, {"daily_budget": str(new)}
            )
            written[step.campaign_id] = new
        row = next(
            r for r in recommendation.allocation.campaigns if r.campaign_id == step.campaign_id
        )
        reason = (
            f"daily budget {current} -> {new} toward the recommended {step.recommended} "
            f"(at most {plan.max_change_pct}% a day from {step.current}"
            f"{', limited' if step.limited else ''}); expected {request.objective.value} "
            f"{row.expected_outcome:.3g} [{row.outcome_low:.3g}, {row.outcome_high:.3g}], "
            f"marginal return {row.marginal_return:.4g}"
        )
        with transaction(container.engine) as conn:
            store.add_audit(
                conn,
                store.AuditEntry(
                    workspace_id=principal.workspace_id,
                    source="autopilot",
                    source_id="autopilot",
                    target_kind="campaign",
                    target_id=step.campaign_id,
                    at=now,
                    status="dry_run" if dry_run else ("applied" if changed else "unchanged"),
                    applied=changed,
                    reason=("dry run: " if dry_run else "") + reason,
                    data={
                        "before": str(current),
                        "day_start": str(step.current),
                        "recommended": str(step.recommended),
                        "new": str(new),
                        "allowed_change": str(step.allowed_change),
                        "expected_outcome": _finite(row.expected_outcome),
                        "outcome_low": _finite(row.outcome_low),
                        "outcome_high": _finite(row.outcome_high),
                        "marginal_return": _finite(row.marginal_return),
                    },
                ),
            )
    return AutopilotResult(recommendation, plan, written, bool(written), tuple(notes))


def _within_daily_bound(
    request: BudgetRequest,
    ids: tuple[str, ...],
    base: Mapping[str, Decimal],
    max_change_pct: Decimal | int | str,
    min_step: Decimal | int | str,
) -> BudgetRequest | None:
    """The request limited to what today's step can reach: the best split inside the bound.

    Moving part-way toward an unbounded optimum can leave budget unplaced (a campaign cut by
    the full step while the one that should grow may only grow by X%); the optimum inside the
    box [day-start x (1 - X%), day-start x (1 + X%)] places it where it does most. None when
    the box's minimums alone exceed the total (the step then has to cut beyond the bound).
    """
    pct = check_decimal("max_change_pct", max_change_pct, exclusive_minimum=True) / 100
    step_floor = check_decimal("min_step", min_step)
    lows: dict[str, Decimal] = {}
    highs: dict[str, Decimal] = {}
    for cid in ids:
        start = base.get(cid, Decimal(0))
        allowed = max(start * pct, step_floor)
        low = max((start - allowed).quantize(_CENT, rounding=ROUND_UP), Decimal(0))
        high = (start + allowed).quantize(_CENT, rounding=ROUND_DOWN)
        low = max(low, (request.min_spend or {}).get(cid, Decimal(0)))
        if request.max_spend and cid in request.max_spend:
            high = min(high, request.max_spend[cid])
        lows[cid], highs[cid] = min(low, high), high
    if sum(lows.values(), Decimal(0)) > request.total_budget:
        return None
    # Keys that name no allocated campaign are kept, so the recommendation still refuses them.
    return replace(
        request,
        campaign_ids=ids,
        min_spend={**(request.min_spend or {}), **lows},
        max_spend={**(request.max_spend or {}), **highs},
    )


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None
