"""A/B/n experiments as stored objects: landing pages or creatives of a campaign, or offers."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Any

from perfmark.adapters.store.codec import check_storable
from perfmark.adapters.store.engine import transaction
from perfmark.adapters.store.kinds import CAMPAIGNS, OFFERS
from perfmark.domain.campaigns import CampaignSpec
from perfmark.domain.offers import OfferSpec, WeightedUrl
from perfmark.domain.records import Record
from perfmark.domain.rules import check_name
from perfmark.errors import NotFoundError, PerfmarkError, ValidationError
from perfmark.ids import new_id
from perfmark.optimize import store
from perfmark.optimize.domain.bandit import DEFAULT_MIN_SHARE, DEFAULT_SHARPNESS
from perfmark.optimize.domain.experiments import (
    DEFAULT_CREDIBLE_LEVEL,
    MIN_ARMS,
    Metric,
    check_credible_level,
)
from perfmark.optimize.domain.experiments_stopping import StoppingPolicy
from perfmark.optimize.services.metrics import check_goal, workspace_zone
from perfmark.optimize.services.rules import require_optimizer_reader, require_optimizer_writer
from perfmark.services import catalog
from perfmark.services.container import Container, Principal

__all__ = [
    "DEFAULT_ALLOCATION_INTERVAL_MINUTES",
    "ArmKind",
    "Experiment",
    "ExperimentSpec",
    "ExperimentStatus",
    "archive_experiment",
    "create_experiment",
    "experiment_to_data",
    "get_experiment",
    "list_experiments",
    "next_allocation_after",
    "parse_experiment",
    "Rotation",
    "rotation_of",
    "update_experiment",
]

DEFAULT_ALLOCATION_INTERVAL_MINUTES = 60
#: The dates an experiment may start or end on (reports cannot reach far beyond).
EARLIEST_DAY = date(2000, 1, 1)
LATEST_DAY = date(2999, 12, 31)
_MAX_INTERVAL_MINUTES = 7 * 24 * 60
#: Beyond this the bandit is all but greedy: P(best) of 0.9 against 0.1 gives 1 to 0 weights.
_MAX_SHARPNESS = 8.0
_MAX_ARMS = 50


class ArmKind(StrEnum):
    """What the arms of an experiment are."""

    LANDING_PAGE = "landing_page"
    CREATIVE = "creative"
    OFFER = "offer"  #: offers compared across the campaigns that promote them (no rotation)


class ExperimentStatus(StrEnum):
    """Whether an experiment is collecting data."""

    RUNNING = "running"
    STOPPED = "stopped"


@dataclass(frozen=True)
class ExperimentSpec:
    """What an experiment compares, on what, how it stops, and whether a bandit allocates."""

    name: str
    arm_kind: ArmKind
    arms: tuple[str, ...]
    campaign_id: str | None = None
    offer_id: str | None = None  #: landing pages of an offer, shared by its campaigns
    metric: Metric = Metric.CONVERSION_RATE
    goal: str | None = None  #: a goal key: count only its conversions (lead quality)
    start: date | None = None
    end: date | None = None
    stopping: StoppingPolicy = StoppingPolicy()
    credible_level: float = DEFAULT_CREDIBLE_LEVEL
    allocation: bool = False  #: Thompson sampling sets the rotation weights
    min_share: float = DEFAULT_MIN_SHARE
    allocation_interval_minutes: int = DEFAULT_ALLOCATION_INTERVAL_MINUTES
    status: ExperimentStatus = ExperimentStatus.RUNNING
    sharpness: float = DEFAULT_SHARPNESS  #: P(best) ** sharpness before the floor (1: plain)
    floor_evidence: int | None = None  #: conversions after which min_share shrinks (None: fixed)


@dataclass(frozen=True)
class Experiment:
    """A stored experiment."""

    id: str
    workspace_id: str
    spec: ExperimentSpec
    next_allocation_at: datetime | None
    created_at: datetime
    updated_at: datetime
    archived_at: datetime | None


def _enum(kind: type[StrEnum], field: str, value: object) -> Any:
    try:
        return kind(str(value))
    except ValueError:
        allowed = ", ".join(repr(member.value) for member in kind)
        raise ValidationError(
            f"{field} {value!r} is not known; use one of {allowed}", field=field
        ) from None


def _day(field: str, value: object) -> date | None:
    if value is None:
        return None
    try:
        day = value if isinstance(value, date) else date.fromisoformat(str(value))
    except ValueError:
        raise ValidationError(
            f"{field} {value!r} is not a date; use YYYY-MM-DD", field=field
        ) from None
    if not EARLIEST_DAY <= day <= LATEST_DAY:
        raise ValidationError(
            f"{field} {day} is outside {EARLIEST_DAY} .. {LATEST_DAY}", field=field
        )
    return day


def _number(field: str, value: object, default: float) -> float:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValidationError(f"{field} is {value!r}; give a number", field=field)
    return float(value)


def _whole(field: str, value: object, default: int | None, low: int, high: int) -> int | None:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValidationError(
            f"{field} is {value!r}; give a whole number from {low} to {high}", field=field
        )
    return value


def _optional_id(field: str, value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise ValidationError(f"{field} is {value!r}; give an id", field=field)
    return value


def _arms(value: object) -> tuple[str, ...]:
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) and v for v in value):
        raise ValidationError("arms must be a list of keys (or offer ids)", field="arms")
    arms = tuple(value)
    if len(set(arms)) != len(arms):
        raise ValidationError(f"arms {list(arms)} repeat a key; list each arm once", field="arms")
    if len(arms) < MIN_ARMS:
        raise ValidationError(
            f"an experiment needs at least {MIN_ARMS} arms to compare; got {len(arms)} "
            f"({', '.join(arms) or 'none'}): add another landing page, creative or offer",
            field="arms",
        )
    if len(arms) > _MAX_ARMS:
        raise ValidationError(
            f"{len(arms)} arms is too many; the limit is {_MAX_ARMS}", field="arms"
        )
    return arms


def parse_experiment(data: Mapping[str, Any]) -> ExperimentSpec:
    """An ExperimentSpec from JSON-like data; every problem is a ValidationError."""
    check_storable(dict(data))
    policy = StoppingPolicy(
        loss_threshold=_number("loss_threshold", data.get("loss_threshold"), 0.01),
        relative_threshold=bool(data.get("relative_threshold", True)),
        min_visitors_per_arm=_whole(  # type: ignore[arg-type]
            "min_visitors_per_arm", data.get("min_visitors_per_arm"), 1000, 0, 10**12
        ),
        min_conversions_per_arm=_whole(  # type: ignore[arg-type]
            "min_conversions_per_arm", data.get("min_conversions_per_arm"), 0, 0, 10**12
        ),
        max_visitors_per_arm=_whole(
            "max_visitors_per_arm", data.get("max_visitors_per_arm"), None, 1, 10**12
        ),
    )
    arm_kind = _enum(ArmKind, "arm_kind", data.get("arm_kind"))
    campaign_id = _optional_id("campaign_id", data.get("campaign_id"))
    offer_id = _optional_id("offer_id", data.get("offer_id"))
    if arm_kind is ArmKind.LANDING_PAGE and (campaign_id is None) == (offer_id is None):
        raise ValidationError(
            "a landing_page experiment tests the rotation of one campaign or of one offer: "
            "give exactly one of campaign_id and offer_id",
            field="campaign_id",
        )
    if arm_kind is ArmKind.CREATIVE and campaign_id is None:
        raise ValidationError(
            "a creative experiment needs the campaign_id whose rotation it tests",
            field="campaign_id",
        )
    if arm_kind is not ArmKind.LANDING_PAGE and offer_id is not None:
        raise ValidationError(
            f"offer_id is only for landing_page experiments, not {arm_kind.value}",
            field="offer_id",
        )
    allocation = data.get("allocation", False)
    if not isinstance(allocation, bool):
        raise ValidationError(
            f"allocation is {allocation!r}; give true or false", field="allocation"
        )
    if allocation and arm_kind is ArmKind.OFFER:
        raise ValidationError(
            "allocation is not available for offer experiments: the tracker rotates landing "
            "pages and creatives, not offers; test the offers' landing pages instead",
            field="allocation",
        )
    arms = _arms(data.get("arms"))
    min_share = _number("min_share", data.get("min_share"), DEFAULT_MIN_SHARE)
    if not 0 <= min_share <= 1 / len(arms):
        raise ValidationError(
            f"min_share is {min_share}; with {len(arms)} arms it must be from 0 to "
            f"{1 / len(arms):.4f}",
            field="min_share",
        )
    sharpness = _number("sharpness", data.get("sharpness"), DEFAULT_SHARPNESS)
    if not 1 <= sharpness <= _MAX_SHARPNESS:
        raise ValidationError(
            f"sharpness is {sharpness}; give a number from 1 (plain Thompson sampling) to "
            f"{_MAX_SHARPNESS:g}",
            field="sharpness",
        )
    floor_evidence = _whole("floor_evidence", data.get("floor_evidence"), None, 1, 10**12)
    start, end = _day("start", data.get("start")), _day("end", data.get("end"))
    if start and end and end < start:
        raise ValidationError(f"end {end} is before start {start}", field="end")
    goal = data.get("goal")
    if goal is not None and not isinstance(goal, str):
        raise ValidationError(f"goal is {goal!r}; give a goal key", field="goal")
    interval = _whole(
        "allocation_interval_minutes",
        data.get("allocation_interval_minutes"),
        DEFAULT_ALLOCATION_INTERVAL_MINUTES,
        1,
        _MAX_INTERVAL_MINUTES,
    )
    return ExperimentSpec(
        name=check_name("name", data.get("name", "")),
        arm_kind=arm_kind,
        arms=arms,
        campaign_id=campaign_id,
        offer_id=offer_id,
        metric=_enum(Metric, "metric", data.get("metric", Metric.CONVERSION_RATE.value)),
        goal=goal,
        start=start,
        end=end,
        stopping=policy,
        credible_level=check_credible_level(
            _number("credible_level", data.get("credible_level"), DEFAULT_CREDIBLE_LEVEL)
        ),
        allocation=allocation,
        min_share=min_share,
        allocation_interval_minutes=interval or DEFAULT_ALLOCATION_INTERVAL_MINUTES,
        status=_enum(ExperimentStatus, "status", data.get("status", "running")),
        sharpness=sharpness,
        floor_evidence=floor_evidence,
    )


def experiment_to_data(spec: ExperimentSpec) -> dict[str, Any]:
    """JSON-safe data that `parse_experiment` reads back."""
    return {
        "name": spec.name,
        "arm_kind": spec.arm_kind.value,
        "arms": list(spec.arms),
        "campaign_id": spec.campaign_id,
        "offer_id": spec.offer_id,
        "metric": spec.metric.value,
        "goal": spec.goal,
        "start": None if spec.start is None else spec.start.isoformat(),
        "end": None if spec.end is None else spec.end.isoformat(),
        "loss_threshold": spec.stopping.loss_threshold,
        "relative_threshold": spec.stopping.relative_threshold,
        "min_visitors_per_arm": spec.stopping.min_visitors_per_arm,
        "min_conversions_per_arm": spec.stopping.min_conversions_per_arm,
        "max_visitors_per_arm": spec.stopping.max_visitors_per_arm,
        "credible_level": spec.credible_level,
        "allocation": spec.allocation,
        "min_share": spec.min_share,
        "allocation_interval_minutes": spec.allocation_interval_minutes,
        "status": spec.status.value,
        "sharpness": spec.sharpness,
        "floor_evidence": spec.floor_evidence,
    }


@dataclass(frozen=True)
class Rotation:
    """The weighted items an experiment's arms live in, and the object that holds them."""

    kind: Any  #: CAMPAIGNS or OFFERS
    object_id: str
    field: str  #: "landing_pages" or "creatives"
    items: tuple[WeightedUrl, ...]


