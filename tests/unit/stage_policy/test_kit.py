"""The decide-then-act kit: executor modes and caps, audit ledger, failures, typed events, replay safety, settings."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import ClassVar

import boto3
import pytest
from moto import mock_aws

from stage_policy.actions import Action, Decision, Skipped
from stage_policy.events import API_CALL, OBJECT_CREATED, SCHEDULED, EventError, parse_config_invocation, parse_eventbridge
from stage_policy.executor import ActionFailed, AuditLedger, Executor, effective_mode, settle
from stage_policy.findings import Finding
from stage_policy.loader import loads
from stage_policy.runtime import Runtime
from stage_policy.settings import Settings, SettingsError
from tests.helpers import ROOT

POLICY = loads("""
framework: three-stage
defaults: {mode: enforce}
safety: {max_revocations_per_run: 2, max_deletions_per_run: 5}
stages:
  prod-integration: {mode: dry_run}
""")


@dataclass(frozen=True)
class TagBucket(Action):
    """A real remediation for the tests: tag a bucket (effect visible in moto)."""

    kind: ClassVar[str] = "tag-bucket"
    permissions: ClassVar[tuple[str, ...]] = ("s3:PutBucketTagging",)
    cap: ClassVar[str] = "revocations"

    def describe(self) -> str:
        return f"tag {self.target}"

    def apply(self, clients) -> str:
        clients("s3").put_bucket_tagging(Bucket=self.target, Tagging={"TagSet": [{"Key": "contained", "Value": "yes"}]})
        return f"tagged {self.target}"


@dataclass(frozen=True)
class DeleteVersions(Action):
    kind: ClassVar[str] = "delete-versions"
    cap: ClassVar[str] = "deletions"
    count: int = 1

    def describe(self) -> str:
        return f"delete {self.count} versions in {self.target}"

    def weight(self) -> int:
        return self.count

    def apply(self, clients) -> str:
        return f"deleted {self.count}"


@dataclass(frozen=True)
class Report(Action):
    kind: ClassVar[str] = "report"
    remediation: ClassVar[bool] = False

    def describe(self) -> str:
        return f"write a report to {self.target}"

    def apply(self, clients) -> str:
        clients("s3").put_object(Bucket=self.target, Key="report.json", Body=b"{}")
        return f"wrote s3://{self.target}/report.json"


def finding(stage: str = "prod-discovery", resource: str = "arn:aws:s3:::kit-b1") -> Finding:
    return Finding(rule="test.rule", severity="high", stage=stage, resource=resource, summary="test")


@pytest.fixture
def aws():
    with mock_aws():
        s3, ddb = boto3.client("s3"), boto3.client("dynamodb")
        for name in ("kit-b1", "kit-b2", "kit-b3"):
            s3.create_bucket(Bucket=name)
        for table in ("audit", "state"):
            ddb.create_table(
                TableName=table, BillingMode="PAY_PER_REQUEST",
                KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
                AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}, {"AttributeName": "sk", "AttributeType": "S"}],
            )
        yield {"s3": s3, "ddb": ddb}


def executor(deploy_mode: str = "enforce", policy=POLICY) -> Executor:
    return Executor(boto3.client, policy, deploy_mode, AuditLedger(boto3.client("dynamodb"), "audit", "test-fn"))


def tags(s3, bucket: str) -> list:
    try:
        return s3.get_bucket_tagging(Bucket=bucket)["TagSet"]
    except Exception:  # noqa: BLE001 - NoSuchTagSet
        return []


def audit_items(ddb) -> list[dict]:
    return sorted(ddb.scan(TableName="audit")["Items"], key=lambda i: i["sk"]["S"])


@pytest.mark.parametrize("deploy, stage, expected", [
    ("dry_run", "prod-discovery", "dry_run"),      # deploy-time dry_run forces dry run over a policy that enforces
    ("enforce", "prod-discovery", "enforce"),      # enforce lets the policy decide: defaults.mode enforce
    ("enforce", "prod-integration", "dry_run"),    # ... and a stage's own mode wins over defaults.mode
    ("enforce", None, "dry_run"),                  # unmanaged resources are never remediated
    ("enforce", "no-such-stage", "dry_run"),
])
def test_effective_mode_deploy_time_is_a_ceiling(deploy, stage, expected) -> None:
    assert effective_mode(POLICY, stage, deploy) == expected


def test_enforce_carries_out_records_and_fills_the_finding(aws) -> None:
    # Given a decision with one remediation in an enforcing stage
    decision = Decision(finding(), [TagBucket("kit-b1")], stage="prod-discovery")

    # When the executor acts
    outcomes = executor().act(decision)

    # Then the bucket is tagged, the finding says so and the ledger has the outcome
    assert [o.status for o in outcomes] == ["done"]
    assert tags(aws["s3"], "kit-b1") == [{"Key": "contained", "Value": "yes"}]
    assert decision.finding.action == "tagged kit-b1" and decision.finding.evidence["mode"] == "enforce"
    [item] = audit_items(aws["ddb"])
    assert (item["action"]["S"], item["status"]["S"], item["mode"]["S"], item["rule"]["S"]) == ("tag-bucket", "done", "enforce", "test.rule")
    assert item["pk"]["S"].startswith("audit#") and item["function"]["S"] == "test-fn"


def test_dry_run_describes_exactly_and_changes_nothing_but_bookkeeping_still_happens(aws) -> None:
    decision = Decision(finding(), [TagBucket("kit-b1"), Report("kit-b2")], stage="prod-discovery")

    outcomes = executor("dry_run").act(decision)

    assert [o.status for o in outcomes] == ["dry_run", "done"]
    assert tags(aws["s3"], "kit-b1") == []
    assert aws["s3"].get_object(Bucket="kit-b2", Key="report.json")["Body"].read() == b"{}"
    assert decision.finding.action.startswith("dry run: would tag kit-b1; wrote s3://kit-b2/report.json")
    assert [i["status"]["S"] for i in audit_items(aws["ddb"])] == ["dry_run", "done"]


def test_the_cap_counts_per_invocation_across_decisions(aws) -> None:
    # Given one executor (one invocation) and three decisions each wanting one capped action (cap 2)
    ex = executor()
    decisions = [Decision(finding(resource=f"arn:aws:s3:::{b}"), [TagBucket(b)], stage="prod-discovery") for b in ("kit-b1", "kit-b2", "kit-b3")]

    # When all are acted on
    statuses = [ex.act(d)[0].status for d in decisions]

    # Then two are carried out and the third is skipped with the reason, and nothing happened to b3
    assert statuses == ["done", "done", "skipped"]
    assert tags(aws["s3"], "kit-b3") == [] and "max_revocations_per_run is spent" in decisions[2].finding.action
    assert ex.remaining("revocations") == 0


def test_weighted_actions_spend_their_weight_and_a_fresh_executor_has_a_fresh_budget(aws) -> None:
    ex = executor()
    first = ex.act(Decision(None, [DeleteVersions("kit-b1", count=4)], stage="prod-discovery"))
    second = ex.act(Decision(None, [DeleteVersions("kit-b2", count=2)], stage="prod-discovery"))
    assert [first[0].status, second[0].status] == ["done", "skipped"] and ex.remaining("deletions") == 1
    assert executor().act(Decision(None, [DeleteVersions("kit-b2", count=2)], stage="prod-discovery"))[0].status == "done"


@dataclass(frozen=True)
class TagUnlessGone(TagBucket):
    """Tags the bucket unless it lost its ``keep`` tag since planning (then: Skipped, nothing written)."""

    cap: ClassVar[str] = "deletions"

    def weight(self) -> int:
        return 3

    def apply(self, clients) -> str:
        if not any(t["Key"] == "keep" for t in tags(clients("s3"), self.target)):
            raise Skipped(f"{self.target} lost its keep tag since it was planned")
        return super().apply(clients)


def test_an_action_that_no_longer_applies_is_skipped_recorded_and_spends_nothing(aws) -> None:
    # Given a capped action whose bucket changed after planning
    ex = executor()
    decision = Decision(finding(), [TagUnlessGone("kit-b1")], stage="prod-discovery")

    # When it is acted on
    [outcome] = settle([decision], ex, lambda f: None) and ex.outcomes

    # Then nothing was written, the outcome says why, the ledger has it, and the cap is whole (no ActionFailed)
    assert outcome.status == "skipped" and "lost its keep tag" in outcome.detail
    assert tags(aws["s3"], "kit-b1") == [] and ex.remaining("deletions") == 5
    assert [i["status"]["S"] for i in audit_items(aws["ddb"])] == ["skipped"]
    assert decision.finding.action.startswith("skipped: would tag kit-b1, but kit-b1 lost its keep tag")


def test_the_same_action_twice_in_one_invocation_runs_once(aws) -> None:
    ex = executor()
    a = ex.act(Decision(finding(), [TagBucket("kit-b1")], stage="prod-discovery"))
    b = ex.act(Decision(finding(resource="arn:aws:s3:::other"), [TagBucket("kit-b1")], stage="prod-discovery"))
    assert [a[0].status, b[0].status] == ["done", "duplicate"] and ex.remaining("revocations") == 1


def test_a_failed_action_is_published_recorded_and_raised(aws) -> None:
    # Given a remediation on a bucket that does not exist
    published = []
    decisions = [Decision(finding(), [TagBucket("missing-bucket")], stage="prod-discovery"),
                 Decision(finding(resource="arn:aws:s3:::kit-b2"), [TagBucket("kit-b2")], stage="prod-discovery")]

    # When settled
    with pytest.raises(ActionFailed) as caught:
        settle(decisions, executor(), published.append)

    # Then both findings were published (the failure named), the good action still ran, the ledger says failed
    assert [f.resource for f in published] == ["arn:aws:s3:::kit-b1", "arn:aws:s3:::kit-b2"]
    assert published[0].action.startswith("FAILED to tag missing-bucket: NoSuchBucket")
    assert tags(aws["s3"], "kit-b2") and "NoSuchBucket" in str(caught.value)
    assert [i["status"]["S"] for i in audit_items(aws["ddb"])] == ["failed", "done"]


def test_alert_only_decisions_say_so() -> None:
    d = Decision(finding(), [], stage="prod-discovery", response="alert")
    Executor(boto3.client, POLICY, "enforce").act(d)
    assert d.finding.action.startswith("alert only")


# ---------------------------------------------------------------- typed events

def sample(path: str) -> dict:
    return json.loads((ROOT / "events" / path).read_text())


def test_sample_events_parse_into_typed_models() -> None:
    created = parse_eventbridge(sample("schema_gate/object_created_pass.eventbridge.json"), (OBJECT_CREATED,))
    assert created.detail.bucket.name and created.detail.object.key.endswith(".csv")
    call = parse_eventbridge(json.loads(sample("exfiltration/mgmt_delete_trail.sqs.json")["Records"][0]["body"]), (API_CALL,))
    assert call.detail.eventName == "DeleteTrail" and "requestParameters" in call.detail.model_dump()


@pytest.mark.parametrize("body, part", [
    ("{not json", "record body"),
    (b"\xff\xfe", "record body"),
    ("[1, 2]", "record body"),
    ('{"detail": {}}', "record body.detail-type"),
    ('{"detail-type": "EC2 Instance State-change Notification", "detail": {}}', "record body.detail-type"),
])
def test_malformed_bodies_name_the_part(body, part) -> None:
    with pytest.raises(EventError) as caught:
        parse_eventbridge(body, (OBJECT_CREATED, API_CALL))
    assert caught.value.part == part and str(caught.value).startswith(part + ": ")


def test_a_missing_field_deep_in_the_event_is_named() -> None:
    event = sample("schema_gate/object_created_pass.eventbridge.json")
    del event["detail"]["object"]["key"]
    with pytest.raises(EventError, match=r"^record body\.detail\.object\.key: is required"):
        parse_eventbridge(event, (OBJECT_CREATED,))
    call = json.loads(sample("exfiltration/mgmt_delete_trail.sqs.json")["Records"][0]["body"])
    call["detail"]["eventName"] = 7
    with pytest.raises(EventError, match=r"^record body\.detail\.eventName: must be a string"):
        parse_eventbridge(call, (API_CALL,))


def test_scheduled_events_and_config_invocations_parse() -> None:
    scheduled = {"version": "0", "id": "e1", "detail-type": SCHEDULED, "source": "aws.scheduler", "account": "123456789012",
                 "time": "2026-11-22T08:00:00Z", "region": "us-east-1", "resources": [], "detail": "{}"}
    assert parse_eventbridge(scheduled, (SCHEDULED,)).detail == {}
    invocation = {"invokingEvent": json.dumps({"messageType": "ScheduledNotification"}), "resultToken": "t",
                  "configRuleName": "r", "accountId": "123456789012"}
    model, invoking = parse_config_invocation(invocation)
    assert model.configRuleName == "r" and invoking["messageType"] == "ScheduledNotification"
    with pytest.raises(EventError, match=r"^event\.invokingEvent: not JSON"):
        parse_config_invocation({**invocation, "invokingEvent": "{"})
    with pytest.raises(EventError, match=r"^event\.resultToken: is required"):
        parse_config_invocation({k: v for k, v in invocation.items() if k != "resultToken"})


# ---------------------------------------------------------------- replay safety and settings

ENV = {"STAGEWARDEN_POLICY_LOCATION": "s3://p/policy.yaml", "STAGEWARDEN_ALERTS_TOPIC_ARN": "arn:aws:sns:us-east-1:123456789012:t",
       "STAGEWARDEN_STATE_TABLE": "state", "STAGEWARDEN_AUDIT_TABLE": "audit", "AWS_LAMBDA_FUNCTION_NAME": "fn"}


def test_once_runs_work_once_per_key_and_a_failed_run_is_retried(aws, monkeypatch) -> None:
    for k, v in ENV.items():
        monkeypatch.setenv(k, v)
    rt = Runtime(boto3.client)
    rt.register_context(type("Context", (), {"get_remaining_time_in_millis": lambda self: 60_000})())
    calls = []

    def work(n: int):
        def run():
            calls.append(n)
            if n == 99:
                raise RuntimeError("boom")
            return {"n": n}
        return run

    assert rt.once("k1", work(1)) == {"n": 1}
    assert rt.once("k1", work(2)) == {"n": 1}  # the redelivery returns the first result, work is not run
    assert rt.once("k2", work(3)) == {"n": 3}
    with pytest.raises(RuntimeError):
        rt.once("k3", work(99))
    assert rt.once("k3", work(4)) == {"n": 4}  # a failed run leaves no record: the retry runs
    assert calls == [1, 3, 99, 4]
    items = aws["ddb"].scan(TableName="state")["Items"]
    assert {i["pk"]["S"] for i in items} == {"idempotency#fn"} and all("expires_at" in i for i in items)


def test_settings_name_the_missing_variable() -> None:
    with pytest.raises(SettingsError, match="STAGEWARDEN_STATE_TABLE is not set"):
        Settings.from_env({k: v for k, v in ENV.items() if k != "STAGEWARDEN_STATE_TABLE"})
    with pytest.raises(SettingsError, match="STAGEWARDEN_DEFAULT_MODE is invalid"):
        Settings.from_env({**ENV, "STAGEWARDEN_DEFAULT_MODE": "yolo"})
    settings = Settings.from_env({**ENV, "STAGEWARDEN_DEFAULT_MODE": "enforce"})
    assert settings.default_mode == "enforce" and settings.function_name == "fn"
    assert Settings.from_env(ENV).default_mode == "dry_run"


def test_settle_without_an_executor_publishes_findings_and_refuses_actions() -> None:
    published = []
    assert settle([Decision(finding(), [])], None, published.append) == published and len(published) == 1
    with pytest.raises(ValueError, match="need an executor"):
        settle([Decision(finding(), [TagBucket("kit-b1")])], None, published.append)


def test_actions_carrying_documents_have_an_identity() -> None:
    @dataclass(frozen=True)
    class PutRules(Action):
        rules: tuple = ()

    a = PutRules("b", rules=({"ID": "x", "Filter": {"Prefix": "raw/"}},))
    b = PutRules("b", rules=({"Filter": {"Prefix": "raw/"}, "ID": "x"},))
    c = PutRules("b", rules=({"ID": "y"},))
    assert a.identity() == b.identity() != c.identity() and hash(a.identity())


def test_every_corpus_record_has_the_shape_the_guardrails_read(corpus) -> None:
    """The real CloudTrail corpus (2,900 records, many services) passes the shape check: it rejects only what CloudTrail
    does not write (Lambda and CloudWatch Logs log ``requestParameters.tags`` as a map, IAM as an array: both pass)."""
    from stage_policy.events import check_cloudtrail_shape

    records = [r for f in sorted(corpus.glob("*.json")) for r in json.loads(f.read_text())["Records"]]
    for record in records:
        check_cloudtrail_shape(record)
    assert len(records) == 2900 and any(isinstance((r.get("requestParameters") or {}).get("tags"), dict) for r in records)


@pytest.mark.parametrize("path, value, problem", [
    ("userIdentity.sessionContext", '{"sessionIssuer": {}}', "must be an object or null, not a string"),
    ("userIdentity", ["AssumedRole"], "must be an object or null, not an array"),
    ("userIdentity.arn", {"S": "arn:aws:iam::1:user/a"}, "must be a string or null, not an object"),
    ("requestParameters", "bucketName=x", "must be an object or null, not a string"),
    ("responseElements.assumedRoleUser", 7, "must be an object or null, not a number"),
    ("sourceIPAddress", {"S": "198.51.100.23"}, "must be a string or null, not an object"),
    ("errorCode", True, "must be a string or null, not a boolean"),
])
def test_a_cloudtrail_field_of_another_shape_is_rejected_naming_it(path, value, problem) -> None:
    call = json.loads(sample("exfiltration/mgmt_delete_trail.sqs.json")["Records"][0]["body"])
    parent = call["detail"]
    *parents, leaf = path.split(".")
    for key in parents:
        if parent.get(key) is None:  # DeleteTrail's responseElements is null
            parent[key] = {}
        parent = parent[key]
    parent[leaf] = value
    with pytest.raises(EventError) as caught:
        parse_eventbridge(call, (API_CALL,), cloudtrail_shape=True)
    assert (caught.value.part, caught.value.problem) == (f"record body.detail.{path}", problem)


def test_iam_tags_must_be_an_array_of_objects_other_services_tags_are_not_read() -> None:
    call = json.loads(sample("exfiltration/mgmt_delete_trail.sqs.json")["Records"][0]["body"])
    call["detail"]["requestParameters"] = {"roleName": "r", "tags": ["Approver"]}
    call["detail"]["eventSource"] = "lambda.amazonaws.com"
    parse_eventbridge(call, (API_CALL,), cloudtrail_shape=True)  # not IAM's: not read, not checked
    call["detail"]["eventSource"] = "iam.amazonaws.com"
    parse_eventbridge(call, (API_CALL,))  # without the check (retention, exfiltration): taken as it is
    with pytest.raises(EventError, match=r"^record body\.detail\.requestParameters\.tags: must be an array of objects"):
        parse_eventbridge(call, (API_CALL,), cloudtrail_shape=True)
