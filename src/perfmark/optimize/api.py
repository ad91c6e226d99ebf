"""The optimizer's routes: rules, experiments, budget and bid recommendations.

Each route parses, calls one service and renders its result as JSON.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

import httpx
from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from perfmark.adapters.store.engine import transaction
from perfmark.clock import utc
from perfmark.optimize import store
from perfmark.optimize.services import (
    allocation,
    bids,
    experiment_analysis,
    experiments,
    rule_runner,
    rules,
    views,
)
from perfmark.services.container import Container
from perfmark.web.api.deps import CurrentPrincipal, get_container
from perfmark.web.api.resources import ERROR_RESPONSES

__all__ = ["HTTP_CLIENT_STATE", "build_optimize_router"]

ContainerDep = Annotated[Container, Depends(get_container)]
#: `app.state` attribute holding the httpx.Client that rule webhooks are sent with (optional).
HTTP_CLIENT_STATE = "optimize_http_client"
#: Numbers that must stay exact: decimal strings (or integers).
Exact = str | int
_ID = Path(description="The object's id", max_length=64)
_TEXT = 200
_LIST = 100


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ScopeIn(_Strict):
    """What a rule watches: a kind and optional ids (none: every target of that kind)."""

    kind: str = Field(
        max_length=32, description="campaign, publisher, sub_id, creative, landing_page"
    )
    target_ids: list[str] = Field(
        default_factory=list,
        max_length=_LIST,
        description="ids; sub_id: 'pub_...:value', creative/landing_page: 'cmp_...:key'",
    )


class ConditionIn(_Strict):
    """`metric operator threshold`, on the window's value or its percent change."""

    metric: str = Field(max_length=32, description="e.g. cpa, roas, cr, clicks")
    operator: str = Field(max_length=4, description=">, >=, <, <=, == or !=")
    threshold: Exact | float = Field(description='e.g. "40" or "1.5"; a change is in percent')
    comparison: str = Field(default="value", max_length=16, description="value or change_pct")


class ActionIn(_Strict):
    """What a firing rule does."""

    kind: str = Field(max_length=32)
    percent: Exact | float | None = Field(default=None, description="signed, e.g. 20 or -15")
    webhook_url: str | None = Field(default=None, max_length=2048)


class GuardIn(_Strict):
    """A minimum sample: the rule is not judged below it."""

    metric: str = Field(max_length=32, description="impressions, clicks, conversions or cost")
    minimum: Exact | float


class RuleIn(_Strict):
    """An automated rule (see docs/optimize.md)."""

    name: str = Field(max_length=_TEXT)
    scope: ScopeIn
    conditions: list[ConditionIn] = Field(max_length=_LIST)
    actions: list[ActionIn] = Field(max_length=_LIST)
    window_days: int
    match: str = Field(default="all", max_length=8)
    cooldown_hours: int = 24
    min_sample: list[GuardIn] = Field(default_factory=list, max_length=_LIST)
    dry_run: bool = False
    interval_minutes: int = 60
    enabled: bool = True
    goal: str | None = Field(default=None, max_length=64, description="count only this goal")
    campaign_ids: list[str] = Field(default_factory=list, max_length=_LIST)
    sub_field: str = Field(default="sub1", max_length=8)


class RulePatch(_Strict):
    """The fields of a rule to change; a list or the scope replaces the stored one whole."""

    name: str | None = Field(default=None, max_length=_TEXT)
    scope: ScopeIn | None = None
    conditions: list[ConditionIn] | None = Field(default=None, max_length=_LIST)
    actions: list[ActionIn] | None = Field(default=None, max_length=_LIST)
    window_days: int | None = None
    match: str | None = Field(default=None, max_length=8)
    cooldown_hours: int | None = None
    min_sample: list[GuardIn] | None = Field(default=None, max_length=_LIST)
    dry_run: bool | None = None
    interval_minutes: int | None = None
    enabled: bool | None = None
    goal: str | None = Field(default=None, max_length=64)
    campaign_ids: list[str] | None = Field(default=None, max_length=_LIST)
    sub_field: str | None = Field(default=None, max_length=8)


class RunIn(_Strict):
    """Run now; a dry run evaluates and logs but changes nothing."""

    dry_run: bool = False


