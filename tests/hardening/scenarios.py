"""One scenario per function for the hardening suites: a deployed world, its deliveries, and what it changed in AWS.

Each :class:`Scenario` prepares the template's stack under ``mock_aws`` (policy, roles,
buckets, a subscriber on the alerts topic), names the events a clean run takes, and reads
back the effects in AWS (inline policies, tags, versions, lifecycle rules, trust policies,
Slack posts, Security Hub findings) and the alerts sent.

:class:`Lambda` runs the function as Lambda would: SQS-triggered functions take their
messages from the template's source queue (batch size and ``maxReceiveCount`` from the
template; a record named in ``batchItemFailures`` becomes visible again and is received
again, moto moves it to the dead-letter queue after ``maxReceiveCount`` receives);
directly invoked ones are retried twice (Lambda's asynchronous default) and then sent to
their ``DeadLetterQueue``. Every invocation is a cold start (``stagewarden.invoke``): a
replay carries nothing over in memory.

:class:`Calls` records every AWS call a function makes, with the first frame of Stagewarden's
own code that made it (the call site), through botocore's ``before-call`` event on the
default session, which every client the handler creates inherits.
"""

from __future__ import annotations

import importlib
import json
import sys
import uuid
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

import boto3

from stagewarden.invoke import LambdaContext, _lambda_process, function_spec
from tests.helpers import ROOT, drain, seed_policy_in_process, subscribe_queue

OWN_CODE = (str(ROOT / "functions"), str(ROOT / "layers"))
TEMPLATE = ROOT / "template.yaml"


# ---------------------------------------------------------------- the calls a function makes
@dataclass(frozen=True)
class Site:
    """One AWS call site: the operation and the line of Stagewarden's code that makes it."""

    service: str
    operation: str
    where: str  # e.g. "keeper/ports.py:88"

    def __str__(self) -> str:
        return f"{self.service}.{self.operation}@{self.where}"


def _call_site() -> str:
    frame = sys._getframe(2)
    while frame is not None:
        path = frame.f_code.co_filename
        if path.startswith(OWN_CODE):
            rel = Path(path)
            return f"{rel.parent.name}/{rel.name}:{frame.f_lineno}"
        frame = frame.f_back
    return "?"


class Calls:
    """Records (and optionally faults) the AWS calls made while :attr:`active`; registered on boto3's default session."""

    def __init__(self) -> None:
        self.active = False
        self.seen: list[Site] = []
        #: site -> (how many more times to fault it, fault)
        self.faults: dict[Site, list[Any]] = {}
        self.injected: list[tuple[Site, str]] = []
        events = boto3._get_default_session().events
        events.register("before-call", self._before_call)

    def _before_call(self, event_name: str, model: Any, params: Any, **_: Any) -> Any:
        if not self.active:
            return None
        _, service, operation = event_name.split(".", 2)
        site = Site(service, operation, _call_site())
        self.seen.append(site)
        fault = self.faults.get(site)
        if fault and fault[0] != 0:
            fault[0] -= 1
            self.injected.append((site, fault[1].code))
            return fault[1].response(model)
        return None

    def mutations(self, upserts: tuple[str, ...] = ()) -> list[Site]:
        """Calls that change something outside Stagewarden's own bookkeeping (state/audit tables, the alerts topic)."""
        own = ("dynamodb", "sns", "sqs")
        reads = ("Get", "List", "Head", "Describe")
        return [s for s in self.seen if s.service not in own and not s.operation.startswith(reads) and s.operation not in upserts]


# ---------------------------------------------------------------- running a function as Lambda would
def _template() -> dict[str, Any]:
    from stagewarden.cfn import load_template

    return load_template(TEMPLATE)


@dataclass
class Wiring:
    """How Lambda feeds a function (from template.yaml)."""

    source_queue: str | None  # logical id of the SQS event source
    batch_size: int
    dead_letter_queue: str  # logical id
    max_receive_count: int  # SQS redrive (SQS sources) or 1 + Lambda's two asynchronous retries


