"""Macro filling and parameter appending: every value round-trips and never moves the host."""

from __future__ import annotations

from urllib.parse import parse_qs, parse_qsl, unquote, urlsplit

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from perfmark.ingest.macros import (
    append_params,
    compile_landing,
    fill_macros,
    same_origin,
    to_uri,
)

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


# --- prepared landing templates (the click hot path) ------------------------------------------

_TEMPLATE_PIECES = st.sampled_from(
    ["https://lp.example.com", "http://127.0.0.1:8080", "https://lp.example.com/", "/offer",
     "/{sub2}", "?", "?c={click_id}", "&s1={sub1}", "&fixed=1", "&{sub1}=x", "{sub1}", "#top",
     "#{sub3}", "ü", "[", "&", "=", "/p/{landing_page}", "?q", "&a=b&a=c"]
)  # fmt: skip
_VALUES = st.one_of(st.just(""), st.text(max_size=12), st.sampled_from(AWKWARD + REDIRECT_ATTEMPTS))


@settings(max_examples=500, deadline=None)
@given(
    pieces=st.lists(_TEMPLATE_PIECES, min_size=1, max_size=6),
    values=st.dictionaries(st.sampled_from(["sub1", "sub2", "sub3", "click_id"]), _VALUES),
    params=st.lists(
        st.tuples(st.sampled_from(["sub1", "fixed", "q", "a", "c", "pm_clid", "ü"]), _VALUES),
        max_size=4,
    ),
)
def test_a_prepared_template_fills_exactly_like_the_general_path(
    pieces: list[str], values: dict[str, str], params: list[tuple[str, str]]
) -> None:
    template = ("https://lp.example.com" if pieces[0][:1] in "/?&#{" else "") + "".join(pieces)
    prepared = compile_landing(template)
    try:
        general = to_uri(append_params(fill_macros(template, values), params))
    except ValueError:  # not a URL the domain would accept ("https://host[", ...)
        assert prepared is None
        return
    event("prepared" if prepared is not None else "general path")
    if prepared is not None:
        assert prepared.fill(values, params) == general
        assert same_origin(template, general)


def test_templates_the_fast_path_cannot_prove_safe_take_the_general_path() -> None:
    assert compile_landing("https://lp.example.com/a?x={sub1}&y=2") is not None
    assert compile_landing("https://lp.example.com") is not None
    for template in (
        "https://lp.example.com/a#top",  # a fragment: parameters go before it
        "https://bücher.example/zelte",  # not ASCII: IDNA and %-encoding first
        "https://lp.example.com{sub1}/",  # a macro that could extend the host
        "https://lp.example.com/?{sub1}=1",  # a macro naming a parameter
        "https://lp.example.com/[x]",  # urlsplit() reads brackets specially
        "lp.example.com/path",  # no scheme
    ):
        assert compile_landing(template) is None, template
