"""How much of a campaign's day-to-day conversions its landing-page mix explains.

A budget curve reads each day's (spend, conversions). When the landing-page rotation changes
over the same weeks (a page test, a bandit moving traffic to the better page), the
conversions per click change with it, whatever the spend: a campaign whose budget rose while
the better page took over looks as if spend kept paying, and the allocator overfunds it.

Each (campaign, day, page) cell's conversions are taken as Poisson with mean clicks x r_s x
rho_p: r_s the stratum's (campaign and day) rate, rho_p the page's relative rate. Both are
fitted together (alternating closed-form updates of this two-factor Poisson model, which
never decrease its likelihood), so a page is compared with the others only on the same
campaign and day, not across a changing mix of channels. Each rho_p has a Gamma prior with
mean 1 worth `prior_conversions` conversions, so a page with little evidence stays near the
average. A day's exposure is then the click-weighted rho of its mix, relative to the
campaign's latest day: the conversions a day would have brought with today's page mix.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date

import numpy as np

from perfmark.errors import ValidationError

__all__ = [
    "DEFAULT_PRIOR_CONVERSIONS",
    "MixCell",
    "PageMix",
    "fit_page_mix",
]

#: The pages' shrinkage toward the average: a page's relative rate has a Gamma prior of mean 1
#: worth this many conversions (10 keeps a page at 1.5x after 3 conversions to about 1.1x).
DEFAULT_PRIOR_CONVERSIONS = 10.0
_ITERATIONS = 50
_TOLERANCE = 1e-10


@dataclass(frozen=True)
class MixCell:
    """One campaign's clicks and conversions on one day through one landing page."""

    campaign_id: str
    day: date
    page: str | None  #: None: clicks that reached no page of the rotation (e.g. a fallback)
    clicks: float
    conversions: float


@dataclass(frozen=True)
class PageMix:
    """Each page's relative conversion rate and each campaign-day's exposure to the mix."""

    effects: Mapping[str | None, float]  #: rho per page, click-weighted mean 1
    #: campaign -> day -> the day's expected conversions per click relative to the campaign's
    #: latest day with clicks (1.0 when the mix did not change)
    exposures: Mapping[str, Mapping[date, float]]


def _check(cells: Sequence[MixCell], prior_conversions: float) -> None:
    if (
        isinstance(prior_conversions, bool)
        or not isinstance(prior_conversions, int | float)
        or not math.isfinite(prior_conversions)
        or prior_conversions <= 0
    ):
        raise ValidationError(
            f"prior_conversions is {prior_conversions!r}; give a number of conversions > 0",
            field="prior_conversions",
        )
    for cell in cells:
        for name in ("clicks", "conversions"):
            value = getattr(cell, name)
            if not math.isfinite(value) or value < 0:
                raise ValidationError(
                    f"campaign {cell.campaign_id!r} on {cell.day}: {name} is {value!r}; "
                    "give a count of at least 0",
                    field=name,
                )


def fit_page_mix(
    cells: Sequence[MixCell], *, prior_conversions: float = DEFAULT_PRIOR_CONVERSIONS
) -> PageMix:
    """Fit the pages' relative rates and each campaign-day's exposure (see the module doc)."""
    _check(cells, prior_conversions)
    kept = [cell for cell in cells if cell.clicks > 0]
    pages = sorted({cell.page for cell in kept}, key=lambda page: (page is None, page or ""))
    strata = sorted({(cell.campaign_id, cell.day) for cell in kept})
    page_index = {page: k for k, page in enumerate(pages)}
    stratum_index = {stratum: k for k, stratum in enumerate(strata)}
    clicks = np.zeros((len(strata), len(pages)))
    conversions = np.zeros_like(clicks)
    for cell in kept:
        at = stratum_index[(cell.campaign_id, cell.day)], page_index[cell.page]
        clicks[at] += cell.clicks
        conversions[at] += cell.conversions
    rho = np.ones(len(pages))
    if len(pages) > 1:
        per_page = conversions.sum(axis=0)
        per_stratum = conversions.sum(axis=1)
        for _ in range(_ITERATIONS):
            # The stratum rates given the pages' (the MLE), then the pages' given the strata
            # (the posterior mode with the Gamma(k, k) prior): each step raises the posterior.
            weighted = clicks @ rho
            rate = np.divide(per_stratum, weighted, out=np.zeros_like(weighted), where=weighted > 0)
            exposure = rate @ clicks
            updated = (per_page + prior_conversions) / (exposure + prior_conversions)
            done = float(np.max(np.abs(updated - rho))) < _TOLERANCE
            rho = updated
            if done:
                break
        # Scale so that the history's click-weighted mean is 1 (only ratios matter).
        total = clicks.sum(axis=0)
        rho = rho * total.sum() / float(total @ rho)
    mix = (clicks @ rho) / clicks.sum(axis=1)
    # Strata are sorted by campaign then day, so each campaign's last one is its latest day.
    latest = {
        campaign_id: value for (campaign_id, _), value in zip(strata, mix.tolist(), strict=True)
    }
    exposures: dict[str, dict[date, float]] = {}
    for (campaign_id, day), value in zip(strata, mix.tolist(), strict=True):
        exposures.setdefault(campaign_id, {})[day] = value / latest[campaign_id]
    return PageMix(effects=dict(zip(pages, rho.tolist(), strict=True)), exposures=exposures)