def wiring(logical_id: str) -> Wiring:
    resources = _template()["Resources"]
    props = resources[logical_id]["Properties"]
    for ev in (props.get("Events") or {}).values():
        if ev["Type"] == "SQS":
            queue = ev["Properties"]["Queue"]["Fn::GetAtt"]
            queue = queue[0] if isinstance(queue, list) else queue.split(".")[0]
            redrive = resources[queue]["Properties"]["RedrivePolicy"]
            dlq = redrive["deadLetterTargetArn"]["Fn::GetAtt"]
            dlq = dlq[0] if isinstance(dlq, list) else dlq.split(".")[0]
            return Wiring(queue, int(ev["Properties"].get("BatchSize", 10)), dlq, int(redrive["maxReceiveCount"]))
    target = props["DeadLetterQueue"]["TargetArn"]["Fn::GetAtt"]
    target = target[0] if isinstance(target, list) else target.split(".")[0]
    return Wiring(None, 1, target, 3)


class Lambda:
    """A template function in this process, fed as Lambda feeds it."""

    def __init__(self, stack: Any, logical_id: str, customise: Callable[[Any], None] | None = None,
                 warm: ExitStack | None = None):
        self.stack, self.logical_id = stack, logical_id
        self.warm = warm  # one container for every invocation (closed with this exit stack); None: a cold start each
        self._module: Any = None
        self.wiring = wiring(logical_id)
        self.customise = customise
        self.sqs = boto3.client("sqs")
        self.results: list[Any] = []  # what each invocation returned (or the exception it raised)

    def url(self, logical: str) -> str:
        return self.stack.refs[logical]

    # -- one invocation, a cold start
    def invoke(self, event: Any) -> Any:
        spec = function_spec(TEMPLATE, self.logical_id, self.stack)
        if self.warm is not None:
            if self._module is None:
                self.warm.enter_context(_lambda_process(spec, {"POWERTOOLS_METRICS_DISABLED": "true"}))
                self._module = importlib.import_module(spec.module)
                if self.customise is not None:
                    self.customise(self._module)
            context = LambdaContext(spec.name, spec.memory, spec.arn, str(uuid.uuid4()), spec.timeout)
            return getattr(self._module, spec.handler)(event, context)
        with ExitStack() as exit_stack:
            exit_stack.enter_context(_lambda_process(spec, {"POWERTOOLS_METRICS_DISABLED": "true"}))
            module = importlib.import_module(spec.module)
            if self.customise is not None:
                self.customise(module)
            context = LambdaContext(spec.name, spec.memory, spec.arn, str(uuid.uuid4()), spec.timeout)
            return getattr(module, spec.handler)(event, context)

    def timeout_passed(self) -> None:
        """What the wait before a retry does to replay records: SQS makes a failed record visible again only after
        its visibility timeout (longer than the function's timeout; Lambda retries an asynchronous event after a
        minute), by when an invocation that died between "in progress" and "completed" has timed out and its
        Powertools record is expired. Here the retry comes at once, so that expiry is applied to the table."""
        ddb, table = boto3.client("dynamodb"), self.stack.refs["StateTable"]
        for item in ddb.scan(TableName=table)["Items"]:
            if item["pk"]["S"].startswith("idempotency#") and item.get("status", {}).get("S") == "INPROGRESS":
                ddb.update_item(TableName=table, Key={"pk": item["pk"], "sk": item["sk"]},
                                UpdateExpression="SET in_progress_expiration = :past", ExpressionAttributeValues={":past": {"N": "0"}})

    # -- SQS-triggered functions
    def send(self, body: str) -> None:
        assert self.wiring.source_queue, f"{self.logical_id} is invoked directly, not from SQS"
        self.sqs.send_message(QueueUrl=self.url(self.wiring.source_queue), MessageBody=body)

    def sqs_event(self, bodies: list[str]) -> dict[str, Any]:
        """A batch as the event source mapping hands it over (distinct message ids, these bodies)."""
        arn = f"arn:aws:sqs:us-east-1:{self.stack.account_id}:{self.url(self.wiring.source_queue or self.wiring.dead_letter_queue).rsplit('/', 1)[1]}"
        return {"Records": [{"messageId": str(uuid.uuid4()), "receiptHandle": "local", "body": body,
                             "attributes": {"ApproximateReceiveCount": "1"}, "messageAttributes": {},
                             "md5OfBody": "", "eventSource": "aws:sqs", "eventSourceARN": arn, "awsRegion": "us-east-1"}
                            for body in bodies]}

    def poll(self, rounds: int = 50) -> None:
        """Receive and invoke until the source queue is empty; failed records are received again (visibility 0,
        as if their timeout passed) until SQS dead-letters them."""
        url = self.url(self.wiring.source_queue)
        for _ in range(rounds):
            got = self.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=min(10, self.wiring.batch_size),
                                           AttributeNames=["All"]).get("Messages", [])
            if not got:
                return
            event = {"Records": [{"messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"], "body": m["Body"],
                                  "attributes": m.get("Attributes", {}), "messageAttributes": {}, "md5OfBody": m["MD5OfBody"],
                                  "eventSource": "aws:sqs", "eventSourceARN": "", "awsRegion": "us-east-1"} for m in got]}
            try:
                result = self.invoke(event)
            except Exception as exc:  # noqa: BLE001 - an invocation error fails the whole batch, as in Lambda
                self.results.append(exc)
                failed = {m["MessageId"] for m in got}
            else:
                self.results.append(result)
                failed = {f["itemIdentifier"] for f in result.get("batchItemFailures", [])}
            if failed:
                self.timeout_passed()
            for m in got:
                if m["MessageId"] in failed:
                    self.sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0)
                else:
                    self.sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
        raise AssertionError(f"{self.logical_id}: the queue did not drain in {rounds} rounds")

    # -- directly invoked functions (asynchronous: two retries, then the dead-letter queue)
    def invoke_async(self, event: Any) -> None:
        for _ in range(self.wiring.max_receive_count):
            try:
                self.results.append(self.invoke(event))
                return
            except Exception as exc:  # noqa: BLE001 - Lambda retries an asynchronous invocation that raised
                self.results.append(exc)
                self.timeout_passed()
        self.sqs.send_message(QueueUrl=self.url(self.wiring.dead_letter_queue), MessageBody=json.dumps(event))

    def deliver(self, payload: Any) -> None:
        """Hand one event to the function as its trigger would, and let the retries run."""
        if self.wiring.source_queue:
            self.send(payload)
            self.poll()
        else:
            self.invoke_async(payload)

    def dead_letters(self) -> list[str]:
        url = self.url(self.wiring.dead_letter_queue)
        out = []
        while msgs := self.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
            for m in msgs:
                out.append(m["Body"])
                self.sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
        return out

    def redrive(self, bodies: list[str]) -> None:
        """What an operator's redrive does once the cause is gone: each dead letter delivered again."""
        for body in bodies:
            self.deliver(body if self.wiring.source_queue else json.loads(body))


