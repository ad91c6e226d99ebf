"""`perfmark rules|experiments|recommend ...` and `perfmark simulate`: parse, call, render."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import typer

from perfmark.adapters.store.engine import transaction
from perfmark.cli.context import local_container, local_owner
from perfmark.cli.render import console, guarded, print_json, print_table
from perfmark.errors import ValidationError
from perfmark.optimize import store
from perfmark.optimize.services import (
    allocation,
    bids,
    experiment_analysis,
    experiments,
    rule_runner,
    rules,
    views,
)
from perfmark.services.container import Container, Principal
from perfmark.simulation.market import Policy, SimulationConfig, simulate
from perfmark.simulation.truth import default_market

__all__ = ["experiments_app", "recommend_app", "rules_app", "simulate_command"]

rules_app = typer.Typer(help="Automated rules: create, evaluate, audit.", no_args_is_help=True)
experiments_app = typer.Typer(help="A/B/n experiments and bandit allocation.", no_args_is_help=True)
recommend_app = typer.Typer(help="Budget and bid recommendations.", no_args_is_help=True)

WorkspaceOption = Annotated[
    str | None, typer.Option("--workspace", help="Workspace id (default: the first one).")
]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
FileOption = Annotated[Path | None, typer.Option("--file", help="A JSON file with the definition.")]
DataOption = Annotated[str | None, typer.Option("--data", help="The definition as JSON text.")]
RuleIdArgument = Annotated[str, typer.Argument(help="The rule's id.")]
ExperimentIdArgument = Annotated[str, typer.Argument(help="The experiment's id.")]


def _container_and_owner(workspace: str | None) -> tuple[Container, Principal]:
    """This install's container and owner authority over the workspace, as commands start."""
    container = local_container()
    return container, local_owner(container, workspace)


def _definition(file: Path | None, data: str | None) -> dict[str, Any]:
    if (file is None) == (data is None):
        raise ValidationError(
            "give the definition with exactly one of --file and --data", field="file"
        )
    try:
        text = file.read_text(encoding="utf-8") if file is not None else str(data)
    except OSError as exc:
        raise ValidationError(f"cannot read {str(file)!r}: {exc.strerror}", field="file") from None
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValidationError(f"the definition is not JSON: {exc}", field="file") from None
    if not isinstance(parsed, dict):
        raise ValidationError("the definition must be a JSON object", field="file")
    return parsed


def _show_warnings(warnings: list[dict[str, Any]]) -> None:
    for warning in warnings:
        console.print(
            f"[bold yellow]warning ({warning['code']}):[/] {warning['message']}", soft_wrap=True
        )


