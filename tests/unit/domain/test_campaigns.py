"""Campaigns: budgets, caps, schedule, targeting, rotations and the status lifecycle."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from perfmark.domain.campaigns import (
    ALLOWED_TRANSITIONS,
    BillingAttribution,
    CampaignSpec,
    CampaignStatus,
    Cap,
    CapMetric,
    CapPeriod,
    CapScope,
    Schedule,
    TargetingField,
    TargetingRule,
    VisitorFacts,
    check_transition,
    matches_targeting,
)
from perfmark.domain.offers import WeightedUrl
from perfmark.domain.parties import Channel
from perfmark.domain.pricing import Price, PricingModel, PricingRule
from perfmark.errors import IllegalTransitionError, PerfmarkError, ValidationError

S = CampaignStatus

#: The lifecycle, written out pair by pair from the issue (not read from ALLOWED_TRANSITIONS).
LEGAL = {
    (S.DRAFT, S.ACTIVE),
    (S.DRAFT, S.ENDED),
    (S.ACTIVE, S.PAUSED),
    (S.ACTIVE, S.CAPPED),
    (S.ACTIVE, S.ENDED),
    (S.PAUSED, S.ACTIVE),
    (S.PAUSED, S.ENDED),
    (S.CAPPED, S.ACTIVE),
    (S.CAPPED, S.PAUSED),
    (S.CAPPED, S.ENDED),
}
ALL_PAIRS = list(itertools.product(S, S))
ILLEGAL = [(a, b) for a, b in ALL_PAIRS if a != b and (a, b) not in LEGAL]


def facts(**values: object) -> VisitorFacts:
    """A request's targeting facts by field name, as the tracker gives them (text)."""
    return {TargetingField(name): str(value) for name, value in values.items()}


def spec(**changes: Any) -> CampaignSpec:
    base: dict[str, Any] = {"name": "Spring sale", "advertiser_id": "adv_1", "offer_id": "off_1"}
    return CampaignSpec(**{**base, **changes})


def refused(field: str, **changes: Any) -> ValidationError:
    with pytest.raises(ValidationError) as caught:
        spec(**changes)
    assert caught.value.field == field, caught.value.message
    return caught.value


# --- status lifecycle -------------------------------------------------------------------------


def test_the_matrix_covers_every_pair() -> None:
    assert len(ALL_PAIRS) == 25
    assert len(LEGAL) + len(ILLEGAL) + len(S) == 25
    assert len(ILLEGAL) == 10


def test_allowed_transitions_table_matches_the_lifecycle() -> None:
    table = {(a, b) for a, targets in ALLOWED_TRANSITIONS.items() for b in targets}
    assert table == LEGAL
    assert set(ALLOWED_TRANSITIONS) == set(S)


@pytest.mark.parametrize(("current", "new"), sorted(LEGAL))
def test_every_legal_transition_is_allowed(current: CampaignStatus, new: CampaignStatus) -> None:
    check_transition(current, new)


@pytest.mark.parametrize("status", list(S))
def test_staying_in_the_same_status_is_allowed(status: CampaignStatus) -> None:
    check_transition(status, status)


@pytest.mark.parametrize(("current", "new"), ILLEGAL)
def test_every_illegal_transition_is_refused(current: CampaignStatus, new: CampaignStatus) -> None:
    with pytest.raises(IllegalTransitionError) as caught:
        check_transition(current, new)
    assert caught.value.field == "status"
    assert caught.value.status == 409
    assert f"a {current.value} campaign cannot become {new.value}" in caught.value.message


def test_ended_is_final_and_says_so() -> None:
    with pytest.raises(IllegalTransitionError, match=r"none \(ended is final\)"):
        check_transition(S.ENDED, S.ACTIVE)


def test_refusal_lists_the_allowed_targets() -> None:
    with pytest.raises(IllegalTransitionError, match="allowed: active, ended"):
        check_transition(S.DRAFT, S.PAUSED)


def test_transitions_accept_plain_strings() -> None:
    check_transition("draft", "active")  # type: ignore[arg-type]
    with pytest.raises(IllegalTransitionError):
        check_transition("ended", "draft")  # type: ignore[arg-type]