# ---------------------------------------------------------------- the scenarios
def _json(doc: Any) -> Any:
    return doc if isinstance(doc, dict) else json.loads(doc)


def audit_done(stack: Any) -> list[tuple[str, str]]:
    items = boto3.client("dynamodb").scan(TableName=stack.refs["AuditTable"])["Items"]
    return sorted((i["action"]["S"], i["target"]["S"]) for i in items if i["status"]["S"] == "done")


def role_state(name: str) -> dict[str, Any]:
    iam = boto3.client("iam")
    role = iam.get_role(RoleName=name)["Role"]
    inline = {n: _json(iam.get_role_policy(RoleName=name, PolicyName=n)["PolicyDocument"])
              for n in iam.list_role_policies(RoleName=name)["PolicyNames"]}
    return {"trust": _json(role["AssumeRolePolicyDocument"]), "inline": inline,
            "tags": sorted((t["Key"], t["Value"]) for t in role.get("Tags", []))}


def bucket_state(bucket: str) -> dict[str, Any]:
    """Every version and delete marker, object tags, the bucket policy and lifecycle rules."""
    s3 = boto3.client("s3")
    page = s3.list_object_versions(Bucket=bucket)
    versions = sorted((v["Key"], v["VersionId"]) for v in page.get("Versions", []))
    markers = sorted((m["Key"], m["VersionId"]) for m in page.get("DeleteMarkers", []))
    tags = {f"{k}#{v}": sorted((t["Key"], t["Value"]) for t in
                               s3.get_object_tagging(Bucket=bucket, Key=k, VersionId=v)["TagSet"]) for k, v in versions}
    try:
        policy = json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"])
    except s3.exceptions.ClientError:
        policy = None
    try:
        lifecycle = s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    except s3.exceptions.ClientError:
        lifecycle = []
    return {"versions": versions, "delete_markers": markers, "tags": tags, "policy": policy, "lifecycle": lifecycle}


