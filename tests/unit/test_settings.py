"""Settings: defaults, PERFMARK_* variables, the TOML file, precedence, and clear refusals."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from perfmark.errors import ValidationError
from perfmark.settings import ENV_PREFIX, Settings, SettingsError, load_settings, setting_table


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """An empty data directory, so no stray perfmark.toml is read."""
    return tmp_path / "home"


def load(home: Path, **env: str) -> Settings:
    return load_settings({"PERFMARK_HOME": str(home), **env})


def write_config(home: Path, text: str) -> Path:
    home.mkdir(parents=True, exist_ok=True)
    path = home / "perfmark.toml"
    path.write_text(text, encoding="utf-8")
    return path


def refusal(home: Path, **env: str) -> SettingsError:
    with pytest.raises(SettingsError) as caught:
        load(home, **env)
    return caught.value


# --- defaults ---------------------------------------------------------------------------------


def test_defaults(home: Path) -> None:
    loaded = load(home)
    assert loaded.home == home
    assert loaded.database_url == ""
    assert loaded.base_url == "http://127.0.0.1:8000"
    assert loaded.host == "127.0.0.1"
    assert loaded.port == 8000
    assert loaded.workers == 2
    assert loaded.max_body_bytes == 1_048_576
    assert loaded.ip_anonymization == "truncate"
    assert loaded.cookieless is False
    assert loaded.lake_engine == "duckdb"
    assert loaded.log_level == "info"


def test_without_any_variable_home_defaults_to_dot_perfmark() -> None:
    assert load_settings({}).home == Path(".perfmark")


def test_every_field_has_a_default_and_help() -> None:
    table = setting_table()
    assert [row[0] for row in table] == [item.name for item in dataclasses.fields(Settings)]
    for name, type_name, default, help_text in table:
        assert getattr(Settings(), name) == default
        assert type_name
        assert help_text.strip(), name


def test_setting_table_renders_types() -> None:
    types = {name: type_name for name, type_name, _, _ in setting_table()}
    assert types["port"] == "int"
    assert types["cookieless"] == "bool"
    assert types["home"] == "Path"
    assert types["lake_engine"] == "'duckdb' | 'spark'"


def test_resolved_database_url_defaults_to_sqlite_in_home(home: Path) -> None:
    expected = f"sqlite:///{(home / 'perfmark.db').resolve()}"
    assert load(home).resolved_database_url == expected
    assert expected.startswith("sqlite:////")  # an absolute path after the three slashes


def test_resolved_database_url_keeps_an_explicit_url(home: Path) -> None:
    url = "postgresql+psycopg://app@db/perfmark"
    assert load(home, PERFMARK_DATABASE_URL=url).resolved_database_url == url


# --- sources and precedence -------------------------------------------------------------------


def test_environment_variables_override_defaults(home: Path) -> None:
    loaded = load(
        home,
        PERFMARK_PORT="9001",
        PERFMARK_COOKIELESS="yes",
        PERFMARK_LAKE_ENGINE="Spark",
        PERFMARK_BASE_URL="https://track.example.com",
        PERFMARK_HOST="0.0.0.0",
    )
    assert loaded.port == 9001
    assert loaded.cookieless is True
    assert loaded.lake_engine == "spark"
    assert loaded.base_url == "https://track.example.com"
    assert loaded.host == "0.0.0.0"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1", True),
        ("true", True),
        ("YES", True),
        (" on ", True),
        ("0", False),
        ("false", False),
        ("No", False),
        ("off", False),
    ],
)
def test_boolean_spellings(home: Path, text: str, expected: bool) -> None:
    assert load(home, PERFMARK_WAL_STRICT_DURABILITY=text).wal_strict_durability is expected


def test_toml_file_in_home_is_read(home: Path) -> None:
    write_config(home, 'port = 7000\ncookieless = true\nlog_level = "debug"\nhost = "::1"\n')
    loaded = load(home)
    assert (loaded.port, loaded.cookieless, loaded.log_level, loaded.host) == (
        7000,
        True,
        "debug",
        "::1",
    )


def test_perfmark_config_names_another_file(home: Path, tmp_path: Path) -> None:
    other = tmp_path / "elsewhere.toml"
    other.write_text("workers = 5\n", encoding="utf-8")
    write_config(home, "workers = 3\n")
    assert load(home, PERFMARK_CONFIG=str(other)).workers == 5


def test_precedence_default_then_file_then_environment_then_overrides(home: Path) -> None:
    write_config(home, "port = 7000\nworkers = 3\npage_size_max = 50\n")
    loaded = load_settings(
        {"PERFMARK_HOME": str(home), "PERFMARK_WORKERS": "4", "PERFMARK_PAGE_SIZE_MAX": "60"},
        overrides={"page_size_max": 70},
    )
    assert loaded.max_param_chars == 2048  # default
    assert loaded.port == 7000  # file over default
    assert loaded.workers == 4  # environment over file
    assert loaded.page_size_max == 70  # overrides over environment


def test_unrelated_environment_variables_are_ignored(home: Path) -> None:
    assert load(home, PERFMARK_REQUIRE_SERVICES="1", PATH="/bin").port == 8000


def test_home_expands_the_user_directory() -> None:
    assert load_settings({"PERFMARK_HOME": "~/pm"}).home == Path("~/pm").expanduser()


# --- refusals ---------------------------------------------------------------------------------


def test_settings_error_is_a_validation_error_with_its_own_code() -> None:
    assert issubclass(SettingsError, ValidationError)
    assert SettingsError.code == "invalid_setting"
    assert SettingsError.status == 422


@pytest.mark.parametrize(
    ("name", "value", "allowed"),
    [
        ("COOKIELESS", "maybe", "true or false"),
        ("PORT", "eighty", "an integer"),
        ("PORT", "80.5", "an integer"),
        ("PORT", "", "an integer"),
        ("WORKERS", "-3", "a non-negative integer"),
        ("MAX_BODY_BYTES", "-1", "a non-negative integer"),
        ("IP_ANONYMIZATION", "hash", "one of 'none', 'truncate', 'drop'"),
        ("LAKE_ENGINE", "postgres", "one of 'duckdb', 'spark'"),
        ("LOG_LEVEL", "verbose", "one of 'debug', 'info', 'warning', 'error'"),
    ],
)
def test_bad_environment_values_name_the_setting_the_value_and_what_is_allowed(
    home: Path, name: str, value: str, allowed: str
) -> None:
    error = refusal(home, **{ENV_PREFIX + name: value})
    assert error.field == name.lower()
    assert f"setting {name.lower()} from {ENV_PREFIX}{name} is {value!r}" in error.message
    assert error.message.endswith(f"expected {allowed}")


@pytest.mark.parametrize(
    ("name", "value"),
    [("PORT", "0"), ("PORT", "65536"), ("WORKERS", "0"), ("PAGE_SIZE_MAX", "0")],
)
def test_out_of_range_integers_are_refused(home: Path, name: str, value: str) -> None:
    error = refusal(home, **{ENV_PREFIX + name: value})
    assert error.field == name.lower()
    assert f"setting {name.lower()} is {value}" in error.message
    assert "1-65535" in error.message or "1 or more" in error.message


@pytest.mark.parametrize(
    "name",
    [
        "workers",
        "max_body_bytes",
        "max_param_chars",
        "page_size_max",
        "cookie_lifetime_days",
        "wal_segment_bytes",
        "postback_max_age_seconds",
    ],
)
def test_limits_that_zero_would_disable_must_be_at_least_one(home: Path, name: str) -> None:
    assert getattr(load(home, **{ENV_PREFIX + name.upper(): "1"}), name) == 1
    assert refusal(home, **{ENV_PREFIX + name.upper(): "0"}).field == name


@pytest.mark.parametrize(
    "name", ["config_cache_ttl_ms", "wal_fsync_interval_ms", "rollup_interval_seconds"]
)
def test_zero_intervals_are_allowed(home: Path, name: str) -> None:
    assert getattr(load(home, **{ENV_PREFIX + name.upper(): "0"}), name) == 0


@pytest.mark.parametrize(
    "url",
    [
        "127.0.0.1:8000",
        "ftp://example.com",
        "javascript:alert(1)",
        "/relative/path",
        "http://",
        "https://",
        "http:// example.com",
        "https://example.com/?a=1",
        "https://example.com/#top",
        "https://example.com:port/",
        "",
    ],
)
def test_bad_base_url_is_refused(home: Path, url: str) -> None:
    error = refusal(home, PERFMARK_BASE_URL=url)
    assert error.field == "base_url"
    assert repr(url) in error.message
    assert "http:// or https://" in error.message


@pytest.mark.parametrize(
    "url", ["http://localhost:8000", "https://track.example.com", "https://example.com/pm/"]
)
def test_good_base_urls_are_accepted(home: Path, url: str) -> None:
    assert load(home, PERFMARK_BASE_URL=url).base_url == url


@pytest.mark.parametrize("value", ["a-b", "clid!", ""])
def test_click_id_param_must_be_letters_digits_and_underscore(home: Path, value: str) -> None:
    assert refusal(home, PERFMARK_CLICK_ID_PARAM=value).field == "click_id_param"


def test_unknown_toml_key_is_refused_listing_the_known_settings(home: Path) -> None:
    path = write_config(home, "prot = 8001\n")
    error = refusal(home)
    assert error.field == "prot"
    assert str(path) in error.message
    assert "'prot'" in error.message
    for name, *_ in setting_table():
        assert name in error.message


def test_toml_tables_are_unknown_settings(home: Path) -> None:
    write_config(home, "[server]\nport = 1\n")
    assert refusal(home).field == "server"


def test_invalid_toml_is_refused(home: Path) -> None:
    path = write_config(home, "port = = 1\n")
    error = refusal(home)
    assert error.field == "config"
    assert str(path) in error.message
    assert "not valid TOML" in error.message


@pytest.mark.parametrize(
    ("line", "name", "allowed"),
    [
        ("port = 80.5", "port", "an integer"),
        ("port = true", "port", "an integer"),
        ("port = -1", "port", "a non-negative integer"),
        ("cookieless = 2", "cookieless", "true or false"),
        ('lake_engine = "sqlite"', "lake_engine", "one of 'duckdb', 'spark'"),
        ("host = 5", "host", "a string"),
        ("secret_key = [1, 2]", "secret_key", "a string"),
        ("home = 1", "home", "a string"),
    ],
)
def test_bad_toml_values_name_the_setting_and_the_file(
    home: Path, line: str, name: str, allowed: str
) -> None:
    path = write_config(home, line + "\n")
    error = refusal(home)
    assert error.field == name
    assert f"setting {name} from {path}" in error.message
    assert error.message.endswith(f"expected {allowed}")


def test_a_missing_file_named_by_perfmark_config_is_refused(home: Path, tmp_path: Path) -> None:
    missing = tmp_path / "typo.toml"
    error = refusal(home, PERFMARK_CONFIG=str(missing))
    assert error.field == "config"
    assert str(missing) in error.message


def test_a_missing_default_config_file_is_fine(home: Path) -> None:
    assert not (home / "perfmark.toml").exists()
    assert load(home).port == 8000


def test_unknown_override_is_refused(home: Path) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings({"PERFMARK_HOME": str(home)}, overrides={"potr": 1})
    assert caught.value.field == "potr"
    assert "port" in caught.value.message


def test_bad_override_value_names_its_source(home: Path) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings({"PERFMARK_HOME": str(home)}, overrides={"port": "x"})
    assert caught.value.field == "port"
    assert "from overrides" in caught.value.message


def test_settings_are_frozen(home: Path) -> None:
    loaded = load(home)
    with pytest.raises(dataclasses.FrozenInstanceError):
        loaded.port = 1  # type: ignore[misc]
