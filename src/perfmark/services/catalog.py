"""Create, read, update, list and archive the objects of a workspace, with reference checks."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import Connection

from perfmark.adapters.store.codec import decode_spec, encode_spec
from perfmark.adapters.store.engine import transaction
from perfmark.adapters.store.kinds import (
    ADVERTISERS,
    CAMPAIGNS,
    GOALS,
    KINDS,
    LINKS,
    OFFERS,
    PUBLISHERS,
    USERS,
)
from perfmark.adapters.store.resources import ResourceKind, ResourceStore
from perfmark.domain.accounts import WRITE_ROLES, Role, UserSpec
from perfmark.domain.campaigns import CampaignSpec, CampaignStatus, check_transition
from perfmark.domain.links import TrackingLinkSpec
from perfmark.domain.offers import GoalSpec, OfferSpec
from perfmark.domain.records import Page, Record
from perfmark.errors import ForbiddenError, NotFoundError, ValidationError
from perfmark.services.container import Container, Principal

__all__ = [
    "archive_object",
    "create_object",
    "get_object",
    "kind_named",
    "list_objects",
    "postback_secret",
    "update_object",
]

#: Objects that carry a generated secret (inbound postback token or outbound signing key).
_SECRET_KINDS = frozenset({"advertisers", "publishers"})
_SECRET_BYTES = 24
#: Capped and ended describe what happened to a running campaign, so none starts that way.
_INITIAL_CAMPAIGN_STATUSES = frozenset(
    {CampaignStatus.DRAFT, CampaignStatus.ACTIVE, CampaignStatus.PAUSED}
)


def kind_named(name: str) -> ResourceKind[Any]:
    """The resource kind for an API path segment such as "campaigns"."""
    try:
        return KINDS[name]
    except KeyError:
        raise NotFoundError(
            f"there is no resource called {name!r}; known: {', '.join(KINDS)}"
        ) from None


def _require_write(principal: Principal) -> None:
    if principal.role not in WRITE_ROLES:
        raise ForbiddenError(
            f"the {principal.role.value} role is read-only here; use an owner or admin key"
        )


def _scope_filters(principal: Principal, kind: ResourceKind[Any]) -> dict[str, str]:
    """Filters that restrict portal roles to their own objects (and refuse the rest)."""
    # A portal key without its advertiser or publisher sees nothing, rather than everything.
    if principal.role is Role.ADVERTISER:
        own = {"advertisers": "id", "offers": "advertiser_id", "campaigns": "advertiser_id"}
        if kind.name in own and principal.advertiser_id:
            return {own[kind.name]: principal.advertiser_id}
    elif principal.role is Role.PUBLISHER:
        own = {"publishers": "id", "links": "publisher_id"}
        if kind.name in own and principal.publisher_id:
            return {own[kind.name]: principal.publisher_id}
    else:
        return {}
    raise ForbiddenError(f"the {principal.role.value} role cannot see {kind.name}")


def _visible(principal: Principal, kind: ResourceKind[Any], record: Record[Any]) -> bool:
    scope = _scope_filters(principal, kind)
    for column, value in scope.items():
        actual = record.id if column == "id" else getattr(record.spec, column)
        if actual != value:
            return False
    return True


@dataclass(frozen=True)
class _References:
    """Checks that the objects a spec names exist in the workspace and are not archived.

    `known` holds the ids the object already referred to before an update: those stay valid
    even once archived, so that e.g. a link of an archived campaign can still be paused.
    """

    conn: Connection
    workspace_id: str
    known: frozenset[str] = frozenset()

    def must_exist(self, kind: ResourceKind[Any], object_id: str, field: str) -> Record[Any]:
        record = ResourceStore(kind).get(self.conn, self.workspace_id, object_id)
        if record is None:
            raise ValidationError(
                f"{field} {object_id!r} names no {kind.singular} in this workspace; "
                f"list them at /api/{kind.name}",
                field=field,
            )
        if record.archived and object_id not in self.known:
            raise ValidationError(
                f"{field} {object_id!r} names an archived {kind.singular}; archived objects "
                "cannot be used in new references",
                field=field,
            )
        return record


def _check_offer(refs: _References, spec: OfferSpec) -> None:
    refs.must_exist(ADVERTISERS, spec.advertiser_id, "advertiser_id")


def _check_goal(refs: _References, spec: GoalSpec) -> None:
    if spec.advertiser_id:
        refs.must_exist(ADVERTISERS, spec.advertiser_id, "advertiser_id")


def _check_campaign(refs: _References, spec: CampaignSpec) -> None:
    advertiser = refs.must_exist(ADVERTISERS, spec.advertiser_id, "advertiser_id")
    offer = refs.must_exist(OFFERS, spec.offer_id, "offer_id")
    if offer.spec.advertiser_id != spec.advertiser_id:
        raise ValidationError(
            f"offer {spec.offer_id} belongs to advertiser {offer.spec.advertiser_id}, "
            f"not {spec.advertiser_id}",
            field="offer_id",
        )
    if spec.currency != advertiser.spec.currency:
        raise ValidationError(
            f"currency {spec.currency} differs from the advertiser's {advertiser.spec.currency}; "
            "budgets are kept in the advertiser's currency",
            field="currency",
        )
    for goal_id in spec.goal_ids:
        goal = refs.must_exist(GOALS, goal_id, "goal_ids")
        if goal.spec.advertiser_id and goal.spec.advertiser_id != spec.advertiser_id:
            raise ValidationError(
                f"goal {goal_id} belongs to advertiser {goal.spec.advertiser_id}, "
                f"not {spec.advertiser_id}; use a shared goal or one of this advertiser",
                field="goal_ids",
            )
    for rule in spec.pricing:
        if rule.publisher_id:
            refs.must_exist(PUBLISHERS, rule.publisher_id, "pricing.publisher_id")
    for cap in spec.caps:
        if cap.publisher_id:
            refs.must_exist(PUBLISHERS, cap.publisher_id, "caps.publisher_id")
        if cap.goal_id and cap.goal_id not in spec.goal_ids:
            raise ValidationError(
                f"cap names goal {cap.goal_id}, which is not in goal_ids", field="caps.goal_id"
            )


def _check_link(refs: _References, spec: TrackingLinkSpec) -> None:
    refs.must_exist(CAMPAIGNS, spec.campaign_id, "campaign_id")
    refs.must_exist(PUBLISHERS, spec.publisher_id, "publisher_id")


def _check_user(refs: _References, spec: UserSpec) -> None:
    if spec.advertiser_id:
        refs.must_exist(ADVERTISERS, spec.advertiser_id, "advertiser_id")
    if spec.publisher_id:
        refs.must_exist(PUBLISHERS, spec.publisher_id, "publisher_id")


_REFERENCE_CHECKS: dict[str, Callable[[_References, Any], None]] = {
    OFFERS.name: _check_offer,
    GOALS.name: _check_goal,
    CAMPAIGNS.name: _check_campaign,
    LINKS.name: _check_link,
    USERS.name: _check_user,
}


def _check_references(kind: ResourceKind[Any], refs: _References, spec: Any) -> None:
    check = _REFERENCE_CHECKS.get(kind.name)
    if check is not None:
        check(refs, spec)


def _strings_in(value: Any) -> frozenset[str]:
    """Every text value in an encoded spec: a superset of the ids it refers to."""
    if isinstance(value, str):
        return frozenset({value})
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list):
        return frozenset().union(*(_strings_in(item) for item in value))
    return frozenset()


def create_object(
    container: Container, principal: Principal, kind: ResourceKind[Any], spec: Any
) -> Record[Any]:
    """Validate references and store a new object in the caller's workspace."""
    _require_write(principal)
    if isinstance(spec, CampaignSpec) and spec.status not in _INITIAL_CAMPAIGN_STATUSES:
        raise ValidationError(
            f"a new campaign cannot start as {spec.status.value}; start it as "
            f"{', '.join(sorted(_INITIAL_CAMPAIGN_STATUSES))}",
            field="status",
        )
    with transaction(container.engine) as conn:
        _check_references(kind, _References(conn, principal.workspace_id), spec)
        extra = (
            {"postback_secret": secrets.token_urlsafe(_SECRET_BYTES)}
            if kind.name in _SECRET_KINDS
            else None
        )
        return ResourceStore(kind).insert(
            conn, principal.workspace_id, spec, container.clock.now(), extra
        )


