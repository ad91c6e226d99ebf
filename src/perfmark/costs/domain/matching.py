"""Matching the campaign names of ad platforms to perfmark campaigns: by a map, an id or a name."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from perfmark.costs.domain.rows import CostFileError, CostLine
from perfmark.errors import ValidationError

__all__ = ["CampaignMatcher", "CampaignRef", "parse_campaign_map", "resolve_lines"]

#: Longest platform campaign name accepted in a map entry, in characters.
MAX_MAPPED_NAME_CHARS = 400


@dataclass(frozen=True, slots=True)
class CampaignRef:
    """What matching needs to know of a perfmark campaign."""

    id: str
    name: str
    archived: bool = False


def _key(name: str) -> str:
    """Names match ignoring case and runs of spaces, as people retype them."""
    return " ".join(name.split()).casefold()


def parse_campaign_map(entries: Iterable[str], *, field: str = "campaign_map") -> dict[str, str]:
    """`"Platform campaign name=cmp_..."` entries into a map (split at the last '=')."""
    mapping: dict[str, str] = {}
    for entry in entries:
        name, sep, campaign_id = entry.rpartition("=")
        if not sep or not name.strip() or not campaign_id.strip():
            raise ValidationError(
                f"{field} entry {entry[:80]!r} is not NAME=CAMPAIGN_ID; write it like "
                "'Brand - Search=cmp_01jd...'",
                field=field,
            )
        if len(name) > MAX_MAPPED_NAME_CHARS:
            raise ValidationError(
                f"{field} entry names a campaign of {len(name)} characters; the limit is "
                f"{MAX_MAPPED_NAME_CHARS}",
                field=field,
            )
        mapping[name.strip()] = campaign_id.strip()
    return mapping


class CampaignMatcher:
    """Finds the perfmark campaign for a platform's campaign reference.

    In order: the explicit map (platform name -> campaign id), a perfmark campaign id, then
    a campaign name. Several campaigns of one name are ambiguous unless exactly one of them
    is not archived.
    """

    def __init__(
        self,
        campaigns: Iterable[CampaignRef],
        mapping: Mapping[str, str] | None = None,
        *,
        map_field: str = "campaign_map",
    ) -> None:
        self._by_id = {campaign.id: campaign for campaign in campaigns}
        self._by_name: dict[str, list[CampaignRef]] = {}
        for campaign in self._by_id.values():
            self._by_name.setdefault(_key(campaign.name), []).append(campaign)
        self._mapping: dict[str, str] = {}
        for name, campaign_id in (mapping or {}).items():
            if campaign_id not in self._by_id:
                raise ValidationError(
                    f"{map_field} maps {name[:80]!r} to {campaign_id[:80]!r}, which names no "
                    "campaign in this workspace; list them with GET /api/campaigns",
                    field=map_field,
                )
            self._mapping[_key(name)] = campaign_id

    def by_id(self, campaign_id: str) -> str | None:
        """The id itself when it names a campaign of the workspace."""
        return campaign_id if campaign_id in self._by_id else None

    def match(self, reference: str) -> tuple[str | None, str]:
        """The campaign id for `reference`, or None and the reason it matches none."""
        key = _key(reference)
        if key in self._mapping:
            return self._mapping[key], ""
        if reference.strip() in self._by_id:
            return reference.strip(), ""
        candidates = self._by_name.get(key, [])
        if len(candidates) > 1:
            candidates = [campaign for campaign in candidates if not campaign.archived]
        if len(candidates) == 1:
            return candidates[0].id, ""
        if candidates:
            ids = ", ".join(sorted(campaign.id for campaign in candidates))
            return None, (
                f"names {len(candidates)} perfmark campaigns ({ids}); map it to one with "
                f"campaign_map '{reference}=cmp_...'"
            )
        return None, (
            "matches no perfmark campaign by name or id; create the campaign, or map the "
            f"name with campaign_map '{reference}=cmp_...'"
        )


def resolve_lines(
    lines: Iterable[CostLine],
    matcher: CampaignMatcher,
    describe: Callable[[CostLine], tuple[str, str]],
) -> list[tuple[CostLine, str]]:
    """Each line with its perfmark campaign id; the first unmatched line raises, naming its row.

    `describe` gives, for a line, the phrase that locates its campaign cell ("row 7, column
    'Campaign'") and the field to report.
    """
    resolved: list[tuple[CostLine, str]] = []
    for line in lines:
        campaign_id, reason = matcher.match(line.campaign)
        if campaign_id is None:
            where, field = describe(line)
            raise CostFileError(
                f"{where}: {line.campaign[:120]!r} {reason}", row=line.row, field=field
            )
        resolved.append((line, campaign_id))
    return resolved
