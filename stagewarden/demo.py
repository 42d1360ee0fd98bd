"""The main command: a scripted day on a three-stage platform, replayed on a fresh local emulator.

`stagewarden demo [--report DIR]` starts its own moto_server (a free port on 127.0.0.1; a running
`local up` is never touched), provisions what template.yaml declares, starts the local Slack sink,
and replays the day in order: each step makes the AWS calls a person would (uploads, deleted
public access blocks, CloudTrail log files and management events through EventBridge), then runs
the real functions (``stagewarden.invoke`` / ``stagewarden.poll``, in-process, against the
emulator) and checks the effect in AWS. The console shows one line per event, decision, action
and alert, stamped with the scripted day's clock; the functions' own log lines go to
``DIR/functions.log``. Every finding published to the alerts topic is read back from a queue
subscribed to it and goes into ``DIR/report.md`` and ``DIR/report.html`` (stagewarden.report).
The sink and the emulator are stopped at the end, also when a step fails (one line, exit 1).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import textwrap
import tempfile
import traceback
import uuid
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator

from stagewarden import emulator
from stagewarden.report import Report, Row, write

DAY = "Monday 23 November 2026"
ACCOUNT = "123456789012"
LAB_DATA, LAB_SCRATCH, LAB_MODELS = "acme-lab-data", "acme-lab-scratch", "acme-lab-models"
RAW_CLICKS, UAT_SCORES = "acme-prod-raw-clicks", "acme-uat-scores"
SHARED_ROLE, ALICE_ROLE, OSCAR_ROLE = "DataScientistLab", "DataScientistAlice", "DataScientistOscar"
COLLEAGUES = ["bob", "carol", "dan", "erin", "frank", "grace"]
PLANTED = "<script>alert(1)</script>"  # in an object key, as an attacker could name one: the report must escape it
QUIET = {"POWERTOOLS_METRICS_DISABLED": "true"}  # no EMF lines either

BROKEN_POLICY = """\
version: 1
framework: three-stage
stages:
  prod-discovery:
    retention: {default_days: 0}
    exfiltration: {window_minutes: "ten"}
  final-prod:
    retension: {permanent: false}
    break_glass: {max_duration_minutes: 120, approvers: vp@example.com}
resources:
  buckets: [{pattern: "acme-lab-*"}]