def rotation_of(container: Container, principal: Principal, spec: ExperimentSpec) -> Rotation:
    """Where the arms rotate: the offer's pages, the campaign's creatives or landing pages.

    A campaign without pages of its own rotates its offer's pages: changing them then gives
    the campaign its own copy (other campaigns of the offer are not touched).
    """
    if spec.offer_id is not None:
        offer: Record[OfferSpec] = catalog.get_object(container, principal, OFFERS, spec.offer_id)
        return Rotation(OFFERS, offer.id, "landing_pages", offer.spec.landing_pages)
    if spec.campaign_id is None:
        raise ValidationError("offer experiments have no rotation", field="arm_kind")
    campaign: Record[CampaignSpec] = catalog.get_object(
        container, principal, CAMPAIGNS, spec.campaign_id
    )
    if spec.arm_kind is ArmKind.CREATIVE:
        return Rotation(CAMPAIGNS, campaign.id, "creatives", campaign.spec.creatives)
    pages = campaign.spec.landing_pages
    if not pages:
        offer = catalog.get_object(container, principal, OFFERS, campaign.spec.offer_id)
        pages = offer.spec.landing_pages
    return Rotation(CAMPAIGNS, campaign.id, "landing_pages", pages)


def _check_references(container: Container, principal: Principal, spec: ExperimentSpec) -> None:
    check_goal(container, principal.workspace_id, spec.goal)
    for field, kind, object_id in (
        ("campaign_id", CAMPAIGNS, spec.campaign_id),
        ("offer_id", OFFERS, spec.offer_id),
    ):
        if object_id is None:
            continue
        try:
            catalog.get_object(container, principal, kind, object_id)
        except PerfmarkError:
            raise ValidationError(
                f"{field} {object_id!r} names no {kind.singular} in this workspace", field=field
            ) from None
    if spec.arm_kind is ArmKind.OFFER:
        for offer_id in spec.arms:
            try:
                catalog.get_object(container, principal, OFFERS, offer_id)
            except PerfmarkError:
                raise ValidationError(
                    f"arm {offer_id!r} names no offer in this workspace", field="arms"
                ) from None
        return
    rotation = rotation_of(container, principal, spec)
    keys = [item.key for item in rotation.items]
    missing = [arm for arm in spec.arms if arm not in keys]
    if missing:
        owner = f"{'offer' if rotation.kind is OFFERS else 'campaign'} {rotation.object_id}"
        raise ValidationError(
            f"arm {missing[0]!r} is not a {spec.arm_kind.value} of {owner} "
            f"(it has: {', '.join(keys) or 'none'})",
            field="arms",
        )