@pytest.mark.parametrize(("current", "new"), [("draft", "running"), ("gone", "active")])
def test_unknown_statuses_are_validation_errors(current: str, new: str) -> None:
    with pytest.raises(ValidationError) as caught:
        check_transition(current, new)  # type: ignore[arg-type]
    assert caught.value.field == "status"
    assert "draft, active, paused, capped, ended" in caught.value.message


# --- the campaign spec ------------------------------------------------------------------------


def test_defaults_and_normalization() -> None:
    campaign = spec(name="  Spring  ", currency="eur", channel="paid_search", goal_ids=("g1", "g1"))
    assert campaign.name == "Spring"
    assert campaign.currency == "EUR"
    assert campaign.channel is Channel.PAID_SEARCH
    assert campaign.goal_ids == ("g1",)
    assert campaign.status is S.DRAFT
    assert campaign.billing_attribution is BillingAttribution.LAST_CLICK
    assert campaign.attribution_window_days == 30


def test_status_and_billing_attribution_from_strings() -> None:
    campaign = spec(status="paused", billing_attribution="first_click")
    assert campaign.status is S.PAUSED
    assert campaign.billing_attribution is BillingAttribution.FIRST_CLICK


def test_unknown_status_names_the_field() -> None:
    assert "'running'" in refused("status", status="running").message


def test_unknown_billing_attribution_names_the_field() -> None:
    error = refused("billing_attribution", billing_attribution="linear")
    assert "last_click, first_click" in error.message


@pytest.mark.parametrize("name", ["daily_budget", "total_budget"])
@pytest.mark.parametrize("value", ["-1", "0", "-0.01", Decimal("-100")])
def test_budgets_must_be_above_zero(name: str, value: object) -> None:
    error = refused(name, **{name: value})
    assert f"{name} is {value}" in error.message


@pytest.mark.parametrize("name", ["daily_budget", "total_budget"])
def test_float_budgets_are_refused(name: str) -> None:
    assert "float" in refused(name, **{name: 10.5}).message


def test_budgets_are_exact_decimals() -> None:
    campaign = spec(daily_budget="50.25", total_budget=1000)
    assert campaign.daily_budget == Decimal("50.25")
    assert campaign.total_budget == Decimal(1000)


def test_daily_budget_above_total_is_refused() -> None:
    error = refused("daily_budget", daily_budget="101", total_budget="100")
    assert error.message == "daily_budget 101 is above total_budget 100"
    spec(daily_budget="100", total_budget="100")  # equal is fine


@pytest.mark.parametrize("code", ["XYZ", "dollars", ""])
def test_unknown_currency(code: str) -> None:
    assert repr(code) in refused("currency", currency=code).message


def test_unknown_channel() -> None:
    assert "paid_search" in refused("channel", channel="tv").message


@pytest.mark.parametrize("url", ["javascript:alert(1)", "ftp://x.com", "/fallback", "x.com"])
def test_fallback_url_must_be_http(url: str) -> None:
    refused("fallback_url", fallback_url=url)


@pytest.mark.parametrize("days", [0, -1, True, 1.5])
def test_attribution_window_must_be_a_positive_int(days: object) -> None:
    refused("attribution_window_days", attribution_window_days=days)


def test_hold_days_may_be_zero_but_not_negative() -> None:
    assert spec(hold_days=0).hold_days == 0
    refused("hold_days", hold_days=-1)


def test_blank_name() -> None:
    refused("name", name="  ")


def page(key: str, weight: int = 1) -> WeightedUrl:
    return WeightedUrl(key=key, url=f"https://example.com/{key}", weight=weight)


def test_duplicate_landing_page_keys_are_refused() -> None:
    error = refused("landing_pages", landing_pages=(page("a"), page("b"), page("a", 3)))
    assert "a" in error.message


def test_duplicate_creative_keys_are_refused() -> None:
    refused("creatives", creatives=[page("x"), page("x")])


def test_rotations_are_kept_as_tuples() -> None:
    campaign = spec(landing_pages=[page("a", 2), page("b", 1)])
    assert campaign.landing_pages == (page("a", 2), page("b", 1))


