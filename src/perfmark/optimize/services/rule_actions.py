"""Carry out a fired rule's actions through the catalog services (so every check still applies).

How each action reaches the tracker:

- campaign pause/resume: the campaign's status (paused/active), with its legal transitions;
- publisher pause/resume: the status of the publisher's links (of the rule's campaigns);
- sub id pause/resume: the status of the publisher's links that fix that sub id (`sub1` by
  default). A sub id the publisher passes as a URL parameter cannot be blocked by perfmark:
  the action then fails and says so (split the traffic into one link per sub id);
- creative/landing page pause: the item leaves the campaign's rotation and is parked (kept)
  so that resume puts it back; the last item of a rotation is never removed;
- change_bid: the advertiser's CPC/CPM price (`pays.amount`); on a publisher, that
  publisher's price override, created from the campaign's price when there is none;
- change_payout: what the publisher earns (fixed amount, and the percent of revshare/hybrid);
- change_budget: the campaign's daily budget (never above its total budget);
- shift_rotation_weight: the item's rotation weight (at least 1);
- send_webhook: a JSON POST of the evaluation through the injected HTTP client.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import httpx

from perfmark.adapters.store.codec import encode_spec
from perfmark.adapters.store.engine import transaction
from perfmark.adapters.store.kinds import CAMPAIGNS, LINKS, OFFERS
from perfmark.domain.campaigns import CampaignSpec, CampaignStatus
from perfmark.domain.links import LinkStatus, TrackingLinkSpec
from perfmark.domain.offers import OfferSpec, WeightedUrl
from perfmark.domain.pricing import BillableEvent, Price, PricingRule
from perfmark.domain.records import Record
from perfmark.errors import PerfmarkError
from perfmark.optimize import store
from perfmark.optimize.domain.rule_evaluation import RuleEvaluation
from perfmark.optimize.domain.rules import Action, ActionKind, ScopeKind
from perfmark.optimize.services.rules import split_target
from perfmark.services import catalog
from perfmark.services.container import Container, Principal

__all__ = [
    "BID_QUANTUM",
    "WEBHOOK_TIMEOUT_S",
    "ActionOutcome",
    "ActionTarget",
    "all_records",
    "apply_action",
    "item_json",
    "webhook_payload",
]

#: Bids and payouts keep 4 decimals (fractional-cent CPC bids are common).
BID_QUANTUM = Decimal("0.0001")
_CENT = Decimal("0.01")
WEBHOOK_TIMEOUT_S = 10.0
_HUNDRED = Decimal(100)
_ROTATION_FIELD = {ScopeKind.LANDING_PAGE: "landing_pages", ScopeKind.CREATIVE: "creatives"}


@dataclass(frozen=True)
class ActionTarget:
    """Where a rule acts: the target, and the campaigns it is limited to."""

    kind: ScopeKind
    target_id: str
    campaign_ids: tuple[str, ...] = ()
    sub_field: str = "sub1"


@dataclass(frozen=True)
class ActionOutcome:
    """What one action did (or why it could not), with the values before and after."""

    action: str
    ok: bool
    changed: bool
    detail: str
    before: Any = None
    after: Any = None

    def to_json(self) -> dict[str, Any]:
        """JSON-safe form for the audit log and the API."""
        return {
            "action": self.action,
            "ok": self.ok,
            "changed": self.changed,
            "detail": self.detail,
            "before": self.before,
            "after": self.after,
        }


def all_records(
    container: Container,
    principal: Principal,
    kind: Any,
    filters: dict[str, str] | None = None,
) -> list[Record[Any]]:
    """Every live object of a kind matching `filters` (all pages)."""
    records: list[Record[Any]] = []
    cursor = None
    while True:
        page = catalog.list_objects(
            container, principal, kind, filters=filters, cursor=cursor, limit=200
        )
        records.extend(page.items)
        if page.next_cursor is None:
            return records
        cursor = page.next_cursor


def _scaled(amount: Decimal, percent: Decimal, quantum: Decimal) -> Decimal:
    return (amount * (1 + percent / _HUNDRED)).quantize(quantum, rounding=ROUND_HALF_UP)


def _scaled_price(price: Price, percent: Decimal) -> Price:
    amount = _scaled(price.amount, percent, BID_QUANTUM) if price.amount else price.amount
    share = price.percent
    if share:
        share = min(_scaled(share, percent, BID_QUANTUM), _HUNDRED)
    return replace(price, amount=amount, percent=share)


def _is_traffic_price(rule: PricingRule) -> bool:
    return rule.event in (BillableEvent.CLICK, BillableEvent.IMPRESSION)


def _pricing_json(spec: CampaignSpec, rules: list[PricingRule]) -> list[Any]:
    encoded: list[Any] = encode_spec(replace(spec, pricing=tuple(rules)))["pricing"]
    return encoded


def _prices(rules: tuple[PricingRule, ...]) -> list[dict[str, str | None]]:
    return [
        {
            "event": rule.event.value,
            "publisher_id": rule.publisher_id,
            "pays": f"{rule.pays.model.value} {rule.pays.amount} {rule.pays.percent}%",
            "earns": f"{rule.earns.model.value} {rule.earns.amount} {rule.earns.percent}%",
        }
        for rule in rules
    ]


class _Refused(Exception):
    """An action that cannot be carried out; the message says why."""


def _update(
    container: Container, principal: Principal, kind: Any, object_id: str, changes: dict[str, Any]
) -> Record[Any]:
    try:
        return catalog.update_object(container, principal, kind, object_id, changes)
    except PerfmarkError as exc:
        raise _Refused(exc.message) from None


def _campaign(container: Container, principal: Principal, campaign_id: str) -> Record[Any]:
    try:
        return catalog.get_object(container, principal, CAMPAIGNS, campaign_id)
    except PerfmarkError as exc:
        raise _Refused(exc.message) from None


def _campaign_status(
    container: Container, principal: Principal, campaign_id: str, resume: bool
) -> ActionOutcome:
    record = _campaign(container, principal, campaign_id)
    before = record.spec.status
    wanted = CampaignStatus.ACTIVE if resume else CampaignStatus.PAUSED
    verb = "resume" if resume else "pause"
    if before is wanted:
        return ActionOutcome(verb, True, False, f"campaign {campaign_id} is already {wanted}")
    _update(container, principal, CAMPAIGNS, campaign_id, {"status": wanted.value})
    return ActionOutcome(
        verb,
        True,
        True,
        f"campaign {campaign_id}: {before} -> {wanted}",
        before.value,
        wanted.value,
    )


def _change_pricing(
    container: Container,
    principal: Principal,
    campaign_id: str,
    action: Action,
    publisher_id: str | None,
) -> ActionOutcome:
    assert action.percent is not None
    record = _campaign(container, principal, campaign_id)
    spec: CampaignSpec = record.spec
    bid = action.kind is ActionKind.CHANGE_BID
    rules = list(spec.pricing)
    changed_any = False
    for index, rule in enumerate(rules):
        if publisher_id is not None and rule.publisher_id != publisher_id:
            continue
        if bid and not _is_traffic_price(rule):
            continue
        if bid:
            rules[index] = replace(rule, pays=_scaled_price(rule.pays, action.percent))
        else:
            rules[index] = replace(rule, earns=_scaled_price(rule.earns, action.percent))
        changed_any = True
    if not changed_any and publisher_id is not None:
        # No override for this publisher yet: start one from the campaign's general price.
        for rule in spec.pricing:
            if rule.publisher_id is None and (_is_traffic_price(rule) or not bid):
                override = replace(rule, publisher_id=publisher_id, tiers=())
                if bid:
                    override = replace(override, pays=_scaled_price(rule.pays, action.percent))
                else:
                    override = replace(override, earns=_scaled_price(rule.earns, action.percent))
                rules.append(override)
                changed_any = True
    if not changed_any:
        what = "CPC or CPM price" if bid else "price"
        scope = f" for publisher {publisher_id}" if publisher_id else ""
        raise _Refused(f"campaign {campaign_id} has no {what}{scope} to change")
    updated = _update(
        container, principal, CAMPAIGNS, campaign_id, {"pricing": _pricing_json(spec, rules)}
    )
    return ActionOutcome(
        action.describe(),
        True,
        True,
        f"campaign {campaign_id}: {'bid' if bid else 'payout'} {action.percent:+}%"
        + (f" for publisher {publisher_id}" if publisher_id else ""),
        _prices(spec.pricing),
        _prices(updated.spec.pricing),
    )


def _change_budget(
    container: Container, principal: Principal, campaign_id: str, action: Action
) -> ActionOutcome:
    assert action.percent is not None
    spec: CampaignSpec = _campaign(container, principal, campaign_id).spec
    if spec.daily_budget is None:
        raise _Refused(f"campaign {campaign_id} has no daily_budget to change; set one first")
    new = max(_scaled(spec.daily_budget, action.percent, _CENT), _CENT)
    note = ""
    if spec.total_budget is not None and new > spec.total_budget:
        new, note = spec.total_budget, f" (held at the total budget {spec.total_budget})"
    _update(container, principal, CAMPAIGNS, campaign_id, {"daily_budget": str(new)})
    return ActionOutcome(
        action.describe(),
        True,
        new != spec.daily_budget,
        f"campaign {campaign_id}: daily budget {spec.daily_budget} -> {new}{note}",
        str(spec.daily_budget),
        str(new),
    )


def _links_of(
    container: Container, principal: Principal, target: ActionTarget, publisher_id: str
) -> list[Record[Any]]:
    links = all_records(container, principal, LINKS, {"publisher_id": publisher_id})
    if target.campaign_ids:
        links = [link for link in links if link.spec.campaign_id in target.campaign_ids]
    return links


def _link_status(
    container: Container,
    principal: Principal,
    links: list[Record[Any]],
    resume: bool,
    what: str,
) -> ActionOutcome:
    wanted = LinkStatus.ACTIVE if resume else LinkStatus.PAUSED
    verb = "resume" if resume else "pause"
    changed = []
    for link in links:
        spec: TrackingLinkSpec = link.spec
        if spec.status is not wanted:
            _update(container, principal, LINKS, link.id, {"status": wanted.value})
            changed.append(link.id)
    detail = (
        f"{what}: {len(changed)} of {len(links)} link(s) set to {wanted.value}"
        if changed
        else f"{what}: all {len(links)} link(s) already {wanted.value}"
    )
    return ActionOutcome(verb, True, bool(changed), detail, None, changed)


def _rotation(
    container: Container, principal: Principal, spec: CampaignSpec, field: str
) -> list[WeightedUrl]:
    items = list(getattr(spec, field))
    if field == "landing_pages" and not items:
        # The campaign rotates its offer's pages: they become the campaign's own to change.
        offer: Record[OfferSpec] = catalog.get_object(container, principal, OFFERS, spec.offer_id)
        items = list(offer.spec.landing_pages)
    return items


def item_json(item: WeightedUrl) -> dict[str, Any]:
    return {"key": item.key, "url": item.url, "weight": item.weight, "name": item.name}


def _set_rotation(
    container: Container, principal: Principal, campaign_id: str, field: str, items: list[Any]
) -> None:
    _update(container, principal, CAMPAIGNS, campaign_id, {field: [item_json(i) for i in items]})


def _rotation_action(
    container: Container, principal: Principal, target: ActionTarget, action: Action
) -> ActionOutcome:
    campaign_id, key = split_target(target.kind, target.target_id)
    field = _ROTATION_FIELD[target.kind]
    spec: CampaignSpec = _campaign(container, principal, campaign_id).spec
    items = _rotation(container, principal, spec, field)
    keys = [item.key for item in items]
    label = f"{target.kind.value} {key} of campaign {campaign_id}"
    if action.kind is ActionKind.SHIFT_ROTATION_WEIGHT:
        assert action.percent is not None
        if key not in keys:
            raise _Refused(f"{label} is not in the rotation (is it paused?)")
        index = keys.index(key)
        before = items[index].weight
        after = max(int(_scaled(Decimal(before), action.percent, Decimal(1))), 1)
        items[index] = replace(items[index], weight=after)
        _set_rotation(container, principal, campaign_id, field, items)
        return ActionOutcome(
            action.describe(),
            True,
            after != before,
            f"{label}: weight {before} -> {after}",
            before,
            after,
        )
    now = container.clock.now()
    if action.kind is ActionKind.PAUSE:
        if key not in keys:
            return ActionOutcome("pause", True, False, f"{label} is already out of the rotation")
        if len(items) == 1:
            raise _Refused(f"{label} is the last item of its rotation; pause the campaign instead")
        item = items.pop(keys.index(key))
        _set_rotation(container, principal, campaign_id, field, items)
        with transaction(container.engine) as conn:
            store.park_item(
                conn, principal.workspace_id, campaign_id, field, key, item_json(item), now
            )
        return ActionOutcome(
            "pause", True, True, f"{label} taken out of the rotation", keys, [i.key for i in items]
        )
    if key in keys:
        return ActionOutcome("resume", True, False, f"{label} is already in the rotation")
    with transaction(container.engine) as conn:
        parked = store.unpark_item(conn, campaign_id, field, key)
    if parked is None:
        raise _Refused(f"{label} was not paused by a rule, so there is nothing to put back")
    items.append(WeightedUrl(**parked))
    _set_rotation(container, principal, campaign_id, field, items)
    return ActionOutcome(
        "resume", True, True, f"{label} put back in the rotation", keys, [i.key for i in items]
    )


def webhook_payload(evaluation: RuleEvaluation) -> dict[str, Any]:
    """What a rule's webhook receives: the verdict and every compared number."""
    return {
        "rule_id": evaluation.rule_id,
        "rule_name": evaluation.rule_name,
        "target_kind": evaluation.scope_kind.value,
        "target_id": evaluation.target_id,
        "evaluated_at": evaluation.evaluated_at.isoformat(),
        "status": evaluation.status.value,
        "reason": evaluation.reason,
        "conditions": [
            {
                "condition": c.condition,
                "value_now": None if c.value_now is None else str(c.value_now),
                "value_previous": None if c.value_previous is None else str(c.value_previous),
                "compared_value": None if c.compared_value is None else str(c.compared_value),
                "threshold": str(c.threshold),
                "met": c.met,
            }
            for c in evaluation.conditions
        ],
    }


