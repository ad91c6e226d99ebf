"""Who is visiting: anonymized IP, visitor id (cookie or daily-salted hash), language."""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
from datetime import datetime
from typing import Literal

from perfmark.ids import random_bytes

__all__ = [
    "VISITOR_COOKIE",
    "anonymize_ip",
    "cookieless_visitor_id",
    "new_visitor_id",
    "primary_language",
    "valid_visitor_id",
]

VISITOR_COOKIE = "pm_vid"
_VISITOR_ID_BYTES = 12
_MAX_VISITOR_ID_CHARS = 64
#: The 256 octets exactly as ipaddress accepts them (decimal, no sign, no leading zero).
_IPV4_OCTETS = frozenset(str(octet) for octet in range(256))


def anonymize_ip(ip: str | None, mode: Literal["none", "truncate", "drop"]) -> str | None:
    """The IP as the ip_anonymization setting says: kept, truncated (v4 /24, v6 /48) or dropped."""
    if ip is None or mode == "drop":
        return None
    if mode == "none":
        return ip
    # The common case without ipaddress, which costs a few microseconds per click.
    octets, known = ip.split("."), _IPV4_OCTETS
    if (
        len(octets) == 4
        and octets[0] in known
        and octets[1] in known
        and octets[2] in known
        and octets[3] in known
    ):
        return f"{octets[0]}.{octets[1]}.{octets[2]}.0"
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return None
    prefix = 24 if address.version == 4 else 48
    network = ipaddress.ip_network(f"{address}/{prefix}", strict=False)
    return str(network.network_address)


def new_visitor_id() -> str:
    """A random first-party visitor id for the cookie."""
    # 12 bytes are 16 base64 characters without padding, as secrets.token_urlsafe(12) gives.
    return "v" + base64.urlsafe_b64encode(random_bytes(_VISITOR_ID_BYTES)).decode("ascii")


def valid_visitor_id(value: str | None) -> bool:
    """Whether a cookie value looks like a visitor id we issued (anything else is replaced)."""
    return (
        value is not None
        and 1 < len(value) <= _MAX_VISITOR_ID_CHARS
        # isalnum() alone accepts letters such as "é" (cookies are decoded as latin-1).
        and value.isascii()
        and value.replace("-", "").replace("_", "").isalnum()
    )


def cookieless_visitor_id(
    secret_key: str, ip: str | None, user_agent: str | None, now: datetime
) -> str:
    """A visitor id without cookies: HMAC of IP and user agent under a salt that changes daily.

    The salt is derived from the secret key and the UTC date, so every worker and node agrees
    on it without coordination, and yesterday's ids cannot be linked to today's.
    """
    salt = hmac.new(secret_key.encode(), now.strftime("%Y-%m-%d").encode(), hashlib.sha256).digest()
    material = f"{ip or ''}\n{user_agent or ''}".encode()
    return "h" + hmac.new(salt, material, hashlib.sha256).hexdigest()[:24]


def primary_language(accept_language: str | None) -> str | None:
    """The primary subtag of the first language in Accept-Language ("de-CH,de;q=0.9" → "de")."""
    if not accept_language:
        return None
    first = accept_language.split(",", 1)[0].split(";", 1)[0].strip()
    tag = first.split("-", 1)[0].lower()
    return tag if tag.isalpha() and 1 < len(tag) <= 8 else None