@dataclass
class Scenario:
    """A deployed world for one function, the events of a clean run, and how to read back its effects."""

    logical_id: str
    #: prepares AWS (under the provisioned stack) and returns the events of a clean run (SQS bodies or direct events)
    prepare: Callable[[Any, Path], list[Any]]
    #: the effects in AWS a replay must not repeat (a dict of JSON-able values)
    effects: Callable[[Any], dict[str, Any]]
    #: a CloudTrail event among ``prepare``'s events: (index, copy of it with a new EventBridge id, same eventID)
    new_envelope: Callable[[Any], Any] | None = None
    customise: Callable[[Any], None] | None = None
    alerts_via_topic: bool = True
    #: operations that write the same item again on a replay by design (an upsert keyed by the incident): the
    #: effects must come out identical, the call itself is allowed
    upserts: tuple[str, ...] = ()
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.logical_id

    def alerts(self, stack: Any) -> list[tuple[str, str]]:
        """The alerts sent since the last call: (rule, dedup key) of each message on the topic, or of each Slack post
        and Security Hub finding for the alert function."""
        if self.alerts_via_topic:
            # a repeat published because its remediation outcome changed (a containment that failed, then worked on
            # the retry) is an alert of its own kind: allowed once per incident (test_faults.assert_nothing_lost)
            return [(m["rule"] + (CHANGED if (m.get("evidence") or {}).get("outcome_changed") else ""), m["dedup_key"])
                    for m in drain(stack.inbox)]
        sink = self.extras["sink"]
        posts = [("slack", p["text"].split(":")[0]) for p in sink.payloads()[self.extras.setdefault("seen_posts", 0):]]
        self.extras["seen_posts"] += len(posts)
        hub = boto3.client("securityhub").get_findings()["Findings"]
        new_hub = [("securityhub", f["Id"]) for f in hub][self.extras.setdefault("seen_hub", 0):]
        self.extras["seen_hub"] += len(new_hub)
        return posts + new_hub


CHANGED = "#outcome-changed"


def _new_id(body: Any) -> Any:
    """The same CloudTrail event (same detail.eventID) in a new EventBridge envelope (a new id, as a second rule would)."""
    doc = json.loads(body) if isinstance(body, str) else json.loads(json.dumps(body))
    doc["id"] = str(uuid.uuid4())
    assert doc["detail"].get("eventID"), "not a CloudTrail event"
    return json.dumps(doc) if isinstance(body, str) else doc


def _sqs_body(folder: str, name: str) -> str:
    return json.loads((ROOT / "events" / folder / f"{name}.sqs.json").read_text())["Records"][0]["body"]


# -- ExfiltrationFunction: a bulk download in a log file (session denied) and a backdoor bucket policy (reverted)
EXFIL_ROLE, LAB = "DataScientistAlice", "acme-lab-data"