def lead_rule(goal: str, publisher: str | None = None) -> PricingRule:
    return PricingRule(
        pays=Price(PricingModel.CPL, Decimal(10)),
        earns=Price(PricingModel.CPL, Decimal(7)),
        goal_id=goal,
        publisher_id=publisher,
    )


def test_pricing_may_only_name_goals_of_the_campaign() -> None:
    error = refused("pricing", goal_ids=("goal_a",), pricing=(lead_rule("goal_b"),))
    assert "goal_b" in error.message


def test_two_rules_for_the_same_event_goal_and_publisher_are_refused() -> None:
    refused("pricing", goal_ids=("g",), pricing=(lead_rule("g"), lead_rule("g")))


def test_a_publisher_override_beside_the_default_rule_is_fine() -> None:
    campaign = spec(goal_ids=("g",), pricing=[lead_rule("g"), lead_rule("g", "pub_1")])
    assert len(campaign.pricing) == 2


# --- caps -------------------------------------------------------------------------------------


def test_cap_defaults() -> None:
    cap = Cap(limit=Decimal(100))
    assert (cap.scope, cap.period, cap.metric) == (
        CapScope.CAMPAIGN,
        CapPeriod.DAY,
        CapMetric.COUNT,
    )


@pytest.mark.parametrize("limit", ["0", "-5"])
def test_cap_limit_must_be_positive(limit: str) -> None:
    with pytest.raises(ValidationError) as caught:
        Cap(limit=limit)  # type: ignore[arg-type]
    assert caught.value.field == "limit"


def test_count_caps_are_whole_numbers_money_caps_need_not_be() -> None:
    with pytest.raises(ValidationError) as caught:
        Cap(limit=Decimal("2.5"))
    assert caught.value.field == "limit"
    assert Cap(limit=Decimal("2.5"), metric=CapMetric.MONEY).limit == Decimal("2.5")


@pytest.mark.parametrize(
    ("name", "value"), [("scope", "site"), ("period", "hour"), ("metric", "x")]
)
def test_unknown_cap_enums_name_their_field(name: str, value: str) -> None:
    with pytest.raises(ValidationError) as caught:
        Cap(limit=Decimal(1), **{name: value})
    assert caught.value.field == name


def test_cap_ids_only_with_their_scope() -> None:
    Cap(limit=Decimal(1), scope=CapScope.PUBLISHER, publisher_id="pub_1")
    Cap(limit=Decimal(1), scope=CapScope.GOAL, goal_id="goal_1")
    with pytest.raises(ValidationError) as caught:
        Cap(limit=Decimal(1), publisher_id="pub_1")
    assert caught.value.field == "publisher_id"
    with pytest.raises(ValidationError) as caught:
        Cap(limit=Decimal(1), scope=CapScope.PUBLISHER, goal_id="goal_1")
    assert caught.value.field == "goal_id"


# --- schedule ---------------------------------------------------------------------------------

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def test_schedule_is_running_inside_its_window_only() -> None:
    window = Schedule(starts_at=T0, ends_at=T0 + timedelta(days=1))
    assert not window.is_running(T0 - timedelta(microseconds=1))
    assert window.is_running(T0)  # the start is inclusive
    assert window.is_running(T0 + timedelta(hours=23))
    assert not window.is_running(T0 + timedelta(days=1))  # the end is exclusive


def test_open_ended_schedules() -> None:
    assert Schedule().is_running(T0)
    assert Schedule(starts_at=T0).is_running(T0 + timedelta(days=3650))
    assert not Schedule(starts_at=T0).is_running(T0 - timedelta(seconds=1))
    assert Schedule(ends_at=T0).is_running(T0 - timedelta(days=3650))
    assert not Schedule(ends_at=T0).is_running(T0)


def test_schedule_compares_instants_across_time_zones() -> None:
    paris = timezone(timedelta(hours=1))
    window = Schedule(starts_at=datetime(2026, 3, 1, 13, 0, tzinfo=paris))  # 12:00 UTC
    assert window.is_running(T0)
    assert not window.is_running(T0 - timedelta(minutes=1))


