"""The local AWS emulator: moto_server on 127.0.0.1, provisioned with what template.yaml declares.

`stagewarden local up` starts it and provisions; `local down` stops it. The state file
(`.stagewarden/local.json` beside the template) records the endpoint and the physical
names, so `stagewarden invoke` can give handlers the same environment a deployment would.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from stagewarden.cfn import Context, check_parameters, evaluate_conditions, load_template, parameter_defaults, resolve
from stagewarden.usage import HINT, UsageError, did_you_mean

REGION = "us-east-1"
ACCOUNT_ID = "123456789012"  # moto's default account
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing"}

#: What the emulator cannot do, printed by `local up` and documented in the README.
NOT_EMULATED = {
    "AWS::Serverless::Function": "not deployed: run it in-process with `stagewarden invoke <LogicalId> -e events/...`",
    "AWS::Serverless::LayerVersion": "not deployed: `stagewarden invoke` puts the layer source on the path",
    "AWS::Scheduler::Schedule": "moto stores schedules but never fires them: invoke with a scheduled event "
                                "(break glass: `stagewarden breakglass sweep`)",
    "AWS::Lambda::Permission": "not needed: functions are not deployed here (`stagewarden invoke` runs them in-process)",
}

#: Values for the parameters a deployment must set (no default in the template): the buckets of events/ and the demo.
LOCAL_PARAMETERS = {"DataBucketNamePrefix": "acme-lab-"}


class EmulatorError(UsageError, RuntimeError):
    """The emulator cannot start or take the template; the message names the resource or the log file."""


@dataclass
class LocalState:
    endpoint: str
    pid: int | None
    region: str = REGION
    account_id: str = ACCOUNT_ID
    stack_name: str = "stagewarden-local"
    parameters: dict[str, Any] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)
    attrs: dict[str, str] = field(default_factory=dict)  # "Logical.Attr" -> value
    resources: list[dict[str, str]] = field(default_factory=list)

    def context(self) -> Context:
        ctx = Context(self.region, self.account_id, self.stack_name, dict(self.parameters), dict(self.refs))
        ctx.attrs = {tuple(k.split(".", 1)): v for k, v in self.attrs.items()}  # type: ignore[misc]
        return ctx

    def environ(self) -> dict[str, str]:
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_DEFAULT_REGION": self.region, "AWS_REGION": self.region, **CREDENTIALS}


def state_path(template: Path) -> Path:
    return template.resolve().parent / ".stagewarden" / "local.json"


def read_state(template: Path) -> LocalState | None:
    path = state_path(template)
    if not path.exists():
        return None
    try:
        return LocalState(**json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError) as exc:  # not JSON, not UTF-8, or not our fields
        raise UsageError(f"{path}: unreadable emulator state ({type(exc).__name__}){HINT}delete it; "
                         "if a moto_server it started still runs, stop that process by its pid") from None


def write_state(template: Path, state: LocalState) -> None:
    path = state_path(template)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(asdict(state), indent=2))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def is_alive(endpoint: str, timeout: float = 1.0) -> bool:
    try:
        # the dashboard page, not data.json: that one serialises every model instance ever made (slow with many
        # objects, and it asks for Docker once any Lambda function has existed, as the Config rule's stand-in does)
        with urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=timeout) as resp:  # noqa: S310 - loopback
            return resp.status == 200
    except OSError:
        return False


def start_server(log_path: Path, port: int | None = None, wait_seconds: float = 30.0) -> tuple[subprocess.Popen[bytes], str]:
    """Start moto_server on 127.0.0.1 in its own process group; return it once it answers."""
    port = port or free_port()
    endpoint = f"http://127.0.0.1:{port}"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        proc = subprocess.Popen(  # noqa: S603 - our own interpreter, fixed arguments
            [sys.executable, "-m", "stagewarden.motoserver", "-H", "127.0.0.1", "-p", str(port)],  # see stagewarden/motoserver.py
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )
    deadline = time.monotonic() + wait_seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise EmulatorError(f"moto_server exited with {proc.returncode}; see {log_path}")
        if is_alive(endpoint, timeout=0.5):
            return proc, endpoint
        time.sleep(0.1)
    stop_pid(proc.pid)
    raise EmulatorError(f"moto_server did not answer on {endpoint} within {wait_seconds:.0f}s; see {log_path}")


def stop_pid(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        return
    for _ in range(50):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        time.sleep(0.1)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def boto_client(service: str, state: LocalState) -> Any:
    import boto3

    client = boto3.client(
        service, endpoint_url=state.endpoint, region_name=state.region,
        aws_access_key_id="testing", aws_secret_access_key="testing", aws_session_token="testing",
    )
    loopback_s3control(client.meta.events)
    return client


_ACCOUNT_HOST = re.compile(r"^(https?://)[0-9]{12}\.(127\.0\.0\.1|localhost)([:/])")


def _drop_account_host(request: Any, **_: Any) -> None:
    request.url = _ACCOUNT_HOST.sub(r"\1\2\3", request.url)


def loopback_s3control(events: Any) -> None:
    """S3 Control puts the account id in front of the endpoint's host (``<account>.s3-control...``); with the
    emulator's endpoint that is ``<account>.127.0.0.1``, which does not resolve. For loopback hosts only, the
    prefix is dropped before the request is signed (moto_server routes S3 Control by its path)."""
    events.register("before-sign.s3-control", _drop_account_host, unique_id="stagewarden-loopback-s3control")


# ------------------------------------------------------------------ provisioning

_ORDER = [
    "AWS::KMS::Key", "AWS::KMS::Alias", "AWS::S3::Bucket", "AWS::S3::BucketPolicy", "AWS::SQS::Queue",
    "AWS::Events::Rule", "AWS::SQS::QueuePolicy", "AWS::DynamoDB::Table", "AWS::SNS::Topic", "AWS::SNS::TopicPolicy", "AWS::SNS::Subscription",
    "AWS::IAM::ManagedPolicy", "AWS::IAM::Role", "AWS::Scheduler::ScheduleGroup",
    "AWS::Serverless::LayerVersion", "AWS::Serverless::Function", "AWS::Scheduler::Schedule",
    "AWS::Logs::LogGroup", "AWS::CloudWatch::Alarm",
    "AWS::Config::ConfigRule",
]


class Provisioner:
    """Creates the template's resources on the emulator through boto3, one type at a time."""

    def __init__(self, template: dict[str, Any], state: LocalState, client: Callable[[str], Any]):
        self.template = template
        self.state = state
        self.client = client
        self.ctx = state.context()

    def run(self) -> LocalState:
        errors = check_parameters(self.template, self.state.parameters)
        if errors:  # refused before anything is created, as CloudFormation does
            raise EmulatorError("template " + "; ".join(errors))
        evaluate_conditions(self.template, self.ctx)
        resources = self.template["Resources"]
        ordered = sorted(resources.items(), key=lambda kv: _ORDER.index(kv[1]["Type"]) if kv[1]["Type"] in _ORDER else len(_ORDER))
        for logical, spec in ordered:
            kind = spec["Type"]
            if "Condition" in spec and not self.ctx.conditions.get(spec["Condition"], False):
                self._record(logical, kind, "-", f"skipped: condition {spec['Condition']} is false")
                continue
            handler = getattr(self, "_" + kind.split("::", 1)[1].replace("::", "_").lower(), None)
            if handler is None:
                self._record(logical, kind, "-", "skipped: " + NOT_EMULATED.get(kind, "type not emulated"))
                continue
            props = resolve(spec.get("Properties") or {}, self.ctx)
            try:
                physical, note = handler(logical, props)
            except Exception as exc:  # name the resource; the caller stops the emulator
                raise EmulatorError(f"template Resources.{logical} ({kind}): the emulator refused it: {exc}") from exc
            self.ctx.refs[logical] = physical
            self._record(logical, kind, physical, note)
        self.state.refs = dict(self.ctx.refs)
        self.state.attrs = {f"{k[0]}.{k[1]}": v for k, v in self.ctx.attrs.items()}
        return self.state

    def _record(self, logical: str, kind: str, physical: str, note: str) -> None:
        self.state.resources.append({"logical_id": logical, "type": kind, "physical_id": physical, "note": note})

    def _name(self, logical: str) -> str:
        return f"{self.state.stack_name}-{logical.lower()}"

    def _arn(self, service: str, resource: str) -> str:
        return f"arn:aws:{service}:{self.state.region}:{self.state.account_id}:{resource}"

    # one method per resource type -------------------------------------------
    def _kms_key(self, logical: str, p: dict[str, Any]) -> tuple[str, str]:
        key = self.client("kms").create_key(Description=p.get("Description", logical), Policy=json.dumps(p["KeyPolicy"]))
        meta = key["KeyMetadata"]
        self.ctx.attrs[(logical, "Arn")] = meta["Arn"]
        self.ctx.attrs[(logical, "KeyId")] = meta["KeyId"]
        return meta["KeyId"], "created"

    def _kms_alias(self, logical: str, p: dict[str, Any]) -> tuple[str, str]:
        self.client("kms").create_alias(AliasName=p["AliasName"], TargetKeyId=p["TargetKeyId"])
        return p["AliasName"], "created"

    def _s3_bucket(self, logical: str, p: dict[str, Any]) -> tuple[str, str]:
        s3 = self.client("s3")
        name = p.get("BucketName") or self._name(logical)
        s3.create_bucket(Bucket=name)
        notes = []
        if p.get("VersioningConfiguration", {}).get("Status") == "Enabled":
            s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
            notes.append("versioned")
        if "BucketEncryption" in p:
            s3.put_bucket_encryption(Bucket=name, ServerSideEncryptionConfiguration={"Rules": [
                {"ApplyServerSideEncryptionByDefault": rule["ServerSideEncryptionByDefault"]}
                for rule in p["BucketEncryption"]["ServerSideEncryptionConfiguration"]]})
            notes.append("encrypted")
        if "PublicAccessBlockConfiguration" in p:
            s3.put_public_access_block(Bucket=name, PublicAccessBlockConfiguration=p["PublicAccessBlockConfiguration"])
            notes.append("public access blocked")
        if p.get("NotificationConfiguration", {}).get("EventBridgeConfiguration", {}).get("EventBridgeEnabled"):
            s3.put_bucket_notification_configuration(Bucket=name, NotificationConfiguration={"EventBridgeConfiguration": {}})
            notes.append("EventBridge notifications")
        self.ctx.attrs[(logical, "Arn")] = f"arn:aws:s3:::{name}"
        return name, "created (" + ", ".join(notes) + ")" if notes else "created"

    def _s3_bucketpolicy(self, logical: str, p: dict[str, Any]) -> tuple[str, str]:
        document, note = _loopback_policy(p["PolicyDocument"])
        if document["Statement"]:
            self.client("s3").put_bucket_policy(Bucket=p["Bucket"], Policy=json.dumps(document))
        return p["Bucket"], note

    def _sqs_queue(self, logical: str, p: dict[str, Any]) -> tuple[str, str]:
        name = p.get("QueueName") or self._name(logical)
        attributes = {k: str(p[k]).lower() if isinstance(p[k], bool) else str(p[k])
                      for k in ("MessageRetentionPeriod", "VisibilityTimeout", "SqsManagedSseEnabled", "KmsMasterKeyId") if k in p}
        if "RedrivePolicy" in p:
            attributes["RedrivePolicy"] = json.dumps(p["RedrivePolicy"])
        url = self.client("sqs").create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
        self.ctx.attrs[(logical, "Arn")] = self._arn("sqs", name)
        self.ctx.attrs[(logical, "QueueName")] = name
        self.ctx.attrs[(logical, "QueueUrl")] = url
        return url, "created"

    def _sqs_queuepolicy(self, logical: str, p: dict[str, Any]) -> tuple[str, str]:
        for url in p["Queues"]:
            self.client("sqs").set_queue_attributes(QueueUrl=url, Attributes={"Policy": json.dumps(p["PolicyDocument"])})
        return ",".join(p["Queues"]), "policy applied"

    def _events_rule(self, logical: str, p: dict[str, Any]) -> tuple[str, str]:
        events = self.client("events")
        name = p.get("Name") or self._name(logical)
        arn = events.put_rule(Name=name, EventPattern=json.dumps(p["EventPattern"]), State=p.get("State", "ENABLED"),
                              Description=p.get("Description", ""))["RuleArn"]
        targets = [{"Id": t["Id"], "Arn": t["Arn"]} for t in p.get("Targets", [])]
        if targets:
            events.put_targets(Rule=name, Targets=targets)
        self.ctx.attrs[(logical, "Arn")] = arn
        return name, f"created, {len(targets)} target(s) (moto delivers matching events to SQS targets)"

    def _dynamodb_table(self, logical: str, p: dict[str, Any]) -> tuple[str, str]:
        ddb = self.client("dynamodb")
        name = p.get("TableName") or self._name(logical)
        ddb.create_table(
            TableName=name, KeySchema=p["KeySchema"], AttributeDefinitions=p["AttributeDefinitions"],
            BillingMode=p.get("BillingMode", "PAY_PER_REQUEST"),
        )
        notes = ["created"]
        ttl = p.get("TimeToLiveSpecification")
        if ttl and ttl.get("Enabled"):
            ddb.update_time_to_live(TableName=name, TimeToLiveSpecification={"AttributeName": ttl["AttributeName"], "Enabled": True})
            notes.append(f"TTL on {ttl['AttributeName']}")
        self.ctx.attrs[(logical, "Arn")] = self._arn("dynamodb", f"table/{name}")
        return name, ", ".join(notes)

    def _sns_topic(self, logical: str, p: dict[str, Any]) -> tuple[str, str]:
        attributes = {k: str(p[k]) for k in ("KmsMasterKeyId", "DisplayName") if k in p}
        arn = self.client("sns").create_topic(Name=p.get("TopicName") or self._name(logical), Attributes=attributes)["TopicArn"]
        self.ctx.attrs[(logical, "TopicArn")] = arn
        self.ctx.attrs[(logical, "TopicName")] = arn.rsplit(":", 1)[1]
        return arn, "created (KMS-encrypted)" if "KmsMasterKeyId" in p else "created"

    def _sns_topicpolicy(self, logical: str, p: dict[str, Any]) -> tuple[str, str]:
        document, note = _loopback_policy(p["PolicyDocument"])
        for topic in p["Topics"]:
            if document["Statement"]:
                self.client("sns").set_topic_attributes(TopicArn=topic, AttributeName="Policy", AttributeValue=json.dumps(document))
        return ",".join(p["Topics"]), note

    def _sns_subscription(self, logical: str, p: dict[str, Any]) -> tuple[str, str]:
        attributes = {k: json.dumps(p[k]) if isinstance(p[k], dict) else str(p[k]).lower() if isinstance(p[k], bool) else str(p[k])
                      for k in ("RawMessageDelivery", "FilterPolicy", "FilterPolicyScope", "RedrivePolicy") if k in p}
        arn = self.client("sns").subscribe(TopicArn=p["TopicArn"], Protocol=p["Protocol"], Endpoint=p["Endpoint"],
                                           Attributes=attributes, ReturnSubscriptionArn=True)["SubscriptionArn"]
        extras = ", ".join(k for k in ("RawMessageDelivery", "FilterPolicy") if k in p)
        if p["Protocol"] == "email":
            return arn, "email subscription" + (f" ({extras})" if extras else "") + " (the emulator delivers nothing by e-mail)"
        return arn, f"{p['Protocol']} subscription" + (f" ({extras})" if extras else "") + " (moto delivers to it)"

    def _iam_managedpolicy(self, logical: str, p: dict[str, Any]) -> tuple[str, str]:
        kwargs = {k: p[k] for k in ("Description", "Path") if k in p}
        arn = self.client("iam").create_policy(PolicyName=p.get("ManagedPolicyName") or self._name(logical),
                                               PolicyDocument=json.dumps(p["PolicyDocument"]), **kwargs)["Policy"]["Arn"]
        return arn, "created (nothing is attached: the functions run in-process, under your credentials)"

    def _logs_loggroup(self, logical: str, p: dict[str, Any]) -> tuple[str, str]:
        logs = self.client("logs")
        logs.create_log_group(logGroupName=p["LogGroupName"])
        if "RetentionInDays" in p:
            logs.put_retention_policy(logGroupName=p["LogGroupName"], retentionInDays=int(p["RetentionInDays"]))
        return p["LogGroupName"], "created"

    def _cloudwatch_alarm(self, logical: str, p: dict[str, Any]) -> tuple[str, str]:
        name = p.get("AlarmName") or self._name(logical)
        self.client("cloudwatch").put_metric_alarm(
            AlarmName=name, AlarmDescription=p.get("AlarmDescription", ""), Namespace=p["Namespace"], MetricName=p["MetricName"],
            Dimensions=p.get("Dimensions", []), Statistic=p["Statistic"], Period=int(p["Period"]),
            EvaluationPeriods=int(p["EvaluationPeriods"]), Threshold=float(p["Threshold"]),
            ComparisonOperator=p["ComparisonOperator"], TreatMissingData=p.get("TreatMissingData", "missing"),
            AlarmActions=p.get("AlarmActions", []), OKActions=p.get("OKActions", []),
        )
        return name, "created (moto stores alarms; it does not evaluate SQS metrics)"

    def _iam_role(self, logical: str, p: dict[str, Any]) -> tuple[str, str]:
        iam = self.client("iam")
        name = p.get("RoleName") or self._name(logical)
        role = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(p["AssumeRolePolicyDocument"]),
                               Description=p.get("Description", ""), Path=p.get("Path", "/"))["Role"]
        for policy in p.get("Policies") or []:
            iam.put_role_policy(RoleName=name, PolicyName=policy["PolicyName"], PolicyDocument=json.dumps(policy["PolicyDocument"]))
        self.ctx.attrs[(logical, "Arn")] = role["Arn"]
        self.ctx.attrs[(logical, "RoleId")] = role["RoleId"]
        return name, "created"

    def _scheduler_schedulegroup(self, logical: str, p: dict[str, Any]) -> tuple[str, str]:
        name = p.get("Name") or self._name(logical)
        arn = self.client("scheduler").create_schedule_group(Name=name)["ScheduleGroupArn"]
        self.ctx.attrs[(logical, "Arn")] = arn
        return name, "created"

    def _scheduler_schedule(self, logical: str, p: dict[str, Any]) -> tuple[str, str]:
        name = p.get("Name") or self._name(logical)
        kwargs = {k: p[k] for k in ("GroupName", "Description", "ScheduleExpressionTimezone", "State") if k in p}
        target = {k: p["Target"][k] for k in ("Arn", "RoleArn", "Input", "RetryPolicy", "DeadLetterConfig") if k in p["Target"]}
        arn = self.client("scheduler").create_schedule(Name=name, ScheduleExpression=p["ScheduleExpression"],
                                                       FlexibleTimeWindow=p["FlexibleTimeWindow"], Target=target,
                                                       **kwargs)["ScheduleArn"]
        self.ctx.attrs[(logical, "Arn")] = arn
        return name, f"created ({p['ScheduleExpression']}); {NOT_EMULATED['AWS::Scheduler::Schedule']}"

    def _serverless_layerversion(self, logical: str, p: dict[str, Any]) -> tuple[str, str]:
        return f"local:{p['ContentUri']}", NOT_EMULATED["AWS::Serverless::LayerVersion"]

    def _serverless_function(self, logical: str, p: dict[str, Any]) -> tuple[str, str]:
        name = p.get("FunctionName") or self._name(logical)
        self.ctx.attrs[(logical, "Arn")] = self._arn("lambda", f"function:{name}")
        # the execution role SAM generates for it (not created locally; handlers may name it, e.g. in policies)
        self.ctx.attrs[(f"{logical}Role", "Arn")] = f"arn:aws:iam::{self.state.account_id}:role/{name}-role"
        for event_name, event in (p.get("Events") or {}).items():
            if event.get("Type") == "SQS":
                note = f"emulated: `stagewarden local poll {logical}` feeds it the queue's messages"
            else:
                note = "event source not emulated: invoke with a sample event"
            self._record(f"{logical}.{event_name}", event.get("Type", "?"), "-", note)
        return name, NOT_EMULATED["AWS::Serverless::Function"]

    def _config_configrule(self, logical: str, p: dict[str, Any]) -> tuple[str, str]:
        source = dict(p["Source"])
        rule = {k: p[k] for k in ("ConfigRuleName", "Description", "Scope", "MaximumExecutionFrequency") if k in p}
        rule["ConfigRuleName"] = rule.get("ConfigRuleName") or self._name(logical)
        rule["Source"] = source
        if "InputParameters" in p:
            params = p["InputParameters"]
            rule["InputParameters"] = params if isinstance(params, str) else json.dumps(params)
        config = self.client("config")
        if source.get("Owner") == "CUSTOM_LAMBDA":
            with self._standin(source["SourceIdentifier"]):  # moto checks the function exists when the rule is put
                config.put_config_rule(ConfigRule=rule)
        else:
            config.put_config_rule(ConfigRule=rule)
        created = config.describe_config_rules(ConfigRuleNames=[rule["ConfigRuleName"]])["ConfigRules"][0]
        self.ctx.attrs[(logical, "Arn")] = created["ConfigRuleArn"]
        self.ctx.attrs[(logical, "ConfigRuleId")] = created["ConfigRuleId"]
        return rule["ConfigRuleName"], ("created (moto stores the rule but never evaluates it: invoke the function with "
                                        "events/retention/config_*.json)")

    @contextmanager
    def _standin(self, function: str) -> Iterator[None]:
        """A stub of a template function on the emulator for as long as a resource naming it is created.

        Removed again afterwards: functions are not deployed here (`stagewarden invoke` runs them in-process).
        """
        import io
        import zipfile

        lam, iam, name = self.client("lambda"), self.client("iam"), function.rsplit(":", 1)[-1]
        trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
                                                        "Action": "sts:AssumeRole"}]}
        role = iam.create_role(RoleName=f"{name}-standin", AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
        code = io.BytesIO()
        with zipfile.ZipFile(code, "w") as zf:
            zf.writestr("standin.py", "def handler(event, context):\n    raise RuntimeError('emulator stand-in')\n")
        lam.create_function(FunctionName=name, Runtime="python3.12", Role=role, Handler="standin.handler",
                            Code={"ZipFile": code.getvalue()})
        try:
            yield
        finally:
            lam.delete_function(FunctionName=name)
            iam.delete_role(RoleName=f"{name}-standin")


def _loopback_policy(document: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """Drop statements that require TLS: the emulator serves plain HTTP on loopback, so they would deny everything."""
    kept = [st for st in document.get("Statement", []) if "aws:SecureTransport" not in json.dumps(st.get("Condition", {}))]
    dropped = len(document.get("Statement", [])) - len(kept)
    note = "policy applied" + (f" (without {dropped} TLS-only statement(s): the emulator is plain HTTP)" if dropped else "")
    return {**document, "Statement": kept}, note


def check_overrides(template_path: Path, overrides: dict[str, str]) -> dict[str, str]:
    """Every override names a template parameter and, where the template lists them, one of its allowed values."""
    params = load_template(template_path).get("Parameters") or {}
    for name, value in overrides.items():
        if name not in params:
            raise UsageError(f"--parameter-overrides {name}: not a parameter of {template_path}{did_you_mean(name, params)}"
                             f"{HINT}use one of {', '.join(params) or '(none)'}")
        allowed = [str(v) for v in params[name].get("AllowedValues") or []]
        if allowed and value not in allowed:
            raise UsageError(f"--parameter-overrides {name}={value}: not an allowed value{HINT}use one of {', '.join(allowed)}")
    return overrides


def provision(template_path: Path, state: LocalState, parameter_overrides: dict[str, str] | None = None) -> LocalState:
    template = load_template(template_path)
    state.parameters = parameter_defaults(template, {**LOCAL_PARAMETERS, **(parameter_overrides or {})})
    return Provisioner(template, state, lambda service: boto_client(service, state)).run()


def up(template_path: Path, policy_path: Path | None, parameter_overrides: dict[str, str] | None = None) -> LocalState:
    """Start moto_server, provision the template, upload the policy; return the saved state."""
    existing = read_state(template_path)
    if existing and is_alive(existing.endpoint):
        raise EmulatorError(f"the emulator is already running at {existing.endpoint} (run `stagewarden local down` first)")
    log = state_path(template_path).parent / "moto_server.log"
    proc, endpoint = start_server(log)
    state = LocalState(endpoint=endpoint, pid=proc.pid)
    try:
        provision(template_path, state, parameter_overrides)
        if policy_path is not None:
            seed_policy(state, policy_path)
    except Exception:
        stop_pid(proc.pid)
        raise
    write_state(template_path, state)
    return state


def policy_location(state: LocalState) -> str:
    param = state.parameters.get("PolicyLocation") or ""
    return param or f"s3://{state.refs['PolicyBucket']}/policy.yaml"


def seed_policy(state: LocalState, policy_path: Path) -> str:
    location = policy_location(state)
    bucket, _, key = location[5:].partition("/")
    boto_client("s3", state).put_object(Bucket=bucket, Key=key, Body=policy_path.read_bytes())
    return location


def down(template_path: Path) -> LocalState | None:
    state = read_state(template_path)
    if state is None:
        return None
    if state.pid:
        stop_pid(state.pid)
    state_path(template_path).unlink(missing_ok=True)
    return state
