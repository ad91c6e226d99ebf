"""Landing URLs: fill `{macros}` with URL-encoded values and append passthrough parameters.

The scheme and host of the result always come from the configured URL: values are
percent-encoded with no safe characters, and the domain refuses macros in the host, so no
parameter can turn a tracking link into an open redirect.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote, quote_plus, urlencode, urlsplit

__all__ = [
    "MACRO",
    "LandingTemplate",
    "append_params",
    "compile_landing",
    "fill_macros",
    "same_origin",
    "to_uri",
]

MACRO = re.compile(r"\{([a-z0-9_]+)\}")
#: Characters that keep their meaning in a URI; everything else non-ASCII gets %-encoded.
_URI_SAFE = "!#$%&'()*+,/:;=?@[]~"
#: The characters quote() and quote_plus() never encode: such text is its own encoding.
_UNRESERVED = re.compile(r"[A-Za-z0-9_.~-]*")
#: What may follow the host of a URL: its end, or the start of the path, query or fragment.
_HOST_ENDS = ("", "/", "?", "#")
#: Distinct configured URLs remembered (landing pages and fallbacks are few).
_TEMPLATE_CACHE_SIZE = 4096


def fill_macros(template: str, values: Mapping[str, str | None]) -> str:
    """Replace each `{name}` by its URL-encoded value; unknown or empty macros become ''."""
    if "{" not in template:
        return template
    parts = _template_parts(template)
    filled = [parts[0]]
    for index in range(1, len(parts), 2):
        value = values.get(parts[index])
        filled.append(_quote(value) if value else "")
        filled.append(parts[index + 1])
    return "".join(filled)


@functools.lru_cache(maxsize=_TEMPLATE_CACHE_SIZE)
def _template_parts(template: str) -> tuple[str, ...]:
    """Text, macro name, text, ..., text: parsed once per configured URL, not per click."""
    return tuple(MACRO.split(template))


def _quote(value: str) -> str:
    # Click ids, sub ids and UTM values are usually unreserved: skip quote()'s byte loop.
    if type(value) is str and _UNRESERVED.fullmatch(value):
        return value
    return quote(value, safe="")


def _quote_plus(value: str) -> str:
    return value if _UNRESERVED.fullmatch(value) else quote_plus(value)


def _urlencode(pairs: list[tuple[str, str]]) -> str:
    """urlencode(pairs), with the same result, faster when the values need no encoding."""
    texts = [text for pair in pairs for text in pair]
    if set(map(type, texts)) != {str}:
        return urlencode(pairs)
    return _encode_str_pairs(pairs)


def _encode_str_pairs(pairs: list[tuple[str, str]]) -> str:
    """urlencode(pairs) of pairs of str."""
    if _UNRESERVED.fullmatch("".join(["".join(pair) for pair in pairs])):  # the usual case
        return "&".join(map("=".join, pairs))
    return "&".join([f"{_quote_plus(name)}={_quote_plus(value)}" for name, value in pairs])


def _query_of(base: str) -> str:
    """urlsplit(base).query; a plain URL's query is what follows its first "?"."""
    if base.isascii() and base[:1].isalpha() and not _split_sensitive(base):
        return base.partition("?")[2]
    return urlsplit(base).query


def _split_sensitive(url: str) -> bool:
    return "\t" in url or "\r" in url or "\n" in url or "[" in url or "]" in url


def append_params(url: str, params: list[tuple[str, str]]) -> str:
    """Add query parameters before any fragment, encoded, skipping names already present."""
    if not params:
        return url
    base, hash_mark, fragment = url.partition("#")
    query = _query_of(base)
    present = {pair.split("=", 1)[0] for pair in query.split("&") if pair} if query else set()
    extra = [(name, value) for name, value in params if name not in present]
    if not extra:
        return url
    separator = "&" if query else ("" if base.endswith("?") else "?")
    return f"{base}{separator}{_urlencode(extra)}{hash_mark}{fragment}"