@pytest.mark.parametrize("name", ["starts_at", "ends_at"])
def test_naive_datetimes_are_refused(name: str) -> None:
    with pytest.raises(ValidationError) as caught:
        Schedule(**{name: datetime(2026, 3, 1)})
    assert caught.value.field == name


@pytest.mark.parametrize("ends", [T0, T0 - timedelta(seconds=1)])
def test_schedule_must_end_after_it_starts(ends: datetime) -> None:
    with pytest.raises(ValidationError) as caught:
        Schedule(starts_at=T0, ends_at=ends)
    assert caught.value.field == "ends_at"


# --- targeting --------------------------------------------------------------------------------


def test_country_matching_is_case_insensitive() -> None:
    rule = TargetingRule(TargetingField.COUNTRY, ("us", " De "))
    assert rule.values == ("US", "DE")
    assert rule.matches(facts(country="US"))
    assert rule.matches(facts(country="de"))
    assert not rule.matches(facts(country="FR"))
    assert not rule.matches(facts())


def test_exclude_inverts_the_rule_and_lets_unknowns_through() -> None:
    rule = TargetingRule(TargetingField.COUNTRY, ("RU",), exclude=True)
    assert not rule.matches(facts(country="ru"))
    assert rule.matches(facts(country="US"))
    assert rule.matches(facts())


def test_text_fields_match_case_insensitively() -> None:
    rule = TargetingRule(TargetingField.OS, ("iOS", "Android"))
    assert rule.values == ("ios", "android")
    assert rule.matches(facts(os="IOS"))
    assert not rule.matches(facts(os="Windows"))
    assert TargetingRule("device", ("Mobile",)).matches(facts(device="mobile"))
    assert TargetingRule("browser", ("chrome",)).matches(facts(browser="Chrome"))
    assert TargetingRule("language", ("EN",)).matches(facts(language="en"))


@pytest.mark.parametrize("hour", range(24))
def test_hour_targeting_matches_exactly_its_hours(hour: int) -> None:
    business = TargetingRule(TargetingField.HOUR, tuple(str(h) for h in range(9, 18)))
    assert business.matches(facts(hour=hour)) is (9 <= hour < 18)


def test_hours_are_normalized() -> None:
    assert TargetingRule("hour", ("07", "23")).values == ("7", "23")


@pytest.mark.parametrize("value", ["24", "-1", "7.5", "noon", ""])
def test_bad_hours_are_refused(value: str) -> None:
    with pytest.raises(ValidationError) as caught:
        TargetingRule("hour", (value,))
    assert caught.value.field == "targeting"


def test_unknown_targeting_field() -> None:
    with pytest.raises(ValidationError) as caught:
        TargetingRule("city", ("Paris",))  # type: ignore[arg-type]
    assert caught.value.field == "targeting"
    assert "country" in caught.value.message


def test_targeting_needs_values_as_a_list() -> None:
    with pytest.raises(ValidationError) as caught:
        TargetingRule("country", ())
    assert caught.value.field == "targeting"
    with pytest.raises(ValidationError) as caught:
        TargetingRule("country", "US")  # type: ignore[arg-type]
    assert caught.value.field == "targeting"


def test_all_rules_must_pass() -> None:
    rules = (
        TargetingRule("country", ("US", "CA")),
        TargetingRule("device", ("mobile",)),
        TargetingRule("hour", ("22", "23"), exclude=True),
    )
    assert matches_targeting((), facts())
    assert matches_targeting(rules, facts(country="us", device="Mobile", hour=10))
    assert not matches_targeting(rules, facts(country="us", device="desktop", hour=10))
    assert not matches_targeting(rules, facts(country="fr", device="mobile", hour=10))
    assert not matches_targeting(rules, facts(country="ca", device="mobile", hour=23))


def test_every_validation_error_of_the_module_is_a_perfmark_error() -> None:
    # Each refusal above is a ValidationError; make sure no plain ValueError leaks instead.
    for attempt in (
        lambda: spec(status="bogus"),
        lambda: spec(channel=None),
        lambda: spec(currency=None),
        lambda: spec(daily_budget=object()),
    ):
        with pytest.raises(PerfmarkError) as caught:
            attempt()
        assert caught.value.field
