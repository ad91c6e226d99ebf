"""One declared table of settings, read from `PERFMARK_*` variables and a TOML file, validated once.

Each setting is a field of `Settings` with its type, default and help text. Values come,
in rising priority, from the defaults, the TOML file (`$PERFMARK_CONFIG`, or
`perfmark.toml` in the data directory) and `PERFMARK_<NAME>` environment variables.
docs/settings.md documents every setting; a test fails when one is missing there.
"""

from __future__ import annotations

import os
import tomllib
import types
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints
from urllib.parse import urlsplit

from perfmark.errors import ValidationError

__all__ = [
    "ENV_PREFIX",
    "Settings",
    "SettingsError",
    "lake_directory",
    "load_settings",
    "setting_table",
    "wal_directory",
]

ENV_PREFIX = "PERFMARK_"

#: Integer settings where 0 would disable the feature outright (no body, no page, ...).
_AT_LEAST_ONE = (
    "workers",
    "max_body_bytes",
    "max_param_chars",
    "page_size_max",
    "cookie_lifetime_days",
    "wal_segment_bytes",
    "postback_max_age_seconds",
)


class SettingsError(ValidationError):
    """A setting with a value that cannot be used; the message names it and what is allowed."""

    code = "invalid_setting"


def _setting(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class Settings:
    """Every perfmark setting; build it with `load_settings()`."""

    home: Path = _setting(Path(".perfmark"), "Data directory: SQLite store, event logs, lake.")
    database_url: str = _setting(
        "", "SQLAlchemy URL of the store; empty means SQLite at `<home>/perfmark.db`."
    )
    base_url: str = _setting(
        "http://127.0.0.1:8000", "Public URL of the tracker, used in tracking links and snippets."
    )
    host: str = _setting("127.0.0.1", "Interface `perfmark serve` listens on.")
    port: int = _setting(8000, "Port `perfmark serve` listens on.")
    workers: int = _setting(2, "HTTP worker processes started by `perfmark serve`.")
    secret_key: str = _setting(
        "", "Secret for session cookies and visitor hashing; empty means generated in `<home>`."
    )
    max_body_bytes: int = _setting(1_048_576, "Largest request body accepted, in bytes.")
    max_param_chars: int = _setting(2048, "Longest query parameter value accepted, in characters.")
    page_size_max: int = _setting(200, "Largest page size the API accepts.")
    click_id_param: str = _setting(
        "pm_clid", "Query parameter that carries the click id to landing pages."
    )
    ip_anonymization: Literal["none", "truncate", "drop"] = _setting(
        "truncate",
        "How visitor IPs are stored: as sent, truncated (IPv4 /24, IPv6 /48) or not at all.",
    )
    cookieless: bool = _setting(
        False, "Identify visitors by a daily-salted hash of IP and user agent instead of a cookie."
    )
    cookie_lifetime_days: int = _setting(90, "Lifetime of the first-party visitor cookie, in days.")
    config_cache_ttl_ms: int = _setting(
        1000, "How long the tracker serves cached config before reloading, in milliseconds."
    )
    wal_fsync_interval_ms: int = _setting(
        50, "Group-commit interval of the write-ahead log (fsync), in milliseconds."
    )
    wal_strict_durability: bool = _setting(
        False, "fsync the write-ahead log after every event before answering (slower)."
    )
    wal_segment_bytes: int = _setting(
        64 * 1024 * 1024, "Size at which a write-ahead log segment is closed, in bytes."
    )
    postback_max_age_seconds: int = _setting(
        300, "Oldest signed postback timestamp accepted, in seconds (replay protection)."
    )
    lake_engine: Literal["duckdb", "spark"] = _setting(
        "duckdb", "Query engine for reports over the event lake."
    )
    spark_master: str = _setting("local[2]", "Spark master URL when lake_engine is spark.")
    dashboard_warmup: bool = _setting(
        True, "Compute the dashboard's default figures in the background when a worker starts."
    )
    rollup_interval_seconds: int = _setting(
        30, "Least time between two rebuilds of one date's report rollups by the processor."
    )
    log_level: Literal["debug", "info", "warning", "error"] = _setting("info", "Log level.")

    @property
    def resolved_database_url(self) -> str:
        """The store URL, with the SQLite default filled in."""
        return self.database_url or f"sqlite:///{(self.home / 'perfmark.db').resolve()}"


def setting_table() -> list[tuple[str, str, Any, str]]:
    """(name, type, default, help) of every setting, in declaration order."""
    hints = get_type_hints(Settings)
    rows = []
    for item in fields(Settings):
        default = None if item.default is MISSING else item.default
        rows.append((item.name, _type_name(hints[item.name]), default, item.metadata["help"]))
    return rows


def _type_name(annotation: Any) -> str:
    if get_origin(annotation) is Literal:
        return " | ".join(repr(value) for value in get_args(annotation))
    return getattr(annotation, "__name__", str(annotation))


def _convert(name: str, annotation: Any, raw: Any, source: str) -> Any:
    def fail(allowed: str) -> SettingsError:
        return SettingsError(
            f"setting {name} from {source} is {raw!r}; expected {allowed}", field=name
        )

    origin = get_origin(annotation)
    if origin is Literal:
        choices = get_args(annotation)
        value = raw.strip().lower() if isinstance(raw, str) else raw
        if value not in choices:
            raise fail("one of " + ", ".join(repr(choice) for choice in choices))
        return value
    if origin in (Union, types.UnionType):
        raise fail("a supported type")  # no optional settings are declared
    if annotation is bool:
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in {"1", "true", "yes", "on"}:
            return True
        if text in {"0", "false", "no", "off"}:
            return False
        raise fail("true or false")
    if annotation is int:
        if isinstance(raw, bool):
            raise fail("an integer")
        try:
            number = int(str(raw).strip())
        except ValueError:
            raise fail("an integer") from None
        if number < 0:
            raise fail("a non-negative integer")
        return number
    if annotation is Path or annotation is str:
        if not isinstance(raw, str):  # a TOML number or table where text belongs
            raise fail("a string")
        return Path(raw).expanduser() if annotation is Path else raw
    raise fail(f"a value of type {annotation}")


def load_settings(
    environ: Mapping[str, str] | None = None, overrides: Mapping[str, Any] | None = None
) -> Settings:
    """Read, convert and validate all settings; raise `SettingsError` naming the first bad one."""
    env = dict(os.environ if environ is None else environ)
    hints = get_type_hints(Settings)
    known = {item.name for item in fields(Settings)}
    values: dict[str, Any] = {}

    home = Path(env.get(ENV_PREFIX + "HOME", ".perfmark")).expanduser()
    explicit_config = env.get(ENV_PREFIX + "CONFIG")
    config_path = Path(explicit_config or home / "perfmark.toml").expanduser()
    if explicit_config and not config_path.is_file():
        # A named file that is missing is a typo, not "no config": say so instead of ignoring it.
        raise SettingsError(
            f"{ENV_PREFIX}CONFIG names {str(config_path)!r}, which is not a file; "
            "fix the path or unset the variable",
            field="config",
        )
    if config_path.is_file():
        try:
            table = tomllib.loads(config_path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise SettingsError(
                f"config file {config_path} is not valid TOML: {exc}", field="config"
            ) from None
        for key, raw in table.items():
            if key not in known:
                raise SettingsError(
                    f"config file {config_path} sets unknown setting {key!r}; known settings: "
                    + ", ".join(item.name for item in fields(Settings))
                    + " (see docs/settings.md)",
                    field=key,
                )
            values[key] = _convert(key, hints[key], raw, str(config_path))
    for key in known:
        raw_env = env.get(ENV_PREFIX + key.upper())
        if raw_env is not None:
            values[key] = _convert(key, hints[key], raw_env, ENV_PREFIX + key.upper())
    for key, raw in (overrides or {}).items():
        if key not in known:
            raise SettingsError(
                f"unknown setting {key!r}; known settings: "
                + ", ".join(item.name for item in fields(Settings)),
                field=key,
            )
        values[key] = _convert(key, hints[key], raw, "overrides")
    settings = replace(Settings(), **values)
    _validate(settings)
    return settings


def _validate(settings: Settings) -> None:
    _validate_base_url(settings.base_url)
    if not 0 < settings.port < 65536:
        raise SettingsError(f"setting port is {settings.port}; use 1-65535", field="port")
    for name in _AT_LEAST_ONE:
        if getattr(settings, name) < 1:
            raise SettingsError(
                f"setting {name} is {getattr(settings, name)}; use 1 or more", field=name
            )
    if not settings.click_id_param.replace("_", "").isalnum():
        raise SettingsError(
            f"setting click_id_param is {settings.click_id_param!r}; use letters, digits and _",
            field="click_id_param",
        )


def _validate_base_url(url: str) -> None:
    """An absolute http(s) URL with a host and no query or fragment (links are appended to it)."""
    try:
        parts = urlsplit(url)
        valid = (
            parts.scheme in ("http", "https")
            and bool(parts.hostname)
            and not parts.query
            and not parts.fragment
            and not any(char.isspace() or ord(char) < 32 for char in url)
        )
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number
    except ValueError:
        valid = False
    if not valid:
        raise SettingsError(
            f"setting base_url is {url!r}; use an absolute http:// or https:// URL with a host "
            "and no query or fragment, such as https://track.example.com",
            field="base_url",
        )


def wal_directory(settings: Settings) -> Path:
    """Where the trackers' write-ahead log segments live."""
    return settings.home / "wal"


def lake_directory(settings: Settings) -> Path:
    """Where the event lake's Parquet partitions live."""
    return settings.home / "lake"