class ExperimentIn(_Strict):
    """An A/B/n experiment (see docs/experiments.md for the statistics)."""

    name: str = Field(max_length=_TEXT)
    arm_kind: str = Field(max_length=16, description="landing_page, creative or offer")
    arms: list[str] = Field(max_length=50, description="rotation keys, or offer ids")
    campaign_id: str | None = Field(default=None, max_length=64)
    offer_id: str | None = Field(
        default=None, max_length=64, description="landing pages of an offer"
    )
    metric: str = Field(default="conversion_rate", max_length=32)
    goal: str | None = Field(default=None, max_length=64)
    start: dt.date | None = None
    end: dt.date | None = None
    loss_threshold: float | None = None
    relative_threshold: bool = True
    min_visitors_per_arm: int | None = None
    min_conversions_per_arm: int | None = None
    max_visitors_per_arm: int | None = None
    credible_level: float | None = None
    allocation: bool = False
    min_share: float | None = None
    allocation_interval_minutes: int | None = None
    status: str = Field(default="running", max_length=16)


class ExperimentPatch(_Strict):
    """The fields of an experiment to change (not its arms or campaign)."""

    name: str | None = Field(default=None, max_length=_TEXT)
    metric: str | None = Field(default=None, max_length=32)
    goal: str | None = Field(default=None, max_length=64)
    start: dt.date | None = None
    end: dt.date | None = None
    loss_threshold: float | None = None
    relative_threshold: bool | None = None
    min_visitors_per_arm: int | None = None
    min_conversions_per_arm: int | None = None
    max_visitors_per_arm: int | None = None
    credible_level: float | None = None
    allocation: bool | None = None
    min_share: float | None = None
    allocation_interval_minutes: int | None = None
    status: str | None = Field(default=None, max_length=16)


class BudgetIn(_Strict):
    """Split a daily total across campaigns; `apply` runs the autopilot toward the split."""

    total_budget: Exact = Field(description='daily total, e.g. "500"')
    campaign_ids: list[str] = Field(default_factory=list, max_length=_LIST)
    objective: str = Field(default="conversions", max_length=16)
    goal: str | None = Field(default=None, max_length=64)
    target_cpa: Exact | None = None
    target_roas: Exact | None = None
    history_days: int = 28
    min_spend: dict[str, Exact] | None = None
    max_spend: dict[str, Exact] | None = None
    interval_level: float = 0.9
    apply: bool = Field(default=False, description="move budgets toward the split (autopilot)")
    dry_run: bool = False
    max_change_pct: Exact = Field(default="20", description="autopilot: at most this % a day")
    min_step: Exact = "0"


class BidsIn(_Strict):
    """Bids for a campaign's publishers or sub ids at a target CPA or ROAS."""

    campaign_id: str = Field(max_length=64)
    by: str = Field(default="publisher", max_length=16, description="publisher or sub_id")
    target_cpa: Exact | None = None
    target_roas: Exact | None = None
    goal: str | None = Field(default=None, max_length=64)
    history_days: int = 28
    basis: str | None = Field(default=None, max_length=8, description="cpc or cpm")
    credible_level: float = 0.9
    sub_field: str = Field(default="sub1", max_length=8)
    publisher_id: str | None = Field(default=None, max_length=64)


def _http(request: Request) -> httpx.Client | None:
    client = getattr(request.app.state, HTTP_CLIENT_STATE, None)
    return client if isinstance(client, httpx.Client) else None


def _audit(
    container: Container,
    workspace_id: str,
    source_id: str | None,
    limit: int,
    since: dt.datetime | None,
) -> dict[str, Any]:
    with transaction(container.engine) as conn:
        entries = store.list_audit(
            conn,
            workspace_id,
            source="rule",
            source_id=source_id,
            limit=limit,
            since=None if since is None else utc(since),
        )
    return {"data": [views.audit_json(entry) for entry in entries]}


_JSON_OBJECT: dict[str, Any] = {"application/json": {"schema": {"type": "object"}}}
_OBJECT: dict[int | str, dict[str, Any]] = {200: {"description": "OK", "content": _JSON_OBJECT}}
_CREATED: dict[int | str, dict[str, Any]] = {
    201: {"description": "Created", "content": _JSON_OBJECT}
}


