"""The gate's decisions and actions without AWS: what decide() returns, what each action does, what a dry run skips."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from gate.actions import FENCE_SIDS, POLICY_LIMIT, Promote, Quarantine, TagValidation, WriteReport, fence, merged
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

    def head(self, bucket: str, key: str, version: str | None) -> dict[str, Any] | None:
        if key not in self.bodies:
            return None
        return {"ContentLength": len(self.bodies[key]), "VersionId": "v1", "ETag": '"e1"'}

    def open(self, bucket: str, key: str, version: str | None, size: int, seekable: bool, if_match: str | None = None) -> Any:
        return io.BytesIO(self.bodies[key])


class Policies:
    """A BucketPolicies with the gate's fence already in place (or the given policy)."""

    def __init__(self, policy: dict | None = None, fenced: bool = True):
        self.policy = policy if policy is not None or not fenced else merged(
            None, fence(BUCKET, ("landing/transactions/",), ("validated/transactions/",), "arn:gate"))[0]

    def get(self, bucket: str) -> dict | None:
        return self.policy

    def get_json(self, location: str) -> Any:
        raise KeyError(location)


def csv_bytes(tmp_path, **kwargs: Any) -> bytes:
    path = tmp_path / "f.csv"
    write_csv(path, 500, seed=kwargs.pop("seed", 3), **kwargs)
    return path.read_bytes()


def reads(body: bytes, baseline: Any = None, policies: Any = None, key: str = KEY) -> Reads:
    def read(location: str) -> Any:
        if isinstance(baseline, Exception):
            raise baseline
        return baseline

    return Reads(Objects({key: body}), Baselines(read), lambda bucket: {}, policies if policies is not None else Policies())


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
    statements = json.loads(quarantines[0].statements)
    assert [st["Sid"] for st in statements] == list(FENCE_SIDS)
    assert all(st["Condition"]["ArnNotEquals"] == {"aws:PrincipalArn": "arn:gate"} for st in statements)
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
        assert all(f.action.startswith(f"dry run: would keep s3://{BUCKET}/{KEY} unreadable to all but the gate until it is "
                                       "tagged passed (bucket policy statements StagewardenGateDenyReadsUntilPassed")
                   for f in findings)
    else:
        assert s3.calls[:3] == bookkeeping and "put_bucket_policy" in s3.calls
    assert published == findings and {f.evidence["mode"] for f in findings} == {deploy_mode}


def test_every_class_the_handler_uses_declares_its_permissions() -> None:
    from gate.handler import USES  # not at collection: Powertools reads its environment on import

    assert all(isinstance(cls.permissions, tuple) and cls.permissions for cls in USES)
    assert IDEMPOTENCY_PERMISSIONS in [cls.permissions for cls in USES]
    assert {"WriteReport", "TagValidation", "Promote", "Quarantine"} <= {cls.__name__ for cls in USES}


def test_a_pass_installs_the_fence_when_it_is_missing_and_not_when_it_is_in_place(tmp_path) -> None:
    body = csv_bytes(tmp_path)

    missing = decide(ObjectRef(BUCKET, KEY), POLICY, reads(body, {"columns": {}}, Policies(fenced=False)), "arn:gate", Log())
    in_place = decide(ObjectRef(BUCKET, KEY), POLICY, reads(body, {"columns": {}}, Policies()), "arn:gate", Log())

    assert [type(a) for a in missing.decisions[0].actions] == [WriteReport, TagValidation, Promote, Quarantine]
    assert missing.decisions[0].actions[-1].reason == "fence"
    assert [type(a) for a in in_place.decisions[0].actions] == [WriteReport, TagValidation, Promote]


def test_a_policy_that_would_pass_20_kb_is_a_critical_finding_not_a_failed_write(tmp_path) -> None:
    # Given a bucket policy of other statements that leaves no room for the gate's
    big = {"Version": "2012-10-17", "Statement": [
        {"Sid": f"Team{i}", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::123456789012:role/team-{i:04d}"},
         "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{BUCKET}/teams/{i:04d}/*"} for i in range(112)]}
    assert len(json.dumps(big, separators=(",", ":"))) < POLICY_LIMIT < merged(big, fence(BUCKET, ("landing/transactions/",),
                                                                                          ("validated/transactions/",), "arn:gate"))[2]
    body = csv_bytes(tmp_path, seed=4, dirty=True, per_defect=2)

    # When a failing object lands
    verdict = decide(ObjectRef(BUCKET, KEY), POLICY, reads(body, {"columns": {}}, Policies(big)), "arn:gate", Log())

    # Then no quarantine is attempted (it would fail); a critical finding names the bucket and the sizes
    assert not any(isinstance(a, Quarantine) for d in verdict.decisions for a in d.actions)
    [critical] = [d.finding for d in verdict.decisions if d.finding and d.finding.rule == "data.quarantine-too-large"]
    assert critical.severity == "critical" and critical.resource == f"arn:aws:s3:::{BUCKET}"
    assert critical.evidence["limit_bytes"] == 20480 and critical.evidence["policy_bytes"] > 20480
    assert critical.evidence["gated_prefixes"] == ["landing/transactions/"]