@dataclass(frozen=True, slots=True)
class LandingTemplate:
    """A configured landing URL prepared once, so a click fills it without parsing URLs.

    `fill(values, params)` gives exactly `to_uri(append_params(fill_macros(url, values),
    params))`, and the result keeps the configured origin by construction: the scheme and
    host lie in the text before the first macro, macro values are %-encoded with no safe
    characters (they cannot add a parameter, a fragment or a host), and parameters go after
    the query. Only templates for which this holds are prepared (see `compile_landing`).
    """

    #: Text, macro name, text, ..., text.
    parts: tuple[str, ...]
    #: The names of the parameters already in the template's query (appended ones skip them).
    present: frozenset[str]
    #: What goes before the first appended parameter: "&", "?" or "" (after a bare "?").
    separator: str

    def fill(self, values: Mapping[str, str | None], params: list[tuple[str, str]]) -> str:
        """The landing URL with macros filled and `params` (pairs of str) appended."""
        parts = self.parts
        if len(parts) == 1:
            url = parts[0]
        else:
            filled = [parts[0]]
            for index in range(1, len(parts), 2):
                value = values.get(parts[index])
                filled.append(_quote(value) if value else "")
                filled.append(parts[index + 1])
            url = "".join(filled)
        present = self.present
        extra = [pair for pair in params if pair[0] not in present] if present else params
        if not extra:
            return url
        return f"{url}{self.separator}{_encode_str_pairs(extra)}"


@functools.lru_cache(maxsize=_TEMPLATE_CACHE_SIZE)
def compile_landing(template: str) -> LandingTemplate | None:
    """`template` prepared for `LandingTemplate.fill`; None when it needs the general path.

    The general path (fill_macros, append_params, to_uri, same_origin) stays for URLs with
    non-ASCII text, a fragment, characters urlsplit() treats specially, a macro before the
    end of the host or inside a parameter name.
    """
    if not template.isascii() or "#" in template or _split_sensitive(template):
        return None
    parts = _template_parts(template)
    prefix = _origin_prefix(template)
    if not prefix or not template[:1].isalpha():
        return None
    head = parts[0]
    if len(parts) > 1 and not (
        head.startswith(prefix) and head[len(prefix) : len(prefix) + 1] in _HOST_ENDS[1:]
    ):
        return None  # a macro right after the host could extend it
    query = template.partition("?")[2]
    names = [pair.split("=", 1)[0] for pair in query.split("&") if pair] if query else []
    if any("{" in name for name in names):
        return None  # a macro in a parameter name: which names are present varies
    separator = "&" if query else ("" if template.endswith("?") else "?")
    return LandingTemplate(parts, frozenset(names), separator)


def to_uri(url: str) -> str:
    """The URL in ASCII, as a Location header needs: an IDNA host, the rest UTF-8 %-encoded.

    Configured landing pages may hold non-ASCII text (`https://bücher.example/grüne-zelte`);
    an HTTP header cannot, so it is converted here the way browsers convert what is typed.
    """
    if url.isascii():
        return url
    scheme, colon_slashes, rest = url.partition("://")
    netloc, slash, tail = rest.partition("/")
    for mark in "?#":  # a URL such as https://host?q=ü has no path
        if mark in netloc:
            netloc, _sep, more = netloc.partition(mark)
            tail, slash = f"{mark}{more}{slash}{tail}", ""
            break
    userinfo, at, hostport = netloc.rpartition("@")
    host, colon, port = hostport.partition(":")
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            host = quote(host, safe="")  # not a valid name; still never a broken header
    userinfo = quote(userinfo, safe=_URI_SAFE) if at else ""
    path = quote(f"{slash}{tail}", safe=_URI_SAFE)
    return f"{scheme}{colon_slashes}{userinfo}{at}{host}{colon}{port}{path}"


def same_origin(template: str, url: str) -> bool:
    """Whether `url` keeps the scheme and host of the configured `template`."""
    prefix = _origin_prefix(template)
    # When the host ends where the prefix does, urlsplit() would read the same scheme and
    # host: the answer without parsing every redirect (urlsplit() caches, but each click's
    # URL is new).
    if (
        prefix
        and url.startswith(prefix)
        and url[len(prefix) : len(prefix) + 1] in _HOST_ENDS
        and url.isascii()
        and not _split_sensitive(url)
    ):
        return True
    actual = urlsplit(to_uri(url))
    return _configured_origin(template) == (actual.scheme, actual.netloc)


@functools.lru_cache(maxsize=_TEMPLATE_CACHE_SIZE)
def _origin_prefix(template: str) -> str:
    """The template's `scheme://host`, when spelled as urlsplit() reads it; else ''."""
    scheme, netloc = _configured_origin(template)
    prefix = f"{scheme}://{netloc}"
    plain = prefix.isascii() and not _split_sensitive(prefix)
    if (
        plain
        and template.startswith(prefix)
        and template[len(prefix) : len(prefix) + 1] in _HOST_ENDS
    ):
        return prefix
    return ""


@functools.lru_cache(maxsize=_TEMPLATE_CACHE_SIZE)
def _configured_origin(template: str) -> tuple[str, str]:
    configured = urlsplit(to_uri(MACRO.sub("x", template)))
    return configured.scheme, configured.netloc
