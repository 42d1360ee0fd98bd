"""The one executor: carries out decided actions in ``enforce`` or describes them in ``dry_run``.

* **Mode.** The deploy-time ``DefaultRemediationMode`` is a ceiling: ``dry_run`` forces dry
  run everywhere; ``enforce`` lets the policy decide (a stage's ``mode``, else
  ``defaults.mode``). See :func:`effective_mode`.
* **Caps.** ``safety.max_revocations_per_run`` and ``safety.max_deletions_per_run`` are
  counted per invocation (one executor per invocation, shared by every record of an SQS
  batch), never per record.
* **Ledger.** Every action and its outcome is written to the audit ledger, dry runs and
  skips included.
* **Failures.** A failed action is recorded, named in the finding, and raised as
  :class:`ActionFailed` once the finding is published, so the record is retried and
  finally lands in the dead-letter queue. Nothing is swallowed.
"""

from __future__ import annotations

import itertools
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Callable, Iterable

from stage_policy import keys
from stage_policy.actions import Action, Clients, Decision, Mode, Outcome, Skipped
from stage_policy.errors import describe
from stage_policy.publish import publish_or_keep

if TYPE_CHECKING:
    from stage_policy.findings import Finding
    from stage_policy.model import Policy


class ActionFailed(RuntimeError):
    """One or more actions failed; their findings were published and their outcomes recorded."""

    def __init__(self, outcomes: list[Outcome]):
        self.outcomes = outcomes
        super().__init__("; ".join(o.detail for o in outcomes))


def effective_mode(policy: Policy, stage: str | None, deploy_mode: Mode) -> Mode:
    """``dry_run`` at deploy time forces dry run; ``enforce`` lets the policy decide.

    Unmanaged resources (no stage) are never remediated.
    """
    if deploy_mode == "dry_run" or stage is None or stage not in policy.stages:
        return "dry_run"
    return policy.mode_for(stage)


class AuditLedger:
    """Writes one item per action outcome to the audit table (kept; no TTL)."""

    permissions = ("dynamodb:PutItem",)

    def __init__(self, ddb: Any, table: str, function: str):
        self._ddb, self._table, self._function = ddb, table, function
        self._seq = itertools.count()

    def record(self, decision: Decision, mode: Mode, outcome: Outcome) -> None:
        now = datetime.now(timezone.utc)
        finding = decision.finding
        item = {
            **keys.audit(now, self._function, f"{next(self._seq):06d}"),
            "function": {"S": self._function},
            "mode": {"S": mode},
            "action": {"S": outcome.kind},
            "target": {"S": outcome.target[:1024]},
            "status": {"S": outcome.status},
            "result": {"S": outcome.detail[:2000]},
        }
        if decision.stage:
            item["stage"] = {"S": decision.stage}
        if finding is not None:
            item["rule"] = {"S": finding.rule}
            item["dedup_key"] = {"S": finding.dedup_key}
        self._ddb.put_item(TableName=self._table, Item=item)