def test_the_fence_merges_into_either_statement_shape_and_keeps_other_statements_as_they_are() -> None:
    other = {"Sid": "Mine", "Effect": "Deny", "Principal": "*", "Action": "s3:*", "Resource": f"arn:aws:s3:::{BUCKET}/*",
             "Condition": {"Bool": {"aws:SecureTransport": "false"}}}
    legacy = {"Sid": "StagewardenQuarantineFailedObjects", "Effect": "Deny", "Principal": "*", "Action": "s3:GetObject",
              "Resource": f"arn:aws:s3:::{BUCKET}/*"}
    statements = fence(BUCKET, ("landing/a/",), (), "arn:gate")

    as_object, changed_1, _ = merged({"Version": "2012-10-17", "Statement": other}, statements)
    as_list, changed_2, _ = merged({"Version": "2012-10-17", "Id": "keep", "Statement": [other, legacy]}, statements)
    again, changed_3, _ = merged(as_list, statements)

    assert as_object["Statement"] == [other] + statements and changed_1
    assert as_list == {"Version": "2012-10-17", "Id": "keep", "Statement": [other] + statements} and changed_2
    assert again == as_list and not changed_3
    assert [st["Sid"] for st in statements] == list(FENCE_SIDS[:4])  # no validated prefix: no statement for one


def test_url_encoded_keys_read_the_object_that_exists(tmp_path) -> None:
    real = "landing/transactions/2026-11-22/my file+v2.csv"
    body = csv_bytes(tmp_path)

    for given in ("landing/transactions/2026-11-22/my+file%2Bv2.csv", "landing/transactions/2026-11-22/my%20file%2Bv2.csv"):
        verdict = decide(ObjectRef(BUCKET, given), POLICY, reads(body, {"columns": {}}, key=real), "arn:gate", Log())
        assert verdict.summary["key"] == real and verdict.summary["passed"]
    literal = decide(ObjectRef(BUCKET, real), POLICY, reads(body, {"columns": {}}, key=real), "arn:gate", Log())
    assert literal.summary["key"] == real
    gone = decide(ObjectRef(BUCKET, "landing/transactions/x.csv"), POLICY, reads(body, key=real), "arn:gate", Log())
    assert gone.summary == {"skipped": "no such object", "key": "landing/transactions/x.csv"}


def test_an_unversioned_object_overwritten_while_it_is_read_is_left_to_the_newer_writes_event(tmp_path) -> None:
    # Given an unversioned object (no version id) whose bytes change while the gate reads them
    class Racing(Objects):
        def __init__(self, bodies):
            super().__init__(bodies)
            self.etag = '"e1"'

        def head(self, bucket, key, version):
            return {"ContentLength": len(self.bodies[key]), "ETag": self.etag}

        def open(self, bucket, key, version, size, seekable, if_match=None):
            assert if_match == "e1"  # the read itself is guarded: S3 refuses it once the ETag changes
            self.etag = '"e2"'
            raise OSError("PreconditionFailed")

    racing = Reads(Racing({KEY: csv_bytes(tmp_path)}), Baselines(lambda loc: {"columns": {}}), lambda b: {}, Policies())

    verdict = decide(ObjectRef(BUCKET, KEY, None, "0062A1F0000000000A"), POLICY, racing, "arn:gate", Log())

    # Then nothing is reported, tagged or promoted for these bytes
    assert verdict.decisions == [] and verdict.summary["superseded"] == "overwritten while it was validated"


def test_reports_of_an_unversioned_keys_writes_do_not_overwrite_each_other(tmp_path) -> None:
    class Unversioned(Objects):
        def head(self, bucket, key, version):
            return {"ContentLength": len(self.bodies[key]), "ETag": '"e1"'}

    plain = Reads(Unversioned({KEY: csv_bytes(tmp_path)}), Baselines(lambda loc: {"columns": {}}), lambda b: {}, Policies())

    first = decide(ObjectRef(BUCKET, KEY, None, "0062A1F0000000000A"), POLICY, plain, "arn:gate", Log())
    second = decide(ObjectRef(BUCKET, KEY, None, "0062A1F0000000000B"), POLICY, plain, "arn:gate", Log())

    assert first.summary["report"].endswith(".seq-0062A1F0000000000A.json") and second.summary["report"].endswith(".seq-0062A1F0000000000B.json")
    tag = first.decisions[0].actions[1]
    assert isinstance(tag, TagValidation) and tag.etag == "e1" and tag.version is None
