"""Landing URLs: fill `{macros}` with URL-encoded values and append passthrough parameters.

The scheme and host of the result always come from the configured URL: values are
percent-encoded with no safe characters, and the domain refuses macros in the host, so no
parameter can turn a tracking link into an open redirect.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from urllib.parse import quote, urlencode, urlsplit

__all__ = ["MACRO", "append_params", "fill_macros", "same_origin"]

MACRO = re.compile(r"\{([a-z0-9_]+)\}")


def fill_macros(template: str, values: Mapping[str, str | None]) -> str:
    """Replace each `{name}` by its URL-encoded value; unknown or empty macros become ''."""
    if "{" not in template:
        return template

    def replace(match: re.Match[str]) -> str:
        value = values.get(match.group(1))
        return quote(value, safe="") if value else ""

    return MACRO.sub(replace, template)


def append_params(url: str, params: list[tuple[str, str]]) -> str:
    """Add query parameters before any fragment, encoded, skipping names already present."""
    if not params:
        return url
    base, hash_mark, fragment = url.partition("#")
    query = urlsplit(base).query
    present = {pair.split("=", 1)[0] for pair in query.split("&") if pair} if query else set()
    extra = [(name, value) for name, value in params if name not in present]
    if not extra:
        return url
    separator = "&" if query else ("" if base.endswith("?") else "?")
    return f"{base}{separator}{urlencode(extra)}{hash_mark}{fragment}"


def same_origin(template: str, url: str) -> bool:
    """Whether `url` keeps the scheme and host of the configured `template`."""
    configured = urlsplit(MACRO.sub("x", template))
    actual = urlsplit(url)
    return (configured.scheme, configured.netloc) == (actual.scheme, actual.netloc)