def _record_initial_weights(
    container: Container,
    principal: Principal,
    experiment_id: str,
    spec: ExperimentSpec,
    now: datetime,
) -> None:
    """The split before the bandit's first move (a sample-ratio check needs what was served)."""
    rotation = rotation_of(container, principal, spec)
    weights = {item.key: item.weight for item in rotation.items if item.key in spec.arms}
    with transaction(container.engine) as conn:
        if not store.weight_history(conn, experiment_id):
            store.add_weights(conn, experiment_id, now, weights)


def _experiment(row: store.ExperimentRow) -> Experiment:
    return Experiment(
        id=row.id,
        workspace_id=row.workspace_id,
        spec=replace(parse_experiment(row.data), status=ExperimentStatus(row.status)),
        next_allocation_at=row.next_allocation_at,
        created_at=row.created_at,
        updated_at=row.updated_at,
        archived_at=row.archived_at,
    )


def _next_allocation(spec: ExperimentSpec, now: datetime) -> datetime | None:
    running = spec.status is ExperimentStatus.RUNNING
    return now if spec.allocation and running else None


def create_experiment(
    container: Container, principal: Principal, data: Mapping[str, Any]
) -> Experiment:
    """Validate and store an experiment (its arms must exist in the campaign's rotation)."""
    require_optimizer_writer(principal)
    spec = parse_experiment(data)
    now = container.clock.now()
    if spec.start is None:
        zone = workspace_zone(container, principal.workspace_id)
        spec = replace(spec, start=now.astimezone(zone).date())
    _check_references(container, principal, spec)
    row = store.ExperimentRow(
        id=new_id("exp"),
        workspace_id=principal.workspace_id,
        name=spec.name,
        campaign_id=spec.campaign_id,
        status=spec.status.value,
        data=experiment_to_data(spec),
        next_allocation_at=_next_allocation(spec, now),
        created_at=now,
        updated_at=now,
        archived_at=None,
    )
    with transaction(container.engine) as conn:
        store.insert_experiment_row(conn, row)
    if spec.allocation:
        _record_initial_weights(container, principal, row.id, spec, now)
    return _experiment(row)


