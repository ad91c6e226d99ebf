"""Importing costs into the store (SQLite and PostgreSQL): totals, replace, all-or-nothing, rates."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from perfmark.billing.domain.pricing import ExchangeRate
from perfmark.costs import services
from perfmark.costs.domain import CostFileError, CostRow, GenericMapping, Layout, spend_in
from perfmark.domain.accounts import Role
from perfmark.errors import ForbiddenError, ValidationError
from perfmark.money import Money

from .conftest import Seeded, sample, seed_workspace

D = Decimal
JAN1, JAN2, JAN3 = date(2026, 1, 1), date(2026, 1, 2), date(2026, 1, 3)
GOOGLE = "costs/google_ads_campaign_report.csv"
META = "costs/meta_ads_export.csv"


def _import_google(
    seeded: Seeded, data: bytes | None = None, **options: object
) -> services.ImportResult:
    return services.import_cost_file(
        seeded.container,
        seeded.owner,
        sample(GOOGLE) if data is None else data,
        layout=Layout.GOOGLE_ADS,
        campaign_map={"Generic - Shoes DE": seeded.campaigns["Spring Shoes"]},
        **options,  # type: ignore[arg-type]
    )


def _stored(seeded: Seeded) -> list[CostRow]:
    return services.daily_costs(
        seeded.container, seeded.owner.workspace_id, date(2000, 1, 1), date(2100, 1, 1)
    )


def _totals(rows: list[CostRow]) -> dict[tuple[str, str], Decimal]:
    """Spend by (campaign id, source), summed here independently of the service."""
    totals: dict[tuple[str, str], Decimal] = {}
    for row in rows:
        key = (row.campaign_id, row.source)
        totals[key] = totals.get(key, D(0)) + row.spend
    return totals


def test_google_sample_yields_the_hand_computed_spend(seeded: Seeded) -> None:
    result = _import_google(seeded)
    c = seeded.campaigns
    assert result.source == "google_ads"
    assert (result.period.start, result.period.end) == (JAN1, JAN3)
    assert (result.rows, result.replaced) == (9, 0)
    assert result.totals == (("EUR", D("11432.20")),)
    rows = _stored(seeded)
    assert _totals(rows) == {
        (c["Brand - Search"], "google_ads"): D("3501.80"),
        (c["Spring Shoes"], "google_ads"): D("7361.17"),  # "Generic - Shoes DE" by the map
        (c["PMax - Catalog"], "google_ads"): D("569.23"),
    }
    assert CostRow(JAN1, c["PMax - Catalog"], "google_ads", D("0.00"), "EUR") in rows
    assert CostRow(JAN1, c["Brand - Search"], "google_ads", D("1204.50"), "EUR") in rows
    assert [row.date for row in rows] == sorted(row.date for row in rows)


def test_reimport_replaces_and_never_doubles(seeded: Seeded) -> None:
    _import_google(seeded)
    first = _stored(seeded)
    again = _import_google(seeded)
    assert (again.rows, again.replaced) == (9, 9)
    assert _stored(seeded) == first


def test_reimport_with_a_corrected_figure_keeps_only_the_new_one(seeded: Seeded) -> None:
    _import_google(seeded)
    corrected = sample(GOOGLE).replace(b'"1,310.05"', b'"1,400.00"')
    _import_google(seeded, corrected)
    brand = seeded.campaigns["Brand - Search"]
    # 1204.50 + 987.25 + 1400.00
    assert _totals(_stored(seeded))[(brand, "google_ads")] == D("3591.75")


def test_reimport_of_a_period_removes_days_the_new_export_no_longer_has(seeded: Seeded) -> None:
    _import_google(seeded)
    brand, shoes = seeded.campaigns["Brand - Search"], seeded.campaigns["Spring Shoes"]
    only_jan2 = b"Campaign,Day,Currency code,Cost\nBrand - Search,2026-01-02,EUR,10.00\n"
    result = services.import_cost_file(
        seeded.container,
        seeded.owner,
        only_jan2,
        layout=Layout.GOOGLE_ADS,
        start_date=JAN1,
        end_date=JAN3,
    )
    assert result.replaced == 3  # Brand's three days; other campaigns are not in the file
    rows = _stored(seeded)
    assert [r for r in rows if r.campaign_id == brand] == [
        CostRow(JAN2, brand, "google_ads", D("10.00"), "EUR")
    ]
    assert _totals(rows)[(shoes, "google_ads")] == D("7361.17")


def test_sources_are_replaced_independently(seeded: Seeded) -> None:
    _import_google(seeded)
    mapping = GenericMapping(
        campaign_column="Kampagne",
        date_column="Datum",
        spend_column="Kosten",
        currency="EUR",
        date_format="%d.%m.%Y",
        decimal_separator=",",
    )
    result = services.import_cost_file(
        seeded.container,
        seeded.owner,
        sample("costs/generic.csv"),
        layout=Layout.GENERIC,
        source="taboola",
        mapping=mapping,
    )
    assert result.totals == (("EUR", D("2306.49")),)
    totals = _totals(_stored(seeded))
    brand, shoes = seeded.campaigns["Brand - Search"], seeded.campaigns["Spring Shoes"]
    assert totals[(brand, "google_ads")] == D("3501.80")
    assert totals[(brand, "taboola")] == D("75.99")  # 75,00 + 0,99
    assert totals[(shoes, "taboola")] == D("2230.50")  # 1.250,40 + 980,10


def test_costs_in_another_currency_are_kept_and_converted_by_the_day_rate(seeded: Seeded) -> None:
    result = services.import_cost_file(
        seeded.container, seeded.owner, sample(META), layout=Layout.META_ADS
    )
    assert result.totals == (("EUR", D("2066.09")),)
    cart = seeded.campaigns["Retargeting - Cart"]  # a USD campaign paid in EUR on Meta
    rows = [row for row in _stored(seeded) if row.campaign_id == cart]
    assert {row.currency for row in rows} == {"EUR"}
    assert sum(row.spend for row in rows) == D("252.54")
    imported = services.import_rates_csv(seeded.container, seeded.owner, sample("rates.csv"))
    assert (imported.rates, imported.replaced) == (8, 0)
    rates = services.rate_table(seeded.container, seeded.owner.workspace_id)
    in_usd = [spend_in(row, "USD", rates) for row in rows]
    # 84.12*1.0412 + 91.37*1.0389 + 77.05*1.0431, by hand.
    assert in_usd == [
        Money(D("87.585744"), "USD"),
        Money(D("94.924293"), "USD"),
        Money(D("80.370855"), "USD"),
    ]
    assert sum(money.amount for money in in_usd) == D("262.880892")


@pytest.mark.parametrize(
    ("old", "new", "row", "column", "phrase"),
    [
        (b"Total: Account", b"Total: Account", None, None, None),  # control: imports
        (b'"2,598.77"', b'"2,598.7x"', 9, "Cost", "is not an amount"),
        (b"PMax - Catalog,2026-01-03", b"Winter Sale,2026-01-03", 12, "Campaign", "no perfmark"),
        (
            b"PMax - Catalog,2026-01-03,EUR",
            b"PMax - Catalog,2026-01-03,EUX",
            12,
            "Currency code",
            "ISO 4217",
        ),
        (b",Currency code,", b",Currency,", 3, "Currency code", "no column"),
    ],
)
def test_a_bad_file_imports_nothing(
    seeded: Seeded,
    old: bytes,
    new: bytes,
    row: int | None,
    column: str | None,
    phrase: str | None,
) -> None:
    services.import_cost_rows(
        seeded.container,
        seeded.owner,
        [services.CostInput(JAN2, "1.00", "EUR", campaign_name="PMax - Catalog")],
        source="google_ads",
    )
    before = _stored(seeded)
    data = sample(GOOGLE).replace(old, new)
    if phrase is None:
        _import_google(seeded, data)
        assert len(_stored(seeded)) == 9
        return
    with pytest.raises(CostFileError) as caught:
        _import_google(seeded, data)
    assert (caught.value.row, caught.value.column or caught.value.field) == (row, column)
    assert caught.value.message.startswith(f"row {row}")
    assert phrase in caught.value.message
    assert _stored(seeded) == before  # the earlier rows of the file were not written either


def test_rows_outside_an_explicit_period_are_refused(seeded: Seeded) -> None:
    with pytest.raises(CostFileError) as caught:
        _import_google(seeded, start_date=JAN2, end_date=JAN3)
    assert caught.value.row == 4 and caught.value.field == "Day"
    assert "outside the imported period" in caught.value.message
    assert _stored(seeded) == []


def test_json_rows_by_id_and_name_then_replaced(seeded: Seeded) -> None:
    c = seeded.campaigns
    rows = [
        services.CostInput(JAN1, "12.50", "eur", campaign_id=c["Spring Shoes"]),
        services.CostInput(JAN1, "0.25", "EUR", campaign_name="spring shoes"),  # summed
        services.CostInput(JAN2, 3, "USD", campaign_name="Retargeting - Cart"),
    ]
    result = services.import_cost_rows(seeded.container, seeded.owner, rows, source="tiktok_ads")
    assert result.rows == 2
    assert _stored(seeded) == [
        CostRow(JAN1, c["Spring Shoes"], "tiktok_ads", D("12.75"), "EUR"),
        CostRow(JAN2, c["Retargeting - Cart"], "tiktok_ads", D("3.00"), "USD"),
    ]
    replacement = [services.CostInput(JAN1, "1", "EUR", campaign_id=c["Spring Shoes"])]
    services.import_cost_rows(seeded.container, seeded.owner, replacement, source="tiktok_ads")
    assert _totals(_stored(seeded))[(c["Spring Shoes"], "tiktok_ads")] == D("1.00")


def test_json_row_errors_name_the_row_and_field(seeded: Seeded) -> None:
    good = services.CostInput(JAN1, "1", "EUR", campaign_name="Spring Shoes")
    cases = [
        (replace(good, spend="1.5.0"), "rows[1].spend"),
        (replace(good, currency="EUX"), "rows[1].currency"),
        (replace(good, campaign_name="Nope"), "rows[1].campaign_name"),
        (replace(good, campaign_name=None, campaign_id="cmp_nope"), "rows[1].campaign_id"),
        (replace(good, campaign_id=seeded.campaigns["Brand - Search"]), "rows[1].campaign_id"),
    ]
    for bad, field in cases:
        with pytest.raises(ValidationError) as caught:
            services.import_cost_rows(seeded.container, seeded.owner, [good, bad], source="api")
        assert caught.value.field == field, caught.value.message
        assert caught.value.message.startswith("rows[1]")
    assert _stored(seeded) == []


def test_another_workspace_sees_and_touches_nothing(seeded: Seeded) -> None:
    _import_google(seeded)
    other = seed_workspace(seeded.container, "Other")
    assert services.daily_costs(seeded.container, other.owner.workspace_id, JAN1, JAN3) == []
    spring = seeded.campaigns["Spring Shoes"]  # the first workspace's campaign id
    with pytest.raises(CostFileError, match="names no campaign"):
        services.import_cost_rows(
            seeded.container,
            other.owner,
            [services.CostInput(JAN1, "1", "EUR", campaign_id=spring)],
            source="google_ads",
        )
    page = services.list_costs(seeded.container, other.owner, campaign_id=spring)
    assert page.items == ()
    assert len(_stored(seeded)) == 9


def test_roles(seeded: Seeded) -> None:
    _import_google(seeded)
    meta = services.import_cost_file(
        seeded.container, seeded.owner, sample(META), layout=Layout.META_ADS
    )
    assert meta.rows == 6
    workspace = seeded.owner.workspace_id
    analyst = replace(seeded.owner, role=Role.ANALYST)
    with pytest.raises(ForbiddenError):
        _import_google(replace(seeded, owner=analyst))
    with pytest.raises(ForbiddenError):
        services.import_rates_csv(seeded.container, analyst, sample("rates.csv"))
    assert len(services.list_costs(seeded.container, analyst).items) == 15
    usd_advertiser = seeded.advertisers["USD"]
    portal = replace(seeded.owner, role=Role.ADVERTISER, advertiser_id=usd_advertiser)
    seen = services.list_costs(seeded.container, portal).items
    usd_campaigns = {
        seeded.campaigns["Retargeting - Cart"],
        seeded.campaigns["Prospecting - Lookalike 1%"],
    }
    assert {row.campaign_id for row in seen} == usd_campaigns and len(seen) == 6
    eur_campaign = seeded.campaigns["Brand - Search"]
    assert services.list_costs(seeded.container, portal, campaign_id=eur_campaign).items == ()
    publisher = replace(seeded.owner, role=Role.PUBLISHER, publisher_id="pub_x")
    with pytest.raises(ForbiddenError):
        services.list_costs(seeded.container, publisher)
    assert len(services.daily_costs(seeded.container, workspace, JAN1, JAN3)) == 15


def test_list_filters_and_pages(seeded: Seeded) -> None:
    _import_google(seeded)
    services.import_cost_file(seeded.container, seeded.owner, sample(META), layout=Layout.META_ADS)
    everything = _stored(seeded)
    pages, cursor = [], None
    while True:
        page = services.list_costs(seeded.container, seeded.owner, cursor=cursor, limit=4)
        pages.append(page.items)
        cursor = page.next_cursor
        if cursor is None:
            break
    assert [len(items) for items in pages] == [4, 4, 4, 3]
    assert [row for items in pages for row in items] == everything
    brand = seeded.campaigns["Brand - Search"]
    filtered = services.list_costs(
        seeded.container,
        seeded.owner,
        campaign_id=brand,
        source="google_ads",
        start_date=JAN2,
        end_date=JAN3,
    ).items
    assert [(row.date, row.spend) for row in filtered] == [
        (JAN2, D("987.25")),
        (JAN3, D("1310.05")),
    ]
    assert len(services.list_costs(seeded.container, seeded.owner, source="meta_ads").items) == 6
    for garbage in ["garbage", "2026-13-01|cmp|s", "2026-01-01|cmp\x00|s", "2026-01-01||s"]:
        with pytest.raises(ValidationError) as caught:
            services.list_costs(seeded.container, seeded.owner, cursor=garbage)
        assert caught.value.field == "cursor"


def test_rates_import_replace_and_lookup(seeded: Seeded) -> None:
    first = services.import_rates_csv(seeded.container, seeded.owner, sample("rates.csv"))
    again = services.import_rates_csv(seeded.container, seeded.owner, sample("rates.csv"))
    assert (first.rates, first.replaced, again.rates, again.replaced) == (8, 0, 8, 8)
    assert len(services.list_rates(seeded.container, seeded.owner)) == 8
    assert len(services.list_rates(seeded.container, seeded.owner, base="usd")) == 2
    changed = services.add_rates(
        seeded.container,
        seeded.owner,
        [ExchangeRate("EUR", "USD", D("1.0500"), datetime(2026, 1, 2, tzinfo=UTC))],
    )
    assert (changed.rates, changed.replaced) == (1, 1)
    table = services.rate_table(seeded.container, seeded.owner.workspace_id)
    assert table.rate_at("EUR", "USD", datetime(2026, 1, 2, 12, tzinfo=UTC)) == D("1.0500")
    assert table.rate_at("EUR", "USD", datetime(2026, 1, 1, 12, tzinfo=UTC)) == D("1.0412")
    assert table.rate_at("USD", "JPY", datetime(2026, 1, 5, tzinfo=UTC)) == D("157.05")
    other = seed_workspace(seeded.container, "Other")
    assert services.list_rates(seeded.container, other.owner) == []


def test_bad_rates_file_imports_nothing(seeded: Seeded) -> None:
    services.import_rates_csv(seeded.container, seeded.owner, sample("rates.csv"))
    bad = sample("rates.csv").replace(b"EUR,GBP,0.8301", b"EUR,GBP,-0.8301")
    with pytest.raises(ValidationError, match="line 6"):
        services.import_rates_csv(seeded.container, seeded.owner, bad)
    duplicate = sample("rates.csv") + b"EUR,USD,1.2,2026-01-01T00:00:00Z\n"
    with pytest.raises(ValidationError, match=r"line 10: a EUR->USD rate .* line 2"):
        services.import_rates_csv(seeded.container, seeded.owner, duplicate)
    overflow = b"base,quote,rate,valid_from\nEUR,USD,1.1,0001-01-01T00:00:00+05:00\n"
    with pytest.raises(ValidationError, match="line 2"):
        services.import_rates_csv(seeded.container, seeded.owner, overflow)
    assert len(services.list_rates(seeded.container, seeded.owner)) == 8


def test_concurrent_imports_of_the_same_period_never_double(seeded: Seeded) -> None:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            for _ in range(3):
                _import_google(seeded)
        except BaseException as exc:  # reported to the main thread below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    rows = _stored(seeded)
    assert len(rows) == 9
    assert sum(row.spend for row in rows) == D("11432.20")
