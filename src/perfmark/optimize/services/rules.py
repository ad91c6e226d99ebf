"""Automated rules as stored objects: create, read, change, archive, and check the set."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from perfmark.adapters.store.codec import check_storable
from perfmark.adapters.store.engine import transaction
from perfmark.adapters.store.schema import campaigns, publishers
from perfmark.domain.accounts import WRITE_ROLES, Role
from perfmark.domain.links import SUB_FIELDS
from perfmark.errors import ForbiddenError, NotFoundError, ValidationError
from perfmark.ids import new_id
from perfmark.optimize import store
from perfmark.optimize.domain.rule_cycles import RuleWarning, check_rule_set
from perfmark.optimize.domain.rules import ActionKind, Rule, ScopeKind, parse_rule
from perfmark.optimize.services.metrics import check_goal
from perfmark.services.container import Container, Principal

__all__ = [
    "ALLOWED_ACTIONS",
    "RULE_FIELDS",
    "SavedRule",
    "StoredRule",
    "archive_rule",
    "create_rule",
    "get_rule",
    "list_rules",
    "next_run_after",
    "require_optimizer_reader",
    "require_optimizer_writer",
    "rule_set_warnings",
    "rule_to_data",
    "split_target",
    "update_rule",
]

_ALL_KINDS = frozenset(ActionKind)
#: What a rule may do to each kind of target (checked when the rule is saved).
ALLOWED_ACTIONS: dict[ScopeKind, frozenset[ActionKind]] = {
    ScopeKind.CAMPAIGN: _ALL_KINDS - {ActionKind.SHIFT_ROTATION_WEIGHT},
    ScopeKind.PUBLISHER: frozenset(
        {
            ActionKind.PAUSE,
            ActionKind.RESUME,
            ActionKind.CHANGE_BID,
            ActionKind.CHANGE_PAYOUT,
            ActionKind.SEND_WEBHOOK,
        }
    ),
    ScopeKind.SUB_ID: frozenset({ActionKind.PAUSE, ActionKind.RESUME, ActionKind.SEND_WEBHOOK}),
    ScopeKind.CREATIVE: frozenset(
        {
            ActionKind.PAUSE,
            ActionKind.RESUME,
            ActionKind.SHIFT_ROTATION_WEIGHT,
            ActionKind.SEND_WEBHOOK,
        }
    ),
}
ALLOWED_ACTIONS[ScopeKind.LANDING_PAGE] = ALLOWED_ACTIONS[ScopeKind.CREATIVE]
#: Fields of a rule's JSON besides the domain rule's own.
RULE_FIELDS = ("goal", "campaign_ids", "sub_field")
#: Target ids of these kinds are "<campaign or publisher id>:<key or sub id>".
_COMPOSITE = frozenset({ScopeKind.SUB_ID, ScopeKind.CREATIVE, ScopeKind.LANDING_PAGE})


def require_optimizer_reader(principal: Principal) -> None:
    """Portal keys (advertiser, publisher) do not see the optimizer."""
    if principal.role in (Role.ADVERTISER, Role.PUBLISHER):
        raise ForbiddenError(
            f"a {principal.role.value} key cannot use the optimizer; use an owner, admin or "
            "analyst key"
        )


def require_optimizer_writer(principal: Principal) -> None:
    """Only owners and admins change rules, experiments and budgets."""
    if principal.role not in WRITE_ROLES:
        raise ForbiddenError(
            f"the {principal.role.value} role is read-only here; use an owner or admin key"
        )


@dataclass(frozen=True)
class StoredRule:
    """A rule as stored: the domain rule plus what it counts (goal) and where (campaigns)."""

    rule: Rule
    workspace_id: str
    goal: str | None
    campaign_ids: tuple[str, ...]
    sub_field: str
    created_at: datetime
    updated_at: datetime
    next_run_at: datetime | None
    last_run_at: datetime | None
    archived_at: datetime | None

    @property
    def id(self) -> str:
        """The rule's id."""
        return self.rule.rule_id


@dataclass(frozen=True)
class SavedRule:
    """A rule just saved, with the warnings about the workspace's rule set it is part of."""

    rule: StoredRule
    warnings: tuple[RuleWarning, ...]


def split_target(kind: ScopeKind, target_id: str) -> tuple[str, str]:
    """("cmp_1", "lp-a") from "cmp_1:lp-a"; ("cmp_1", "") for a plain id."""
    if kind not in _COMPOSITE:
        return target_id, ""
    owner, sep, key = target_id.partition(":")
    if not sep or not owner or not key:
        what = "publisher_id:sub id" if kind is ScopeKind.SUB_ID else "campaign_id:key"
        raise ValidationError(
            f"scope.target_ids {target_id!r} is not '{what}'; write e.g. "
            f"{'pub_...:banner-top' if kind is ScopeKind.SUB_ID else 'cmp_...:lp-a'}",
            field="scope.target_ids",
        )
    return owner, key