def _webhook(
    action: Action, evaluation: RuleEvaluation, http: httpx.Client | None
) -> ActionOutcome:
    assert action.webhook_url is not None
    payload = webhook_payload(evaluation)
    try:
        if http is None:
            with httpx.Client(timeout=WEBHOOK_TIMEOUT_S) as client:
                response = client.post(action.webhook_url, json=payload)
        else:
            response = http.post(action.webhook_url, json=payload, timeout=WEBHOOK_TIMEOUT_S)
    except httpx.HTTPError as exc:
        return ActionOutcome(
            action.describe(), False, False, f"webhook failed: {exc.__class__.__name__}: {exc}"
        )
    ok = response.is_success
    return ActionOutcome(
        action.describe(),
        ok,
        ok,
        f"webhook answered HTTP {response.status_code}",
        None,
        response.status_code,
    )


def _for_publisher(
    container: Container, principal: Principal, target: ActionTarget, action: Action
) -> ActionOutcome:
    publisher_id = target.target_id
    if action.kind in (ActionKind.PAUSE, ActionKind.RESUME):
        links = _links_of(container, principal, target, publisher_id)
        if not links:
            raise _Refused(f"publisher {publisher_id} has no links in the rule's campaigns")
        return _link_status(
            container,
            principal,
            links,
            action.kind is ActionKind.RESUME,
            f"publisher {publisher_id}",
        )
    campaign_ids = sorted(
        {link.spec.campaign_id for link in _links_of(container, principal, target, publisher_id)}
    )
    if not campaign_ids:
        raise _Refused(f"publisher {publisher_id} has no links in the rule's campaigns")
    outcomes = [
        _change_pricing(container, principal, campaign_id, action, publisher_id)
        for campaign_id in campaign_ids
    ]
    return ActionOutcome(
        action.describe(),
        True,
        any(o.changed for o in outcomes),
        "; ".join(o.detail for o in outcomes),
        [o.before for o in outcomes],
        [o.after for o in outcomes],
    )


