"""docs/settings.md and docs/errors.md stay in step with the code they document."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from perfmark.errors import DOCS_BASE, PerfmarkError
from perfmark.settings import ENV_PREFIX, setting_table
from perfmark.web.errors import _STATUS_CODES

ROOT = Path(__file__).resolve().parents[2]
SETTINGS_DOC = ROOT / "docs" / "settings.md"
ERRORS_DOC = ROOT / "docs" / "errors.md"
SOURCE = ROOT / "src" / "perfmark"

# Ways the code base names an error code, found by reading the source rather than by importing
# every module: a class attribute `code = "..."`, and the code passed to error_body() or to
# the tracking endpoints' _json_error(send, status, "...").
_CODE_PATTERNS = (
    re.compile(r'^\s+code(?:\s*:\s*ClassVar\[str\])?\s*=\s*"([a-z_]+)"\s*$', re.MULTILINE),
    re.compile(r'\berror_body\(\s*"([a-z_]+)"'),
    re.compile(r'\b_json_error\(\s*\w+\s*,\s*[^,()]+,\s*"([a-z_]+)"'),
)


def _doc_default(value: Any) -> str:
    """How a default is written in docs/settings.md."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value == "":
        return '""'
    return str(value)


def _doc_type(type_name: str) -> str:
    """How a type is written: `int`, or `one of `a`, `b`` for a Literal."""
    if type_name.startswith("'"):
        choices = [choice.strip().strip("'") for choice in type_name.split("|")]
        return "one of " + ", ".join(f"`{choice}`" for choice in choices)
    return f"`{type_name}`"


def _settings_rows() -> dict[str, list[str]]:
    """The documented settings table: name -> [env var, type, default, help] as written."""
    rows: dict[str, list[str]] = {}
    for line in SETTINGS_DOC.read_text(encoding="utf-8").splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split(" | ")]
        match = re.fullmatch(r"`([a-z_]+)`", cells[0]) if line.startswith("| `") else None
        if match and len(cells) == 5:
            assert match.group(1) not in rows, f"{match.group(1)} is documented twice"
            rows[match.group(1)] = cells[1:]
    return rows


def _heading_anchors(text: str) -> set[str]:
    """GitHub's anchors for the headings of a Markdown file, plus explicit <a id> anchors."""
    anchors = set(re.findall(r'<a id="([^"]+)"', text))
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*$", text, re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        anchors.add(slug)
    return anchors


def _all_subclasses(cls: type[PerfmarkError]) -> set[type[PerfmarkError]]:
    found = set(cls.__subclasses__())
    for sub in list(found):
        found |= _all_subclasses(sub)
    return found


def used_error_codes() -> set[str]:
    """Every error code the code base can answer with."""
    codes = {"internal_error"}
    codes |= {cls.code for cls in _all_subclasses(PerfmarkError)}
    codes |= set(_STATUS_CODES.values())
    for path in SOURCE.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        for pattern in _CODE_PATTERNS:
            codes |= set(pattern.findall(text))
    return codes


# --- settings.md ------------------------------------------------------------------------------


@pytest.mark.parametrize("row", setting_table(), ids=lambda row: row[0])
def test_every_setting_is_documented_as_declared(row: tuple[str, str, Any, str]) -> None:
    name, type_name, default, help_text = row
    documented = _settings_rows()
    assert name in documented, f"setting {name} is missing from docs/settings.md"
    env_var, doc_type, doc_default, doc_help = documented[name]
    assert env_var == f"`{ENV_PREFIX}{name.upper()}`"
    assert doc_type == _doc_type(type_name)
    assert doc_default == f"`{_doc_default(default)}`"
    assert doc_help == help_text


def test_no_setting_is_documented_that_does_not_exist() -> None:
    declared = {row[0] for row in setting_table()}
    assert set(_settings_rows()) == declared


def test_documented_settings_follow_declaration_order() -> None:
    assert list(_settings_rows()) == [row[0] for row in setting_table()]


def test_settings_doc_explains_the_sources_and_their_precedence() -> None:
    text = SETTINGS_DOC.read_text(encoding="utf-8")
    for needle in ("PERFMARK_CONFIG", "perfmark.toml", "PERFMARK_HOME", "```toml"):
        assert needle in text
    order = [text.index(word) for word in ("**The default**", "**The TOML file**", "**Env")]
    assert order == sorted(order)


def test_the_parsers_of_this_test_see_what_they_should() -> None:
    # Guard the guards: a table or heading format change must not make the checks vacuous.
    assert len(_settings_rows()) == len(setting_table())
    assert {"validation_error", "error"} <= _heading_anchors(ERRORS_DOC.read_text("utf-8"))
    assert {"validation_error", "invalid_setting", "internal_error", "method_not_allowed"} <= (
        used_error_codes()
    )
    assert _heading_anchors("## Spring sale (2026)\n## a_b\n") == {"spring-sale-2026", "a_b"}


# --- errors.md --------------------------------------------------------------------------------


@pytest.mark.parametrize("code", sorted(used_error_codes()))
def test_every_error_code_has_a_section_the_docs_link_points_to(code: str) -> None:
    text = ERRORS_DOC.read_text(encoding="utf-8")
    assert code in _heading_anchors(text), f"docs/errors.md has no '## {code}' section"
    fragment = (DOCS_BASE + code).split("#", 1)[1]
    assert fragment == code


@pytest.mark.parametrize(
    ("code", "status"),
    sorted(
        {(cls.code, cls.status) for cls in _all_subclasses(PerfmarkError)}
        | {(code, status) for status, code in _STATUS_CODES.items()}
        | {("internal_error", 500)}
    ),
)
def test_each_section_states_its_http_status(code: str, status: int) -> None:
    text = ERRORS_DOC.read_text(encoding="utf-8")
    section = text.split(f"\n## {code}\n", 1)[1].split("\n## ", 1)[0]
    assert f"**HTTP status {status}" in section
    assert "**What to do:**" in section


def test_docs_base_points_at_the_errors_page() -> None:
    assert DOCS_BASE.endswith("/errors#")
