"""The optimizer's results as JSON-safe data, shared by the API and the CLI's --json output."""

from __future__ import annotations

import dataclasses
import math
from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from typing import Any

from perfmark.money import Money
from perfmark.optimize.domain.rule_cycles import RuleWarning
from perfmark.optimize.services.allocation import AutopilotResult, BudgetRecommendation
from perfmark.optimize.services.bids import BidAdvice
from perfmark.optimize.services.experiment_analysis import AllocationResult, ExperimentReport
from perfmark.optimize.services.experiments import Experiment, experiment_to_data
from perfmark.optimize.services.rule_runner import RuleRun, evaluation_to_json
from perfmark.optimize.services.rules import StoredRule, rule_to_data
from perfmark.optimize.store import AuditEntry

__all__ = [
    "audit_json",
    "autopilot_json",
    "bids_json",
    "budget_json",
    "experiment_allocation_json",
    "experiment_json",
    "experiment_report_json",
    "jsonable",
    "rule_json",
    "rule_run_json",
    "warning_json",
]


def jsonable(value: Any) -> Any:
    """Dataclasses, enums, Decimals, Money, dates and tuples as plain JSON values.

    Decimals become exact strings; a float that is not finite (an unbounded marginal CPA)
    becomes null, since JSON has no infinity.
    """
    if isinstance(value, Money):
        return {"amount": str(value.amount), "currency": value.currency}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Decimal):
        return str(value) if value.is_finite() else None
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(item) for item in value]
    return value


def _time(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def warning_json(warning: RuleWarning) -> dict[str, Any]:
    """A rule-set warning."""
    return {
        "code": warning.code.value,
        "rule_ids": list(warning.rule_ids),
        "targets": list(warning.targets),
        "message": warning.message,
    }


def rule_json(stored: StoredRule, warnings: tuple[RuleWarning, ...] = ()) -> dict[str, Any]:
    """A stored rule with its schedule and any warnings about the set it belongs to."""
    return {
        "id": stored.id,
        "workspace_id": stored.workspace_id,
        **rule_to_data(stored.rule),
        "goal": stored.goal,
        "campaign_ids": list(stored.campaign_ids),
        "sub_field": stored.sub_field,
        "created_at": stored.created_at.isoformat(),
        "updated_at": stored.updated_at.isoformat(),
        "next_run_at": _time(stored.next_run_at),
        "last_run_at": _time(stored.last_run_at),
        "archived_at": _time(stored.archived_at),
        "warnings": [warning_json(w) for w in warnings],
    }


def rule_run_json(run: RuleRun) -> dict[str, Any]:
    """A rule run: each target's evaluation with every number, and what the actions did."""
    return {
        "rule_id": run.rule_id,
        "at": run.at.isoformat(),
        "dry_run": run.dry_run,
        "days": [day.isoformat() for day in run.current_days],
        "previous_days": [day.isoformat() for day in run.previous_days],
        "targets": [
            {
                **evaluation_to_json(result.evaluation),
                "applied": result.applied,
                "outcomes": [outcome.to_json() for outcome in result.outcomes],
            }
            for result in run.targets
        ],
    }


def audit_json(entry: AuditEntry) -> dict[str, Any]:
    """One audit row."""
    return {
        "id": entry.id,
        "source": entry.source,
        "source_id": entry.source_id,
        "target_kind": entry.target_kind,
        "target_id": entry.target_id,
        "at": entry.at.isoformat(),
        "status": entry.status,
        "applied": entry.applied,
        "reason": entry.reason,
        "data": dict(entry.data),
    }


def experiment_json(experiment: Experiment) -> dict[str, Any]:
    """A stored experiment."""
    return {
        "id": experiment.id,
        "workspace_id": experiment.workspace_id,
        **experiment_to_data(experiment.spec),
        "next_allocation_at": _time(experiment.next_allocation_at),
        "created_at": experiment.created_at.isoformat(),
        "updated_at": experiment.updated_at.isoformat(),
        "archived_at": _time(experiment.archived_at),
    }


def experiment_report_json(report: ExperimentReport) -> dict[str, Any]:
    """An experiment's analysis, stopping decision and sample-ratio check."""
    return {
        "experiment": experiment_json(report.experiment),
        "days": [report.first_day.isoformat(), report.last_day.isoformat()],
        "arms": jsonable(report.arms),
        "analysis": jsonable(report.analysis),
        "decision": jsonable(report.decision),
        "sample_ratio": jsonable(report.sample_ratio),
        "intended_weights": jsonable(report.intended_weights),
        "notes": list(report.notes),
    }


def experiment_allocation_json(result: AllocationResult) -> dict[str, Any]:
    """One bandit allocation."""
    return {
        "experiment_id": result.experiment_id,
        "at": result.at.isoformat(),
        "applied": result.applied,
        "reason": result.reason,
        "before": result.before,
        "after": result.after,
        "weights": jsonable(result.weights),
        "arms": jsonable(result.arms),
    }


def budget_json(recommendation: BudgetRecommendation) -> dict[str, Any]:
    """A budget recommendation with the curves behind it."""
    return {
        "days": [recommendation.first_day.isoformat(), recommendation.last_day.isoformat()],
        "allocation": jsonable(recommendation.allocation),
        "curves": jsonable(recommendation.curves),
        "current_budgets": jsonable(dict(recommendation.current_budgets)),
        "page_effects": dict(recommendation.page_effects),
    }


def autopilot_json(result: AutopilotResult) -> dict[str, Any]:
    """An autopilot step: the recommendation, the bounded plan and the budgets written."""
    return {
        **budget_json(result.recommendation),
        "plan": jsonable(result.plan),
        "written": jsonable(dict(result.written)),
        "applied": result.applied,
        "notes": list(result.notes),
    }


def bids_json(advice: BidAdvice) -> dict[str, Any]:
    """Bid recommendations with today's bids beside them."""
    return {
        "campaign_id": advice.request.campaign_id,
        "by": advice.request.by.value,
        "days": [advice.first_day.isoformat(), advice.last_day.isoformat()],
        "basis": advice.recommendations.basis.value,
        "target": jsonable(advice.recommendations.target),
        "prior": jsonable(advice.recommendations.prior),
        "value_credibility": jsonable(advice.recommendations.value_credibility),
        "credible_level": advice.recommendations.credible_level,
        "segments": [
            {**jsonable(segment), "current_bid": jsonable(advice.current_bids.get(segment.segment))}
            for segment in advice.recommendations.segments
        ],
        "notes": list(advice.notes),
    }
