"""Imported ad spend is part of a report's cost (and so of CPC, CPA, CAC, ROAS), exactly once."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest

from perfmark.adapters.store.kinds import ADVERTISERS, CAMPAIGNS, OFFERS
from perfmark.billing.domain.pricing import ExchangeRate
from perfmark.costs.services import CostInput, add_rates, import_cost_rows
from perfmark.domain.accounts import Role, WorkspaceSpec
from perfmark.domain.campaigns import CampaignSpec, Channel
from perfmark.domain.offers import OfferSpec, WeightedUrl
from perfmark.domain.parties import AdvertiserSpec
from perfmark.errors import ValidationError
from perfmark.reports.domain.request import parse_report_request
from perfmark.reports.service import ReportResult, run_report
from perfmark.services import catalog
from perfmark.services.accounts import create_workspace
from perfmark.services.container import Container, Principal
from perfmark.settings import lake_directory

from .lake_data import event, write_events


class Shop:
    """A EUR workspace with a EUR search campaign and a USD social campaign, and its lake."""

    def __init__(self, container: Container) -> None:
        created = create_workspace(
            container, WorkspaceSpec(name="Spend", currency="EUR"), "s@x.org"
        )
        self.container = container
        self.workspace_id = created.workspace.id
        self.owner = Principal(self.workspace_id, Role.OWNER, actor_id=created.owner.id)
        self.search = self._campaign("EUR", Channel.PAID_SEARCH)
        self.social = self._campaign("USD", Channel.PAID_SOCIAL)

    def _campaign(self, currency: str, channel: Channel) -> dict[str, str]:
        advertiser = catalog.create_object(
            self.container, self.owner, ADVERTISERS,
            AdvertiserSpec(name=f"Adv {currency}", currency=currency),
        )  # fmt: skip
        offer = catalog.create_object(
            self.container, self.owner, OFFERS,
            OfferSpec(name=f"Offer {currency}", advertiser_id=advertiser.id,
                      landing_pages=(WeightedUrl("a", "https://shop.example/a", 1),)),
        )  # fmt: skip
        campaign = catalog.create_object(
            self.container, self.owner, CAMPAIGNS,
            CampaignSpec(name=f"Campaign {currency}", advertiser_id=advertiser.id,
                         offer_id=offer.id, channel=channel, currency=currency),
        )  # fmt: skip
        return {"campaign_id": campaign.id, "advertiser_id": advertiser.id,
                "offer_id": offer.id, "channel": channel.value}  # fmt: skip

    def spend(self, campaign: dict[str, str], day: str, amount: str, currency: str) -> None:
        row = CostInput(date.fromisoformat(day), amount, currency, campaign["campaign_id"])
        import_cost_rows(self.container, self.owner, [row], source="api")

    def report(self, **arguments: Any) -> ReportResult:
        arguments.setdefault("start", "2026-03-02")
        arguments.setdefault("end", "2026-03-03")
        request = parse_report_request(self.workspace_id, **arguments)
        return run_report(self.container, request)


@pytest.fixture
def shop(container: Container) -> Shop:
    """Two tracked clicks (0.50 EUR each) and a 30 EUR sale on the search campaign."""
    shop = Shop(container)
    paid = {"cost": "0.50", "payout": "0.30", "billing_currency": "EUR"}
    write_events(
        lake_directory(container.settings),
        [
            event("click", "2026-03-02 10:00", shop.workspace_id, **shop.search,
                  visitor_id="v1", publisher_id="pub_1", country="DE", **paid),
            event("click", "2026-03-02 11:00", shop.workspace_id, **shop.search,
                  visitor_id="v2", publisher_id="pub_2", country="FR", **paid),
            event("conversion", "2026-03-02 12:00", shop.workspace_id, **shop.search,
                  visitor_id="v1", goal_key="sale", status="approved", value="30",
                  currency="EUR", billing_currency="EUR", click_ts_ms=0),
        ],
    )  # fmt: skip
    add_rates(
        container, shop.owner,
        [ExchangeRate("USD", "EUR", Decimal("0.9"), datetime(2026, 3, 1, tzinfo=UTC))],
    )  # fmt: skip
    shop.spend(shop.search, "2026-03-02", "10.00", "EUR")
    shop.spend(shop.social, "2026-03-03", "20.00", "USD")
    return shop


def rows_by(result: ReportResult, *names: str) -> dict[tuple[Any, ...], dict[str, Any]]:
    return {tuple(row[name] for name in names): row for row in result.rows}


def test_spend_adds_to_cost_by_campaign_and_day_converted_at_the_days_rate(shop: Shop) -> None:
    result = shop.report(dimensions="campaign,day", metrics="cost,clicks,cpc,roas")
    rows = rows_by(result, "campaign", "day")
    search = rows[(shop.search["campaign_id"], "2026-03-02")]
    # 2 tracked clicks at 0.50 plus 10.00 imported; 20 USD at 0.9 for the social campaign.
    assert search["cost"] == 11 and search["clicks"] == 2
    assert search["cpc"] == Decimal("5.5")
    assert search["roas"] == (Decimal(30) / Decimal(11)).quantize(Decimal("0.000001"))
    social = rows[(shop.social["campaign_id"], "2026-03-03")]
    assert social["cost"] == 18 and social["clicks"] == 0 and social["cpc"] is None
    assert social["campaign_name"] == "Campaign USD"
    assert result.totals["cost"] == 29


def test_dimensions_spend_cannot_be_split_by_put_it_in_the_not_set_row(shop: Shop) -> None:
    for dimension in ("publisher", "country", "hour"):
        result = shop.report(dimensions=dimension, metrics="cost,clicks")
        rows = rows_by(result, dimension)
        assert rows[(None,)]["cost"] == 28  # 10 EUR + 18 EUR of imported spend
        assert sum(Decimal(row["cost"]) for row in result.rows) == result.totals["cost"] == 29


def test_channel_week_and_month_group_spend_like_events(shop: Shop) -> None:
    by_channel = rows_by(shop.report(dimensions="channel", metrics="cost"), "channel")
    assert by_channel[("paid_search",)]["cost"] == 11
    assert by_channel[("paid_social",)]["cost"] == 18
    by_week = rows_by(shop.report(dimensions="week", metrics="cost"), "week")
    assert by_week == {("2026-03-02",): {"week": "2026-03-02", "cost": 29}}  # a Monday
    by_month = rows_by(shop.report(dimensions="month", metrics="cost"), "month")
    assert by_month[("2026-03-01",)]["cost"] == 29


def test_filters_keep_spend_only_where_it_is_known_to_belong(shop: Shop) -> None:
    only_search = shop.report(metrics="cost", filters={"campaign": shop.search["campaign_id"]})
    assert only_search.totals["cost"] == 11
    only_social = shop.report(metrics="cost", filters={"advertiser": shop.social["advertiser_id"]})
    assert only_social.totals["cost"] == 18
    # Spend has no country: a country filter keeps the tracked cost of that country alone.
    assert shop.report(metrics="cost", filters={"country": "DE"}).totals["cost"] == Decimal("0.5")


def test_the_days_outside_the_range_and_the_days_before_are_apart(shop: Shop) -> None:
    assert shop.report(start="2026-03-03", end="2026-03-03", metrics="cost").totals["cost"] == 18
    result = shop.report(start="2026-03-03", end="2026-03-03", metrics="cost", compare=True)
    assert result.previous_totals == {"cost": 11}


def test_reimporting_a_day_replaces_its_spend(shop: Shop) -> None:
    shop.spend(shop.search, "2026-03-02", "12.00", "EUR")
    assert shop.report(metrics="cost").totals["cost"] == Decimal("1.00") + 12 + 18


def test_cac_and_cpa_include_spend(shop: Shop) -> None:
    totals = shop.report(metrics="cost,cpa,cac,new_customers").totals
    assert totals["new_customers"] == 1
    assert totals["cpa"] == totals["cac"] == 29


def test_foreign_spend_without_a_rate_is_a_clear_error(container: Container) -> None:
    shop = Shop(container)
    shop.spend(shop.social, "2026-03-03", "20.00", "USD")
    with pytest.raises(ValidationError) as caught:
        shop.report(metrics="cost")
    assert caught.value.field == "currency"
    assert "USD->EUR" in caught.value.message and "rates" in caught.value.message
    # Counts need no rate.
    assert shop.report(metrics="clicks").totals == {"clicks": 0}
