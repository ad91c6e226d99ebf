"""The campaign editor's form: a spec shown as fields parses back to the same spec."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from perfmark.adapters.store.codec import decode_spec
from perfmark.dashboard.campaign_form import form_from_spec, parse_campaign_form
from perfmark.domain.campaigns import CampaignSpec, TargetingField, TargetingRule
from perfmark.domain.offers import WeightedUrl
from perfmark.domain.pricing import Price, PricingModel, PricingRule

GOAL = "goal_sale"


def _fields(spec: CampaignSpec) -> dict[str, str]:
    """What a browser sends for the editor showing `spec` (inputs named as in the template)."""
    form = form_from_spec(spec)
    fields = dict(form.values)
    for section, rows in form.rows.items():
        for index, row in enumerate(rows):
            for name, value in row.items():
                if name == "exclude" and value != "on":
                    continue  # an unticked box sends nothing
                fields[f"{section}-{index}-{name}"] = value
    return fields


keys = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=12).filter(
    lambda key: key[0].isalnum()
)
weighted = st.builds(
    WeightedUrl,
    key=keys,
    url=st.sampled_from(
        ["https://a.example/x?clid={click_id}", "https://b.example/", "http://c.example/p"]
    ),
    weight=st.integers(min_value=1, max_value=100),
    name=st.sampled_from(["", "Page A", "Ünïcode ✓"]),
).map(lambda item: item)
rotations = st.lists(weighted, max_size=4, unique_by=lambda item: item.key).map(tuple)
amounts = st.decimals(min_value=0, max_value=1000, places=2, allow_nan=False)
targeting = st.lists(
    st.builds(
        TargetingRule,
        field=st.sampled_from(
            [TargetingField.COUNTRY, TargetingField.DEVICE, TargetingField.LANGUAGE]
        ),
        values=st.lists(
            st.sampled_from(["US", "DE", "mobile", "en"]), min_size=1, max_size=3, unique=True
        ).map(tuple),
        exclude=st.booleans(),
    ),
    max_size=3,
).map(tuple)


@st.composite
def specs(draw: Any) -> CampaignSpec:
    # A campaign refuses a payout above the charge (no allow_negative_margin here).
    earns, pays = sorted((draw(amounts), draw(amounts)))
    rule = PricingRule(Price(PricingModel.CPA, pays), Price(PricingModel.CPA, earns), goal_id=GOAL)
    daily = draw(st.one_of(st.none(), st.decimals(min_value="0.01", max_value=500, places=2)))
    return CampaignSpec(
        name=draw(st.sampled_from(["Tents", "Winter sale ❄", "A & B <test>"])),
        advertiser_id="adv_1",
        offer_id="off_1",
        goal_ids=(GOAL,),
        pricing=(rule,),
        daily_budget=daily,
        total_budget=None if daily is None else daily * 10,
        targeting=draw(targeting),
        landing_pages=draw(rotations),
        creatives=draw(rotations),
        hold_days=draw(st.integers(min_value=0, max_value=60)),
    )


@settings(max_examples=60, deadline=None)
@given(specs())
def test_a_spec_round_trips_through_the_editor(spec: CampaignSpec) -> None:
    parsed = parse_campaign_form(_fields(spec), [GOAL])
    assert parsed.errors == {}
    assert decode_spec(CampaignSpec, parsed.data) == spec


def test_blank_rows_are_ignored_and_bad_rows_are_named() -> None:
    spec = CampaignSpec(name="T", advertiser_id="adv_1", offer_id="off_1")
    fields = _fields(spec)
    fields.update({
        "landing_pages-0-key": "", "landing_pages-0-url": "", "landing_pages-0-weight": "1",
        "creatives-3-key": "b", "creatives-3-url": "https://x.example/", "creatives-3-weight": "0",
        "targeting-0-field": "country", "targeting-0-values": "",
    })  # fmt: skip
    parsed = parse_campaign_form(fields, [])
    assert list(parsed.errors) == ["creatives"]
    assert parsed.errors["creatives"].startswith("row 1: weight of 'b' is 0")
    assert parsed.data["landing_pages"] == [] and parsed.data["targeting"] == []


def test_editing_keeps_the_fields_that_cannot_change_and_those_not_shown() -> None:
    from perfmark.domain.campaigns import Cap

    current = CampaignSpec(
        name="T", advertiser_id="adv_1", offer_id="off_1", currency="EUR",
        caps=(Cap(limit=Decimal(5)),),
    )  # fmt: skip
    fields = _fields(current)
    fields.update(advertiser_id="adv_other", currency="USD", name="Renamed")
    parsed = parse_campaign_form(fields, [], current=current)
    result = decode_spec(CampaignSpec, parsed.data)
    assert (result.advertiser_id, result.currency, result.name) == ("adv_1", "EUR", "Renamed")
    assert result.caps == current.caps  # caps have no inputs: kept as they were


def test_a_domain_error_lands_on_the_field_it_names() -> None:
    spec = CampaignSpec(name="T", advertiser_id="adv_1", offer_id="off_1")
    fields = _fields(spec)
    fields.update(daily_budget="900", total_budget="100")
    parsed = parse_campaign_form(fields, [])
    assert list(parsed.errors) == ["daily_budget"]
    assert "above total_budget" in parsed.errors["daily_budget"]
    assert parsed.values["daily_budget"] == "900"  # shown again as typed
