"""The campaign editor's form: typed values back into a campaign spec, with errors by field.

Repeatable parts (pricing rules, targeting rules, landing pages, creatives) arrive as
`<section>-<row>-<name>` fields. Each row is checked on its own so an error names the
row's input; the whole spec is then checked by the domain, and the store checks references.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from perfmark.adapters.store.codec import decode_spec, encode_spec
from perfmark.domain.campaigns import CampaignSpec, TargetingRule
from perfmark.domain.offers import WeightedUrl
from perfmark.domain.pricing import PricingRule
from perfmark.errors import PerfmarkError

__all__ = [
    "CampaignForm",
    "ROW_SECTIONS",
    "form_from_spec",
    "parse_campaign_form",
]

#: Repeatable sections and the inputs of one row.
ROW_SECTIONS: dict[str, tuple[str, ...]] = {
    "pricing": (
        "goal_id",
        "publisher_id",
        "pays_model",
        "pays_amount",
        "pays_percent",
        "earns_model",
        "earns_amount",
        "earns_percent",
    ),
    "targeting": ("field", "values", "exclude"),
    "landing_pages": ("key", "url", "weight", "name"),
    "creatives": ("key", "url", "weight", "name"),
}
#: Single inputs the editor sends (the rest of a spec, such as caps, is kept as it was).
SCALAR_FIELDS = (
    "name",
    "advertiser_id",
    "offer_id",
    "channel",
    "currency",
    "status",
    "daily_budget",
    "total_budget",
    "fallback_url",
    "attribution_window_days",
    "hold_days",
    "billing_attribution",
)
#: Fields that may not change once the campaign exists (the store refuses them too).
IMMUTABLE_FIELDS = frozenset({"advertiser_id", "currency"})
_ROW_FIELD = re.compile(r"(?P<section>[a-z_]+)-(?P<row>\d{1,3})-(?P<name>[a-z_]+)")
#: Where an error of the whole spec is shown when it names a field the form has no input for.
_SECTION_OF_FIELD = {
    "goal_id": "pricing",
    "earns": "pricing",
    "model": "pricing",
    "amount": "pricing",
    "percent": "pricing",
    "tiers": "pricing",
    "weight": "landing_pages",
    "url": "landing_pages",
    "key": "landing_pages",
    "starts_at": "form",
    "ends_at": "form",
    "limit": "form",
}


@dataclass
class CampaignForm:
    """What the user typed (to show again), the parsed changes, and errors by input name."""

    values: dict[str, Any]
    rows: dict[str, list[dict[str, str]]]
    goal_ids: list[str]
    errors: dict[str, str] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def valid(self) -> bool:
        """Whether the form can be saved."""
        return not self.errors

    def add_error(self, error: PerfmarkError, default: str = "form") -> None:
        """Attach an error to the input it names (or the form as a whole)."""
        name = error.field or default
        if name not in self.values and name not in ROW_SECTIONS and name != "goal_ids":
            name = _SECTION_OF_FIELD.get(name.split(".")[0], default)
        self.errors.setdefault(name, error.message)


def _rows(form: Mapping[str, str], section: str) -> list[dict[str, str]]:
    found: dict[int, dict[str, str]] = {}
    for key, value in form.items():
        match = _ROW_FIELD.fullmatch(key)
        if match and match["section"] == section and match["name"] in ROW_SECTIONS[section]:
            found.setdefault(int(match["row"]), {})[match["name"]] = value.strip()
    rows = []
    for index in sorted(found):
        row = found[index]
        # A row left blank (only defaults such as a model choice) is no row at all.
        meaningful = {
            k: v
            for k, v in row.items()
            if k not in ("pays_model", "earns_model", "field", "weight")
        }
        if any(meaningful.values()):
            rows.append(row)
    return rows


def _weighted(row: dict[str, str]) -> dict[str, Any]:
    weight = row.get("weight") or "1"
    return {
        "key": row.get("key", ""),
        "url": row.get("url", ""),
        "weight": int(weight) if weight.isdigit() else weight,
        "name": row.get("name", ""),
    }


def _price(row: dict[str, str], side: str) -> dict[str, Any]:
    return {
        "model": row.get(f"{side}_model", ""),
        "amount": row.get(f"{side}_amount") or "0",
        "percent": row.get(f"{side}_percent") or "0",
    }


def _pricing(row: dict[str, str]) -> dict[str, Any]:
    return {
        "pays": _price(row, "pays"),
        "earns": _price(row, "earns"),
        "goal_id": row.get("goal_id") or None,
        "publisher_id": row.get("publisher_id") or None,
    }


def _targeting(row: dict[str, str]) -> dict[str, Any]:
    values = [part.strip() for part in row.get("values", "").split(",") if part.strip()]
    return {"field": row.get("field", ""), "values": values, "exclude": row.get("exclude") == "on"}


_BUILDERS = {
    "pricing": (_pricing, PricingRule),
    "targeting": (_targeting, TargetingRule),
    "landing_pages": (_weighted, WeightedUrl),
    "creatives": (_weighted, WeightedUrl),
}


def parse_campaign_form(
    form: Mapping[str, str], goal_ids: list[str], *, current: CampaignSpec | None = None
) -> CampaignForm:
    """Parse the editor's fields; `current` is the stored campaign when editing one."""
    values = {name: form.get(name, "").strip() for name in SCALAR_FIELDS}
    if current is not None:
        for name in IMMUTABLE_FIELDS:
            values[name] = str(getattr(current, name))
    rows = {section: _rows(form, section) for section in ROW_SECTIONS}
    parsed = CampaignForm(values=values, rows=rows, goal_ids=list(dict.fromkeys(goal_ids)))
    data: dict[str, Any] = encode_spec(current) if current is not None else {}
    for name, value in values.items():
        if name in ("daily_budget", "total_budget", "fallback_url"):
            data[name] = value or None
        elif name in ("attribution_window_days", "hold_days"):
            data[name] = int(value) if value.isdigit() else (value or (30 if name[0] == "a" else 0))
        elif value or name not in ("billing_attribution", "status", "channel", "currency"):
            data[name] = value
    data["goal_ids"] = parsed.goal_ids
    for section, (build, spec_type) in _BUILDERS.items():
        items = []
        for index, row in enumerate(rows[section]):
            item = build(row)
            try:
                decode_spec(spec_type, item)
            except PerfmarkError as exc:
                parsed.errors.setdefault(section, f"row {index + 1}: {exc.message}")
            items.append(item)
        data[section] = items
    if parsed.valid:
        try:
            decode_spec(CampaignSpec, data)
        except PerfmarkError as exc:
            parsed.add_error(exc)
    parsed.data = data
    return parsed


