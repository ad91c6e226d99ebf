"""User-agent parsing (ua-parser, with its Rust resolver when installed) and bot detection.

Both are cached by user-agent string: real traffic repeats a small set of agents, and an
uncached parse costs tens of microseconds (hundreds for the crawler list), which the click
hot path cannot pay per request.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from crawlerdetect import CrawlerDetect
from ua_parser import parse

__all__ = ["ParsedAgent", "bot_reason", "parse_user_agent"]

_CACHE_SIZE = 20_000
_MAX_AGENT_CHARS = 512
#: Fetchers that unfurl links in chats and social posts; they are not people clicking.
#: Tokens name the fetcher, never the app: "Pinterest/iOS" is a person in Pinterest's
#: in-app browser, "Pinterestbot" the preview fetcher.
_LINK_PREVIEW_TOKENS = (
    "slackbot", "discordbot", "telegrambot", "whatsapp", "facebookexternalhit", "twitterbot",
    "linkedinbot", "skypeuripreview", "applebot", "embedly", "vkshare", "pinterestbot",
    "pinterest.com/bot",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class ParsedAgent:
    """Device class, OS family and browser family of a user agent."""

    device: str
    os: str | None
    browser: str | None


@lru_cache(maxsize=_CACHE_SIZE)
def parse_user_agent(user_agent: str) -> ParsedAgent:
    """Classify a user agent: device is desktop, mobile, tablet, bot or other."""
    result = parse(user_agent[:_MAX_AGENT_CHARS])
    os_family = result.os.family if result.os and result.os.family != "Other" else None
    browser = (
        result.user_agent.family
        if result.user_agent and result.user_agent.family != "Other"
        else None
    )
    device_family = (result.device.family if result.device else "") or ""
    lowered = user_agent.lower()
    if device_family == "Spider":
        device = "bot"
    elif (
        "ipad" in lowered
        or "tablet" in lowered
        or (os_family == "Android" and "mobile" not in lowered)
    ):
        device = "tablet"
    elif os_family in ("iOS", "Android") or "mobile" in lowered:
        device = "mobile"
    elif os_family in ("Windows", "Mac OS X", "Linux", "Ubuntu", "Chrome OS", "Fedora"):
        device = "desktop"
    else:
        device = "other"
    return ParsedAgent(device, os_family, browser)


@lru_cache(maxsize=1)
def _crawlers() -> CrawlerDetect:
    return CrawlerDetect()


@lru_cache(maxsize=_CACHE_SIZE)
def bot_reason(user_agent: str | None) -> str | None:
    """Why this agent is a bot (link preview, crawler list, empty agent), or None."""
    if not user_agent:
        return "empty_user_agent"
    lowered = user_agent.lower()
    for token in _LINK_PREVIEW_TOKENS:
        if token in lowered:
            return "link_preview"
    if _crawlers().isCrawler(user_agent[:_MAX_AGENT_CHARS]):
        return "crawler"
    return None