def _add_rule_routes(router: APIRouter) -> None:
    tags: list[str | Any] = ["rules"]

    @router.post(
        "/rules",
        status_code=201,
        tags=tags,
        responses={**ERROR_RESPONSES, **_CREATED},
        summary="Create a rule (answers with warnings about the rule set)",
    )
    def create_rule(body: RuleIn, container: ContainerDep, principal: CurrentPrincipal) -> Any:
        saved = rules.create_rule(container, principal, body.model_dump())
        return views.rule_json(saved.rule, saved.warnings)

    @router.get("/rules", tags=tags, responses={**ERROR_RESPONSES, **_OBJECT}, summary="List rules")
    def list_rules(
        container: ContainerDep,
        principal: CurrentPrincipal,
        include_archived: Annotated[bool, Query()] = False,
    ) -> Any:
        found = rules.list_rules(container, principal, include_archived=include_archived)
        return {"data": [views.rule_json(stored) for stored in found]}

    @router.get(
        "/rules/warnings",
        tags=tags,
        responses={**ERROR_RESPONSES, **_OBJECT},
        summary="Cycles and never-firing rules in the workspace's rule set",
    )
    def rule_warnings(container: ContainerDep, principal: CurrentPrincipal) -> Any:
        found = rules.rule_set_warnings(container, principal)
        return {"data": [views.warning_json(warning) for warning in found]}

    @router.get(
        "/rules/audit",
        tags=tags,
        responses={**ERROR_RESPONSES, **_OBJECT},
        summary="The audit log of every rule, newest first",
    )
    def all_audit(
        container: ContainerDep,
        principal: CurrentPrincipal,
        limit: Annotated[int, Query(ge=1, le=store.MAX_AUDIT_ROWS)] = 100,
        since: Annotated[dt.datetime | None, Query()] = None,
    ) -> Any:
        rules.require_optimizer_reader(principal)
        return _audit(container, principal.workspace_id, None, limit, since)

    @router.get(
        "/rules/{rule_id}", tags=tags, responses={**ERROR_RESPONSES, **_OBJECT}, summary="One rule"
    )
    def get_rule(
        rule_id: Annotated[str, _ID], container: ContainerDep, principal: CurrentPrincipal
    ) -> Any:
        return views.rule_json(rules.get_rule(container, principal, rule_id))

    @router.patch(
        "/rules/{rule_id}",
        tags=tags,
        responses={**ERROR_RESPONSES, **_OBJECT},
        summary="Change a rule",
    )
    def patch_rule(
        rule_id: Annotated[str, _ID],
        body: RulePatch,
        container: ContainerDep,
        principal: CurrentPrincipal,
    ) -> Any:
        saved = rules.update_rule(
            container, principal, rule_id, body.model_dump(exclude_unset=True)
        )
        return views.rule_json(saved.rule, saved.warnings)

    @router.delete(
        "/rules/{rule_id}",
        tags=tags,
        responses={**ERROR_RESPONSES, **_OBJECT},
        summary="Archive a rule (its audit log stays)",
    )
    def delete_rule(
        rule_id: Annotated[str, _ID], container: ContainerDep, principal: CurrentPrincipal
    ) -> Any:
        return views.rule_json(rules.archive_rule(container, principal, rule_id))

    @router.post(
        "/rules/{rule_id}/evaluate",
        tags=tags,
        responses={**ERROR_RESPONSES, **_OBJECT},
        summary="Run a rule now (or a dry run): every number, the verdict, the actions",
    )
    def evaluate_rule(
        rule_id: Annotated[str, _ID],
        body: RunIn,
        request: Request,
        container: ContainerDep,
        principal: CurrentPrincipal,
    ) -> Any:
        run = rule_runner.run_rule(
            container, principal, rule_id, dry_run=body.dry_run, http=_http(request)
        )
        return views.rule_run_json(run)

    @router.get(
        "/rules/{rule_id}/audit",
        tags=tags,
        responses={**ERROR_RESPONSES, **_OBJECT},
        summary="The audit log of one rule, newest first",
    )
    def rule_audit(
        rule_id: Annotated[str, _ID],
        container: ContainerDep,
        principal: CurrentPrincipal,
        limit: Annotated[int, Query(ge=1, le=store.MAX_AUDIT_ROWS)] = 100,
        since: Annotated[dt.datetime | None, Query()] = None,
    ) -> Any:
        rules.get_rule(container, principal, rule_id)  # 404 for another workspace's rule
        return _audit(container, principal.workspace_id, rule_id, limit, since)