def _row(container: Container, workspace_id: str, experiment_id: str) -> store.ExperimentRow:
    with transaction(container.engine) as conn:
        row = store.get_experiment_row(conn, workspace_id, experiment_id)
    if row is None:
        raise NotFoundError(f"no experiment with id {experiment_id!r} in this workspace")
    return row


def get_experiment(container: Container, principal: Principal, experiment_id: str) -> Experiment:
    """One experiment of the caller's workspace."""
    require_optimizer_reader(principal)
    return _experiment(_row(container, principal.workspace_id, experiment_id))


def list_experiments(
    container: Container, principal: Principal, *, include_archived: bool = False
) -> list[Experiment]:
    """The workspace's experiments, oldest first."""
    require_optimizer_reader(principal)
    with transaction(container.engine) as conn:
        rows = store.list_experiment_rows(
            conn, principal.workspace_id, include_archived=include_archived
        )
    return [_experiment(row) for row in rows]


def update_experiment(
    container: Container, principal: Principal, experiment_id: str, changes: Mapping[str, Any]
) -> Experiment:
    """Change the fields given (e.g. stop it, or switch the bandit on); arms and campaign stay."""
    require_optimizer_writer(principal)
    row = _row(container, principal.workspace_id, experiment_id)
    if row.archived_at is not None:
        raise ValidationError(f"experiment {experiment_id} is archived", field="id")
    for name in ("arm_kind", "campaign_id", "offer_id", "arms"):
        if name in changes and changes[name] != row.data.get(name):
            raise ValidationError(
                f"{name} cannot change once an experiment runs; create a new experiment",
                field=name,
            )
    spec = parse_experiment({**row.data, **changes})
    _check_references(container, principal, spec)
    now = container.clock.now()
    next_at = row.next_allocation_at
    if not spec.allocation or spec.status is ExperimentStatus.STOPPED:
        next_at = None
    elif next_at is None:
        next_at = now
    updated = replace(
        row,
        name=spec.name,
        status=spec.status.value,
        data=experiment_to_data(spec),
        next_allocation_at=next_at,
        updated_at=now,
    )
    with transaction(container.engine) as conn:
        store.update_experiment_row(conn, updated)
    if spec.allocation:
        _record_initial_weights(container, principal, experiment_id, spec, now)
    return _experiment(updated)


def archive_experiment(
    container: Container, principal: Principal, experiment_id: str
) -> Experiment:
    """Stop an experiment for good (its weights history and audit rows stay)."""
    require_optimizer_writer(principal)
    row = _row(container, principal.workspace_id, experiment_id)
    if row.archived_at is None:
        with transaction(container.engine) as conn:
            store.archive_experiment_row(conn, experiment_id, container.clock.now())
    return _experiment(_row(container, principal.workspace_id, experiment_id))


def next_allocation_after(spec: ExperimentSpec, at: datetime) -> datetime:
    """When a bandit allocation that ran at `at` runs again."""
    return at + timedelta(minutes=spec.allocation_interval_minutes)