def get_object(
    container: Container, principal: Principal, kind: ResourceKind[Any], object_id: str
) -> Record[Any]:
    """One object of the caller's workspace, or NotFoundError."""
    with transaction(container.engine) as conn:
        record = ResourceStore(kind).get(conn, principal.workspace_id, object_id)
    if record is None or not _visible(principal, kind, record):
        raise NotFoundError(f"no {kind.singular} with id {object_id!r} in this workspace")
    return record


def list_objects(
    container: Container,
    principal: Principal,
    kind: ResourceKind[Any],
    *,
    filters: Mapping[str, str] | None = None,
    cursor: str | None = None,
    limit: int = 50,
    include_archived: bool = False,
) -> Page[Record[Any]]:
    """A page of the caller's objects, filtered on indexed columns."""
    merged: dict[str, str | list[str]] = dict(filters or {})
    for column in merged:
        if column not in kind.filters:
            raise ValidationError(
                f"cannot filter {kind.name} by {column!r}; filter by one of "
                f"{', '.join(kind.filters) or 'nothing'}",
                field=column,
            )
    for column, own in _scope_filters(principal, kind).items():
        if column in merged and merged[column] != own:
            return Page((), None)  # asking for someone else's objects: there are none to see
        merged[column] = own
    with transaction(container.engine) as conn:
        return ResourceStore(kind).list(
            conn,
            principal.workspace_id,
            filters=merged,
            cursor=cursor,
            limit=limit,
            include_archived=include_archived,
        )