"""

_LABELS = {"platform": "platform", "policy": "policy guard", "gate": "schema gate", "retention": "retention",
           "posture": "posture", "exfil": "exfiltration", "breakglass": "break glass", "exceptions": "exceptions",
           "alerts": "alerts"}


class StepFailed(RuntimeError):
    """A step whose effect in AWS is not what the guardrail promises."""


def demo_policy(example: str) -> str:
    """The example policy with final-prod in enforce (the example leaves it to defaults.mode, dry_run)."""
    import re

    match = re.search(r"^  final-prod:[^\n]*\n", example, re.M)
    if match is None or re.match(r"(    [^\n]*\n|\s*\n)*?    mode:", example[match.end():]):
        return example  # no final-prod stage written out, or it sets its own mode: the policy decides
    return example[: match.end()] + "    mode: enforce\n" + example[match.end():]


def _short(text: str, limit: int = 150) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _who(principal: str | None) -> str:
    """``…/DataScientistLab/mallory@example.com`` for an assumed-role ARN (the session is the identity)."""
    if not principal:
        return "-"
    return principal.split(":assumed-role/", 1)[-1] if ":assumed-role/" in principal else principal.rsplit(":", 1)[-1]


class Day:
    def __init__(self, template: Path, policy: Path, state: emulator.LocalState, folder: Path, sink: Any):
        self.template, self.policy, self.state, self.folder, self.sink = template, policy, state, folder, sink
        self.report = Report(day=DAY)
        self.clock = "07:00"
        self.client = lambda service: emulator.boto_client(service, state)
        self.s3, self.sqs = self.client("s3"), self.client("sqs")
        self.iam, self.events = self.client("iam"), self.client("events")
        self.log_path = folder / "functions.log"
        self.log_path.write_text("")
        self.incidents: set[str] = set()
        self.tap = ""
        self.step = "setup"

    # ------------------------------------------------------------------ output
    def at(self, clock: str) -> None:
        self.clock = clock

    def say(self, capability: str, kind: str, text: str) -> None:
        from stagewarden.report import Entry

        self.report.entries.append(Entry(self.clock, capability, kind, text))
        head = f"{self.clock}  {_LABELS.get(capability, capability):<13} {kind:<9} "
        width = min(max(shutil.get_terminal_size((120, 24)).columns, 100), 160)
        lines = textwrap.wrap(_short(text, 260), width=width - len(head), break_on_hyphens=False) or [""]
        print(head + ("\n" + " " * len(head)).join(lines), flush=True)

    @contextmanager
    def quiet(self) -> Iterator[None]:
        """The functions' log lines (and any CLI output) go to functions.log, not to the timeline."""
        sys.stdout.flush()
        sys.stderr.flush()
        saved = os.dup(1), os.dup(2)
        with self.log_path.open("ab") as log:
            try:
                os.dup2(log.fileno(), 1)
                os.dup2(log.fileno(), 2)
                yield
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os.dup2(saved[0], 1)
                os.dup2(saved[1], 2)
                os.close(saved[0])
                os.close(saved[1])

    # ------------------------------------------------------------------ running the functions
    def invoke(self, logical_id: str, event: dict[str, Any]) -> Any:
        from stagewarden.invoke import function_spec, invoke

        if "detail-type" in event:  # each EventBridge delivery is a new event: a fresh id, as EventBridge gives it
            event = {**event, "id": str(uuid.uuid4())}
        with self.quiet():
            return invoke(function_spec(self.template, logical_id, self.state), event, self.state.environ() | QUIET)

    def poll(self, logical_id: str) -> Any:
        from stagewarden.poll import poll

        with self.quiet():
            return poll(self.template, logical_id, self.state, extra_env=QUIET)

    def put_events(self, *details: dict[str, Any]) -> None:
        for d in details:
            source = "aws." + d["eventSource"].split(".")[0]
            self.events.put_events(Entries=[{"Source": source, "DetailType": "AWS API Call via CloudTrail", "Detail": json.dumps(d)}])

    def findings(self, capability: str) -> list[dict[str, Any]]:
        """Every finding published since the last call, into the report and the timeline; then delivered to Slack."""
        found: list[dict[str, Any]] = []
        while True:
            msgs = self.sqs.receive_message(QueueUrl=self.tap, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", [])
            if not msgs:
                break
            for m in msgs:
                found.append(json.loads(m["Body"]))
                self.sqs.delete_message(QueueUrl=self.tap, ReceiptHandle=m["ReceiptHandle"])
        for f in found:
            row: Row = self.report.add(self.clock, f)
            self.incidents.add(f.get("dedup_key") or f"{row.rule}:{row.resource}")
            who = f" ({_who(f['principal'])})" if f.get("principal") else ""
            self.say(capability, "alert", _short(f"[{row.severity}] {row.rule}{who}: {row.summary}", 200))
        if found:
            result = self.poll("AlertFunction")
            posts = self.sink.wait_for(len(self.incidents), timeout=20)
            self.record_posts(posts)
            self.say("alerts", "action", f"AlertQueue -> AlertFunction -> Slack: {result.received} finding(s) delivered "
                                         f"({len(posts)} post(s) today for {len(self.incidents)} incident(s))")
        return found

    def record_posts(self, payloads: list[dict[str, Any]]) -> None:
        """The Slack posts not yet in the report, as a reader sees them: headline and rule."""
        from courier.render import as_text

        for payload in payloads[len(self.report.posts):]:
            lines = as_text(payload).splitlines()
            rule = next((ln.split(":", 1)[1].strip(" `") for ln in lines if ln.startswith("Rule:")), "-")
            headline = next((ln[2:] for ln in lines if ln.startswith("# ")), "-")
            self.report.posts.append((self.clock, rule, headline))

    # ------------------------------------------------------------------ setup
    def compliant_bucket(self, name: str, retention: Any = None) -> None:
        """A stage bucket as the nightly reconcile leaves it: KMS, public access blocked, TLS only, versioned, lifecycle."""
        from keeper.plan import required_rules
        from keeper.posture import tls_statement

        s3 = self.s3
        s3.create_bucket(Bucket=name)
        s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
        s3.put_bucket_encryption(Bucket=name, ServerSideEncryptionConfiguration={"Rules": [
            {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms"}, "BucketKeyEnabled": True}]})
        s3.put_public_access_block(Bucket=name, PublicAccessBlockConfiguration={
            "BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True, "RestrictPublicBuckets": True})
        s3.put_bucket_policy(Bucket=name, Policy=json.dumps({"Version": "2012-10-17", "Statement": [tls_statement(name)]}))
        if retention is not None:
            s3.put_bucket_lifecycle_configuration(Bucket=name, LifecycleConfiguration={"Rules": required_rules(retention)})
        s3.put_bucket_notification_configuration(Bucket=name, NotificationConfiguration={"EventBridgeConfiguration": {}})

    def role(self, name: str, stage: str | None) -> None:
        trust = {"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}, "Action": "sts:AssumeRole"}]}
        tags = [{"Key": "stagewarden:stage", "Value": stage}] if stage else []
        self.iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust), Tags=tags)

    def setup(self) -> None:
        from stage_policy.loader import loads

        self.at("07:00")
        policy = loads(self.policy.read_text(), str(self.policy))
        lab = policy.stages["prod-discovery"]
        modes = ", ".join(f"{name} {stage.mode or policy.defaults.mode}" for name, stage in policy.stages.items())
        self.say("platform", "event", f"moto_server at {self.state.endpoint}: {len(self.state.resources)} resources of "
                                      "template.yaml provisioned (queues, rules, tables, topics, roles, schedules)")
        self.say("platform", "event", f"policy {policy.framework}: {modes}; buckets acme-lab-* lab, acme-uat-* UAT, "
                                      "acme-prod-* final-prod")
        url = self.sqs.create_queue(QueueName="demo-report-tap")["QueueUrl"]
        arn = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        self.client("sns").subscribe(TopicArn=self.state.refs["AlertsTopic"], Protocol="sqs", Endpoint=arn,
                                     Attributes={"RawMessageDelivery": "true"})
        self.tap = url
        for bucket in (LAB_DATA, LAB_SCRATCH, LAB_MODELS):
            self.compliant_bucket(bucket, lab.retention)
        self.compliant_bucket(UAT_SCORES, policy.stages["prod-integration"].retention)
        self.s3.create_bucket(Bucket=RAW_CLICKS)
        self.role(SHARED_ROLE, "prod-discovery")
        self.role(ALICE_ROLE, "prod-discovery")
        self.role(OSCAR_ROLE, "prod-discovery")
        self.say("platform", "event", f"lab buckets {LAB_DATA}, {LAB_SCRATCH}, {LAB_MODELS} and UAT bucket {UAT_SCORES} "
                                      "at their stage's baseline "
                                      "(SSE-KMS, public access blocked, TLS only, versioned, lifecycle); shared notebook role "
                                      f"{SHARED_ROLE} for {len(COLLEAGUES) + 1} data scientists")
        self.say("alerts", "event", f"local Slack sink at {self.sink.shown_url} (the webhook secret points at it)")

    # ------------------------------------------------------------------ 08:00 policy guard
    def policy_guard(self) -> str:
        self.at("08:00")
        scheduled = json.loads((self.template.parent / "events" / "policy_guard_scheduled.json").read_text())
        ok = self.invoke("PolicyGuardFunction", scheduled)
        self.say("policy", "decision", f"hourly check: the policy is valid ({len(ok['stages'])} stages)")
        self.at("08:05")
        location = emulator.policy_location(self.state)
        bucket, _, key = location[5:].partition("/")
        self.s3.put_object(Bucket=bucket, Key=key, Body=BROKEN_POLICY.encode())
        self.say("policy", "event", f"a careless deploy pushes a broken policy to {location}")
        changed = json.loads((self.template.parent / "events" / "policy_guard_policy_changed.json").read_text())
        changed["detail"]["bucket"]["name"] = bucket
        bad = self.invoke("PolicyGuardFunction", changed)
        self.say("policy", "decision", f"policy unusable ({len(bad['errors'])} errors, first: {bad['errors'][0]}); running "
                                       "functions keep their last valid policy")
        again = self.invoke("PolicyGuardFunction", scheduled)
        self.say("policy", "decision", f"next hourly check: still broken, same incident: published={again.get('published')}")
        found = self.findings("policy")
        self.at("08:10")
        self.s3.put_object(Bucket=bucket, Key=key, Body=self.policy.read_bytes())
        fixed = self.invoke("PolicyGuardFunction", changed)
        self.say("policy", "action", f"the valid policy is pushed back: valid={fixed['valid']}")
        if [f["rule"] for f in found] != ["policy.invalid"] or not fixed["valid"]:
            raise StepFailed(f"expected one policy.invalid alert for two checks (got {[f['rule'] for f in found]})")
        return "policy guard: a broken policy raised one critical alert for two checks; running functions kept the last valid one"

    # ------------------------------------------------------------------ 08:30 schema gate and model registry
    def tags(self, bucket: str, key: str) -> dict[str, str]:
        return {t["Key"]: t["Value"] for t in self.s3.get_object_tagging(Bucket=bucket, Key=key)["TagSet"]}

    def schema_gate(self) -> str:
        from gate.engine import profile
        from gate.readers import batches
        from stage_policy.loader import loads

        from stagewarden.datagen import write_csv

        self.at("08:30")
        contract = loads(self.policy.read_text(), str(self.policy)).contract("transactions")
        with tempfile.TemporaryDirectory() as tmp:
            base, good, bad = (Path(tmp) / n for n in ("baseline.csv", "good.csv", "bad.csv"))
            write_csv(base, 20000, seed=99)
            with base.open("rb") as fh:
                baseline = profile(contract, batches(fh, "baseline.csv", contract, lambda rows: None))
            b_bucket, _, b_key = contract.drift.baseline[5:].partition("/")
            self.s3.put_object(Bucket=b_bucket, Key=b_key, Body=json.dumps(baseline).encode())
            self.say("gate", "event", f"the data owner stores the drift baseline of contract {contract.name} "
                                      f"(20,000 rows) at {contract.drift.baseline}")
            write_csv(good, 5000, seed=3)
            planted = write_csv(bad, 5000, seed=4, dirty=True, per_defect=3, duplicates=2)
            keys = {p.name: f"{contract.prefix}2026-11-23/{p.name}" for p in (good, bad)}
            self.at("08:40")
            self.s3.put_object(Bucket=LAB_DATA, Key=keys["good.csv"], Body=good.read_bytes())
            self.say("gate", "event", f"the nightly ETL uploads s3://{LAB_DATA}/{keys['good.csv']} (5,000 clean rows)")
            self.at("08:42")
            self.s3.put_object(Bucket=LAB_DATA, Key=keys["bad.csv"], Body=bad.read_bytes())
            defects = ", ".join(f"{k} {v}" for k, v in planted.counts.items())
            self.say("gate", "event", f"a manual upload lands s3://{LAB_DATA}/{keys['bad.csv']} (5,000 rows; planted: {defects})")
        result = self.poll("SchemaGateFunction")
        self.say("gate", "decision", f"S3 -> EventBridge -> SchemaGateQueue -> SchemaGateFunction: {result.received} "
                                     f"message(s), {result.failed} failed")
        verdict = {name: self.tags(LAB_DATA, key).get("stagewarden:validation") for name, key in keys.items()}
        promoted = [p["Key"] for p in self.s3.list_objects_v2(Bucket=LAB_DATA, Prefix=contract.validated_prefix or "-").get(
            "Contents", [])]
        self.say("gate", "action", f"good.csv tagged {verdict['good.csv']}, copied to {', '.join(promoted) or 'nowhere'}; "
                                   f"bad.csv tagged {verdict['bad.csv']}: the bucket policy's fence keeps it unreadable")
        found = self.findings("gate")

        self.at("08:50")
        import io

        import pyarrow as pa
        import pyarrow.parquet as pq

        buf = io.BytesIO()
        pq.write_table(pa.table({"customer_id": list(range(1000)), "balance": [i * 1.5 for i in range(1000)],
                                 "churned": [i % 7 == 0 for i in range(1000)]}), buf)
        dataset_key = f"models/churn/v7/{PLANTED}.bin"
        self.s3.put_object(Bucket=LAB_MODELS, Key=dataset_key, Body=buf.getvalue())
        self.say("gate", "event", f"someone drops a Parquet table of customers into the model registry as "
                                  f"s3://{LAB_MODELS}/{dataset_key} (its name carries an HTML tag; the report escapes it)")
        self.at("08:55")
        model_key = "models/churn/v7/model.onnx"
        onnx = b"\x08\x08\x12\x07pytorch\x1a\x032.1:" + b"\x00" * 64  # an ONNX ModelProto's first fields
        self.s3.put_object(Bucket=LAB_MODELS, Key=model_key, Body=onnx)
        self.say("gate", "event", f"the training pipeline registers s3://{LAB_MODELS}/{model_key} (an ONNX model)")
        result = self.poll("SchemaGateFunction")
        registry = {"dataset": self.tags(LAB_MODELS, dataset_key).get("stagewarden:validation"),
                    "model": self.tags(LAB_MODELS, model_key)}
        self.say("gate", "decision", f"SchemaGateFunction judged {result.received} object(s) by their bytes: the table is a "
                                     f"dataset (tagged {registry['dataset']}), the model passes (tagged "
                                     f"{registry['model'].get('stagewarden:validation')}, SHA-256 "
                                     f"{registry['model'].get('stagewarden:validation-sha256', '-')[:12]}… registered)")
        found += self.findings("gate")
        rules = sorted({f["rule"] for f in found})
        if verdict != {"good.csv": "passed", "bad.csv": "failed"} or len(promoted) != 1 or registry["dataset"] != "failed" \
                or registry["model"].get("stagewarden:validation") != "passed" or "data.in-model-registry" not in rules:
            raise StepFailed(f"expected good passed and promoted, bad and the dataset failed, the model passed "
                             f"(got {verdict}, {promoted}, {registry}, {rules})")
        return (f"schema gate: the clean upload passed and was promoted, the dirty one quarantined; a dataset in the model "
                f"registry quarantined, the model registered ({', '.join(rules)})")

    # ------------------------------------------------------------------ 09:15 retention
    def retention(self) -> str:
        from stagewarden.cli import main as cli

        self.at("09:15")
        for key in ("raw/2026-10/events.csv", "raw/2026-10/events.csv", "raw/2026-10/users.csv", "aggregated/daily.parquet",
                    "aggregated/daily.parquet"):
            self.s3.put_object(Bucket=LAB_SCRATCH, Key=key, Body=b"data")
        self.s3.delete_object(Bucket=LAB_SCRATCH, Key="raw/2026-10/users.csv")
        tampered = [
            {"ID": "stagewarden-class-raw/", "Status": "Enabled", "Filter": {"Prefix": "raw/"}, "Expiration": {"Days": 3650}},
            {"ID": "cleanup", "Status": "Enabled", "Filter": {"Prefix": "aggregated/"}, "Expiration": {"Days": 1},
             "Transitions": [{"Days": 0, "StorageClass": "GLACIER_IR"}]},
        ]
        self.s3.put_bucket_lifecycle_configuration(Bucket=LAB_SCRATCH, LifecycleConfiguration={"Rules": tampered})
        self.say("retention", "event", f"alice rewrites the lifecycle of {LAB_SCRATCH}: raw/ kept ten years (policy: "
                                       "30 days) and an own rule expiring aggregated/ after 1 day (below the 7-day floor)")
        event = json.loads((self.template.parent / "events" / "retention" / "put_bucket_lifecycle.eventbridge.json").read_text())
        event["detail"]["requestParameters"]["bucketName"] = LAB_SCRATCH
        event["detail"]["eventID"] += f"-{LAB_SCRATCH}"
        result = self.invoke("RetentionFunction", event)
        lifecycle = {r["ID"]: r for r in self.s3.get_bucket_lifecycle_configuration(Bucket=LAB_SCRATCH)["Rules"]}
        raw_days = lifecycle.get("stagewarden-class-raw/", {}).get("Expiration", {}).get("Days")
        owner = lifecycle.get("cleanup", {})
        self.say("retention", "decision", f"PutBucketLifecycle -> EventBridge -> RetentionFunction: "
                                          f"{len(result['findings'])} finding(s)")
        self.say("retention", "action", f"lifecycle of {LAB_SCRATCH} brought back to policy: raw/ expires after {raw_days} "
                                        f"days again; the owner's rule 'cleanup' keeps its transition, loses its 1-day expiry")
        found = self.findings("retention")

        self.at("09:20")
        page = self.s3.list_object_versions(Bucket=LAB_SCRATCH)
        before = len(page.get("Versions", [])), len(page.get("DeleteMarkers", []))
        when = (datetime.now(timezone.utc) + timedelta(days=45)).strftime("%Y-%m-%dT%H:%M:%SZ")
        self.say("retention", "event", f"{LAB_SCRATCH} holds {before[0]} object versions and {before[1]} delete marker; the "
                                       "daily sweep runs as of 45 days later (the emulator stamps every write with today's date)")
        saved = dict(os.environ)
        os.environ.update(self.state.environ())
        try:
            with self.quiet():
                code = cli(["retention", "apply", "--policy", str(self.policy), "--bucket", LAB_SCRATCH, "--now", when])
        finally:
            os.environ.clear()
            os.environ.update(saved)
        page = self.s3.list_object_versions(Bucket=LAB_SCRATCH)
        after = len(page.get("Versions", [])), len(page.get("DeleteMarkers", []))
        left = ", ".join(v["Key"] for v in page.get("Versions", []))
        self.say("retention", "action", f"expired versions deleted: {before[0] - after[0]} version(s) and "
                                        f"{before[1] - after[1]} delete marker(s); left: {left or 'nothing'} "
                                        "(aggregated/ keeps 90 days)")
        if code != 0 or after != (1, 0) or raw_days != 30 or "Expiration" in owner or not owner.get("Transitions"):
            raise StepFailed(f"expected the lifecycle restored and the lab swept to 1 version (got {lifecycle}, {after})")
        return (f"retention: the tampered lifecycle of {LAB_SCRATCH} restored by the event path; "
                f"{before[0] - after[0]} expired versions and {before[1] - after[1]} delete marker swept "
                f"({', '.join(sorted({f['rule'] for f in found})) or 'no finding'})")

    # ------------------------------------------------------------------ 09:40 bucket posture
    def posture(self) -> str:
        self.at("09:40")
        self.s3.delete_public_access_block(Bucket=LAB_DATA)
        self.say("posture", "event", f"alice ({ALICE_ROLE}) deletes the public access block of {LAB_DATA} "
                                     "to share a chart with a partner")
        event = json.loads((self.template.parent / "events" / "retention" / "delete_public_access_block.eventbridge.json")
                           .read_text())
        event["detail"]["requestParameters"]["bucketName"] = LAB_DATA
        event["detail"]["requestParameters"]["Host"] = f"{LAB_DATA}.s3.amazonaws.com"
        event["detail"]["eventID"] += "-demo"
        result = self.invoke("RetentionFunction", event)
        self.say("posture", "decision", f"DeletePublicAccessBlock -> EventBridge -> RetentionFunction re-reconciles {LAB_DATA}: "
                                        f"{len(result['findings'])} finding(s)")
        block = self.s3.get_public_access_block(Bucket=LAB_DATA)["PublicAccessBlockConfiguration"]
        self.say("posture", "action", f"public access block of {LAB_DATA} restored within the one event: "
                                      f"{', '.join(k for k, v in block.items() if v)} on")
        found = self.findings("posture")
        rules = sorted({f["rule"] for f in found})
        if not all(block.values()) or len(block) != 4 or rules != ["posture.public-access"] or \
                not all(f["principal"] and "alice" in f["principal"] for f in found):
            raise StepFailed(f"expected the block restored and one posture.public-access naming alice (got {block}, {rules})")

        self.at("09:50")
        self.s3.put_bucket_versioning(Bucket=UAT_SCORES, VersioningConfiguration={"Status": "Suspended"})
        self.say("posture", "event", f"ravi (UatReleaseManager) suspends versioning on the UAT bucket {UAT_SCORES}")
        text = (self.template.parent / "events" / "retention" / "put_bucket_versioning.eventbridge.json").read_text()
        event = json.loads(text.replace("DataScientistAlice", "UatReleaseManager").replace("alice@example.com", "ravi@example.com"))
        event["detail"]["requestParameters"].update(bucketName=UAT_SCORES, Host=f"{UAT_SCORES}.s3.amazonaws.com")
        event["detail"]["eventID"] += "-uat"
        result = self.invoke("RetentionFunction", event)
        status = self.s3.get_bucket_versioning(Bucket=UAT_SCORES).get("Status")
        self.say("posture", "decision", f"PutBucketVersioning -> EventBridge -> RetentionFunction: {len(result['findings'])} "
                                        f"finding(s); prod-integration is in dry_run: reported with the exact change, "
                                        f"not made (versioning still {status})")
        uat = self.findings("posture")
        if status != "Suspended" or [f["rule"] for f in uat] != ["posture.versioning"] or \
                not uat[0]["action"].startswith("dry run"):
            raise StepFailed(f"expected a dry-run posture.versioning on {UAT_SCORES} and no change (got {uat}, {status})")
        return (f"posture: the deleted public access block of {LAB_DATA} restored by one event, one critical alert naming "
                f"alice; versioning suspended on UAT bucket {UAT_SCORES} reported in dry run, unchanged")

    # ------------------------------------------------------------------ 10:00 exfiltration
    def exfiltration(self) -> str:
        from stagewarden.trailgen import bulk_download, copies, log_file, log_key, management_event, shared_role_day

        self.at("10:00")
        start = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(minutes=8)
        records = shared_role_day(colleagues=len(COLLEAGUES), role=SHARED_ROLE, bucket=LAB_DATA, start=start, reads_each=300,
                                  minutes=8)
        text = json.dumps(records)
        for i, name in enumerate(COLLEAGUES):  # colleague0@example.com -> bob@example.com
            text = text.replace(f"colleague{i}@example.com", f"{name}@example.com")
        records = json.loads(text)
        colleagues = len(records)
        self.say("exfil", "event", f"{', '.join(COLLEAGUES)} work in notebooks on the shared role {SHARED_ROLE}: "
                                   f"{colleagues} reads through the VPC endpoint in 8 minutes")
        self.at("10:04")
        records += bulk_download(role=SHARED_ROLE, session="mallory@example.com", bucket=LAB_DATA, objects=1500, start=start,
                                 seconds=240, nbytes=120_000, prefix="raw/2026/11/")
        self.say("exfil", "event", f"mallory, on the same role, runs `aws s3 cp --recursive s3://{LAB_DATA}/raw/ .` from her "
                                   "laptop: 1,500 objects, 172 MiB in 4 minutes")
        records += copies(role=SHARED_ROLE, session="mallory@example.com", source_bucket=LAB_DATA, dest_bucket="mallory-loot",
                          objects=40, start=start + timedelta(minutes=5), seconds=30)
        self.say("exfil", "event", f"... and server-side copies 40 objects into mallory-loot, a bucket of no stage")
        records.sort(key=lambda r: r["eventTime"])
        key = log_key(start, "demo0day")
        body = log_file(records)
        self.s3.put_object(Bucket=self.state.refs["CloudTrailLogBucket"], Key=key, Body=body)
        self.at("10:10")
        self.say("exfil", "event", f"CloudTrail delivers a log file of {len(records)} records ({len(body):,} bytes gzip); "
                                   "S3 -> EventBridge -> ExfilQueue")
        result = self.poll("ExfiltrationFunction")
        self.say("exfil", "decision", f"ExfiltrationFunction counted per session: {result.received} message(s), "
                                      f"{result.failed} failed")
        denies = {}
        for name in self.iam.list_role_policies(RoleName=SHARED_ROLE)["PolicyNames"]:
            doc = self.iam.get_role_policy(RoleName=SHARED_ROLE, PolicyName=name)["PolicyDocument"]
            denies[name] = json.loads(doc) if isinstance(doc, str) else doc
        userids = [st.get("Condition", {}).get("StringEquals", {}).get("aws:userid") for d in denies.values()
                   for st in d["Statement"]]
        self.say("exfil", "action", f"{SHARED_ROLE} gets inline policy {', '.join(denies) or '-'}: Deny * when aws:userid = "
                                    f"{', '.join(map(str, userids))} (mallory's session only; colleagues keep working)")
        found = self.findings("exfil")
        principals = {_who(f.get("principal")) for f in found}
        self.say("exfil", "decision", f"no finding names {', '.join(COLLEAGUES)}: each read a few hundred objects through the "
                                      "VPC endpoint, below every per-session threshold")
        rules = sorted({f["rule"] for f in found})
        if "exfil.bulk-download" not in rules or "exfil.copy-out" not in rules or \
                principals != {f"{SHARED_ROLE}/mallory@example.com"} or len(userids) != 1 or \
                not str(userids[0]).endswith(":mallory@example.com"):
            raise StepFailed(f"expected bulk download and copy-out findings naming only mallory, and one session deny "
                             f"(got {rules}, {principals}, {userids})")

        self.at("10:30")
        backdoor = {"Sid": "Backdoor", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::999988887777:root"},
                    "Action": ["s3:GetObject", "s3:ListBucket"], "Resource": [f"arn:aws:s3:::{LAB_DATA}", f"arn:aws:s3:::{LAB_DATA}/*"]}
        current = json.loads(self.s3.get_bucket_policy(Bucket=LAB_DATA)["Policy"])
        opened = {**current, "Statement": current["Statement"] + [backdoor]}
        self.s3.put_bucket_policy(Bucket=LAB_DATA, Policy=json.dumps(opened))
        self.say("exfil", "event", f"oscar ({OSCAR_ROLE}) adds a statement to the bucket policy of {LAB_DATA} granting "
                                   "account 999988887777 read access")
        detail = management_event("PutBucketPolicy", "s3.amazonaws.com",
                                  {"bucketName": LAB_DATA, "bucketPolicy": opened, "Host": f"{LAB_DATA}.s3.amazonaws.com",
                                   "policy": ""}, role=OSCAR_ROLE, session="oscar@example.com",
                                  when=datetime.now(timezone.utc).replace(microsecond=0))
        self.put_events(detail)
        result = self.poll("ExfiltrationFunction")
        self.say("exfil", "decision", f"PutBucketPolicy -> EventBridge -> ExfilQueue -> ExfiltrationFunction: "
                                      f"{result.received} message(s), {result.failed} failed")
        after = json.loads(self.s3.get_bucket_policy(Bucket=LAB_DATA)["Policy"])
        sids = [st.get("Sid", "-") for st in after["Statement"]]
        self.say("exfil", "action", f"the external statement is removed; the {len(sids)} others are kept (TLS only, the "
                                    "schema gate's fence)")
        more = self.findings("exfil")
        if "999988887777" in json.dumps(after) or len(after["Statement"]) != len(current["Statement"]) or \
                "exfil.bucket-policy-external" not in {f["rule"] for f in more}:
            raise StepFailed(f"expected the backdoor reverted and the other statements kept (got {sids})")
        found += more
        return (f"exfiltration: mallory's bulk download and copy-out on a shared role found and her session denied, "
                f"{len(COLLEAGUES)} colleagues untouched; a backdoor bucket policy reverted "
                f"({', '.join(sorted({f['rule'] for f in found}))})")

    # ------------------------------------------------------------------ 13:00 break glass
    def breakglass(self) -> str:
        import argparse

        from stagewarden import breakglass as bg
        from stagewarden import breakglass_events as ev
        from warden.rules import GrantRequest, Refused

        role, oncall = "BreakGlassProd", f"arn:aws:iam::{ACCOUNT}:role/OnCallEngineer"
        baseline = {"Version": "2012-10-17", "Statement": [{"Sid": "Baseline", "Effect": "Allow",
                                                            "Principal": {"Service": "ssm.amazonaws.com"}, "Action": "sts:AssumeRole"}]}
        self.iam.create_role(RoleName=role, AssumeRolePolicyDocument=json.dumps(baseline),
                             Tags=[{"Key": "stagewarden:stage", "Value": "final-prod"}])
        self.iam.create_role(RoleName="OnCallEngineer", AssumeRolePolicyDocument=json.dumps(baseline))
        args = argparse.Namespace(policy=str(self.policy), template=str(self.template), stack=None, state=self.state)
        with self.quiet():
            warden, wiring = bg.connect(args)
            requested_by, _ = bg.caller(wiring)
            now = datetime.now(timezone.utc).replace(microsecond=0)
            warden.sweep(now, via="demo: the 5-minute sweep")

        def trust() -> list[Any]:
            return [st.get("Principal") for st in self.iam.get_role(RoleName=role)["Role"]["AssumeRolePolicyDocument"]["Statement"]]

        self.at("13:00")
        self.say("breakglass", "event", f"the 5-minute sweep records the trust policy of {role} (final-prod) as its baseline: "
                                        f"{json.dumps(trust())}")
        self.at("13:02")
        try:
            warden.grant(GrantRequest(role, oncall, "intern@example.com", "INC-4711", 90, "orders table corrupt", {}), now,
                         requested_by)
            refused = ""
        except Refused as exc:
            refused = str(exc)
        self.say("breakglass", "decision", f"`breakglass grant --approver intern@example.com` refused, nothing changed: "
                                           f"{refused or 'NOT REFUSED'}")
        self.at("13:05")
        with self.quiet():
            grant = warden.grant(GrantRequest(role, oncall, "vp-engineering@example.com", "INC-4711", 90,
                                              "orders table corrupt", {}), now, requested_by)
        self.say("breakglass", "action", f"VP-approved grant {grant.grant_id}: {role} opened to OnCallEngineer for 90 minutes; "
                                         "IAM denies every call after the deadline (14:35); a one-time schedule will expire it")
        self.findings("breakglass")
        self.at("13:07")
        detail = ev.assume_role(f"arn:aws:iam::{ACCOUNT}:role/{role}", "oncall@example.com",
                                ev.session_identity("OnCallEngineer", "oncall@example.com"), now)
        self.put_events(detail)
        result = self.poll("BreakGlassFunction")
        self.say("breakglass", "event", f"the on-call engineer assumes {role}; AssumeRole -> EventBridge -> BreakGlassQueue -> "
                                        f"BreakGlassFunction ({result.received} message(s)): session kept for the review")
        self.at("14:35")
        schedule = self.client("scheduler").get_schedule(Name=grant.schedule,
                                                         GroupName=self.state.refs["BreakGlassScheduleGroup"])
        payload = json.loads(schedule["Target"]["Input"].replace("<aws.scheduler.scheduled-time>", grant.deadline)
                             .replace("<aws.scheduler.execution-id>", "demo-execution-1"))
        fired = self.invoke("BreakGlassFunction", payload)
        restored = trust()
        self.say("breakglass", "action", f"the deadline's schedule fires (played by the demo: moto never fires schedules): "
                                         f"{fired['result']}; trust restored to {json.dumps(restored)}; sessions issued before "
                                         f"{fired['revoked_before']} revoked; review due {fired['review_due']}")
        found = self.findings("breakglass")
        self.at("15:00")
        forged = {"stagewarden:approved-by": "vp-engineering@example.com", "stagewarden:ticket": "INC-0000",
                  "stagewarden:expires-at": grant.deadline}
        oscar = f"arn:aws:iam::{ACCOUNT}:role/{OSCAR_ROLE}"
        self.iam.tag_role(RoleName=role, Tags=[{"Key": k, "Value": v} for k, v in forged.items()])
        self.iam.update_assume_role_policy(RoleName=role, PolicyDocument=json.dumps(ev.opened_trust(oscar)))
        self.say("breakglass", "event", f"oscar tags {role} \"approved-by vp-engineering\" himself and opens its trust to "
                                        f"his own role {OSCAR_ROLE} (no grant)")
        who = ev.session_identity(OSCAR_ROLE, "oscar@example.com")
        self.put_events(ev.tag_role(role, forged, who, now), ev.update_trust(role, ev.opened_trust(oscar), who, now))
        result = self.poll("BreakGlassFunction")
        final = self.iam.get_role(RoleName=role)["Role"]
        tags = [t["Key"] for t in final.get("Tags", []) if t["Key"] != "stagewarden:stage"]
        self.say("breakglass", "decision", f"BreakGlassFunction: {result.received} change(s) on a break-glass role without an "
                                           "approved grant")
        self.say("breakglass", "action", f"reverted at once: trust back to {json.dumps(trust())}, approval tags "
                                         f"{', '.join(tags) or 'removed'}")
        found += self.findings("breakglass")
        rules = sorted({f["rule"] for f in found})
        if not refused or fired["result"] != "expired" or len(restored) != 1 or len(final["AssumeRolePolicyDocument"][
                "Statement"]) != 1 or "breakglass.refused" not in rules or "breakglass.granted" not in self.report.rules(
                "breakglass") or tags:
            raise StepFailed(f"expected a refusal, a grant, its expiry and a revert (got {rules}, {fired}, {tags})")
        return (f"break glass: a non-approver refused; a VP-approved grant opened with an IAM deadline and expired on "
                f"schedule (baseline restored, sessions revoked, review due); a self-approved activation reverted")

    # ------------------------------------------------------------------ 15:30 time-boxed exception
    def exception(self) -> str:
        import argparse

        from stagewarden import breakglass as bg
        from warden.engine import SweepReport
        from warden.timeboxed import grant_exception, sweep_exceptions

        args = argparse.Namespace(policy=str(self.policy), template=str(self.template), stack=None, state=self.state)
        principal = f"arn:aws:iam::{ACCOUNT}:role/{SHARED_ROLE}"
        self.at("15:30")
        now = datetime.now(timezone.utc).replace(microsecond=0)
        until = now + timedelta(minutes=90)
        with self.quiet():
            warden, wiring = bg.connect(args)
            requested_by, _ = bg.caller(wiring)
            record = grant_exception(warden, RAW_CLICKS, principal, "cto@example.com", until,
                                     "fraud model needs raw click data for one afternoon", "bob@example.com", now, requested_by)
        inline = self.iam.list_role_policies(RoleName=SHARED_ROLE)["PolicyNames"]
        self.say("exceptions", "action", f"exception {record.exception_id}: {SHARED_ROLE} may read s3://{RAW_CLICKS} until "
                                         f"17:00, approved by cto@example.com, owner bob; inline policy "
                                         f"{record.policy_name} allows reads only while aws:CurrentTime < the expiry")
        found = self.findings("exceptions")
        self.at("17:05")
        report = SweepReport(as_of=(until + timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ"))
        with self.quiet():
            sweep_exceptions(warden, until + timedelta(minutes=5), report)
        after = self.iam.list_role_policies(RoleName=SHARED_ROLE)["PolicyNames"]
        self.say("exceptions", "action", f"the sweep after 17:00 expires {', '.join(report.exceptions_expired) or '-'}: "
                                         f"inline policy {record.policy_name} deleted, register entry marked expired")
        found += self.findings("exceptions")
        rules = sorted({f["rule"] for f in found})
        if record.policy_name not in inline or record.policy_name in after or rules != ["exception.expired", "exception.granted"]:
            raise StepFailed(f"expected the exception granted then expired and its policy removed (got {rules}, {after})")
        return f"exceptions: a 90-minute read exception on {RAW_CLICKS} granted, then expired by the sweep and removed from IAM"

    # ------------------------------------------------------------------ 17:30 alerts
    def alerts(self) -> str:
        self.at("17:30")
        self.record_posts(self.sink.payloads())
        posts = len(self.sink.posts)
        hub = self.client("securityhub").get_findings(MaxResults=100)["Findings"]
        self.say("alerts", "decision", f"the day's alerts: {posts} Slack post(s) for {len(self.incidents)} incident(s); "
                                       f"Security Hub holds {len(hub)} finding(s) (policy.invalid went to Slack only: while the policy is "
                                       "unusable, AlertFunction delivers to the deployment's Slack secret alone)")
        self.report.slack_posts, self.report.incidents = posts, len(self.incidents)
        if posts != len(self.incidents):
            raise StepFailed(f"expected one Slack post per incident (got {posts} posts for {len(self.incidents)} incidents)")
        return f"alerts: {posts} Slack post(s), one per incident, and {len(hub)} Security Hub finding(s)"

    def run(self) -> None:
        self.setup()
        for step in (self.policy_guard, self.schema_gate, self.retention, self.posture, self.exfiltration, self.breakglass,
                     self.exception, self.alerts):
            self.step = step.__name__
            self.report.facts.append(step())


def run(template: Path, policy: Path, folder: Path) -> int:
    """Replay the day; 0 when every step had its effect, 1 (one line on stderr) when one did not."""
    from stagewarden.sink import Sink, point_secret
    from stage_policy.loader import loads

    print(f"Stagewarden demo: {DAY} on a three-stage platform (prod-discovery lab, prod-integration UAT, final-prod)")
    print("Times are the scripted day's; every call goes to a local AWS emulator; the functions' logs are in "
          f"{folder / 'functions.log'}")
    print("Each line: time, capability, then event (what someone did), decision (what a function concluded), action "
          "(what changed in AWS) or alert (a finding on the alerts topic)\n")
    day: Day | None = None
    failed: str | None = None
    log = folder / "functions.log"
    with tempfile.TemporaryDirectory(prefix="stagewarden-demo-") as tmp:
        text = demo_policy(policy.read_text())
        demo_path = Path(tmp) / "policy.yaml"
        demo_path.write_text(text)
        try:
            proc, endpoint = emulator.start_server(Path(tmp) / "moto_server.log")
        except emulator.EmulatorError as exc:
            print(f"stagewarden demo: cannot start the local emulator: {exc}", file=sys.stderr)
            return 1
        try:
            state = emulator.LocalState(endpoint=endpoint, pid=proc.pid, stack_name="stagewarden-demo")
            # the demo plays an operator who has opted in: the policy's per-stage modes decide
            emulator.provision(template, state, {"LogLevel": "WARNING", "DefaultRemediationMode": "enforce"})
            emulator.seed_policy(state, demo_path)
            secret = loads(text, str(demo_path)).alerts.slack_webhook_secret or "stagewarden/slack-webhook"
            with Sink() as sink:
                point_secret(emulator.boto_client("secretsmanager", state), secret, sink.url)
                day = Day(template, demo_path, state, folder, sink)
                day.run()
        except StepFailed as exc:
            failed = f"step {day.step if day else 'setup'}: {exc}"
        except Exception as exc:  # noqa: BLE001 - a bug or an emulator failure: one line here, the traceback in the log
            with log.open("a") as out:
                out.write(traceback.format_exc())
            where = f"step {day.step}" if day else "provisioning the emulator"
            failed = f"{where}: {type(exc).__name__}: {_short(exc, 300)} (traceback in {log})"
        finally:
            emulator.stop_pid(proc.pid)
    if day is not None:
        md, htm = write(day.report, folder)
        print(f"\nReport: {md} and {htm} ({sum(len(r) for r in day.report.rows.values())} findings)")
        print("Summary:")
        for line in day.report.facts:
            print(f"  - {line}")
    print("Stopped the Slack sink and the emulator.")
    if failed:
        print(f"stagewarden demo: {failed}", file=sys.stderr)
        return 1
    return 0
