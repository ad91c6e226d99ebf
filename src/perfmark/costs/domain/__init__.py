"""Pure cost-data rules: export layouts, exact cost rows, campaign matching, import periods."""

from __future__ import annotations

from perfmark.costs.domain.layouts import GenericMapping, Layout, ParsedFile, parse_cost_file
from perfmark.costs.domain.matching import (
    CampaignMatcher,
    CampaignRef,
    parse_campaign_map,
    resolve_lines,
)
from perfmark.costs.domain.rows import (
    CostFileError,
    CostLine,
    CostRow,
    ImportPeriod,
    aggregate_rows,
    check_source,
    check_spend,
    import_period,
    spend_in,
)

__all__ = [
    "CampaignMatcher",
    "CampaignRef",
    "CostFileError",
    "CostLine",
    "CostRow",
    "GenericMapping",
    "ImportPeriod",
    "Layout",
    "ParsedFile",
    "aggregate_rows",
    "check_source",
    "check_spend",
    "import_period",
    "parse_campaign_map",
    "parse_cost_file",
    "resolve_lines",
    "spend_in",
]
