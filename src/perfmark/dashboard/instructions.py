"""How to send a campaign's conversions: the postback URL, the pixel and the JS snippet."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from perfmark.adapters.store.kinds import ADVERTISERS, CAMPAIGNS, GOALS
from perfmark.domain.accounts import WRITE_ROLES, Role
from perfmark.domain.campaigns import CampaignSpec
from perfmark.domain.offers import GoalSpec
from perfmark.domain.parties import AdvertiserSpec
from perfmark.domain.records import Record
from perfmark.services import accounts, catalog
from perfmark.services.container import Container, Principal

__all__ = ["GoalInstructions", "TrackingInstructions", "campaign_instructions"]

#: Shown instead of secrets to roles that may not read them (an admin fills them in).
HIDDEN_TOKEN = "ADVERTISER_TOKEN"  # noqa: S105 (a placeholder, not a secret)
HIDDEN_WRITE_KEY = "WRITE_KEY"


@dataclass(frozen=True)
class GoalInstructions:
    """For one goal of the campaign: a postback URL, a pixel tag and a snippet call."""

    goal_id: str
    goal_key: str
    goal_name: str
    postback_url: str
    pixel_tag: str
    snippet_call: str


@dataclass(frozen=True)
class TrackingInstructions:
    """Everything an advertiser's developer needs to report this campaign's conversions."""

    campaign_id: str
    advertiser_id: str
    snippet_tag: str
    goals: tuple[GoalInstructions, ...]
    secrets_shown: bool

    def to_json(self) -> dict[str, Any]:
        """The JSON twin's body."""
        return {
            "campaign_id": self.campaign_id,
            "advertiser_id": self.advertiser_id,
            "snippet_tag": self.snippet_tag,
            "secrets_shown": self.secrets_shown,
            "goals": [goal.__dict__ for goal in self.goals],
        }


def _param(advertiser: AdvertiserSpec, name: str) -> str:
    """The parameter name this advertiser's postbacks use for a field (its mapping, if any)."""
    return advertiser.postback_param_map.get(name, name)


def campaign_instructions(
    container: Container, principal: Principal, campaign_id: str
) -> TrackingInstructions:
    """Postback, pixel and snippet for each goal the campaign buys (secrets for admins only)."""
    campaign: Record[CampaignSpec] = catalog.get_object(
        container, principal, CAMPAIGNS, campaign_id
    )
    spec = campaign.spec
    shown = principal.role in WRITE_ROLES
    reader = Principal(principal.workspace_id, Role.ANALYST, actor_id=principal.actor_id)
    advertiser: Record[AdvertiserSpec] = catalog.get_object(
        container, principal, ADVERTISERS, spec.advertiser_id
    )
    token = (
        catalog.postback_secret(container, principal, ADVERTISERS, spec.advertiser_id)
        if shown
        else HIDDEN_TOKEN
    )
    write_key = accounts.workspace_write_key(container, principal) if shown else HIDDEN_WRITE_KEY
    base = container.settings.base_url.rstrip("/")
    goals = []
    for goal_id in spec.goal_ids:
        # Read-only staff rights for the goals: an advertiser user, who may see this campaign
        # (checked above), may see the goals it buys, though not the workspace's goal list.
        goal: Record[GoalSpec] = catalog.get_object(container, reader, GOALS, goal_id)
        ad = advertiser.spec
        query = "&".join(
            (
                f"token={quote(token)}",
                f"{_param(ad, 'click_id')}={{click_id}}",
                f"{_param(ad, 'goal')}={goal.spec.key}",
                f"{_param(ad, 'value')}={{value}}",
                f"{_param(ad, 'currency')}={goal.spec.currency}",
                f"{_param(ad, 'txid')}={{transaction_id}}",
            )
        )
        event = goal.spec.event_names[0] if goal.spec.event_names else goal.spec.key
        goals.append(
            GoalInstructions(
                goal_id=goal_id,
                goal_key=goal.spec.key,
                goal_name=goal.spec.name,
                postback_url=f"{base}/postback?{query}",
                pixel_tag=(
                    f'<img src="{base}/p.gif?wk={write_key}&goal={goal.spec.key}'
                    '&value={value}&txid={transaction_id}" width="1" height="1" alt="">'
                ),
                snippet_call=(
                    f"perfmark.track({_js_string(event)}, "
                    "{revenue: ORDER_TOTAL, order_id: 'ORDER_ID'});"
                ),
            )
        )
    return TrackingInstructions(
        campaign_id=campaign.id,
        advertiser_id=spec.advertiser_id,
        snippet_tag=f'<script src="{base}/t.js" data-write-key="{write_key}" async></script>',
        goals=tuple(goals),
        secrets_shown=shown,
    )


def _js_string(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("'", "\\'")
    return f"'{escaped}'"