def rule_to_data(rule: Rule) -> dict[str, Any]:
    """The rule as JSON-safe data that `parse_rule` reads back (without its id)."""
    return {
        "name": rule.name,
        "scope": {"kind": rule.scope.kind.value, "target_ids": list(rule.scope.target_ids)},
        "conditions": [
            {
                "metric": c.metric,
                "operator": c.operator.value,
                "threshold": str(c.threshold),
                "comparison": c.comparison.value,
            }
            for c in rule.conditions
        ],
        "match": rule.match.value,
        "actions": [
            {
                "kind": a.kind.value,
                **({"percent": str(a.percent)} if a.percent is not None else {}),
                **({"webhook_url": a.webhook_url} if a.webhook_url is not None else {}),
            }
            for a in rule.actions
        ],
        "window_days": rule.window_days,
        "cooldown_hours": rule.cooldown_hours,
        "min_sample": [{"metric": g.metric, "minimum": str(g.minimum)} for g in rule.min_sample],
        "dry_run": rule.dry_run,
        "interval_minutes": rule.interval_minutes,
        "enabled": rule.enabled,
    }


def _text_ids(field: str, value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) and v for v in value):
        raise ValidationError(f"{field} must be a list of ids", field=field)
    return tuple(dict.fromkeys(value))


def _sub_field(value: object) -> str:
    if value is None:
        return "sub1"
    if value not in SUB_FIELDS:
        raise ValidationError(
            f"sub_field {value!r} is unknown; use one of {', '.join(SUB_FIELDS)}",
            field="sub_field",
        )
    return str(value)


def _check_references(
    container: Container, workspace_id: str, rule: Rule, campaign_ids: tuple[str, ...]
) -> None:
    kind = rule.scope.kind
    refused = [a.kind.value for a in rule.actions if a.kind not in ALLOWED_ACTIONS[kind]]
    if refused:
        allowed = ", ".join(sorted(a.value for a in ALLOWED_ACTIONS[kind]))
        raise ValidationError(
            f"action {refused[0]!r} does not apply to a {kind.value} target; a {kind.value} "
            f"rule may use {allowed}",
            field="actions",
        )
    owners = [split_target(kind, target)[0] for target in rule.scope.target_ids]
    wanted_campaigns = set(campaign_ids)
    wanted_publishers: set[str] = set()
    if kind in (ScopeKind.CAMPAIGN, ScopeKind.CREATIVE, ScopeKind.LANDING_PAGE):
        wanted_campaigns |= set(owners)
    else:
        wanted_publishers |= set(owners)
    with transaction(container.engine) as conn:
        for table, wanted, what in (
            (campaigns, wanted_campaigns, "campaign"),
            (publishers, wanted_publishers, "publisher"),
        ):
            if not wanted:
                continue
            found = set(
                conn.execute(
                    select(table.c.id).where(
                        table.c.workspace_id == workspace_id, table.c.id.in_(wanted)
                    )
                ).scalars()
            )
            missing = sorted(wanted - found)
            if missing:
                raise ValidationError(
                    f"{missing[0]!r} names no {what} in this workspace; list them at /api/{what}s",
                    field="campaign_ids"
                    if what == "campaign" and missing[0] in campaign_ids
                    else "scope.target_ids",
                )


def _parse(
    container: Container, workspace_id: str, rule_id: str, data: Mapping[str, Any]
) -> tuple[Rule, str | None, tuple[str, ...], str]:
    check_storable(dict(data))
    body = {key: value for key, value in data.items() if key not in RULE_FIELDS}
    body.pop("id", None)
    rule = parse_rule({**body, "rule_id": rule_id})
    campaign_ids = _text_ids("campaign_ids", data.get("campaign_ids"))
    goal = data.get("goal")
    if goal is not None and not isinstance(goal, str):
        raise ValidationError(f"goal is {goal!r}; give a goal key such as 'lead'", field="goal")
    goal = check_goal(container, workspace_id, goal)
    sub_field = _sub_field(data.get("sub_field"))
    _check_references(container, workspace_id, rule, campaign_ids)
    return rule, goal, campaign_ids, sub_field


def _stored(row: store.RuleRow) -> StoredRule:
    data = row.data
    rule = parse_rule({**data["rule"], "rule_id": row.id})
    return StoredRule(
        rule=rule,
        workspace_id=row.workspace_id,
        goal=data.get("goal"),
        campaign_ids=tuple(data.get("campaign_ids", ())),
        sub_field=data.get("sub_field", "sub1"),
        created_at=row.created_at,
        updated_at=row.updated_at,
        next_run_at=row.next_run_at,
        last_run_at=row.last_run_at,
        archived_at=row.archived_at,
    )