def _exfil_prepare(stack: Any, tmp: Path) -> list[Any]:
    from stagewarden.trailgen import bulk_download, log_file

    stack.parameters["DefaultRemediationMode"] = "enforce"
    seed_policy_in_process(stack, ROOT / "policy.example.yaml")
    boto3.client("iam").create_role(RoleName=EXFIL_ROLE, AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []}))
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=LAB)
    log_body = _sqs_body("exfiltration", "log_file_delivered")
    detail = json.loads(log_body)["detail"]
    records = bulk_download(role=EXFIL_ROLE, session="alice@example.com", bucket=LAB, objects=1200,
                            start=datetime(2026, 11, 22, 8, 0, tzinfo=timezone.utc), seconds=240, nbytes=1000)
    s3.put_object(Bucket=detail["bucket"]["name"], Key=detail["object"]["key"], Body=log_file(records))
    policy_body = _sqs_body("exfiltration", "mgmt_bucket_policy_external")
    backdoor = json.loads(policy_body)["detail"]["requestParameters"]["bucketPolicy"]
    keep = {"Sid": "OwnAccount", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::123456789012:role/etl"},
            "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{LAB}/*"}
    s3.put_bucket_policy(Bucket=LAB, Policy=json.dumps({**backdoor, "Statement": backdoor["Statement"] + [keep]}))
    return [log_body, policy_body]


def _exfil_effects(stack: Any) -> dict[str, Any]:
    return {"role": role_state(EXFIL_ROLE), "policy": bucket_state(LAB)["policy"], "audit": audit_done(stack)}


# -- SchemaGateFunction: a good file (tagged, reported, promoted) and a bad one (tagged, fenced, alerted)
GOOD, BAD = "landing/transactions/2026-11-22/good.csv", "landing/transactions/2026-11-22/bad.csv"


def _gate_prepare(stack: Any, tmp: Path) -> list[Any]:
    from stagewarden.datagen import write_csv
    from tests.s3_fence import enforce
    from tests.unit.schema_gate.test_app import BASELINE_KEY, lab_baseline

    gate = stack.attrs["SchemaGateFunctionRole.Arn"]
    stack.exit.enter_context(enforce({"testing": gate, "FOOBARKEY": gate}))
    seed_policy_in_process(stack, ROOT / "policy.example.yaml")
    stack.parameters["DefaultRemediationMode"] = "enforce"
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=LAB)
    s3.put_bucket_versioning(Bucket=LAB, VersioningConfiguration={"Status": "Enabled"})
    s3.put_object(Bucket=LAB, Key=BASELINE_KEY, Body=lab_baseline())
    bodies = []
    for key, sample, kwargs in ((GOOD, "object_created_pass", {"seed": 3}),
                                (BAD, "object_created_fail", {"seed": 4, "dirty": True, "per_defect": 2, "duplicates": 1})):
        path = tmp / key.replace("/", "_")
        write_csv(path, 300, **kwargs)
        version = s3.put_object(Bucket=LAB, Key=key, Body=path.read_bytes())["VersionId"]
        body = json.loads(_sqs_body("schema_gate", sample))
        body["detail"]["object"].update({"key": key, "version-id": version})
        body["detail"]["bucket"]["name"] = LAB
        bodies.append(json.dumps(body))
    return bodies


def _gate_effects(stack: Any) -> dict[str, Any]:
    return {"bucket": bucket_state(LAB), "audit": audit_done(stack)}


# -- PolicyGuardFunction: a broken policy pushed (one critical alert per version; it never acts)
def _guard_prepare(stack: Any, tmp: Path) -> list[Any]:
    broken = tmp / "policy.yaml"
    broken.write_text("framework: two-stage\nstages: {final-prod: {break_glass: {max_duration_minutes: 900}}}\n")
    seed_policy_in_process(stack, broken)
    return [json.loads((ROOT / "events" / "policy_guard_policy_changed.json").read_text())]


