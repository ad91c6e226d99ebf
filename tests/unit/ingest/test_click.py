"""The click pipeline: resolve, check the campaign, target, rotate, log, redirect."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from http.cookies import SimpleCookie
from urllib.parse import parse_qs, parse_qsl, urlsplit
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.stats import chisquare

from perfmark.domain.campaigns import CampaignStatus, Schedule, TargetingField, TargetingRule
from perfmark.domain.events import DropReason, EventType
from perfmark.domain.offers import WeightedUrl
from perfmark.ids import id_timestamp_ms, is_valid_id
from perfmark.ingest.hits import Hit
from perfmark.ingest.visitor import cookieless_visitor_id
from perfmark.services.tracking_config import Rotation

from .helpers import FALLBACK, SECRET_KEY, Rig, RigFactory, route, snapshot

IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1"
)
DESKTOP = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36"
)


def query(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query, keep_blank_values=True)


def set_cookies(response: object) -> dict[str, str]:
    jar: SimpleCookie = SimpleCookie()
    for header in response.headers.get_list("set-cookie"):  # type: ignore[attr-defined]
        jar.load(header)
    return {name: morsel.value for name, morsel in jar.items()}


def test_redirect_fills_macros_appends_click_id_and_logs_the_click(rig: Rig) -> None:
    hit = Hit(
        params={"sub1": "a&b", "gclid": "G-1"},
        user_agent=DESKTOP, referrer="https://news.example/", accept_language="de-DE,de;q=0.9",
        country="DE", ip="198.51.100.23",
    )  # fmt: skip
    outcome = rig.clicks().click("abc12345", hit)
    assert outcome.status == 302 and outcome.drop is None and outcome.location
    click_id = outcome.click_id
    assert click_id is not None and is_valid_id(click_id, "clk")
    assert id_timestamp_ms(click_id) == int(rig.clock.now().timestamp() * 1000)
    parts = urlsplit(outcome.location)
    assert (parts.scheme, parts.netloc, parts.path) == ("https", "lp.example.com", "/offer")
    assert parse_qsl(parts.query) == [
        ("c", click_id), ("s1", "a&b"), ("sub1", "a&b"), ("gclid", "G-1"), ("pm_clid", click_id),
    ]  # fmt: skip
    [event] = rig.events()
    assert (event.type, event.event_id, event.click_id) == ("click", click_id, click_id)
    assert (event.sub1, event.external_ids, event.landing_page) == ("a&b", {"gclid": "G-1"}, "main")
    assert (event.country, event.language, event.ip) == ("DE", "de", "198.51.100.0")
    assert event.referrer == "https://news.example/" and event.user_agent == DESKTOP
    assert (event.campaign_id, event.link_id) == (route().campaign_id, route().link_id)
    assert not event.is_bot and event.drop_reason is None
    assert rig.counts == [("click", None)]


def test_only_listed_parameters_pass_through(make_rig: RigFactory) -> None:
    rig = make_rig(snapshot(route(passthrough=frozenset({"sub2", "gclid", "custom"}))))
    pairs = [("sub2", "x"), ("gclid", "g"), ("foo", "no"), ("utm_source", "no"), ("custom", "y")]
    outcome = rig.clicks().click("abc12345", Hit(params=dict(pairs)))
    assert outcome.location is not None
    names = [n for n, _ in parse_qsl(urlsplit(outcome.location).query, keep_blank_values=True)]
    assert names == ["c", "s1", "sub2", "gclid", "custom", "pm_clid"]


def test_fixed_link_values_win_over_request_parameters(make_rig: RigFactory) -> None:
    fixed = {"sub1": "from-link", "utm_source": "newsletter"}
    rig = make_rig(snapshot(route(fixed=fixed)))
    pairs = [("sub1", "from-request"), ("utm_source", "spoofed"), ("sub2", "free")]
    outcome = rig.clicks().click("abc12345", Hit(params=dict(pairs)))
    assert outcome.location is not None
    found = query(outcome.location)
    assert found["s1"] == ["from-link"] and found["sub1"] == ["from-link"]
    assert found["utm_source"] == ["newsletter"] and found["sub2"] == ["free"]
    # Fixed values are passed on even when the request does not carry them.
    bare = rig.clicks().click("abc12345", Hit()).location
    assert bare is not None
    assert parse_qsl(urlsplit(bare).query, keep_blank_values=True) == [
        ("c", parse_qs(urlsplit(bare).query)["pm_clid"][0]), ("s1", "from-link"),
        ("sub1", "from-link"), ("utm_source", "newsletter"),
        ("pm_clid", parse_qs(urlsplit(bare).query)["pm_clid"][0]),
    ]  # fmt: skip
    event = rig.events()[0]
    assert (event.sub1, event.utm_source, event.sub2) == ("from-link", "newsletter", "free")


def test_a_repeated_parameter_is_passed_on_once_with_the_recorded_value(rig: Rig) -> None:
    pairs = [("sub2", "first"), ("gclid", "g"), ("sub2", "second")]
    outcome = rig.clicks().click("abc12345", Hit(params=dict(pairs)))
    assert outcome.location is not None
    found = query(outcome.location)
    assert found["sub2"] == ["second"] and found["gclid"] == ["g"]
    assert rig.events()[0].sub2 == "second"


def test_click_id_parameter_name_is_a_setting_and_cannot_be_forged(make_rig: RigFactory) -> None:
    rig = make_rig(snapshot(route(passthrough=frozenset({"xid", "sub1"}))), click_id_param="xid")
    pairs = [("xid", "forged"), ("sub1", "s")]
    outcome = rig.clicks().click("abc12345", Hit(params=dict(pairs)))
    assert outcome.location is not None
    found = query(outcome.location)
    assert found["xid"] == [outcome.click_id] and "pm_clid" not in found


def test_the_configured_click_id_in_the_template_is_not_appended_twice(
    make_rig: RigFactory,
) -> None:
    page = WeightedUrl("p", "https://lp.example.com/?pm_clid={click_id}")
    rig = make_rig(snapshot(route(landing_pages=Rotation.of((page,)))))
    outcome = rig.clicks().click("abc12345", Hit())
    assert outcome.location == f"https://lp.example.com/?pm_clid={outcome.click_id}"


HOSTILE = st.one_of(
    st.sampled_from(
        ["//evil.com", "https://evil.com", "@evil.com", "\\\\evil.com", "\\evil.com",
         "evil.com/", "/\\evil.com", "\r\nLocation: https://evil.com", "%2f%2fevil.com"]
    ),
    st.text(max_size=40),
)  # fmt: skip


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(sub1=HOSTILE, gclid=HOSTILE, clid=HOSTILE, utm=HOSTILE)
def test_no_parameter_moves_the_redirect_off_the_configured_host(
    rig: Rig, sub1: str, gclid: str, clid: str, utm: str
) -> None:
    pairs = [("sub1", sub1), ("gclid", gclid), ("pm_clid", clid), ("utm_source", utm)]
    outcome = rig.clicks().click("abc12345", Hit(params=dict(pairs)))
    assert outcome.status == 302 and outcome.location is not None
    parts = urlsplit(outcome.location)
    assert (parts.scheme, parts.netloc, parts.path) == ("https", "lp.example.com", "/offer")
    assert outcome.location.isascii() and not any(c.isspace() for c in outcome.location)
    found = query(outcome.location)
    assert found["pm_clid"] == [outcome.click_id]
    if sub1:
        assert found["s1"] == [sub1] and found["sub1"] == [sub1]


def test_non_ascii_landing_urls_become_valid_ascii_locations(make_rig: RigFactory) -> None:
    page = WeightedUrl("p", "https://bücher.example/grüne-zelte?s={sub1}&t=日本")
    rig = make_rig(snapshot(route(landing_pages=Rotation.of((page,)))))
    response = rig.get("/c/abc12345?sub1=ü")
    assert response.status_code == 302
    location = response.headers["location"]
    assert location.isascii()
    parts = urlsplit(location)
    assert parts.netloc == "xn--bcher-kva.example"
    assert parts.path == "/gr%C3%BCne-zelte"
    assert query(location)["s"] == ["ü"] and query(location)["t"] == ["日本"]


@pytest.mark.parametrize(
    ("rule", "good", "bad"),
    [
        (TargetingRule(TargetingField.COUNTRY, ("US", "ca")), {"country": "CA"}, {"country": "BR"}),
        (TargetingRule(TargetingField.COUNTRY, ("US",)), {"country": "US"}, {}),
        (
            TargetingRule(TargetingField.COUNTRY, ("RU",), exclude=True),
            {"country": "US"},
            {"country": "RU"},
        ),
        (TargetingRule(TargetingField.DEVICE, ("mobile",)), {"user_agent": IPHONE},
         {"user_agent": DESKTOP}),
        (TargetingRule(TargetingField.OS, ("iOS",)), {"user_agent": IPHONE},
         {"user_agent": DESKTOP}),
        (TargetingRule(TargetingField.BROWSER, ("chrome",)), {"user_agent": DESKTOP},
         {"user_agent": IPHONE}),
        (TargetingRule(TargetingField.DEVICE, ("desktop",)), {"user_agent": DESKTOP}, {}),
        (TargetingRule(TargetingField.LANGUAGE, ("de",)), {"accept_language": "de-AT,en;q=0.5"},
         {"accept_language": "en-US,de;q=0.9"}),
    ],
)  # fmt: skip
def test_targeting_sends_other_traffic_to_the_fallback(
    make_rig: RigFactory, rule: TargetingRule, good: dict[str, str], bad: dict[str, str]
) -> None:
    rig = make_rig(snapshot(route(targeting=(rule,))))
    ok = rig.clicks().click("abc12345", Hit(**good))  # type: ignore[arg-type]
    assert ok.status == 302 and ok.drop is None
    assert ok.location is not None and ok.location.startswith("https://lp.example.com/offer?")
    refused = rig.clicks().click("abc12345", Hit(**bad))  # type: ignore[arg-type]
    assert (refused.status, refused.location) == (302, FALLBACK)
    assert refused.drop is DropReason.NOT_TARGETED
    first, second = rig.events()
    assert first.drop_reason is None and second.drop_reason == "not_targeted"
    assert rig.drops() == [DropReason.NOT_TARGETED]


def test_hour_targeting_uses_the_workspace_time_zone(make_rig: RigFactory) -> None:
    hours = tuple(str(h) for h in range(9, 17))
    new_york = route(
        targeting=(TargetingRule(TargetingField.HOUR, hours),),
        timezone=ZoneInfo("America/New_York"),
    )
    rig = make_rig(snapshot(new_york))
    rig.clock.current = datetime(2026, 1, 15, 13, 59, tzinfo=UTC)  # 08:59 in New York
    assert rig.clicks().click("abc12345", Hit()).drop is DropReason.NOT_TARGETED
    rig.clock.current = datetime(2026, 1, 15, 14, 0, tzinfo=UTC)  # 09:00
    assert rig.clicks().click("abc12345", Hit()).drop is None
    rig.clock.current = datetime(2026, 1, 15, 21, 59, tzinfo=UTC)  # 16:59
    assert rig.clicks().click("abc12345", Hit()).drop is None
    rig.clock.current = datetime(2026, 1, 15, 22, 0, tzinfo=UTC)  # 17:00
    assert rig.clicks().click("abc12345", Hit()).drop is DropReason.NOT_TARGETED
    rig.clock.current = datetime(2026, 7, 15, 13, 0, tzinfo=UTC)  # 09:00 in summer time (EDT)
    assert rig.clicks().click("abc12345", Hit()).drop is None


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"campaign_status": CampaignStatus.PAUSED}, DropReason.PAUSED_CAMPAIGN),
        ({"campaign_status": CampaignStatus.DRAFT}, DropReason.PAUSED_CAMPAIGN),
        ({"campaign_status": CampaignStatus.ENDED}, DropReason.PAUSED_CAMPAIGN),
        ({"campaign_status": CampaignStatus.CAPPED}, DropReason.CAPPED),
        ({"link_active": False}, DropReason.PAUSED_CAMPAIGN),
        (
            {"schedule": Schedule(ends_at=datetime(2025, 12, 31, tzinfo=UTC))},
            DropReason.PAUSED_CAMPAIGN,
        ),
        (
            {"schedule": Schedule(starts_at=datetime(2026, 1, 1, 0, 0, 1, tzinfo=UTC))},
            DropReason.PAUSED_CAMPAIGN,
        ),
    ],
)
def test_campaigns_not_running_send_traffic_to_the_fallback_or_the_404_page(
    make_rig: RigFactory, changes: dict[str, object], reason: DropReason
) -> None:
    rig = make_rig(snapshot(route(**changes), route(slug="nofallbk", fallback_url=None, **changes)))
    outcome = rig.clicks().click("abc12345", Hit())
    assert (outcome.status, outcome.location, outcome.drop) == (302, FALLBACK, reason)
    response = rig.get("/c/nofallbk")
    assert response.status_code == 404 and "not available" in response.text
    assert "location" not in response.headers
    assert [event.drop_reason for event in rig.events()] == [reason.value, reason.value]
    assert rig.drops() == [reason, reason]


def test_schedule_window_is_start_inclusive_and_end_exclusive(make_rig: RigFactory) -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    window = Schedule(starts_at=start, ends_at=start + timedelta(hours=1))
    rig = make_rig(snapshot(route(schedule=window)))
    assert rig.clicks().click("abc12345", Hit()).drop is None
    rig.clock.advance(minutes=59, seconds=59)
    assert rig.clicks().click("abc12345", Hit()).drop is None
    rig.clock.advance(seconds=1)
    assert rig.clicks().click("abc12345", Hit()).drop is DropReason.PAUSED_CAMPAIGN


def test_fallback_url_macros_are_filled(make_rig: RigFactory) -> None:
    rig = make_rig(
        snapshot(
            route(
                fallback_url="https://fallback.example.org/?c={campaign_id}&s={sub1}",
                campaign_status=CampaignStatus.PAUSED,
            )
        )
    )
    outcome = rig.clicks().click("abc12345", Hit(params={"sub1": "//evil.com"}))
    assert outcome.location is not None
    assert urlsplit(outcome.location).netloc == "fallback.example.org"
    assert query(outcome.location) == {"c": [route().campaign_id], "s": ["//evil.com"]}


def test_unknown_link_is_404_and_counted(rig: Rig) -> None:
    response = rig.get("/c/nosuchlink")
    assert response.status_code == 404 and "location" not in response.headers
    assert rig.counts == [("click", DropReason.UNKNOWN_LINK)] and rig.events() == []


def test_weighted_rotation_picks_each_ticket_exactly_by_weight() -> None:
    rotation = Rotation.of(
        (
            WeightedUrl("a", "https://a.example/", 1),
            WeightedUrl("b", "https://b.example/", 2),
            WeightedUrl("c", "https://c.example/", 7),
        )
    )
    picks = Counter(rotation.pick(ticket).key for ticket in range(rotation.total))  # type: ignore[union-attr]
    assert rotation.total == 10 and picks == {"a": 1, "b": 2, "c": 7}
    assert Rotation.of(()).pick(0) is None


def test_weighted_rotation_frequencies_follow_the_weights(make_rig: RigFactory) -> None:
    weights = {"a": 1, "b": 3, "c": 6}
    pages = tuple(
        WeightedUrl(key, f"https://lp.example.com/{key}", w) for key, w in weights.items()
    )
    rig = make_rig(snapshot(route(landing_pages=Rotation.of(pages))))
    rig.rng = random.Random(20260101)
    tracker = rig.clicks()
    draws = 3000
    seen = Counter(
        tracker.click("abc12345", Hit()).location.split("?")[0][-1] for _ in range(draws)
    )  # type: ignore[union-attr]
    observed = [seen[key] for key in weights]
    expected = [draws * w / 10 for w in weights.values()]
    assert sum(observed) == draws
    assert chisquare(observed, expected).pvalue > 0.001
    # And it is not uniform: a uniform split would be rejected outright.
    assert chisquare(observed, [draws / 3] * 3).pvalue < 1e-9
    assert Counter(event.landing_page for event in rig.events()) == seen


def test_creatives_rotate_too_and_are_recorded(make_rig: RigFactory) -> None:
    creatives = Rotation.of((WeightedUrl("banner-1", "https://cdn.example/1.png"),))
    rig = make_rig(snapshot(route(creatives=creatives)))
    rig.clicks().click("abc12345", Hit())
    assert rig.events()[0].creative == "banner-1"


def test_a_link_without_landing_pages_goes_to_the_fallback(make_rig: RigFactory) -> None:
    rig = make_rig(snapshot(route(landing_pages=Rotation.of(()))))
    outcome = rig.clicks().click("abc12345", Hit())
    assert (outcome.status, outcome.location) == (302, FALLBACK)
    assert outcome.drop is DropReason.PAUSED_CAMPAIGN


def test_visitor_cookie_is_set_once_and_reused(rig: Rig) -> None:
    first = rig.get("/c/abc12345")
    assert first.status_code == 302
    cookies = set_cookies(first)
    visitor = cookies["pm_vid"]
    assert cookies["pm_clid"] == query(first.headers["location"])["pm_clid"][0]
    raw = next(h for h in first.headers.get_list("set-cookie") if h.startswith("pm_vid="))
    assert "HttpOnly" in raw and "Max-Age=7776000" in raw and "SameSite=Lax" in raw
    second = rig.get("/c/abc12345", headers={"cookie": f"pm_vid={visitor}; other=1"})
    assert "pm_vid" not in set_cookies(second)
    forged = rig.get("/c/abc12345", headers={"cookie": "pm_vid=<bad>;"})
    assert set_cookies(forged)["pm_vid"] not in ("<bad>", visitor)
    events = rig.events()
    assert [e.visitor_id for e in events[:2]] == [visitor, visitor]
    assert events[2].visitor_id not in (visitor, "<bad>")


def test_cookieless_mode_sets_no_cookie_and_the_hash_changes_daily(make_rig: RigFactory) -> None:
    rig = make_rig(cookieless=True)
    agent = {"user-agent": DESKTOP}
    first = rig.get("/c/abc12345", headers=agent)
    again = rig.get("/c/abc12345", headers=agent)
    rig.clock.advance(days=1)
    next_day = rig.get("/c/abc12345", headers=agent)
    for response in (first, again, next_day):
        assert response.status_code == 302
        assert response.headers.get_list("set-cookie") == []
    ids = [event.visitor_id for event in rig.events()]
    day0 = datetime(2026, 1, 1, tzinfo=UTC)
    assert ids[0] == ids[1] == cookieless_visitor_id(SECRET_KEY, "203.0.113.9", DESKTOP, day0)
    assert ids[2] == cookieless_visitor_id(
        SECRET_KEY, "203.0.113.9", DESKTOP, day0 + timedelta(days=1)
    )
    assert ids[2] != ids[0]


@pytest.mark.parametrize(
    ("mode", "stored"), [("none", "203.0.113.9"), ("truncate", "203.0.113.0"), ("drop", None)]
)
def test_ip_is_stored_as_the_setting_says(
    make_rig: RigFactory, mode: str, stored: str | None
) -> None:
    rig = make_rig(ip_anonymization=mode)
    rig.get("/c/abc12345")
    assert rig.events()[0].ip == stored


def test_head_requests_are_redirected_but_flagged_as_bots(rig: Rig) -> None:
    response = rig.request("HEAD", "/c/abc12345")
    assert response.status_code == 302
    assert response.headers["location"].startswith("https://lp.example.com/offer?")
    [event] = rig.events()
    assert (event.is_bot, event.bot_reason) == (True, "head_request")


def test_other_methods_are_refused(rig: Rig) -> None:
    assert rig.request("POST", "/c/abc12345").status_code == 405
    assert rig.events() == []


def test_not_targeted_clicks_do_not_replace_the_click_cookie(make_rig: RigFactory) -> None:
    rig = make_rig(snapshot(route(targeting=(TargetingRule(TargetingField.COUNTRY, ("US",)),))))
    good = rig.get("/c/abc12345", headers={"cf-ipcountry": "US"})
    assert "pm_clid" in set_cookies(good)
    refused = rig.get("/c/abc12345", headers={"cf-ipcountry": "BR"})
    assert refused.headers["location"] == FALLBACK
    assert "pm_clid" not in set_cookies(refused)


def test_country_comes_only_from_a_valid_proxy_header(rig: Rig) -> None:
    for header in ("us", "XX", "USA", "1A", "T1"):
        rig.get("/c/abc12345", headers={"cf-ipcountry": header})
    assert [event.country for event in rig.events()] == ["US", None, None, None, None]


def test_too_long_parameters_are_refused_naming_the_parameter(make_rig: RigFactory) -> None:
    rig = make_rig(max_param_chars=50)
    response = rig.get("/c/abc12345", params={"sub1": "x" * 51})
    assert response.status_code == 400
    assert response.json()["error"]["field"] == "sub1"
    assert rig.events() == [] and rig.drops() == [DropReason.MALFORMED]


def test_impression_pixel_is_the_gif_and_logged(rig: Rig) -> None:
    response = rig.get("/i/abc12345.gif?creative=b1")
    assert response.status_code == 200 and len(response.content) == 43
    assert response.content.startswith(b"GIF89a")
    assert response.headers["content-type"] == "image/gif"
    assert "no-store" in response.headers["cache-control"]
    unknown = rig.get("/i/nolink.gif")
    assert unknown.status_code == 200 and len(unknown.content) == 43
    [event] = rig.events()
    assert (event.type, event.creative) == (EventType.IMPRESSION, "b1")
    assert rig.counts == [("impression", None), ("impression", DropReason.UNKNOWN_LINK)]


def test_too_many_parameters_are_refused_with_a_clear_message(rig: Rig) -> None:
    response = rig.get("/c/abc12345?" + "&".join(f"p{i}=1" for i in range(101)))
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["field"] == "query" and "more than 100 parameters" in error["message"]


def test_raw_utf8_in_the_query_is_read_as_utf8(rig: Rig) -> None:
    assert rig.raw_get("/c/abc12345", b"sub1=gr\xc3\xbcn") == 302
    assert rig.events()[0].sub1 == "grün"