class Executor:
    """Carries out decisions for one invocation. Build a new one per invocation."""

    permissions = AuditLedger.permissions

    def __init__(self, clients: Clients, policy: Policy, deploy_mode: Mode, ledger: AuditLedger | None = None):
        self._clients = clients
        self._policy = policy
        self._deploy_mode = deploy_mode
        self._ledger = ledger
        self._left = {"revocations": policy.safety.max_revocations_per_run,
                      "deletions": policy.safety.max_deletions_per_run}
        self._done: dict[tuple[Any, ...], Outcome] = {}  # (mode, *identity) -> first outcome
        self.outcomes: list[Outcome] = []

    def mode_for(self, stage: str | None) -> Mode:
        return effective_mode(self._policy, stage, self._deploy_mode)

    def remaining(self, cap: str) -> int:
        return self._left[cap]

    def act(self, decision: Decision) -> list[Outcome]:
        """Carry out (or describe) every action of the decision; fill the finding's ``action``."""
        mode = self.mode_for(decision.stage)
        outcomes = [self._one(action, mode) for action in decision.actions]
        unrecorded: list[str] = []
        for outcome in outcomes:
            if self._ledger is not None:
                try:
                    self._ledger.record(decision, mode, outcome)
                except Exception as exc:  # noqa: BLE001 - the action happened: reported in the finding, then raised
                    unrecorded.append(f"{outcome.kind} ({describe(exc)})")
        if unrecorded:
            # a failed outcome: the finding still goes out (saying so) and the record fails after it (ActionFailed)
            outcomes.append(Outcome("audit-ledger", decision.finding.resource if decision.finding else "",
                                    "failed", "FAILED to record in the audit ledger: " + "; ".join(unrecorded)))
        self.outcomes.extend(outcomes)
        finding = decision.finding
        if finding is not None:
            if outcomes:
                lines = [o.detail for o in outcomes]
                finding.action = _bounded("; ".join(lines), 1000)
                finding.evidence["actions"] = [_bounded(line, 300) for line in lines[:20]]
                if len(lines) > 20:
                    finding.evidence["actions_omitted"] = len(lines) - 20
                finding.evidence["mode"] = mode
                statuses = {o.status for o in outcomes}
                if statuses & {"failed", "done"}:  # the publisher alerts again when this changes within an incident
                    finding.evidence["outcome"] = "failed" if "failed" in statuses else "done"
            elif decision.note:
                finding.action = _bounded(decision.note, 1000)
            elif decision.response == "alert":
                finding.action = "alert only (the policy's response for this stage is alert)"
            else:
                finding.action = "alert only (no automatic remediation for this rule)"
        return outcomes

    def _one(self, action: Action, mode: Mode) -> Outcome:
        ident = (mode, *action.identity())  # a dry run of an action never stands in for carrying it out
        if ident in self._done:
            first = self._done[ident]
            return Outcome(action.kind, action.target, "duplicate", f"already handled in this run: {first.detail}")
        if action.remediation and mode == "dry_run":
            outcome = Outcome(action.kind, action.target, "dry_run", f"dry run: would {action.describe()}")
        elif action.cap is not None and self._left[action.cap] < action.weight():
            outcome = Outcome(action.kind, action.target, "skipped",
                              f"skipped: would {action.describe()}, but max_{action.cap}_per_run is spent for this run")
        else:
            if action.cap is not None:
                self._left[action.cap] -= action.weight()
            try:
                outcome = Outcome(action.kind, action.target, "done", action.apply(self._clients))
            except Skipped as exc:  # it found it no longer applies: nothing changed, so nothing is spent
                outcome = Outcome(action.kind, action.target, "skipped", f"skipped: would {action.describe()}, but {exc}")
                if action.cap is not None:
                    self._left[action.cap] += action.weight()
            except Exception as exc:  # noqa: BLE001 - recorded, named in the finding, then raised (ActionFailed)
                outcome = Outcome(action.kind, action.target, "failed", f"FAILED to {action.describe()}: {describe(exc)}")
                if action.cap == "revocations":
                    # one IAM call that failed changed nothing: its budget goes to the next containment. (A batch
                    # deletion may have deleted part of its keys before failing, so deletions stay spent: the cap
                    # is never exceeded.)
                    self._left[action.cap] += action.weight()
        self._done[ident] = outcome
        return outcome


def _bounded(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 15] + " …[truncated]"


def settle(decisions: Iterable[Decision], executor: Executor | None, publish: Callable[[Finding], Any]) -> list[Finding]:
    """Act on every decision, publish every finding, then raise :class:`ActionFailed` if any action failed.

    Publishing comes first so a failed containment is still reported; the raise fails the
    record, which is retried and finally dead-lettered. A function that never acts (policy
    guard) passes no executor; a decision with actions then is a programming error.
    """
    findings: list[Finding] = []
    failed: list[Outcome] = []
    for decision in decisions:
        if executor is None:
            if decision.actions:
                raise ValueError("settle: decisions with actions need an executor")
            outcomes = []
        else:
            outcomes = executor.act(decision)
        failed.extend(o for o in outcomes if o.status == "failed")
        if decision.finding is not None:
            publish_or_keep(publish, decision.finding, outcomes)
            findings.append(decision.finding)
    if failed:
        raise ActionFailed(failed)
    return findings
