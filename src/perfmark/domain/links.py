"""Tracking links: the URL a publisher pastes, with fixed sub ids, UTMs and passthrough params."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import urlencode

from perfmark.domain.rules import check_slug
from perfmark.errors import ValidationError

__all__ = [
    "DEFAULT_PASSTHROUGH",
    "EXTERNAL_CLICK_IDS",
    "LinkStatus",
    "SUB_FIELDS",
    "TrackingLinkSpec",
    "UTM_FIELDS",
    "new_slug",
    "tracking_url",
]

SUB_FIELDS = ("sub1", "sub2", "sub3", "sub4", "sub5")
UTM_FIELDS = ("utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content")
#: External click ids of the ad platforms, passed through by default.
EXTERNAL_CLICK_IDS = (
    "gclid",
    "gbraid",
    "wbraid",
    "fbclid",
    "msclkid",
    "ttclid",
    "twclid",
    "li_fat_id",
)
DEFAULT_PASSTHROUGH = SUB_FIELDS + UTM_FIELDS + EXTERNAL_CLICK_IDS
_PARAM = re.compile(r"[A-Za-z0-9_.\-]{1,64}")  # fullmatch: `$` allows a trailing newline
_MAX_FIXED_VALUE_CHARS = 500
_SLUG_ALPHABET = "abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"
_SLUG_LENGTH = 8


class LinkStatus(StrEnum):
    """Whether a link redirects into its campaign."""

    ACTIVE = "active"
    PAUSED = "paused"  #: redirects to the campaign's fallback URL


def new_slug() -> str:
    """A short random slug: 8 letters and digits (about 46 bits), none that read alike."""
    return "".join(secrets.choice(_SLUG_ALPHABET) for _ in range(_SLUG_LENGTH))


@dataclass(frozen=True)
class TrackingLinkSpec:
    """A link that sends one publisher's traffic into one campaign."""

    campaign_id: str
    publisher_id: str
    slug: str = ""
    sub1: str | None = None
    sub2: str | None = None
    sub3: str | None = None
    sub4: str | None = None
    sub5: str | None = None
    utm_source: str | None = None
    utm_medium: str | None = None
    utm_campaign: str | None = None
    utm_term: str | None = None
    utm_content: str | None = None
    passthrough: tuple[str, ...] = DEFAULT_PASSTHROUGH
    status: LinkStatus = LinkStatus.ACTIVE

    def __post_init__(self) -> None:
        if not self.slug:
            object.__setattr__(self, "slug", new_slug())
        check_slug("slug", self.slug)
        for name in SUB_FIELDS + UTM_FIELDS:
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise ValidationError(f"{name} is {value!r}; give text", field=name)
            if value is not None and len(value) > _MAX_FIXED_VALUE_CHARS:
                raise ValidationError(
                    f"{name} is {len(value)} characters; the limit is {_MAX_FIXED_VALUE_CHARS}",
                    field=name,
                )
        if isinstance(self.passthrough, str):  # "gclid" would otherwise become g, c, l, i, d
            raise ValidationError(
                f"passthrough is {self.passthrough!r}; give a list of parameter names",
                field="passthrough",
            )
        for param in self.passthrough:
            if not isinstance(param, str) or not _PARAM.fullmatch(param):
                raise ValidationError(
                    f"passthrough parameter {param!r} is not a valid name; use letters, "
                    "digits, '_', '-' or '.'",
                    field="passthrough",
                )
        object.__setattr__(self, "passthrough", tuple(dict.fromkeys(self.passthrough)))
        try:
            object.__setattr__(self, "status", LinkStatus(self.status))
        except ValueError:
            raise ValidationError(
                f"status {self.status!r} is unknown; use active or paused", field="status"
            ) from None

    def fixed_values(self) -> dict[str, str]:
        """The sub ids and UTMs fixed on the link (request parameters cannot override them)."""
        return {
            name: value
            for name in SUB_FIELDS + UTM_FIELDS
            if (value := getattr(self, name)) is not None
        }


def tracking_url(base_url: str, slug: str, example_params: dict[str, str] | None = None) -> str:
    """The URL a publisher pastes: `<base>/c/<slug>`, with optional example parameters."""
    url = f"{base_url.rstrip('/')}/c/{slug}"
    if example_params:
        url += "?" + urlencode(example_params)
    return url