def _guard_effects(stack: Any) -> dict[str, Any]:
    from stagewarden.emulator import policy_location

    bucket = policy_location(stack)[5:].partition("/")[0]
    return {"policy_bucket": bucket_state(bucket), "audit": audit_done(stack)}


def _guard_new_envelope(event: Any) -> Any:
    doc = json.loads(json.dumps(event))
    doc["id"] = str(uuid.uuid4())
    return doc


# -- RetentionFunction: a tampered lifecycle (put back) and the daily run (expired versions deleted, posture kept)
KEEP_LAB, KEEP_PROD = "acme-lab-data", "acme-prod-out"


def _keeper_prepare(stack: Any, tmp: Path) -> list[Any]:
    from tests.s3_fence import enforce
    from tests.unit.retention.conftest import OWNER_ARCHIVE, RAW_30_TAMPERED, postured, written_days_ago

    stack.exit.enter_context(enforce({}))  # bucket policies with their conditions: TLS-only denies do not refuse HTTPS
    stack.parameters["DefaultRemediationMode"] = "enforce"
    seed_policy_in_process(stack, ROOT / "policy.example.yaml")
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=KEEP_LAB)
    s3.put_bucket_versioning(Bucket=KEEP_LAB, VersioningConfiguration={"Status": "Enabled"})
    postured(KEEP_LAB)
    boto3.client("s3control").put_public_access_block(AccountId=stack.account_id, PublicAccessBlockConfiguration={
        "BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True, "RestrictPublicBuckets": True})
    with written_days_ago(200):
        for i in range(6):
            s3.put_object(Bucket=KEEP_LAB, Key=f"raw/old-{i}.csv", Body=b"a,b\n1,2\n")
            s3.delete_object(Bucket=KEEP_LAB, Key=f"raw/old-{i}.csv")
    s3.put_object(Bucket=KEEP_LAB, Key="raw/fresh.csv", Body=b"a,b\n1,2\n")
    s3.put_bucket_lifecycle_configuration(Bucket=KEEP_LAB, LifecycleConfiguration={"Rules": [RAW_30_TAMPERED, OWNER_ARCHIVE]})
    api = json.loads((ROOT / "events" / "retention" / "put_bucket_lifecycle.eventbridge.json").read_text())
    schedule = json.loads((ROOT / "events" / "retention" / "schedule.json").read_text())
    schedule["time"] = (datetime.now(timezone.utc) + timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return [api, schedule]


def _keeper_effects(stack: Any) -> dict[str, Any]:
    return {"bucket": bucket_state(KEEP_LAB), "audit": audit_done(stack)}


# -- AlertFunction: findings delivered to the local Slack sink and Security Hub
SECRET = "stagewarden/slack-webhook"


def _courier_prepare(stack: Any, tmp: Path) -> list[Any]:
    from stagewarden.sink import Sink, point_secret

    sink = stack.exit.enter_context(Sink())
    stack.scenario.extras.update(sink=sink, seen_posts=0, seen_hub=0)
    seed_policy_in_process(stack, ROOT / "policy.example.yaml")
    point_secret(boto3.client("secretsmanager"), SECRET, sink.url)
    return [_sqs_body("alerts", f"finding_{s}") for s in ("high", "critical")]


def _courier_customise(module: Any) -> None:
    from courier.settings import AlertSettings
    from courier.slack import SlackWebhook

    courier = module.courier
    courier.settings = AlertSettings(slack_webhook_secret=SECRET, region="us-east-1", emulator=True)
    courier.slack.webhook = SlackWebhook(sleep=lambda s: None, backoff_after_failure=0)
    courier.clock = lambda: 1_795_334_400  # 2026-11-22T08:00:00Z, the sample findings' day


def _courier_effects(stack: Any) -> dict[str, Any]:
    sink = stack.scenario.extras["sink"]
    hub = boto3.client("securityhub").get_findings()["Findings"]
    volatile = ("UpdatedAt", "ProcessedAt")  # Security Hub's own clock: every import of the same item stamps it anew
    return {"slack_posts": sink.payloads(), "hub": sorted((json.dumps({k: v for k, v in f.items() if k not in volatile},
                                                                    sort_keys=True, default=str) for f in hub)),
            "audit": [a for a in audit_done(stack) if a[0] == "slack-post"]}


# -- BreakGlassFunction: an unapproved trust change (reverted) on a break-glass role
def _warden_prepare(stack: Any, tmp: Path) -> list[Any]:
    from stagewarden import breakglass_events as ev
    from tests.unit.breakglass.conftest import ALICE, BASELINE, ENFORCED, ROLE

    path = tmp / "policy.yaml"
    path.write_text(ENFORCED)
    seed_policy_in_process(stack, path)
    stack.parameters["DefaultRemediationMode"] = "enforce"
    iam = boto3.client("iam")
    for name, tags in ((ROLE, {"stagewarden:stage": "final-prod"}), ("OnCallEngineer", {}),
                       ("DataScientistAlice", {"stagewarden:stage": "prod-discovery"})):
        iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(BASELINE),
                        Tags=[{"Key": k, "Value": v} for k, v in tags.items()])
    Lambda(stack, "BreakGlassFunction").invoke(json.loads((ROOT / "events" / "breakglass" / "scheduler_sweep.json").read_text()))
    drain(stack.inbox)
    iam.update_assume_role_policy(RoleName=ROLE, PolicyDocument=json.dumps(ev.opened_trust(ALICE)))
    return [_sqs_body("breakglass", "update_assume_role_policy_unapproved"), _sqs_body("breakglass", "console_login")]


def _warden_effects(stack: Any) -> dict[str, Any]:
    from tests.unit.breakglass.conftest import ROLE

    return {"role": role_state(ROLE), "audit": audit_done(stack)}


SCENARIOS = {s.logical_id: s for s in (
    Scenario("ExfiltrationFunction", _exfil_prepare, _exfil_effects, new_envelope=_new_id),
    Scenario("SchemaGateFunction", _gate_prepare, _gate_effects, new_envelope=None),
    Scenario("PolicyGuardFunction", _guard_prepare, _guard_effects, new_envelope=_guard_new_envelope),
    Scenario("RetentionFunction", _keeper_prepare, _keeper_effects, new_envelope=_new_id),
    Scenario("AlertFunction", _courier_prepare, _courier_effects, customise=_courier_customise, alerts_via_topic=False,
             # "every occurrence updates it": the finding is imported again under its incident's Id, unchanged
             upserts=("BatchImportFindings",)),
    Scenario("BreakGlassFunction", _warden_prepare, _warden_effects, new_envelope=_new_id),
)}


class World:
    """A scenario deployed on the module's stack: the function, its clean-run events, the recorder."""

    def __init__(self, stack: Any, scenario: Scenario, tmp: Path, exit_stack: ExitStack, warm: bool = False):
        self.stack, self.scenario = stack, scenario
        stack.exit, stack.scenario = exit_stack, scenario
        stack.inbox = subscribe_queue(stack)
        self.events = scenario.prepare(stack, tmp)
        drain(stack.inbox)
        self.fn = Lambda(stack, scenario.logical_id, scenario.customise, exit_stack if warm else None)
        self.calls = Calls()

    def deliver(self, payload: Any) -> None:
        self.calls.active = True
        try:
            self.fn.deliver(payload)
        finally:
            self.calls.active = False

    def invoke(self, event: Any) -> Any:
        self.calls.active = True
        try:
            return self.fn.invoke(event)
        finally:
            self.calls.active = False

    def effects(self) -> dict[str, Any]:
        return self.scenario.effects(self.stack)

    def alerts(self) -> list[tuple[str, str]]:
        return self.scenario.alerts(self.stack)


__all__ = ["Calls", "Lambda", "SCENARIOS", "Scenario", "Site", "World"]
