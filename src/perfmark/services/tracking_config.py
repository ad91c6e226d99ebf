"""The tracker's view of configuration: one immutable snapshot, rebuilt when config changes."""

from __future__ import annotations

import bisect
import hashlib
import itertools
import logging
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TypeVar
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, RowMapping, select

from perfmark.adapters.store.codec import decode_spec
from perfmark.adapters.store.engine import transaction
from perfmark.adapters.store.resources import read_config_version
from perfmark.adapters.store.schema import (
    advertisers,
    campaigns,
    goals,
    links,
    offers,
    publishers,
    workspaces,
)
from perfmark.domain.accounts import WorkspaceSpec
from perfmark.domain.campaigns import (
    CampaignSpec,
    CampaignStatus,
    Schedule,
    TargetingField,
    TargetingRule,
)
from perfmark.domain.events import event_json_members
from perfmark.domain.links import SUB_FIELDS, UTM_FIELDS, LinkStatus, TrackingLinkSpec
from perfmark.domain.offers import GoalSpec, OfferSpec, WeightedUrl
from perfmark.domain.parties import AdvertiserSpec
from perfmark.errors import PerfmarkError

__all__ = [
    "AdvertiserAuth",
    "ConfigCache",
    "ConfigSnapshot",
    "GoalInfo",
    "LinkRoute",
    "Rotation",
    "load_snapshot",
    "token_digest",
]

logger = logging.getLogger("perfmark.tracking")

SpecT = TypeVar("SpecT")

_UA_FIELDS = frozenset({TargetingField.DEVICE, TargetingField.OS, TargetingField.BROWSER})


@dataclass(frozen=True)
class Rotation:
    """Weighted choice among landing pages or creatives, by cumulative weight."""

    items: tuple[WeightedUrl, ...]
    cumulative: tuple[int, ...]

    @classmethod
    def of(cls, items: tuple[WeightedUrl, ...]) -> Rotation:
        return cls(items, tuple(itertools.accumulate(item.weight for item in items)))

    @property
    def total(self) -> int:
        return self.cumulative[-1] if self.cumulative else 0

    def pick(self, ticket: int) -> WeightedUrl | None:
        """The item for a ticket drawn uniformly from [0, total)."""
        if not self.items:
            return None
        return self.items[bisect.bisect_right(self.cumulative, ticket)]

    def index(self, ticket: int) -> int:
        """The position in `items` of the item for `ticket` (as `pick`), -1 when empty."""
        if not self.items:
            return -1
        return bisect.bisect_right(self.cumulative, ticket)


@dataclass(frozen=True)
class LinkRoute:
    """Everything the click hot path needs about one link, resolved ahead of time."""

    link_id: str
    slug: str
    workspace_id: str
    campaign_id: str
    publisher_id: str
    advertiser_id: str
    offer_id: str
    channel: str
    link_active: bool
    campaign_status: CampaignStatus
    schedule: Schedule
    targeting: tuple[TargetingRule, ...]
    needs_user_agent: bool
    landing_pages: Rotation
    creatives: Rotation
    fallback_url: str | None
    fixed: Mapping[str, str]
    passthrough: frozenset[str]
    timezone: ZoneInfo
    # Built once per link for the click hot path (see ingest/click.py), not per click:
    #: The record members of the link's fields (workspace_id ... channel), see TrackedEvent.
    event_members: str = field(init=False, repr=False, compare=False)
    #: The record members `,"landing_page":...` of each landing page, in rotation order.
    page_members: tuple[str, ...] = field(init=False, repr=False, compare=False)
    #: The record members `,"creative":...` of each creative, in rotation order.
    creative_members: tuple[str, ...] = field(init=False, repr=False, compare=False)
    #: The link's ids as landing URL macros.
    macro_values: Mapping[str, str] = field(init=False, repr=False, compare=False)
    #: The fixed sub ids and UTMs that a click records (those not empty).
    fixed_subs: Mapping[str, str] = field(init=False, repr=False, compare=False)
    #: The fixed values that are passed on to the landing page, in order.
    fixed_passthrough: tuple[tuple[str, str], ...] = field(init=False, repr=False, compare=False)
    #: Whether a targeting rule looks at the hour (the time zone conversion is skipped if not).
    needs_hour: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        built = {
            "event_members": event_json_members(
                workspace_id=self.workspace_id, campaign_id=self.campaign_id,
                publisher_id=self.publisher_id, advertiser_id=self.advertiser_id,
                offer_id=self.offer_id, link_id=self.link_id, channel=self.channel,
            ),
            "page_members": tuple(
                event_json_members(landing_page=page.key) for page in self.landing_pages.items
            ),
            "creative_members": tuple(
                event_json_members(creative=item.key) for item in self.creatives.items
            ),
            "macro_values": {
                "campaign_id": self.campaign_id, "publisher_id": self.publisher_id,
                "link_id": self.link_id, "offer_id": self.offer_id,
            },
            "fixed_subs": {
                name: fixed
                for name in SUB_FIELDS + UTM_FIELDS
                if (fixed := self.fixed.get(name))
            },
            "fixed_passthrough": tuple(
                (name, value) for name, value in self.fixed.items() if name in self.passthrough
            ),
            "needs_hour": any(rule.field is TargetingField.HOUR for rule in self.targeting),
        }  # fmt: skip
        for attribute, value in built.items():
            object.__setattr__(self, attribute, value)  # frozen: set once, here


