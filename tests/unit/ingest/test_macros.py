"""Macro filling and parameter appending: every value round-trips and never moves the host."""

from __future__ import annotations

from urllib.parse import parse_qs, parse_qsl, unquote, urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perfmark.ingest.macros import append_params, fill_macros, same_origin, to_uri

TEMPLATE = "https://lp.example.com/offer/{sub2}/end?c={click_id}&s1={sub1}&fixed=1#top"
REDIRECT_ATTEMPTS = [
    "//evil.com",
    "https://evil.com",
    "@evil.com",
    "\\\\evil.com",
    "\\evil.com",
    "/\\evil.com",
    "evil.com:443@x",
    "%2F%2Fevil.com",
    "javascript:alert(1)",
    "\r\nLocation: https://evil.com",
    "#@evil.com",
    "?x=1@evil.com/",
]
AWKWARD = ["a&b=c", "x/y/z", "what?", "#frag", "ünïcødé ✓ 日本", "100%", "%41", "+ plus", "a=b"]


def fields(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query, keep_blank_values=True)


@settings(max_examples=300, deadline=None)
@given(sub1=st.text(min_size=1, max_size=60), sub2=st.text(min_size=1, max_size=30))
def test_any_value_round_trips_keeping_scheme_host_path_and_fragment(sub1: str, sub2: str) -> None:
    url = fill_macros(TEMPLATE, {"sub1": sub1, "sub2": sub2, "click_id": "clk_1"})
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc) == ("https", "lp.example.com")
    assert parts.fragment == "top"
    assert fields(url) == {"c": ["clk_1"], "s1": [sub1], "fixed": ["1"]}
    segments = parts.path.split("/")
    assert len(segments) == 4 and segments[:2] == ["", "offer"] and segments[3] == "end"
    assert unquote(segments[2], errors="strict") == sub2
    assert url.isascii() and not any(ch.isspace() for ch in url)
    assert same_origin(TEMPLATE, url)


@pytest.mark.parametrize("value", AWKWARD + REDIRECT_ATTEMPTS)
def test_awkward_and_hostile_values_stay_inside_their_parameter(value: str) -> None:
    url = fill_macros(TEMPLATE, {"sub1": value, "sub2": value, "click_id": "clk_1"})
    assert urlsplit(url).netloc == "lp.example.com"
    assert fields(url)["s1"] == [value]
    assert "evil.com" not in urlsplit(url).netloc


def test_known_encodings_by_hand() -> None:
    url = fill_macros("https://a.example/p?x={sub1}", {"sub1": "a&b/c?d#e%f ü"})
    assert url == "https://a.example/p?x=a%26b%2Fc%3Fd%23e%25f%20%C3%BC"


def test_unknown_and_empty_macros_become_empty_and_other_braces_stay() -> None:
    url = fill_macros(
        "https://a.example/p?x={sub1}&y={nope}&z={sub3}&w={Upper}",
        {"sub1": None, "sub3": ""},
    )
    assert url == "https://a.example/p?x=&y=&z=&w={Upper}"


def test_append_params_goes_before_the_fragment_and_encodes() -> None:
    url = append_params("https://a.example/p?x=1#frag", [("sub1", "a&b"), ("gclid", "G 1")])
    assert url == "https://a.example/p?x=1&sub1=a%26b&gclid=G+1#frag"
    assert dict(parse_qsl(urlsplit(url).query)) == {"x": "1", "sub1": "a&b", "gclid": "G 1"}


def test_append_params_skips_names_already_in_the_url() -> None:
    url = append_params("https://a.example/p?pm_clid=keep&x=1", [("pm_clid", "new"), ("y", "2")])
    assert url == "https://a.example/p?pm_clid=keep&x=1&y=2"


def test_append_params_with_no_query_or_a_bare_question_mark() -> None:
    assert append_params("https://a.example/p", [("a", "1")]) == "https://a.example/p?a=1"
    assert append_params("https://a.example/p?", [("a", "1")]) == "https://a.example/p?a=1"
    assert append_params("https://a.example", []) == "https://a.example"


@settings(max_examples=150, deadline=None)
@given(value=st.text(max_size=40), name=st.sampled_from(["sub1", "utm_source", "gclid"]))
def test_appended_values_round_trip(value: str, name: str) -> None:
    url = append_params("https://a.example/p?x=1#f", [(name, value)])
    assert urlsplit(url).netloc == "a.example" and urlsplit(url).fragment == "f"
    assert parse_qs(urlsplit(url).query, keep_blank_values=True)[name] == [value]


def test_same_origin_refuses_another_host_scheme_or_port() -> None:
    template = "https://lp.example.com/x?c={click_id}"
    assert same_origin(template, "https://lp.example.com/other")
    assert not same_origin(template, "https://evil.com/x")
    assert not same_origin(template, "http://lp.example.com/x")
    assert not same_origin(template, "https://lp.example.com:444/x")
    assert not same_origin(template, "https://lp.example.com@evil.com/x")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://a.example/p?x=1", "https://a.example/p?x=1"),
        (
            "https://bücher.example/grün?q=ü#ä",
            "https://xn--bcher-kva.example/gr%C3%BCn?q=%C3%BC#%C3%A4",
        ),
        ("https://bücher.example?q=ü", "https://xn--bcher-kva.example?q=%C3%BC"),
        ("https://bücher.example:8443", "https://xn--bcher-kva.example:8443"),
        ("https://a.example/%C3%BC/ü", "https://a.example/%C3%BC/%C3%BC"),
    ],
)
def test_to_uri_makes_header_safe_ascii(url: str, expected: str) -> None:
    assert to_uri(url) == expected
    assert same_origin(url, expected)