@rules_app.command("create")
@guarded
def create_rule(
    file: FileOption = None,
    data: DataOption = None,
    workspace: WorkspaceOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Create a rule from JSON; warnings (cycles, never fires) are shown before it ever runs."""
    container, owner = _container_and_owner(workspace)
    saved = rules.create_rule(container, owner, _definition(file, data))
    body = views.rule_json(saved.rule, saved.warnings)
    if as_json:
        print_json(body)
        return
    console.print(f"Rule [bold]{body['id']}[/] ({body['name']}) created.")
    _show_warnings(body["warnings"])


@rules_app.command("list")
@guarded
def list_rules(workspace: WorkspaceOption = None, as_json: JsonFlag = False) -> None:
    """The workspace's rules."""
    container, owner = _container_and_owner(workspace)
    found = [views.rule_json(r) for r in rules.list_rules(container, owner)]
    if as_json:
        print_json(found)
        return
    print_table(
        "Rules",
        ("id", "name", "scope", "conditions", "actions", "enabled", "dry run", "next run"),
        [
            (
                r["id"],
                r["name"],
                r["scope"]["kind"],
                " and ".join(
                    f"{c['metric']} {c['operator']} {c['threshold']}" for c in r["conditions"]
                ),
                ", ".join(a["kind"] for a in r["actions"]),
                r["enabled"],
                r["dry_run"],
                r["next_run_at"],
            )
            for r in found
        ],
    )


@rules_app.command("check")
@guarded
def check_rules(workspace: WorkspaceOption = None, as_json: JsonFlag = False) -> None:
    """Warnings about the rule set: pairs that undo each other, rules that never fire."""
    container, owner = _container_and_owner(workspace)
    found = rules.rule_set_warnings(container, owner)
    body = [views.warning_json(w) for w in found]
    if as_json:
        print_json(body)
    elif not body:
        console.print("No warnings.")
    else:
        _show_warnings(body)


@rules_app.command("evaluate")
@guarded
def evaluate_rule(
    rule_id: RuleIdArgument,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Evaluate and log only.")] = False,
    workspace: WorkspaceOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Run a rule now: every compared number, the verdict and what the actions did."""
    container, owner = _container_and_owner(workspace)
    run = rule_runner.run_rule(container, owner, rule_id, dry_run=dry_run)
    body = views.rule_run_json(run)
    if as_json:
        print_json(body)
        return
    print_table(
        f"Rule {rule_id} on {body['days'][0]} .. {body['days'][1]}",
        ("target", "status", "reason"),
        [(t["target_id"], t["status"], t["reason"]) for t in body["targets"]],
    )


@rules_app.command("audit")
@guarded
def rule_audit(
    rule_id: Annotated[str | None, typer.Argument(help="One rule (default: all).")] = None,
    limit: Annotated[int, typer.Option(help="Most rows shown.")] = 50,
    workspace: WorkspaceOption = None,
    as_json: JsonFlag = False,
) -> None:
    """The audit log of rules, newest first."""
    container, owner = _container_and_owner(workspace)
    if rule_id is not None:
        rules.get_rule(container, owner, rule_id)
    with transaction(container.engine) as conn:
        entries = store.list_audit(
            conn, owner.workspace_id, source="rule", source_id=rule_id, limit=limit
        )
    body = [views.audit_json(entry) for entry in entries]
    if as_json:
        print_json(body)
        return
    print_table(
        "Rule audit",
        ("at", "rule", "target", "status", "reason"),
        [(e["at"], e["source_id"], e["target_id"], e["status"], e["reason"]) for e in body],
    )


@rules_app.command("delete")
@guarded
def delete_rule(
    rule_id: RuleIdArgument,
    workspace: WorkspaceOption = None,
) -> None:
    """Archive a rule (its audit log stays)."""
    container, owner = _container_and_owner(workspace)
    rules.archive_rule(container, owner, rule_id)
    console.print(f"Rule {rule_id} archived.")


@experiments_app.command("create")
@guarded
def create_experiment(
    file: FileOption = None,
    data: DataOption = None,
    workspace: WorkspaceOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Create an experiment from JSON (arms must be in the campaign's rotation)."""
    container, owner = _container_and_owner(workspace)
    created = experiments.create_experiment(container, owner, _definition(file, data))
    if as_json:
        print_json(views.experiment_json(created))
        return
    console.print(f"Experiment [bold]{created.id}[/] ({created.spec.name}) created.")


@experiments_app.command("list")
@guarded
def list_experiments(workspace: WorkspaceOption = None, as_json: JsonFlag = False) -> None:
    """The workspace's experiments."""
    container, owner = _container_and_owner(workspace)
    found = experiments.list_experiments(container, owner)
    body = [views.experiment_json(item) for item in found]
    if as_json:
        print_json(body)
        return
    print_table(
        "Experiments",
        ("id", "name", "campaign", "arms", "metric", "bandit", "status"),
        [
            (
                e["id"],
                e["name"],
                e["campaign_id"],
                ", ".join(e["arms"]),
                e["metric"],
                e["allocation"],
                e["status"],
            )
            for e in body
        ],
    )


@experiments_app.command("analysis")
@guarded
def analyze(
    experiment_id: ExperimentIdArgument,
    workspace: WorkspaceOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Posteriors, P(best), expected loss, the stopping decision and the SRM check."""
    container, owner = _container_and_owner(workspace)
    report = experiment_analysis.analyze_experiment(container, owner, experiment_id)
    if as_json:
        print_json(views.experiment_report_json(report))
        return
    level = f"{report.analysis.credible_level:.0%}"
    print_table(
        f"{report.experiment.spec.name}: {report.analysis.metric.value}, "
        f"{report.first_day} .. {report.last_day}",
        ("arm", "visitors", "conversions", "mean", f"{level} interval", "P(best)", "expected loss"),
        [
            (
                a.name,
                a.visitors,
                a.conversions,
                f"{a.mean:.5g}",
                f"[{a.interval_low:.5g}, {a.interval_high:.5g}]",
                f"{a.probability_best:.3f}",
                f"{a.expected_loss:.3g}",
            )
            for a in report.analysis.arms
        ],
    )
    console.print(
        f"Decision: {report.decision.reason.value}: {report.decision.message}", soft_wrap=True
    )
    if report.sample_ratio is not None:
        console.print(
            f"Sample ratio: p = {report.sample_ratio.p_value:.3g}"
            f"{' MISMATCH' if report.sample_ratio.mismatch else ''}"
        )
    for note in report.notes:
        console.print(f"note: {note}", soft_wrap=True)


@experiments_app.command("allocate")
@guarded
def allocate(
    experiment_id: ExperimentIdArgument,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Draw and log only.")] = False,
    workspace: WorkspaceOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Set the rotation weights by Thompson sampling now."""
    container, owner = _container_and_owner(workspace)
    result = experiment_analysis.allocate_experiment(
        container, owner, experiment_id, dry_run=dry_run
    )
    if as_json:
        print_json(views.experiment_allocation_json(result))
        return
    console.print(result.reason, soft_wrap=True)


@experiments_app.command("stop")
@guarded
def stop(
    experiment_id: ExperimentIdArgument,
    workspace: WorkspaceOption = None,
) -> None:
    """Stop an experiment (the bandit stops changing weights)."""
    container, owner = _container_and_owner(workspace)
    experiments.update_experiment(container, owner, experiment_id, {"status": "stopped"})
    console.print(f"Experiment {experiment_id} stopped.")


@recommend_app.command("budget")
@guarded
def recommend_budget(
    total: Annotated[str, typer.Option("--total", help="Daily total budget, e.g. 500.")],
    campaign: Annotated[
        list[str] | None, typer.Option("--campaign", help="Repeat; default: all active.")
    ] = None,
    objective: Annotated[str, typer.Option(help="conversions or revenue.")] = "conversions",
    goal: Annotated[str | None, typer.Option(help="Count only this goal key.")] = None,
    target_cpa: Annotated[
        str | None, typer.Option(help="Stop where marginal CPA passes it.")
    ] = None,
    target_roas: Annotated[
        str | None, typer.Option(help="Stop where marginal ROAS drops below.")
    ] = None,
    history_days: Annotated[int, typer.Option(help="Days of history to fit.")] = 28,
    apply: Annotated[
        bool, typer.Option("--apply", help="Autopilot: move budgets toward it.")
    ] = False,
    max_change_pct: Annotated[str, typer.Option(help="Autopilot: at most this % a day.")] = "20",
    workspace: WorkspaceOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Split a daily budget across campaigns by their fitted response curves."""
    container, owner = _container_and_owner(workspace)
    request = allocation.parse_budget_request(
        {
            "total_budget": total,
            "campaign_ids": campaign or [],
            "objective": objective,
            "goal": goal,
            "target_cpa": target_cpa,
            "target_roas": target_roas,
            "history_days": history_days,
        }
    )
    if apply:
        result = allocation.apply_budget_autopilot(
            container, owner, request, max_change_pct=max_change_pct
        )
        body = views.autopilot_json(result)
        recommendation = result.recommendation
    else:
        recommendation = allocation.recommend_budget(container, owner, request)
        body = views.budget_json(recommendation)
    if as_json:
        print_json(body)
        return
    result_total = recommendation.allocation
    print_table(
        f"Budget {result_total.total_budget} for {result_total.objective.value}",
        ("campaign", "today", "recommended", "expected", "interval", "marginal return", "notes"),
        [
            (
                row.campaign_id,
                recommendation.current_budgets.get(row.campaign_id),
                row.spend,
                f"{row.expected_outcome:.3g}",
                f"[{row.outcome_low:.3g}, {row.outcome_high:.3g}]",
                f"{row.marginal_return:.4g}",
                "; ".join(row.notes),
            )
            for row in result_total.campaigns
        ],
    )
    console.print(
        f"Expected total {result_total.expected_outcome:.4g} "
        f"[{result_total.outcome_low:.4g}, {result_total.outcome_high:.4g}]"
    )
    if apply:
        console.print(f"Autopilot wrote {len(body['written'])} budget(s).")


@recommend_app.command("bids")
@guarded
def recommend_bids(
    campaign_id: Annotated[str, typer.Argument(help="The campaign.")],
    target_cpa: Annotated[str | None, typer.Option(help="Target cost per conversion.")] = None,
    target_roas: Annotated[str | None, typer.Option(help="Target return on ad spend.")] = None,
    by: Annotated[str, typer.Option(help="publisher or sub_id.")] = "publisher",
    goal: Annotated[str | None, typer.Option(help="Count only this goal key.")] = None,
    history_days: Annotated[int, typer.Option(help="Days of history.")] = 28,
    workspace: WorkspaceOption = None,
    as_json: JsonFlag = False,
) -> None:
    """CPC/CPM bids per publisher or sub id, shrunk toward the campaign average."""
    container = local_container()
    request = bids.parse_bid_request(
        {
            "campaign_id": campaign_id,
            "target_cpa": target_cpa,
            "target_roas": target_roas,
            "by": by,
            "goal": goal,
            "history_days": history_days,
        }
    )
    advice = bids.recommend_campaign_bids(container, local_owner(container, workspace), request)
    if as_json:
        print_json(views.bids_json(advice))
        return
    print_table(
        f"{advice.recommendations.basis.value.upper()} bids, {advice.first_day} .. "
        f"{advice.last_day}",
        ("segment", "trials", "conversions", "rate", "shrinkage", "bid", "interval", "today"),
        [
            (
                s.segment,
                s.trials,
                s.conversions,
                f"{s.rate:.4g}",
                f"{s.rate_shrinkage:.2f}",
                s.bid.amount,
                f"[{s.bid_low.amount}, {s.bid_high.amount}]",
                advice.current_bids.get(s.segment),
            )
            for s in advice.recommendations.segments
        ],
    )


@guarded
def simulate_command(
    days: Annotated[int, typer.Option(help="Simulated days.")] = 30,
    policy: Annotated[Policy, typer.Option(help="optimizer, even or oracle.")] = Policy.OPTIMIZER,
    scale: Annotated[float, typer.Option(help="Traffic scale (1: about 570 clicks a day).")] = 0.5,
    budget: Annotated[str, typer.Option(help="Daily total at scale 1.")] = "400",
    seed: Annotated[int, typer.Option(help="Random seed.")] = 7,
    rules_file: Annotated[Path | None, typer.Option("--rules", help="JSON list of rules.")] = None,
    home: Annotated[Path | None, typer.Option(help="Keep the store and lake here.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Run a synthetic market through the real tracker and postbacks while the optimizer acts."""
    if days < 1 or scale <= 0:
        raise ValidationError("--days must be 1 or more and --scale above 0", field="days")
    rule_list: list[dict[str, Any]] = []
    if rules_file is not None:
        loaded = json.loads(rules_file.read_text(encoding="utf-8"))
        rule_list = loaded if isinstance(loaded, list) else [loaded]
    total = (Decimal(budget) * Decimal(repr(scale))).quantize(Decimal("0.01"))
    config = SimulationConfig(
        days=days, total_budget=total, policy=policy, seed=seed, rules=tuple(rule_list)
    )
    result = simulate(default_market().scaled(scale), config, home=home)
    if as_json:
        print_json(
            {
                "policy": result.policy.value,
                "clicks": result.clicks,
                "conversions": result.conversions,
                "revenue": str(result.revenue),
                "cost": str(result.cost),
                "expected_conversions": result.expected_conversions,
                "expected_revenue": result.expected_revenue,
                "bandit_regret": result.bandit_regret,
                "arm_clicks": dict(result.arm_clicks),
                "days": [views.jsonable(day) for day in result.days],
                "rule_audit": [views.audit_json(entry) for entry in result.rule_audit],
            }
        )
        return
    names = list(result.campaign_ids)
    print_table(
        f"Market under the {policy.value} policy",
        ("day", *[f"{n} budget" for n in names], "clicks", "conversions", "revenue"),
        [
            (
                d.day,
                *[d.budgets.get(n) for n in names],
                sum(d.clicks.values()),
                d.conversions,
                d.revenue,
            )
            for d in result.days
        ],
    )
    console.print(
        f"Total: {result.clicks} clicks, {result.conversions} conversions "
        f"(expected {result.expected_conversions:.1f}), revenue {result.revenue}, "
        f"cost {result.cost}; bandit regret {result.bandit_regret:.2f} conversions"
    )
    for entry in result.rule_audit:
        if entry.status != "conditions_not_met":
            console.print(f"{entry.at:%Y-%m-%d} {entry.target_id}: {entry.reason}", soft_wrap=True)