def form_from_spec(spec: CampaignSpec | None) -> CampaignForm:
    """The editor's initial values: a stored campaign's, or a new campaign's defaults."""
    if spec is None:
        values = {name: "" for name in SCALAR_FIELDS}
        values.update(
            channel="affiliate",
            currency="USD",
            status="draft",
            attribution_window_days="30",
            hold_days="0",
            billing_attribution="last_click",
        )
        return CampaignForm(values=values, rows={s: [] for s in ROW_SECTIONS}, goal_ids=[])
    encoded = encode_spec(spec)
    values = {
        name: "" if encoded.get(name) is None else str(encoded[name]) for name in SCALAR_FIELDS
    }
    rows: dict[str, list[dict[str, str]]] = {section: [] for section in ROW_SECTIONS}
    for rule in encoded["pricing"]:
        row = {"goal_id": rule["goal_id"] or "", "publisher_id": rule["publisher_id"] or ""}
        for side in ("pays", "earns"):
            row[f"{side}_model"] = rule[side]["model"]
            row[f"{side}_amount"] = str(rule[side]["amount"])
            row[f"{side}_percent"] = str(rule[side]["percent"])
        rows["pricing"].append(row)
    for rule in encoded["targeting"]:
        rows["targeting"].append(
            {
                "field": rule["field"],
                "values": ", ".join(rule["values"]),
                "exclude": "on" if rule["exclude"] else "",
            }
        )
    for section in ("landing_pages", "creatives"):
        rows[section] = [
            {
                "key": item["key"],
                "url": item["url"],
                "weight": str(item["weight"]),
                "name": item["name"],
            }
            for item in encoded[section]
        ]
    return CampaignForm(values=values, rows=rows, goal_ids=list(encoded["goal_ids"]))