def _row_data(
    rule: Rule, goal: str | None, campaign_ids: Sequence[str], sub: str
) -> dict[str, Any]:
    return {
        "rule": rule_to_data(rule),
        "goal": goal,
        "campaign_ids": list(campaign_ids),
        "sub_field": sub,
    }


def _warnings_about(rules: Sequence[Rule], rule_id: str) -> tuple[RuleWarning, ...]:
    return tuple(w for w in check_rule_set(rules) if rule_id in w.rule_ids)


def _live_rules(container: Container, workspace_id: str) -> list[StoredRule]:
    with transaction(container.engine) as conn:
        rows = store.list_rule_rows(conn, workspace_id)
    return [_stored(row) for row in rows]


def create_rule(container: Container, principal: Principal, data: Mapping[str, Any]) -> SavedRule:
    """Validate and store a rule; warn (before it ever runs) when it clashes with others."""
    require_optimizer_writer(principal)
    rule_id = new_id("rule")
    rule, goal, campaign_ids, sub = _parse(container, principal.workspace_id, rule_id, data)
    others = [stored.rule for stored in _live_rules(container, principal.workspace_id)]
    warnings = _warnings_about([*others, rule], rule_id)
    now = container.clock.now()
    row = store.RuleRow(
        id=rule_id,
        workspace_id=principal.workspace_id,
        name=rule.name,
        data=_row_data(rule, goal, campaign_ids, sub),
        enabled=rule.enabled,
        next_run_at=now if rule.enabled else None,
        last_run_at=None,
        created_at=now,
        updated_at=now,
        archived_at=None,
    )
    with transaction(container.engine) as conn:
        store.insert_rule_row(conn, row)
    return SavedRule(_stored(row), warnings)


def _row(container: Container, workspace_id: str, rule_id: str) -> store.RuleRow:
    with transaction(container.engine) as conn:
        row = store.get_rule_row(conn, workspace_id, rule_id)
    if row is None:
        raise NotFoundError(f"no rule with id {rule_id!r} in this workspace")
    return row


def get_rule(container: Container, principal: Principal, rule_id: str) -> StoredRule:
    """One rule of the caller's workspace."""
    require_optimizer_reader(principal)
    return _stored(_row(container, principal.workspace_id, rule_id))


def list_rules(
    container: Container, principal: Principal, *, include_archived: bool = False
) -> list[StoredRule]:
    """The workspace's rules, oldest first."""
    require_optimizer_reader(principal)
    with transaction(container.engine) as conn:
        rows = store.list_rule_rows(conn, principal.workspace_id, include_archived=include_archived)
    return [_stored(row) for row in rows]


def update_rule(
    container: Container, principal: Principal, rule_id: str, changes: Mapping[str, Any]
) -> SavedRule:
    """Change the fields given (a list or the scope is replaced whole) and re-check the set."""
    require_optimizer_writer(principal)
    row = _row(container, principal.workspace_id, rule_id)
    if row.archived_at is not None:
        raise ValidationError(f"rule {rule_id} is archived; create a new rule", field="id")
    current = {**row.data["rule"], **{key: row.data.get(key) for key in RULE_FIELDS}}
    merged = {**current, **changes}
    rule, goal, campaign_ids, sub = _parse(container, principal.workspace_id, rule_id, merged)
    others = [
        stored.rule
        for stored in _live_rules(container, principal.workspace_id)
        if stored.id != rule_id
    ]
    warnings = _warnings_about([*others, rule], rule_id)
    now = container.clock.now()
    next_run = row.next_run_at
    if not rule.enabled:
        next_run = None
    elif next_run is None or "interval_minutes" in changes:
        next_run = now
    updated = replace(
        row,
        name=rule.name,
        data=_row_data(rule, goal, campaign_ids, sub),
        enabled=rule.enabled,
        next_run_at=next_run,
        updated_at=now,
    )
    with transaction(container.engine) as conn:
        store.update_rule_row(conn, updated)
    return SavedRule(_stored(updated), warnings)


def archive_rule(container: Container, principal: Principal, rule_id: str) -> StoredRule:
    """Stop a rule for good (its audit log is kept)."""
    require_optimizer_writer(principal)
    row = _row(container, principal.workspace_id, rule_id)
    if row.archived_at is None:
        with transaction(container.engine) as conn:
            store.archive_rule_row(conn, rule_id, container.clock.now())
    return _stored(_row(container, principal.workspace_id, rule_id))


def rule_set_warnings(container: Container, principal: Principal) -> tuple[RuleWarning, ...]:
    """Every warning about the workspace's live rules (cycles, rules that can never fire)."""
    require_optimizer_reader(principal)
    return check_rule_set(
        [stored.rule for stored in _live_rules(container, principal.workspace_id)]
    )


def next_run_after(rule: Rule, at: datetime) -> datetime:
    """When a rule that ran at `at` runs again."""
    return at + timedelta(minutes=rule.interval_minutes)