@dataclass(frozen=True)
class GoalInfo:
    """A goal as the conversion endpoints need it."""

    goal_id: str
    workspace_id: str
    key: str
    default_value: str
    currency: str
    value_from_conversion: bool


@dataclass(frozen=True)
class AdvertiserAuth:
    """How an advertiser's postbacks authenticate and name their parameters."""

    advertiser_id: str
    workspace_id: str
    secret: str
    param_map: Mapping[str, str]


@dataclass(frozen=True)
class ConfigSnapshot:
    """All tracking configuration at one config version."""

    version: int = -1
    links: Mapping[str, LinkRoute] = field(default_factory=dict)
    goals_by_key: Mapping[tuple[str, str], GoalInfo] = field(default_factory=dict)
    goals_by_event: Mapping[tuple[str, str], GoalInfo] = field(default_factory=dict)
    advertisers: Mapping[str, AdvertiserAuth] = field(default_factory=dict)
    advertisers_by_token: Mapping[str, AdvertiserAuth] = field(default_factory=dict)
    write_keys: Mapping[str, str] = field(default_factory=dict)
    workspace_fallbacks: Mapping[str, str] = field(default_factory=dict)
    workspace_timezones: Mapping[str, ZoneInfo] = field(default_factory=dict)
    click_lookback_days: Mapping[str, int] = field(default_factory=dict)
    campaigns: Mapping[str, CampaignSpec] = field(default_factory=dict)


def token_digest(token: str) -> str:
    """Tokens are looked up by digest so a dict probe leaks nothing by timing."""
    return hashlib.sha256(token.encode()).hexdigest()


def _loadable(
    rows: Iterable[RowMapping], spec_type: type[SpecT], kind: str
) -> Iterator[tuple[RowMapping, SpecT]]:
    """Each row with its decoded spec; a row that no longer decodes is logged and left out.

    An object stored before a rule it breaks existed (a campaign's payout above its charge,
    say) must not take every other link down with it. What leaving it out means: a campaign
    or link answers as unknown, an offer lends no landing pages, a goal is unknown to
    conversions, an advertiser's postbacks are refused, a workspace keeps UTC, no fallback
    URL and the default lookback, until the object is edited; the reason is in the log.
    """
    for row in rows:
        try:
            yield row, decode_spec(spec_type, row["data"])
        except PerfmarkError as error:
            logger.error("%s %s cannot be loaded for tracking: %s", kind, row["id"], error)