def _for_sub_id(
    container: Container, principal: Principal, target: ActionTarget, action: Action
) -> ActionOutcome:
    publisher_id, sub = split_target(target.kind, target.target_id)
    links = [
        link
        for link in _links_of(container, principal, target, publisher_id)
        if getattr(link.spec, target.sub_field) == sub
    ]
    if not links:
        raise _Refused(
            f"no link of publisher {publisher_id} fixes {target.sub_field}={sub!r}; a sub id "
            "sent as a URL parameter cannot be blocked by perfmark: ask the publisher to "
            "exclude it, or give that traffic its own link with the sub id fixed"
        )
    return _link_status(
        container,
        principal,
        links,
        action.kind is ActionKind.RESUME,
        f"{target.sub_field} {sub!r} of publisher {publisher_id}",
    )


def _for_campaign(
    container: Container, principal: Principal, target: ActionTarget, action: Action
) -> ActionOutcome:
    if action.kind in (ActionKind.PAUSE, ActionKind.RESUME):
        return _campaign_status(
            container, principal, target.target_id, action.kind is ActionKind.RESUME
        )
    if action.kind is ActionKind.CHANGE_BUDGET:
        return _change_budget(container, principal, target.target_id, action)
    return _change_pricing(container, principal, target.target_id, action, None)


_HANDLERS: dict[
    ScopeKind, Callable[[Container, Principal, ActionTarget, Action], ActionOutcome]
] = {
    ScopeKind.CAMPAIGN: _for_campaign,
    ScopeKind.PUBLISHER: _for_publisher,
    ScopeKind.SUB_ID: _for_sub_id,
    ScopeKind.CREATIVE: _rotation_action,
    ScopeKind.LANDING_PAGE: _rotation_action,
}


def apply_action(
    container: Container,
    principal: Principal,
    target: ActionTarget,
    action: Action,
    evaluation: RuleEvaluation,
    http: httpx.Client | None = None,
) -> ActionOutcome:
    """Do one action on one target; a refusal is an outcome with `ok=False`, never a raise."""
    if action.kind is ActionKind.SEND_WEBHOOK:
        return _webhook(action, evaluation, http)
    try:
        return _HANDLERS[target.kind](container, principal, target, action)
    except _Refused as exc:
        return ActionOutcome(action.describe(), False, False, str(exc))
