"""Rules: metric formulas, evaluation and guards on hand-computed numbers, validation, cycles."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from perfmark.errors import ValidationError
from perfmark.optimize.domain.rule_cycles import (
    RuleWarningCode,
    can_hold_together,
    check_rule_set,
    find_rule_cycles,
)
from perfmark.optimize.domain.rule_evaluation import (
    EvaluationStatus,
    MetricSnapshot,
    evaluate,
)
from perfmark.optimize.domain.rules import (
    METRICS,
    Action,
    ActionKind,
    Comparison,
    Condition,
    Match,
    Operator,
    Rule,
    SampleGuard,
    Scope,
    ScopeKind,
    parse_rule,
    rule_windows,
)

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
D = Decimal


def _rule(
    conditions: tuple[Condition, ...] = (Condition("cpa", Operator.GT, D(40)),),
    actions: tuple[Action, ...] = (Action(ActionKind.PAUSE),),
    **overrides: Any,
) -> Rule:
    fields: dict[str, Any] = {
        "rule_id": "rul_1",
        "name": "pause expensive campaigns",
        "scope": Scope(ScopeKind.CAMPAIGN),
        "conditions": conditions,
        "actions": actions,
        "window_days": 3,
        "cooldown_hours": 24,
        "min_sample": (SampleGuard("clicks", D(50)),),
    }
    fields.update(overrides)
    return Rule(**fields)


# --- metrics -----------------------------------------------------------------------------------


def test_every_metric_on_a_hand_computed_window() -> None:
    window = MetricSnapshot(
        impressions=10_000,
        clicks=200,
        conversions=8,
        cost=D("320.00"),
        revenue=D("480.00"),
        leads=16,
    )
    expected = {
        "impressions": D(10_000),
        "clicks": D(200),
        "conversions": D(8),
        "cost": D(320),
        "revenue": D(480),
        "cpc": D("1.6"),  # 320 / 200
        "cpa": D(40),  # 320 / 8
        "cpl": D(20),  # 320 / 16 leads
        "roas": D("1.5"),  # 480 / 320
        "roi": D("0.5"),  # (480 - 320) / 320
        "cr": D("0.04"),  # 8 / 200
        "ctr": D("0.02"),  # 200 / 10000
        "epc": D("2.4"),  # 480 / 200
        "profit": D(160),
    }
    assert set(expected) == set(METRICS)
    for metric, value in expected.items():
        assert window.value(metric) == value, metric


def test_division_by_zero_is_infinite_when_something_was_spent_and_undefined_otherwise() -> None:
    spent = MetricSnapshot(clicks=60, conversions=0, cost=D(90))
    assert spent.value("cpa") == D("Infinity")
    assert spent.value("cpl") == D("Infinity")  # leads default to conversions
    assert spent.value("roas") == D(0)
    idle = MetricSnapshot()
    assert idle.value("cpa") is None
    assert idle.value("ctr") is None
    with pytest.raises(ValidationError):
        MetricSnapshot(clicks=-1)
    with pytest.raises(ValidationError):
        MetricSnapshot(cost=1.5)  # type: ignore[arg-type]


# --- evaluation --------------------------------------------------------------------------------


def test_fires_with_every_number_in_the_record() -> None:
    rule = _rule()
    now = MetricSnapshot(clicks=60, conversions=5, cost=D("225.00"))  # CPA 45
    result = evaluate(rule, now, None, None, NOW, target_id="cmp_7")

    assert result.status is EvaluationStatus.FIRED
    assert result.fired and result.should_apply
    assert result.actions == (Action(ActionKind.PAUSE),)
    (condition,) = result.conditions
    assert condition.compared_value == D(45)
    assert condition.threshold == D(40)
    assert condition.met
    (sample,) = result.sample_checks
    assert (sample.metric, sample.value_now, sample.minimum, sample.met) == (
        "clicks",
        D(60),
        D(50),
        True,
    )
    assert result.reason == "fired: cpa 45 > 40"
    assert result.target_id == "cmp_7"
    assert result.window_start == NOW - timedelta(days=3)
    assert result.window_end == NOW


def test_threshold_is_strict_for_greater_than() -> None:
    now = MetricSnapshot(clicks=50, conversions=5, cost=D(200))  # CPA exactly 40, 50 clicks
    strict = evaluate(_rule(), now, None, None, NOW)
    assert strict.status is EvaluationStatus.CONDITIONS_NOT_MET
    assert strict.reason == "conditions not met: cpa 40 not > 40"
    inclusive = _rule((Condition("cpa", Operator.GE, D(40)),))
    assert evaluate(inclusive, now, None, None, NOW).status is EvaluationStatus.FIRED


def test_minimum_sample_guard_blocks_but_still_records_the_numbers() -> None:
    now = MetricSnapshot(clicks=49, conversions=1, cost=D(100))  # CPA 100, but 49 clicks
    result = evaluate(_rule(), now, None, None, NOW)
    assert result.status is EvaluationStatus.INSUFFICIENT_SAMPLE
    assert not result.fired
    assert result.actions == ()
    assert result.conditions[0].met  # the condition held; the guard said "not yet"
    assert result.conditions[0].compared_value == D(100)
    assert result.reason == "insufficient sample: clicks 49 < 50"


def test_cost_without_conversions_counts_as_infinite_cpa() -> None:
    now = MetricSnapshot(clicks=80, conversions=0, cost=D(150))
    result = evaluate(_rule(), now, None, None, NOW)
    assert result.status is EvaluationStatus.FIRED
    assert result.reason == "fired: cpa infinite > 40"


def test_cooldown_holds_a_rule_that_fired_recently() -> None:
    now = MetricSnapshot(clicks=60, conversions=1, cost=D(100))
    recent = evaluate(_rule(), now, None, NOW - timedelta(hours=23), NOW)
    assert recent.status is EvaluationStatus.COOLDOWN
    assert not recent.fired
    assert recent.cooldown_until == NOW + timedelta(hours=1)
    assert "cooling down until 2026-03-10T13:00:00+00:00" in recent.reason
    assert "cpa 100 > 40" in recent.reason
    later = evaluate(_rule(), now, None, NOW - timedelta(hours=24), NOW)
    assert later.status is EvaluationStatus.FIRED
    assert later.cooldown_until is None


def test_sample_guard_wins_over_cooldown() -> None:
    now = MetricSnapshot(clicks=10, conversions=0, cost=D(100))
    result = evaluate(_rule(), now, None, NOW - timedelta(hours=1), NOW)
    assert result.status is EvaluationStatus.INSUFFICIENT_SAMPLE


def test_conversion_rate_drop_against_the_previous_period() -> None:
    rule = _rule(
        (Condition("cr", Operator.LE, D(-50), Comparison.CHANGE_PCT),),
        (Action(ActionKind.SEND_WEBHOOK, webhook_url="https://hooks.example.com/perfmark"),),
    )
    previous = MetricSnapshot(clicks=100, conversions=4)  # CR 4%
    halved = MetricSnapshot(clicks=150, conversions=3)  # CR 2%: -50%
    result = evaluate(rule, halved, previous, None, NOW)
    assert result.status is EvaluationStatus.FIRED
    (condition,) = result.conditions
    assert (condition.value_now, condition.value_previous) == (D("0.02"), D("0.04"))
    assert condition.compared_value == D(-50)
    assert result.reason == "fired: cr change -50% <= -50%"
    assert result.previous_window_end == result.window_start
    assert result.previous_window_start == NOW - timedelta(days=6)

    slight = MetricSnapshot(clicks=150, conversions=4)  # CR 2.667%: -33.3%
    assert evaluate(rule, slight, previous, None, NOW).status is EvaluationStatus.CONDITIONS_NOT_MET


def test_change_rules_need_a_usable_previous_period() -> None:
    rule = _rule((Condition("cr", Operator.LE, D(-50), Comparison.CHANGE_PCT),))
    now = MetricSnapshot(clicks=150, conversions=0)
    # The previous period has too few clicks: the guard applies to both periods.
    thin = evaluate(rule, now, MetricSnapshot(clicks=20, conversions=2), None, NOW)
    assert thin.status is EvaluationStatus.INSUFFICIENT_SAMPLE
    assert thin.reason == "insufficient sample: clicks 20 < 50 in the previous period"
    # No conversions before: a percent change from 0 is undefined, so nothing fires.
    from_zero = evaluate(rule, now, MetricSnapshot(clicks=100, conversions=0), None, NOW)
    assert from_zero.status is EvaluationStatus.CONDITIONS_NOT_MET
    assert "undefined" in from_zero.conditions[0].note
    missing = evaluate(rule, now, None, None, NOW)
    assert missing.conditions[0].note == "no previous period was given"
    assert not missing.fired


def test_dry_run_fires_on_paper_only() -> None:
    rule = _rule(dry_run=True)
    result = evaluate(rule, MetricSnapshot(clicks=60, conversions=1, cost=D(90)), None, None, NOW)
    assert result.status is EvaluationStatus.DRY_RUN
    assert result.fired and result.dry_run
    assert not result.should_apply
    assert result.actions == rule.actions
    assert result.reason.startswith("dry run, would fire: cpa 90 > 40")


def test_any_and_all_matching() -> None:
    conditions = (Condition("cpa", Operator.GT, D(40)), Condition("roas", Operator.LT, D("1.5")))
    now = MetricSnapshot(clicks=60, conversions=5, cost=D(100), revenue=D(100))  # CPA 20, ROAS 1
    every = evaluate(_rule(conditions), now, None, None, NOW)
    assert every.status is EvaluationStatus.CONDITIONS_NOT_MET
    assert every.reason == "conditions not met: cpa 20 not > 40"
    either = evaluate(_rule(conditions, match=Match.ANY), now, None, None, NOW)
    assert either.status is EvaluationStatus.FIRED
    assert either.reason == "fired: roas 1 < 1.5"


def test_disabled_rule_never_fires() -> None:
    result = evaluate(_rule(enabled=False), MetricSnapshot(clicks=60, cost=D(100)), None, None, NOW)
    assert result.status is EvaluationStatus.DISABLED
    assert not result.fired


def test_naive_times_are_taken_as_utc_and_windows_line_up() -> None:
    windows = rule_windows(_rule(window_days=7), datetime(2026, 3, 10, 12, 0))
    assert windows.current_end == NOW
    assert windows.current_start == NOW - timedelta(days=7)
    assert windows.previous_start == NOW - timedelta(days=14)


# --- validation --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: Condition("cpm_made_up", Operator.GT, D(1)), "metric"),
        (lambda: Condition("cpa", "=>", D(1)), "operator"),  # type: ignore[arg-type]
        (lambda: Condition("cpa", Operator.GT, "forty"), "threshold"),  # type: ignore[arg-type]
        (lambda: Condition("cpa", Operator.GT, D(1), "delta"), "comparison"),  # type: ignore[arg-type]
        (lambda: _rule(window_days=0), "window_days"),
        (lambda: _rule(window_days=-3), "window_days"),
        (lambda: _rule(cooldown_hours=-1), "cooldown_hours"),
        (lambda: _rule(conditions=()), "conditions"),
        (lambda: _rule(actions=()), "actions"),
        (lambda: _rule(name="  "), "name"),
        (lambda: SampleGuard("cpa", D(5)), "min_sample.metric"),
        (lambda: SampleGuard("clicks", D(-5)), "min_sample.minimum"),
        (lambda: Action(ActionKind.CHANGE_BID), "action.percent"),
        (lambda: Action(ActionKind.CHANGE_BID, D(-100)), "action.percent"),
        (lambda: Action(ActionKind.PAUSE, D(10)), "action.percent"),
        (lambda: Action(ActionKind.SEND_WEBHOOK, webhook_url="ftp://x"), "action.webhook_url"),
        (lambda: Action("explode"), "action.kind"),  # type: ignore[arg-type]
        (lambda: Scope("advertiser"), "scope.kind"),  # type: ignore[arg-type]
        (
            lambda: _rule(actions=(Action(ActionKind.PAUSE), Action(ActionKind.RESUME))),
            "actions",
        ),
    ],
)
def test_invalid_rules_are_refused_naming_the_field(build: Any, field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        build()
    assert caught.value.field == field


def test_unknown_metric_message_lists_the_allowed_ones() -> None:
    with pytest.raises(ValidationError) as caught:
        Condition("ecpm", Operator.GT, D(1))
    assert "'ecpm'" in caught.value.message
    assert "cpa" in caught.value.message


def _data(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "rule_id": "rul_9",
        "name": "cut bids on weak publishers",
        "scope": {"kind": "publisher", "target_ids": ["pub_2", "pub_1"]},
        "conditions": [{"metric": "roas", "operator": "<", "threshold": 1.5}],
        "actions": [{"kind": "change_bid", "percent": "-20"}],
        "window_days": 3,
        "min_sample": [{"metric": "clicks", "minimum": 50}],
        "dry_run": True,
    }
    data.update(overrides)
    return data


def test_parse_rule_from_plain_data() -> None:
    rule = parse_rule(_data())
    assert rule.scope == Scope(ScopeKind.PUBLISHER, ("pub_1", "pub_2"))
    assert rule.conditions == (Condition("roas", Operator.LT, D("1.5")),)
    assert rule.actions == (Action(ActionKind.CHANGE_BID, D(-20)),)
    assert rule.min_sample == (SampleGuard("clicks", D(50)),)
    assert rule.dry_run and rule.cooldown_hours == 24 and rule.match is Match.ALL


@pytest.mark.parametrize(
    ("overrides", "kwargs", "field"),
    [
        (
            {"conditions": [{"metric": "revenue", "operator": ">", "threshold": 1}]},
            {"allowed_metrics": ("clicks", "cpa")},
            "conditions[0].metric",
        ),
        ({"conditions": [{"metric": "cpa", "operator": "~", "threshold": 1}]}, {}, "operator"),
        ({"window_days": "3"}, {}, "window_days"),
        ({"dry_run": "yes"}, {}, "dry_run"),
        ({"scope": "campaign"}, {}, "scope"),
        ({"actions": "pause"}, {}, "actions"),
    ],
)
def test_parse_rule_refuses_bad_data(
    overrides: dict[str, Any], kwargs: dict[str, Any], field: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_rule(_data(**overrides), **kwargs)
    assert caught.value.field == field


# --- cycles and impossible rules ---------------------------------------------------------------


def _scoped(rule_id: str, conditions: tuple[Condition, ...], action: Action, **kw: Any) -> Rule:
    return _rule(conditions, (action,), rule_id=rule_id, name=rule_id, **kw)


PAUSE = Action(ActionKind.PAUSE)
RESUME = Action(ActionKind.RESUME)
BID_UP = Action(ActionKind.CHANGE_BID, D(20))
BID_DOWN = Action(ActionKind.CHANGE_BID, D(-20))


def test_pause_and_resume_whose_conditions_can_both_hold_are_a_cycle() -> None:
    pause = _scoped("pause", (Condition("cpa", Operator.GT, D(40)),), PAUSE)
    resume = _scoped("resume", (Condition("roas", Operator.GT, D(2)),), RESUME)
    (warning,) = find_rule_cycles([pause, resume])
    assert warning.code is RuleWarningCode.CYCLE
    assert warning.rule_ids == ("pause", "resume")
    assert warning.targets == ()
    assert "undo each other on every campaign" in warning.message


def test_opposite_bid_changes_on_overlapping_thresholds_are_a_cycle() -> None:
    up = _scoped("up", (Condition("cpa", Operator.LT, D(50)),), BID_UP)
    down = _scoped("down", (Condition("cpa", Operator.GT, D(40)),), BID_DOWN)  # 40 < cpa < 50
    assert [w.rule_ids for w in find_rule_cycles([up, down])] == [("up", "down")]


def test_a_gap_between_thresholds_is_no_cycle() -> None:
    pause = _scoped("pause", (Condition("cpa", Operator.GT, D(40)),), PAUSE)
    resume = _scoped("resume", (Condition("cpa", Operator.LT, D(30)),), RESUME)
    assert find_rule_cycles([pause, resume]) == ()
    touching = _scoped("touch", (Condition("cpa", Operator.LE, D(40)),), RESUME)
    assert find_rule_cycles([pause, touching]) == ()  # cpa > 40 and cpa <= 40 never meet
    meeting = _scoped("meet", (Condition("cpa", Operator.GE, D(40)),), RESUME)
    assert (
        len(
            find_rule_cycles(
                [_scoped("p", (Condition("cpa", Operator.LE, D(40)),), PAUSE), meeting]
            )
        )
        == 1
    )  # both hold at exactly 40


def test_roi_and_roas_are_recognised_as_the_same_quantity() -> None:
    pause = _scoped("pause", (Condition("roi", Operator.LT, D(0)),), PAUSE)  # roas < 1
    resume = _scoped("resume", (Condition("roas", Operator.GT, D("1.5")),), RESUME)
    assert find_rule_cycles([pause, resume]) == ()
    loose = _scoped("loose", (Condition("roas", Operator.GT, D("0.8")),), RESUME)
    assert len(find_rule_cycles([pause, loose])) == 1


def test_no_cycle_across_different_targets_kinds_or_same_direction() -> None:
    cond = (Condition("cpa", Operator.GT, D(40)),)
    pause_a = _scoped("a", cond, PAUSE, scope=Scope(ScopeKind.PUBLISHER, ("pub_1",)))
    resume_b = _scoped("b", cond, RESUME, scope=Scope(ScopeKind.PUBLISHER, ("pub_2",)))
    resume_kind = _scoped("c", cond, RESUME, scope=Scope(ScopeKind.CREATIVE))
    assert find_rule_cycles([pause_a, resume_b, resume_kind]) == ()
    resume_shared = _scoped("d", cond, RESUME, scope=Scope(ScopeKind.PUBLISHER, ("pub_1", "pub_3")))
    (warning,) = find_rule_cycles([pause_a, resume_shared])
    assert warning.targets == ("pub_1",)
    up = _scoped("up1", cond, BID_UP)
    up_more = _scoped("up2", cond, Action(ActionKind.CHANGE_BID, D(5)))
    payout_down = _scoped("pay", cond, Action(ActionKind.CHANGE_PAYOUT, D(-10)))
    assert find_rule_cycles([up, up_more, payout_down]) == ()


def test_guards_and_disabled_rules_can_rule_out_a_cycle() -> None:
    pause = _scoped("pause", (Condition("cpa", Operator.GT, D(40)),), PAUSE)  # needs >= 50 clicks
    few_clicks = _scoped("resume", (Condition("clicks", Operator.LT, D(10)),), RESUME)
    assert find_rule_cycles([pause, few_clicks]) == ()
    off = _scoped("off", (Condition("roas", Operator.GT, D(2)),), RESUME, enabled=False)
    assert find_rule_cycles([pause, off]) == ()


def test_any_match_is_a_cycle_when_one_alternative_overlaps() -> None:
    pause = _scoped("pause", (Condition("cpa", Operator.GT, D(40)),), PAUSE)
    resume = _scoped(
        "resume",
        (Condition("cpa", Operator.LT, D(30)), Condition("cr", Operator.GT, D("0.05"))),
        RESUME,
        match=Match.ANY,
    )
    assert len(find_rule_cycles([pause, resume])) == 1
    strict = _scoped(
        "resume",
        (Condition("cpa", Operator.LT, D(30)), Condition("cr", Operator.GT, D("0.05"))),
        RESUME,
    )
    assert find_rule_cycles([pause, strict]) == ()


def test_rules_that_can_never_fire_are_reported() -> None:
    impossible = _scoped(
        "never", (Condition("cpa", Operator.GT, D(50)), Condition("cpa", Operator.LT, D(40))), PAUSE
    )
    negative = _scoped("negative", (Condition("cpc", Operator.LT, D(0)),), PAUSE)
    fine = _scoped("fine", (Condition("profit", Operator.LT, D(-100)),), PAUSE)
    warnings = check_rule_set([impossible, negative, fine])
    assert [(w.code, w.rule_ids) for w in warnings] == [
        (RuleWarningCode.NEVER_FIRES, ("never",)),
        (RuleWarningCode.NEVER_FIRES, ("negative",)),
    ]


def test_duplicate_rule_ids_are_an_error() -> None:
    rule = _rule()
    with pytest.raises(ValidationError, match="appears twice"):
        check_rule_set([rule, rule])


def test_interval_satisfiability_edge_cases() -> None:
    eq = Condition("cpa", Operator.EQ, D(40))
    ne = Condition("cpa", Operator.NE, D(40))
    assert can_hold_together([eq])
    assert not can_hold_together([eq, ne])
    assert can_hold_together([ne, Condition("cpa", Operator.GE, D(40))])
    drop = Condition("cr", Operator.LT, D(-100), Comparison.CHANGE_PCT)
    assert not can_hold_together([drop])