def load_snapshot(engine: Engine) -> ConfigSnapshot:
    """Read every live link, goal and advertiser into one snapshot."""
    with transaction(engine) as conn:
        version = read_config_version(conn)
        ws_rows = conn.execute(select(workspaces)).mappings().all()
        adv_rows = (
            conn.execute(select(advertisers).where(advertisers.c.archived_at.is_(None)))
            .mappings()
            .all()
        )
        pub_ids = set(
            conn.execute(
                select(publishers.c.id).where(publishers.c.archived_at.is_(None))
            ).scalars()
        )
        offer_rows = conn.execute(select(offers)).mappings().all()
        cmp_rows = conn.execute(select(campaigns)).mappings().all()
        link_rows = (
            conn.execute(select(links).where(links.c.archived_at.is_(None))).mappings().all()
        )
        goal_rows = (
            conn.execute(select(goals).where(goals.c.archived_at.is_(None))).mappings().all()
        )
        write_keys = {row["write_key"]: row["id"] for row in ws_rows if row["write_key"]}

    ws_specs = {row["id"]: spec for row, spec in _loadable(ws_rows, WorkspaceSpec, "workspace")}
    timezones = {ws_id: ZoneInfo(spec.timezone) for ws_id, spec in ws_specs.items()}
    fallbacks = {ws_id: spec.fallback_url for ws_id, spec in ws_specs.items() if spec.fallback_url}
    offer_specs = {row["id"]: spec for row, spec in _loadable(offer_rows, OfferSpec, "offer")}
    cmp_specs = {
        row["id"]: (row, spec) for row, spec in _loadable(cmp_rows, CampaignSpec, "campaign")
    }

    routes: dict[str, LinkRoute] = {}
    for row, spec in _loadable(link_rows, TrackingLinkSpec, "link"):
        found = cmp_specs.get(spec.campaign_id)
        if found is None or spec.publisher_id not in pub_ids:
            continue
        cmp_row, campaign = found
        offer = offer_specs.get(campaign.offer_id)
        pages = campaign.landing_pages or (offer.landing_pages if offer else ())
        status = CampaignStatus.ENDED if cmp_row["archived_at"] else campaign.status
        routes[spec.slug] = LinkRoute(
            link_id=row["id"],
            slug=spec.slug,
            workspace_id=row["workspace_id"],
            campaign_id=cmp_row["id"],
            publisher_id=spec.publisher_id,
            advertiser_id=campaign.advertiser_id,
            offer_id=campaign.offer_id,
            channel=campaign.channel.value,
            link_active=spec.status is LinkStatus.ACTIVE,
            campaign_status=status,
            schedule=campaign.schedule,
            targeting=campaign.targeting,
            needs_user_agent=any(rule.field in _UA_FIELDS for rule in campaign.targeting),
            landing_pages=Rotation.of(pages),
            creatives=Rotation.of(campaign.creatives),
            fallback_url=campaign.fallback_url or fallbacks.get(row["workspace_id"]),
            fixed=spec.fixed_values(),
            passthrough=frozenset(spec.passthrough),
            timezone=timezones.get(row["workspace_id"], ZoneInfo("UTC")),
        )

    by_key: dict[tuple[str, str], GoalInfo] = {}
    by_event: dict[tuple[str, str], GoalInfo] = {}
    for row, goal in _loadable(goal_rows, GoalSpec, "goal"):
        info = GoalInfo(
            row["id"], row["workspace_id"], goal.key, str(goal.default_value), goal.currency,
            goal.value_from_conversion,
        )  # fmt: skip
        by_key[(row["workspace_id"], goal.key)] = info
        by_event[(row["workspace_id"], goal.key)] = info
        for name in goal.event_names:
            by_event[(row["workspace_id"], name)] = info

    auths: dict[str, AdvertiserAuth] = {}
    for row, advertiser in _loadable(adv_rows, AdvertiserSpec, "advertiser"):
        auths[row["id"]] = AdvertiserAuth(
            row["id"],
            row["workspace_id"],
            row["postback_secret"],
            dict(advertiser.postback_param_map),
        )
    return ConfigSnapshot(
        version=version,
        links=routes,
        goals_by_key=by_key,
        goals_by_event=by_event,
        advertisers=auths,
        advertisers_by_token={token_digest(a.secret): a for a in auths.values()},
        write_keys=write_keys,
        workspace_fallbacks=fallbacks,
        workspace_timezones=timezones,
        click_lookback_days={ws_id: spec.click_lookback_days for ws_id, spec in ws_specs.items()},
        campaigns={cmp_id: spec for cmp_id, (_row, spec) in cmp_specs.items()},
    )


class ConfigCache:
    """Holds the current snapshot; a background thread reloads it when the version moves.

    Readers just read `.snapshot` (an atomic reference swap), so the hot path never waits
    on the store. The thread checks the version every poll interval, which bounds how long
    a change takes to reach the tracker (the config_cache_ttl_ms setting).
    """

    def __init__(self, engine: Engine, poll_interval_ms: int) -> None:
        self.engine = engine
        self.poll_interval_s = max(poll_interval_ms, 10) / 1000 / 2
        self.snapshot = ConfigSnapshot()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def refresh(self) -> bool:
        """Reload when the stored config version differs; True when it did."""
        with transaction(self.engine) as conn:
            version = read_config_version(conn)
        if version == self.snapshot.version:
            return False
        self.snapshot = load_snapshot(self.engine)
        return True

    def start(self) -> None:
        """Load now, then keep refreshing in a daemon thread."""
        self.refresh()
        self._thread = threading.Thread(target=self._run, name="perfmark-config", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)

    def _run(self) -> None:
        while not self._stop.wait(self.poll_interval_s):
            try:
                self.refresh()
            except Exception:  # keep serving the last good snapshot
                logger.exception("config reload failed; serving the previous snapshot")
