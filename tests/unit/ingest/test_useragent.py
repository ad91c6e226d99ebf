"""Bot flags and device classes of real user agents (people in in-app browsers are not bots)."""

from __future__ import annotations

import pytest

from perfmark.adapters.useragent import bot_reason, parse_user_agent

IOS = "Mozilla/5.0 (iPhone; CPU iPhone OS 16_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148"
ANDROID_WV = (
    "Mozilla/5.0 (Linux; Android 13; SM-G991B Build/TP1A.220624.014; wv) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Version/4.0 Chrome/114.0.5735.196 Mobile Safari/537.36"
)

PEOPLE = {
    "pinterest in-app (iOS)": f"{IOS} [Pinterest/iOS]",
    "pinterest in-app (Android)": f"{ANDROID_WV} [Pinterest/Android]",
    "facebook in-app": f"{IOS} [FBAN/FBIOS;FBDV/iPhone14,5;FBMD/iPhone;FBSN/iOS;FBSV/16.5]",
    "instagram in-app": f"{IOS} Instagram 290.0.0.13.76 (iPhone14,5; iOS 16_5; en_US; en)",
    "tiktok in-app": f"{IOS} musical_ly_30.1.0 JsSdk/2.0 NetType/WIFI BytedanceWebview/d8a21c6",
    "linkedin in-app": f"{IOS} [LinkedInApp]/9.27.2936",
    "snapchat in-app": f"{IOS} Snapchat/12.39.0.42 (like Safari/8615.2.9.10.4, panda)",
    "google app": f"{IOS} GSA/276.0.552300811 Safari/604.1",
    "edge": (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/120.0.0.0 Safari/537.36 Edg/120.0.0.0"
    ),
}
BOTS = {
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)": "crawler",
    "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)": "crawler",
    "python-requests/2.31.0": "crawler",
    "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)": "link_preview",
    "WhatsApp/2.23.20.0 A": "link_preview",
    "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)": "link_preview",
    "Mozilla/5.0 (compatible; Pinterestbot/1.0; +http://www.pinterest.com/bot.html)": "link_preview",
    "Pinterest/0.2 (+http://www.pinterest.com/bot.html)": "link_preview",
    "TelegramBot (like TwitterBot)": "link_preview",
    "Mozilla/5.0 (compatible; Discordbot/2.0; +https://discordapp.com)": "link_preview",
    "": "empty_user_agent",
}


@pytest.mark.parametrize("agent", PEOPLE.values(), ids=PEOPLE.keys())
def test_people_in_in_app_browsers_are_not_bots(agent: str) -> None:
    assert bot_reason(agent) is None
    assert parse_user_agent(agent).device == "mobile" or "Windows" in agent


@pytest.mark.parametrize(("agent", "reason"), BOTS.items())
def test_crawlers_and_link_previews_are_bots(agent: str, reason: str) -> None:
    assert bot_reason(agent) == reason
    assert bot_reason(None) == "empty_user_agent"


@pytest.mark.parametrize(
    ("agent", "device", "os", "browser"),
    [
        (PEOPLE["edge"], "desktop", "Windows", "Edge"),
        (
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 "
            "(KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1",
            "mobile", "iOS", "Mobile Safari",
        ),
        (
            "Mozilla/5.0 (Linux; Android 13; SM-X700) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/116.0.0.0 Safari/537.36",
            "tablet", "Android", "Chrome",
        ),
        (
            "Mozilla/5.0 (iPad; CPU OS 16_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
            "Gecko) Version/16.5 Mobile/15E148 Safari/604.1",
            "tablet", "iOS", "Mobile Safari",
        ),
        ("Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0",
         "desktop", "Linux", "Firefox"),
        ("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
         "bot", None, "Googlebot"),
    ],
)  # fmt: skip
def test_device_os_and_browser(agent: str, device: str, os: str | None, browser: str) -> None:
    parsed = parse_user_agent(agent)
    assert (parsed.device, parsed.os, parsed.browser) == (device, os, browser)