def update_object(
    container: Container,
    principal: Principal,
    kind: ResourceKind[Any],
    object_id: str,
    changes: Mapping[str, Any],
) -> Record[Any]:
    """Apply a partial change (the fields given), re-validating the whole object."""
    _require_write(principal)
    store = ResourceStore(kind)
    with transaction(container.engine) as conn:
        stored = store.stored(conn, principal.workspace_id, object_id)
        if stored is None:
            raise NotFoundError(f"no {kind.singular} with id {object_id!r} in this workspace")
        if stored.archived:
            raise ValidationError(
                f"{kind.singular} {object_id} is archived; archived objects cannot change",
                field="id",
            )
        frozen = _immutable_fields(kind)
        for name in changes:
            if name in frozen:
                raise ValidationError(
                    f"{name} cannot change after creation; create a new {kind.singular}",
                    field=name,
                )
        previous = _decoded_or_none(kind, stored.spec)
        # An object whose stored data no longer validates is repaired by the change: its
        # stored fields, with the change on top, must validate now.
        before = encode_spec(previous) if previous is not None else stored.spec
        spec = decode_spec(kind.spec_type, {**before, **changes})
        if isinstance(spec, CampaignSpec):
            status = previous.status if previous is not None else _stored_status(before)
            if status is not None:
                check_transition(status, spec.status)
        refs = _References(conn, principal.workspace_id, _strings_in(before))
        _check_references(kind, refs, spec)
        return store.replace(conn, stored, spec, container.clock.now())


def _decoded_or_none(kind: ResourceKind[Any], data: dict[str, Any]) -> Any:
    """The spec of stored data, or None when the data no longer passes validation."""
    try:
        return decode_spec(kind.spec_type, data)
    except ValidationError:
        return None


def _stored_status(data: Mapping[str, Any]) -> CampaignStatus | None:
    """A stored campaign's status when it is a known one (the check of a repair needs it)."""
    try:
        return CampaignStatus(data.get("status", CampaignStatus.DRAFT.value))
    except ValueError:
        return None


def _immutable_fields(kind: ResourceKind[Any]) -> frozenset[str]:
    # Ledger entries and events refer to these; changing them would rewrite history.
    return {
        "campaigns": frozenset({"advertiser_id", "currency"}),
        "links": frozenset({"campaign_id", "publisher_id", "slug"}),
        "offers": frozenset({"advertiser_id"}),
        "goals": frozenset({"key"}),
        "advertisers": frozenset({"currency"}),
        "users": frozenset({"email"}),
    }.get(kind.name, frozenset())


def archive_object(
    container: Container, principal: Principal, kind: ResourceKind[Any], object_id: str
) -> Record[Any]:
    """Hide an object from default lists and stop it from being used; history is kept."""
    _require_write(principal)
    store = ResourceStore(kind)
    with transaction(container.engine) as conn:
        stored = store.stored(conn, principal.workspace_id, object_id)
        if stored is None:
            raise NotFoundError(f"no {kind.singular} with id {object_id!r} in this workspace")
        previous = _decoded_or_none(kind, stored.spec)
        if previous is None:
            # Data that no longer validates is archived as it is: nothing uses it any more.
            if stored.archived:
                return stored
            return store.archive_as_stored(conn, stored, container.clock.now())
        record = replace(stored, spec=previous)
        if record.archived:
            return record
        spec = record.spec
        if isinstance(spec, CampaignSpec) and spec.status is not CampaignStatus.ENDED:
            spec = replace(spec, status=CampaignStatus.ENDED)
        now = container.clock.now()
        return store.replace(conn, record, spec, now, archived_at=now)


def postback_secret(
    container: Container, principal: Principal, kind: ResourceKind[Any], object_id: str
) -> str:
    """The secret of an advertiser (inbound postbacks) or publisher (outbound signatures)."""
    _require_write(principal)
    if kind.name not in _SECRET_KINDS:
        raise NotFoundError(f"{kind.name} have no postback secret")
    with transaction(container.engine) as conn:
        secret = ResourceStore(kind).get_column(
            conn, principal.workspace_id, object_id, "postback_secret"
        )
    if secret is None:
        raise NotFoundError(f"no {kind.singular} with id {object_id!r} in this workspace")
    return str(secret)
