"""The gate's decisions and actions without AWS: what decide() returns, what each action does, what a dry run skips."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from gate.actions import Promote, Quarantine, TagValidation, WriteReport
from gate.pipeline import ObjectRef, Reads, decide
from gate.ports import BaselineUnreadable, Baselines

from stage_policy.events import OBJECT_CREATED, EventError, parse_eventbridge
from stage_policy.executor import Executor, settle
from stage_policy.loader import load
from stage_policy.runtime import IDEMPOTENCY_PERMISSIONS
from stagewarden.datagen import write_csv
from tests.helpers import ROOT

POLICY = load(ROOT / "policy.example.yaml")
BUCKET, KEY = "acme-lab-data", "landing/transactions/2026-11-22/f.csv"
LOCATION = "s3://acme-lab-data/_stagewarden/baselines/transactions.json"


class Log:
    def debug(self, *a: Any, **k: Any) -> None: ...
    def info(self, *a: Any, **k: Any) -> None: ...
    def warning(self, *a: Any, **k: Any) -> None: ...


class Objects:
    """An ObjectStore over a dict of bodies (version "v1")."""

    def __init__(self, bodies: dict[str, bytes]):
        self.bodies = bodies

    def head(self, bucket: str, key: str, version: str | None) -> dict[str, Any]:
        return {"ContentLength": len(self.bodies[key]), "VersionId": "v1"}

    def open(self, bucket: str, key: str, version: str | None, size: int, seekable: bool) -> Any:
        return io.BytesIO(self.bodies[key])

    def get_json(self, location: str) -> Any:
        raise KeyError(location)


def csv_bytes(tmp_path, **kwargs: Any) -> bytes:
    path = tmp_path / "f.csv"
    write_csv(path, 500, seed=kwargs.pop("seed", 3), **kwargs)
    return path.read_bytes()


def reads(body: bytes, baseline: Any = None) -> Reads:
    def read(location: str) -> Any:
        if isinstance(baseline, Exception):
            raise baseline
        return baseline

    return Reads(Objects({KEY: body}), Baselines(read), lambda bucket: {})


def test_a_pass_is_bookkeeping_only_reported_tagged_and_promoted(tmp_path) -> None:
    verdict = decide(ObjectRef(BUCKET, KEY), POLICY, reads(csv_bytes(tmp_path), {"columns": {}}), "arn:gate", Log())

    [decision] = verdict.decisions
    assert decision.finding is None and decision.stage == "prod-discovery"
    assert [type(a) for a in decision.actions] == [WriteReport, TagValidation, Promote]
    assert not any(a.remediation for a in decision.actions)
    assert decision.actions[1].status == "passed" and decision.actions[1].target == f"s3://{BUCKET}/{KEY}?versionId=v1"
    assert decision.actions[2].target == f"s3://{BUCKET}/validated/transactions/2026-11-22/f.csv"
    assert verdict.summary == {"key": KEY, "version": "v1", "passed": True,
                               "report": f"s3://{BUCKET}/_stagewarden/reports/{KEY}.v1.json"}


def test_a_failure_quarantines_once_per_finding_and_is_tagged_failed(tmp_path) -> None:
    body = csv_bytes(tmp_path, seed=4, dirty=True, per_defect=2, duplicates=1)

    verdict = decide(ObjectRef(BUCKET, KEY), POLICY, reads(body, {"columns": {}}), "arn:gate", Log())

    bookkeeping, *per_finding = verdict.decisions
    assert [type(a) for a in bookkeeping.actions] == [WriteReport, TagValidation]
    assert bookkeeping.actions[1].status == "failed"
    assert [d.finding.rule for d in per_finding] == ["data.schema", "data.quality"]
    quarantines = [a for d in per_finding for a in d.actions]
    assert all(isinstance(q, Quarantine) and q.remediation for q in quarantines)
    assert quarantines[0].statement()["Condition"]["ArnNotEquals"] == {"aws:PrincipalArn": "arn:gate"}
    assert len({q.identity() for q in quarantines}) == 2  # each finding records its own outcome
    report = json.loads(bookkeeping.actions[0].body)
    assert report["passed"] is False and report["drift_baseline"]["status"] == "read"


def test_an_unreadable_baseline_is_a_medium_finding_per_location_and_drift_is_not_evaluated(tmp_path) -> None:
    body = csv_bytes(tmp_path)
    error = PermissionError("AccessDenied")

    first = decide(ObjectRef(BUCKET, KEY), POLICY, reads(body, error), "arn:gate", Log())
    again = decide(ObjectRef(BUCKET, KEY, "v2"), POLICY, reads(body, error), "arn:gate", Log())

    [bookkeeping, unreadable] = first.decisions
    assert first.summary["passed"] and [type(a) for a in bookkeeping.actions] == [WriteReport, TagValidation, Promote]
    finding = unreadable.finding
    assert unreadable.actions == [] and finding.rule == "data.baseline-unreadable" and finding.severity == "medium"
    assert finding.evidence["baseline"] == LOCATION and "AccessDenied" in finding.evidence["error"]
    assert finding.dedup_key == again.decisions[-1].finding.dedup_key  # one incident per baseline location
    report = json.loads(bookkeeping.actions[0].body)
    assert report["drift"] == {} and report["drift_baseline"]["status"] == "unreadable"


def test_baselines_keep_successes_for_their_ttl_and_never_keep_failures() -> None:
    now, calls, answers = [0.0], [], [OSError("SlowDown"), {"columns": {"a": {}}}, {"columns": {"b": {}}}]

    def read(location: str) -> Any:
        calls.append(location)
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    baselines = Baselines(read, ttl_seconds=600, clock=lambda: now[0])
    with pytest.raises(BaselineUnreadable, match="SlowDown"):
        baselines.get(LOCATION)
    assert baselines.get(LOCATION) == {"columns": {"a": {}}}  # the failure was retried at once
    now[0] = 599
    assert baselines.get(LOCATION) == {"columns": {"a": {}}} and len(calls) == 2
    now[0] = 601
    assert baselines.get(LOCATION) == {"columns": {"b": {}}} and len(calls) == 3


def test_a_baseline_that_is_not_a_profile_is_unreadable() -> None:
    with pytest.raises(BaselineUnreadable, match="not a drift profile"):
        Baselines(lambda location: ["not", "a", "profile"]).get(LOCATION)


def test_the_replay_key_is_the_version_else_the_sequencer() -> None:
    body = json.loads((ROOT / "events" / "schema_gate" / "object_created_pass.eventbridge.json").read_text())
    ref = ObjectRef.of(parse_eventbridge(json.dumps(body), (OBJECT_CREATED,)))
    assert ref.replay_key() == f"{BUCKET}/landing/transactions/2026-11-22/good.csv#sequencer=00617F08299329D189"
    body["detail"]["object"]["version-id"] = "3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY"
    assert ObjectRef.of(parse_eventbridge(body, (OBJECT_CREATED,))).replay_key().endswith("#version=3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY")
    del body["detail"]["object"]["key"]
    with pytest.raises(EventError, match=r"record body\.detail\.object\.key"):
        parse_eventbridge(body, (OBJECT_CREATED,))


class FakeS3:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        def call(**kwargs: Any) -> Any:
            self.calls.append(name)
            return {"get_object_tagging": {"TagSet": []}, "get_bucket_policy": {"Policy": '{"Statement": []}'}}.get(name, {})
        return call


@pytest.mark.parametrize("deploy_mode", ["dry_run", "enforce"])
def test_in_dry_run_only_the_quarantine_is_described_instead_of_done(tmp_path, deploy_mode) -> None:
    body = csv_bytes(tmp_path, seed=4, dirty=True, per_defect=2)
    verdict = decide(ObjectRef(BUCKET, KEY), POLICY, reads(body, {"columns": {}}), "arn:gate", Log())
    s3, published = FakeS3(), []

    findings = settle(verdict.decisions, Executor(lambda service: s3, POLICY, deploy_mode), published.append)

    bookkeeping = ["put_object", "get_object_tagging", "put_object_tagging"]
    if deploy_mode == "dry_run":
        assert s3.calls == bookkeeping
        assert all(f.action == f"dry run: would deny reads of s3://{BUCKET}/{KEY} (tagged failed) to all but the gate"
                   for f in findings)
    else:
        assert s3.calls[:3] == bookkeeping and "put_bucket_policy" in s3.calls
    assert published == findings and {f.evidence["mode"] for f in findings} == {deploy_mode}


def test_every_class_the_handler_uses_declares_its_permissions() -> None:
    from gate.handler import USES  # not at collection: Powertools reads its environment on import

    assert all(isinstance(cls.permissions, tuple) and cls.permissions for cls in USES)
    assert IDEMPOTENCY_PERMISSIONS in [cls.permissions for cls in USES]
    assert {"WriteReport", "TagValidation", "Promote", "Quarantine"} <= {cls.__name__ for cls in USES}