def _add_experiment_routes(router: APIRouter) -> None:
    tags: list[str | Any] = ["experiments"]

    @router.post(
        "/experiments",
        status_code=201,
        tags=tags,
        responses={**ERROR_RESPONSES, **_CREATED},
        summary="Create an experiment",
    )
    def create_experiment(
        body: ExperimentIn, container: ContainerDep, principal: CurrentPrincipal
    ) -> Any:
        created = experiments.create_experiment(container, principal, body.model_dump())
        return views.experiment_json(created)

    @router.get(
        "/experiments",
        tags=tags,
        responses={**ERROR_RESPONSES, **_OBJECT},
        summary="List experiments",
    )
    def list_experiments(
        container: ContainerDep,
        principal: CurrentPrincipal,
        include_archived: Annotated[bool, Query()] = False,
    ) -> Any:
        found = experiments.list_experiments(
            container, principal, include_archived=include_archived
        )
        return {"data": [views.experiment_json(item) for item in found]}

    @router.get(
        "/experiments/{experiment_id}",
        tags=tags,
        responses={**ERROR_RESPONSES, **_OBJECT},
        summary="One experiment",
    )
    def get_experiment(
        experiment_id: Annotated[str, _ID], container: ContainerDep, principal: CurrentPrincipal
    ) -> Any:
        return views.experiment_json(
            experiments.get_experiment(container, principal, experiment_id)
        )

    @router.patch(
        "/experiments/{experiment_id}",
        tags=tags,
        responses={**ERROR_RESPONSES, **_OBJECT},
        summary="Change an experiment",
    )
    def patch_experiment(
        experiment_id: Annotated[str, _ID],
        body: ExperimentPatch,
        container: ContainerDep,
        principal: CurrentPrincipal,
    ) -> Any:
        changes = body.model_dump(exclude_unset=True, mode="json")
        return views.experiment_json(
            experiments.update_experiment(container, principal, experiment_id, changes)
        )

    @router.delete(
        "/experiments/{experiment_id}",
        tags=tags,
        responses={**ERROR_RESPONSES, **_OBJECT},
        summary="Archive an experiment",
    )
    def delete_experiment(
        experiment_id: Annotated[str, _ID], container: ContainerDep, principal: CurrentPrincipal
    ) -> Any:
        return views.experiment_json(
            experiments.archive_experiment(container, principal, experiment_id)
        )

    @router.get(
        "/experiments/{experiment_id}/analysis",
        tags=tags,
        responses={**ERROR_RESPONSES, **_OBJECT},
        summary="Posteriors, P(best), expected loss, stopping decision, SRM check",
    )
    def analysis(
        experiment_id: Annotated[str, _ID], container: ContainerDep, principal: CurrentPrincipal
    ) -> Any:
        report = experiment_analysis.analyze_experiment(container, principal, experiment_id)
        return views.experiment_report_json(report)

    @router.post(
        "/experiments/{experiment_id}/allocate",
        tags=tags,
        responses={**ERROR_RESPONSES, **_OBJECT},
        summary="Thompson-sampling rotation weights now (PATCHes the campaign)",
    )
    def allocate(
        experiment_id: Annotated[str, _ID],
        body: RunIn,
        container: ContainerDep,
        principal: CurrentPrincipal,
    ) -> Any:
        result = experiment_analysis.allocate_experiment(
            container, principal, experiment_id, dry_run=body.dry_run
        )
        return views.experiment_allocation_json(result)


def _add_recommendation_routes(router: APIRouter) -> None:
    tags: list[str | Any] = ["recommendations"]

    @router.post(
        "/recommendations/budget",
        tags=tags,
        responses={**ERROR_RESPONSES, **_OBJECT},
        summary="Split a daily budget by fitted response curves; apply=true: autopilot",
    )
    def budget(body: BudgetIn, container: ContainerDep, principal: CurrentPrincipal) -> Any:
        data = body.model_dump()
        request = allocation.parse_budget_request(data)
        if not body.apply:
            return views.budget_json(allocation.recommend_budget(container, principal, request))
        result = allocation.apply_budget_autopilot(
            container,
            principal,
            request,
            max_change_pct=body.max_change_pct,
            min_step=body.min_step,
            dry_run=body.dry_run,
        )
        return views.autopilot_json(result)

    @router.post(
        "/recommendations/bids",
        tags=tags,
        responses={**ERROR_RESPONSES, **_OBJECT},
        summary="Bids per publisher or sub id for a target CPA or ROAS",
    )
    def recommend_bids(body: BidsIn, container: ContainerDep, principal: CurrentPrincipal) -> Any:
        request = bids.parse_bid_request(body.model_dump())
        return views.bids_json(bids.recommend_campaign_bids(container, principal, request))


def build_optimize_router() -> APIRouter:
    """The optimizer's routes; mount under /api. Webhooks use `app.state.optimize_http_client`."""
    router = APIRouter()
    _add_rule_routes(router)
    _add_experiment_routes(router)
    _add_recommendation_routes(router)
    return router
