"""Warm-up: compute the pages' default figures when a server worker starts.

A worker's first report pays for imports, the query engine's first compilations and the
lake's file listing (most of a second); the first attribution reads every journey. Doing
that once at start, in a background thread, means the first person to open the
dashboard gets kept results, and later reports only pay for what changed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import timedelta

from starlette.datastructures import QueryParams

from perfmark.dashboard.cache import cached_report, lake_version
from perfmark.dashboard.pages.attribution import DEFAULT_DAYS, attribution_body
from perfmark.dashboard.pages.reports import parse_report_form
from perfmark.dashboard.services import (
    advertiser_rows,
    campaign_rows,
    overview,
    period_ending_today,
    publisher_rows,
)
from perfmark.domain.accounts import Role
from perfmark.services.accounts import list_workspaces
from perfmark.services.container import Container, Principal

__all__ = ["MAX_WARMED_WORKSPACES", "REWARM_EVERY_S", "start_warmup", "warm_dashboard"]

#: How often the warm-up thread looks for new events to compute the figures again (s).
REWARM_EVERY_S = 10.0
#: Workspaces warmed at start (the most recently created first); others warm on first use.
MAX_WARMED_WORKSPACES = 10
#: The default periods of the pages (overview, campaigns and reports; partners).
_PERIOD_DAYS = 7
_PARTNERS_DAYS = 30
#: Who reads when the server warms itself (read-only; nothing is audited under this name).
_ACTOR = "system:warmup"

logger = logging.getLogger("perfmark.dashboard")


def warm_dashboard(
    container: Container, *, limit: int = MAX_WARMED_WORKSPACES, attribution: bool = True
) -> int:
    """Compute the default figures of every page for the newest workspaces; returns how many
    figures were computed. A failure is logged and skipped: warming is only an optimization.
    """
    workspaces = sorted(list_workspaces(container), key=lambda w: w.created_at, reverse=True)
    return sum(
        _warm_workspace(container, workspace.id, attribution=attribution)
        for workspace in workspaces[:limit]
    )


def _warm_workspace(container: Container, workspace_id: str, *, attribution: bool) -> int:
    owner = Principal(workspace_id, Role.OWNER, actor_id=_ACTOR)
    period = period_ending_today(container, owner, _PERIOD_DAYS)
    partners_period = period_ending_today(container, owner, _PARTNERS_DAYS)
    first_day = period.end - timedelta(days=DEFAULT_DAYS - 1)
    steps: list[Callable[[], object]] = [
        lambda: overview(container, owner, period),
        lambda: campaign_rows(container, owner, period),
        lambda: publisher_rows(container, owner, partners_period),
        lambda: advertiser_rows(container, owner, partners_period),
        lambda: _default_report(container, owner),
    ]
    if attribution:  # heavy, and kept for minutes anyway (see pages/attribution.py)
        steps.append(
            lambda: attribution_body(
                container,
                workspace_id,
                first_day,
                period.end,
                period.timezone,
                "markov",
                "channel",
            )
        )
    computed = 0
    for step in steps:
        try:
            step()
            computed += 1
        except Exception as error:  # an empty lake, a workspace removed meanwhile, ...
            logger.debug("warming a dashboard page of %s skipped: %s", workspace_id, error)
    return computed


def _default_report(container: Container, principal: Principal) -> None:
    form = parse_report_form(container, principal, QueryParams(""))
    if form.request is not None:
        cached_report(container, form.request)


def start_warmup(
    container: Container, *, rewarm_every_s: float | None = REWARM_EVERY_S
) -> threading.Thread:
    """Warm the dashboard in a daemon thread (a server worker does not wait for it).

    With `rewarm_every_s`, the thread then checks the lake that often and, when it has
    changed, computes the pages' default figures again (attribution aside): a page opened
    after new traffic then finds figures at most about that old, which it shows while it
    refreshes them (dashboard.services.PAGE_STALE_S).
    """
    thread = threading.Thread(
        target=_keep_warm, args=(container, rewarm_every_s),
        name="perfmark-dashboard-warmup", daemon=True,
    )  # fmt: skip
    thread.start()
    return thread


def _keep_warm(container: Container, rewarm_every_s: float | None) -> None:
    warm_dashboard(container)
    if rewarm_every_s is None:
        return
    seen = lake_version(container)
    while True:
        time.sleep(rewarm_every_s)
        try:
            version = lake_version(container)
            if version != seen:
                seen = version
                warm_dashboard(container, attribution=False)
        except Exception:  # a worker's helper thread must never die of a passing error
            logger.exception("re-warming the dashboard failed; trying again later")
