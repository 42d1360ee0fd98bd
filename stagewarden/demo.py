"""The main job: every guardrail end to end on a fresh local emulator, printing what each did.

Each capability adds its step here. It runs on its own moto_server (a free port on
127.0.0.1) and stops it at the end, so it never touches a running `local up`.
"""

from __future__ import annotations

import json
import uuid
import tempfile
from pathlib import Path
from typing import Any

from stage_policy.loader import PolicyError, loads
from stagewarden import emulator
from stagewarden.cli import print_resources
from stagewarden.explain import table
from stagewarden.invoke import function_spec, invoke
from stagewarden.poll import poll
from stagewarden.trailgen import bulk_download, log_file, log_key, management_event

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


def _step(title: str) -> None:
    print(f"\n=== {title} " + "=" * max(0, 74 - len(title)))


class Demo:
    def __init__(self, template: Path, policy: Path, state: emulator.LocalState):
        self.template, self.policy, self.state = template, policy, state
        self.s3 = emulator.boto_client("s3", state)
        self.sqs = emulator.boto_client("sqs", state)
        self.sns = emulator.boto_client("sns", state)

    def invoke(self, logical_id: str, event: dict[str, Any]) -> Any:
        quiet = {"POWERTOOLS_METRICS_DISABLED": "true"}  # EMF lines would drown the demo's own output
        if "detail-type" in event:  # each EventBridge delivery is a new event: a fresh id, as EventBridge gives it
            event = {**event, "id": str(uuid.uuid4())}
        return invoke(function_spec(self.template, logical_id, self.state), event, self.state.environ() | quiet)

    def inbox(self) -> str:
        """An SQS queue subscribed to the alerts topic, filtered to high and critical findings."""
        url = self.sqs.create_queue(QueueName="demo-secops-inbox")["QueueUrl"]
        arn = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        self.sns.subscribe(
            TopicArn=self.state.refs["AlertsTopic"], Protocol="sqs", Endpoint=arn,
            Attributes={"RawMessageDelivery": "true", "FilterPolicy": json.dumps({"severity": ["high", "critical"]})},
        )
        return url

    def drain(self, url: str) -> list[dict[str, Any]]:
        out = []
        while True:
            batch = self.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"], WaitTimeSeconds=0)
            msgs = batch.get("Messages", [])
            if not msgs:
                return out
            for m in msgs:
                attrs = {k: v["StringValue"] for k, v in m.get("MessageAttributes", {}).items()}
                out.append({"finding": json.loads(m["Body"]), "attributes": attrs})
                self.sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])

    def policy_changed_event(self) -> dict[str, Any]:
        event = json.loads((self.template.parent / "events" / "policy_guard_policy_changed.json").read_text())
        event["detail"]["bucket"]["name"] = self.state.refs["PolicyBucket"]
        return event

    def run(self) -> list[str]:
        summary = []
        _step("1. Stage policy: what each stage allows")
        print(table(loads(self.policy.read_text(), str(self.policy)), str(self.policy)))

        _step("2. A broken policy is rejected with field paths")
        try:
            loads(BROKEN_POLICY, "broken-policy.yaml")
        except PolicyError as exc:
            print("\n".join(exc.lines()))
            summary.append(f"policy: broken policy rejected with {len(exc.problems)} field-path errors")

        _step("3. Local AWS: template.yaml provisioned on moto_server")
        print(f"endpoint {self.state.endpoint}")
        print_resources(self.state)

        _step("4. Policy guard and the finding path (SNS -> filtered SQS subscriber)")
        inbox = self.inbox()
        scheduled = json.loads((self.template.parent / "events" / "policy_guard_scheduled.json").read_text())
        ok = self.invoke("PolicyGuardFunction", scheduled)
        print(f"hourly check: valid={ok['valid']} stages={ok['stages']}")
        location = emulator.policy_location(self.state)
        bucket, _, key = location[5:].partition("/")
        self.s3.put_object(Bucket=bucket, Key=key, Body=BROKEN_POLICY.encode())
        print(f"pushed a broken policy to {location} (as a careless deploy would)")
        bad = self.invoke("PolicyGuardFunction", self.policy_changed_event())
        print(f"on change: valid={bad['valid']} published={bad.get('published')} ({len(bad['errors'])} errors)")
        again = self.invoke("PolicyGuardFunction", scheduled)
        print(f"next hourly check: valid={again['valid']} published={again.get('published')} (same incident: no second alert)")
        delivered = self.drain(inbox)
        for item in delivered:
            f = item["finding"]
            print(f"delivered to subscriber: [{f['severity']}] {f['rule']} {f['resource']}")
            print(f"  summary: {f['summary']}")
            print(f"  message attributes: {item['attributes']}")
            print(f"  first error: {f['evidence']['errors'][0]}")
        self.s3.put_object(Bucket=bucket, Key=key, Body=self.policy.read_bytes())
        fixed = self.invoke("PolicyGuardFunction", self.policy_changed_event())
        print(f"valid policy restored: valid={fixed['valid']}")
        summary.append(f"policy guard: invalid policy detected, {len(delivered)} alert delivered for 2 checks (deduplicated)")
        if len(delivered) != 1:
            raise RuntimeError(f"expected exactly one delivered alert, got {len(delivered)}")
        summary += self.exfiltration(inbox)
        summary += self.retention(inbox)
        summary += self.breakglass(inbox)
        summary += self.alerts()  # last: every alert of the run
        return summary

    def poll(self, logical_id: str) -> Any:
        return poll(self.template, logical_id, self.state, extra_env={"POWERTOOLS_METRICS_DISABLED": "true"})

    def show(self, delivered: list[dict[str, Any]]) -> None:
        for item in delivered:
            f = item["finding"]
            print(f"  alert [{f['severity']}] {f['rule']} stage={f['stage']} principal={f['principal']}")
            print(f"    {f['summary']}")
            print(f"    action: {f['action']}")

    def exfiltration(self, inbox: str) -> list[str]:
        from datetime import datetime, timedelta, timezone

        iam = emulator.boto_client("iam", self.state)
        bucket, role = "acme-lab-data", "DataScientistAlice"
        self.s3.create_bucket(Bucket=bucket)
        self.s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
        self.s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={"EventBridgeConfiguration": {}})
        iam.create_role(RoleName=role, AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::123456789012:root"}, "Action": "sts:AssumeRole"}]}))

        _step("5. Exfiltration: a bulk CLI download from the lab, detected and contained")
        start = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(minutes=6)
        records = bulk_download(role=role, session="alice@example.com", bucket=bucket, objects=1500, start=start,
                                seconds=240, nbytes=120_000)
        key = log_key(start, "demo0bulk")
        body = log_file(records)
        self.s3.put_object(Bucket=self.state.refs["CloudTrailLogBucket"], Key=key, Body=body)
        print(f"alice ran `aws s3 cp --recursive s3://{bucket}/ .` from a laptop: 1500 objects, 172 MiB in 4 minutes")
        print(f"CloudTrail delivered {key} ({len(body)} bytes gzip); S3 -> EventBridge -> ExfilQueue")
        result = self.poll("ExfiltrationFunction")
        print(f"ExfiltrationFunction polled {result.received} message(s) from its queue, {result.failed} failed")
        delivered = self.drain(inbox)
        self.show(delivered)
        for name in iam.list_role_policies(RoleName=role)["PolicyNames"]:
            deny = iam.get_role_policy(RoleName=role, PolicyName=name)["PolicyDocument"]
            deny = json.loads(deny) if isinstance(deny, str) else deny
            print(f"  role {role} now has inline policy {name}: Deny * when "
                  f"{json.dumps(deny['Statement'][0]['Condition'])} (her session only; colleagues on the role keep working)")
        rules = sorted({d["finding"]["rule"] for d in delivered})
        if "exfil.bulk-download" not in rules:
            raise RuntimeError(f"bulk download not detected (got {rules})")

        _step("6. Exfiltration: a backdoor bucket policy, detected and reverted")
        backdoor = {"Version": "2012-10-17", "Statement": [{
            "Sid": "Backdoor", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::999988887777:root"},
            "Action": ["s3:GetObject", "s3:ListBucket"], "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"]}]}
        self.s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(backdoor))
        print(f"someone ran put-bucket-policy on {bucket} granting account 999988887777 read access")
        detail = management_event("PutBucketPolicy", "s3.amazonaws.com",
                                  {"bucketName": bucket, "bucketPolicy": backdoor, "Host": f"{bucket}.s3.amazonaws.com", "policy": ""})
        events = emulator.boto_client("events", self.state)
        events.put_events(Entries=[{"Source": "aws.s3", "DetailType": "AWS API Call via CloudTrail", "Detail": json.dumps(detail)}])
        print("CloudTrail -> EventBridge (management event) -> ExfilQueue")
        result = self.poll("ExfiltrationFunction")
        print(f"ExfiltrationFunction polled {result.received} message(s) from its queue, {result.failed} failed")
        policy_findings = self.drain(inbox)
        self.show(policy_findings)
        try:
            after = self.s3.get_bucket_policy(Bucket=bucket)["Policy"]
        except Exception:  # NoSuchBucketPolicy: the only statement was the backdoor
            after = "(no bucket policy)"
        print(f"  bucket policy of {bucket} now: {after}")
        if "999988887777" in after:
            raise RuntimeError("backdoor bucket policy was not reverted")
        return [
            f"exfiltration: bulk download detected ({', '.join(rules)}), alice's session on {role} denied",
            f"exfiltration: backdoor bucket policy on {bucket} detected and reverted",
        ] + self.schema_gate(inbox, bucket)

    def schema_gate(self, inbox: str, bucket: str) -> list[str]:
        import tempfile

        from gate.engine import profile
        from gate.readers import batches

        from stagewarden.datagen import write_csv

        _step("7. Schema gate: a good and a bad upload to the lab's landing prefix")
        contract = loads(self.policy.read_text(), str(self.policy)).contract("transactions")
        with tempfile.TemporaryDirectory() as tmp:
            base, good, bad = (Path(tmp) / n for n in ("baseline.csv", "good.csv", "bad.csv"))
            write_csv(base, 20000, seed=99)
            with base.open("rb") as fh:
                baseline = profile(contract, batches(fh, "baseline.csv", contract, lambda rows: None))
            location = contract.drift.baseline
            b_bucket, _, b_key = location[5:].partition("/")
            self.s3.put_object(Bucket=b_bucket, Key=b_key, Body=json.dumps(baseline).encode())
            print(f"drift baseline profiled from 20,000 rows and stored at {location}")
            write_csv(good, 5000, seed=3)
            planted = write_csv(bad, 5000, seed=4, dirty=True, per_defect=3, duplicates=2)
            keys = {}
            for path in (good, bad):
                keys[path.name] = f"{contract.prefix}2026-11-22/{path.name}"
                self.s3.put_object(Bucket=bucket, Key=keys[path.name], Body=path.read_bytes())
        print(f"uploaded {keys['good.csv']} (clean) and {keys['bad.csv']} (planted: {planted.counts})")
        result = self.poll("SchemaGateFunction")
        print(f"SchemaGateFunction polled {result.received} message(s) from its queue, {result.failed} failed")
        delivered = self.drain(inbox)
        self.show(delivered)
        reports = self.s3.list_objects_v2(Bucket=bucket, Prefix=contract.reports_prefix).get("Contents", [])
        print(f"  reports written: {', '.join(r['Key'] for r in reports)}")
        promoted = self.s3.list_objects_v2(Bucket=bucket, Prefix=contract.validated_prefix or "-").get("Contents", [])
        print(f"  promoted: {', '.join(p['Key'] for p in promoted) or 'none'}")
        fence = [st for st in json.loads(self.s3.get_bucket_policy(Bucket=bucket)["Policy"])["Statement"]
                 if st["Sid"].startswith("StagewardenGate")]
        for st in fence:
            print(f"  bucket policy statement {st['Sid']}: {st['Effect']} {st['Action']} on {st['Resource']} "
                  f"when {st.get('Condition')}")
        print("  (the emulator does not enforce statements with conditions; tests/unit/schema_gate/test_app.py shows"
              " them refusing a data scientist's reads, forged tags and writes under moto)")
        rules = sorted(d["finding"]["rule"] for d in delivered)
        if "data.quality" not in rules or len(promoted) != 1:
            raise RuntimeError(f"schema gate: expected the bad file flagged and the good one promoted (got {rules}, {promoted})")
        return [f"schema gate: good file passed and promoted, bad file quarantined ({', '.join(rules)})"]

    def namespace(self, policy: Path, **options: Any) -> Any:
        """The arguments of a `stagewarden breakglass` command, against the demo's own emulator."""
        import argparse

        return argparse.Namespace(policy=str(policy), template=str(self.template), stack=None, state=self.state, format="table",
                                  **options)

    def cli(self, func: Any, policy: Path, **options: Any) -> str | None:
        """Run a `stagewarden breakglass` command against the demo's emulator; a refusal is printed as the CLI prints it."""
        from stagewarden.usage import UsageError

        try:
            func(self.namespace(policy, **options))
        except UsageError as exc:
            print(f"stagewarden: {exc} (exit 2)")
            return str(exc)
        return None

    def breakglass_alerts(self, inbox: str) -> list[dict[str, Any]]:
        """The inbox's break-glass alerts (other steps' alerts are theirs to show)."""
        return [d for d in self.drain(inbox) if d["finding"]["rule"].startswith("breakglass.")]

    def breakglass(self, inbox: str) -> list[str]:
        with tempfile.TemporaryDirectory(prefix="stagewarden-demo-policy-") as tmp:
            return self._breakglass(inbox, Path(tmp) / "policy.yaml")

    def _breakglass(self, inbox: str, policy: Path) -> list[str]:
        from datetime import datetime, timezone

        from stagewarden import breakglass as bg
        from stagewarden import breakglass_events as ev

        _step("9. Break glass: an approved grant expires on schedule; an unapproved activation is reverted")
        iam, events = emulator.boto_client("iam", self.state), emulator.boto_client("events", self.state)
        role, oncall, alice = "BreakGlassProd", "arn:aws:iam::123456789012:role/OnCallEngineer", "arn:aws:iam::123456789012:role/DataScientistAlice"
        baseline = {"Version": "2012-10-17", "Statement": [{"Sid": "Baseline", "Effect": "Allow",
                                                            "Principal": {"Service": "ssm.amazonaws.com"}, "Action": "sts:AssumeRole"}]}
        iam.create_role(RoleName=role, AssumeRolePolicyDocument=json.dumps(baseline),
                        Tags=[{"Key": "stagewarden:stage", "Value": "final-prod"}])
        iam.create_role(RoleName="OnCallEngineer", AssumeRolePolicyDocument=json.dumps(baseline))
        # the operator has moved final-prod to enforce (the example policy keeps every stage but the lab in dry run)
        text = self.policy.read_text().replace(
            "  final-prod:                    # locked production: permanent, immutable, service principals only\n",
            "  final-prod:                    # locked production: permanent, immutable, service principals only\n    mode: enforce\n")
        policy.write_text(text)
        bucket, _, key = emulator.policy_location(self.state)[5:].partition("/")
        self.s3.put_object(Bucket=bucket, Key=key, Body=text.encode())
        print(f"final-prod moved to mode: enforce (pushed to {emulator.policy_location(self.state)})")

        def show_role(label: str) -> dict[str, Any]:
            r = iam.get_role(RoleName=role)["Role"]
            inline = iam.list_role_policies(RoleName=role)["PolicyNames"]
            principals = [st.get("Principal") for st in r["AssumeRolePolicyDocument"]["Statement"]]
            tags = {t["Key"]: t["Value"] for t in r.get("Tags", []) if t["Key"] != "stagewarden:stage"}
            print(f"  {role} {label}: trust principals {principals}; inline policies {inline}; approval tags {tags or '-'}")
            return r

        print("$ stagewarden breakglass sweep            # records each break-glass role's trust policy as its baseline")
        self.cli(bg.cmd_sweep, policy, now=None)
        print("$ stagewarden breakglass grant --role BreakGlassProd --principal ...:role/OnCallEngineer --approver intern@example.com ...")
        refused = self.cli(bg.cmd_grant, policy, role=role, principal=oncall, approver="intern@example.com", ticket="INC-4711",
                           duration="90m", reason="orders table corrupt", tag=None)
        print("$ stagewarden breakglass grant --role BreakGlassProd --principal ...:role/OnCallEngineer "
              "--approver vp-engineering@example.com --ticket INC-4711 --duration 90m")
        self.cli(bg.cmd_grant, policy, role=role, principal=oncall, approver="vp-engineering@example.com", ticket="INC-4711",
                 duration="90m", reason="orders table corrupt", tag=None)
        show_role("now")
        granted = self.breakglass_alerts(inbox)
        self.show(granted)
        warden, _ = bg.connect(self.namespace(policy))
        [grant] = [g for g in warden.store.grants() if g.status == "active"]
        deadline_doc = iam.get_role_policy(RoleName=role, PolicyName="StagewardenBreakGlassDeadline")["PolicyDocument"]
        print(f"  StagewardenBreakGlassDeadline: Deny * when aws:CurrentTime > "
              f"{deadline_doc['Statement'][0]['Condition']['DateGreaterThan']['aws:CurrentTime']}")

        now = datetime.now(timezone.utc).replace(microsecond=0)
        detail = ev.assume_role(f"arn:aws:iam::123456789012:role/{role}", "oncall@example.com",
                                ev.session_identity("OnCallEngineer", "oncall@example.com"), now)
        events.put_events(Entries=[{"Source": "aws.sts", "DetailType": "AWS API Call via CloudTrail", "Detail": json.dumps(detail)}])
        result = self.poll("BreakGlassFunction")
        print(f"the on-call engineer assumed {role}; CloudTrail -> EventBridge -> BreakGlassQueue -> BreakGlassFunction "
              f"({result.received} message(s), {result.failed} failed): session kept for the review")

        scheduler = emulator.boto_client("scheduler", self.state)
        schedule = scheduler.get_schedule(Name=grant.schedule, GroupName=self.state.refs["BreakGlassScheduleGroup"])
        print(f"one-time schedule {schedule['Name']}: {schedule['ScheduleExpression']} UTC -> BreakGlassFunction")
        print("moto stores schedules but never fires them: the demo plays Scheduler and invokes the target with the schedule's "
              "input, context attributes filled in")
        payload = json.loads(schedule["Target"]["Input"].replace("<aws.scheduler.scheduled-time>", grant.deadline)
                             .replace("<aws.scheduler.execution-id>", "demo-execution-1"))
        fired = self.invoke("BreakGlassFunction", payload)
        print(f"  expiry: {fired['result']}; sessions issued before {fired['revoked_before']} revoked; review due {fired['review_due']}")
        after = show_role("after expiry")
        replay = self.invoke("BreakGlassFunction", payload)
        print(f"  the same firing delivered again: returned the first run's result ({replay['result']}), changed nothing "
              f"(one expired record, {len(warden.store.reviews())} review)")
        review = warden.store.review(grant.grant_id)
        print(f"  review record: grant {review.grant_id}, principal {review.principal}, approver {review.approver}, "
              f"ticket {review.ticket}, {len(review.sessions)} session(s), due {review.due}")

        print("alice tags the role approved-by=vp-engineering@example.com herself and opens its trust to her own role")
        forged = {"stagewarden:approved-by": "vp-engineering@example.com", "stagewarden:ticket": "INC-0000",
                  "stagewarden:expires-at": grant.deadline}
        iam.tag_role(RoleName=role, Tags=[{"Key": k, "Value": v} for k, v in forged.items()])
        iam.update_assume_role_policy(RoleName=role, PolicyDocument=json.dumps(ev.opened_trust(alice)))
        who = ev.session_identity("DataScientistAlice", "alice@example.com")
        for d in (ev.tag_role(role, forged, who, now), ev.update_trust(role, ev.opened_trust(alice), who, now)):
            events.put_events(Entries=[{"Source": "aws.iam", "DetailType": "AWS API Call via CloudTrail", "Detail": json.dumps(d)}])
        result = self.poll("BreakGlassFunction")
        print(f"BreakGlassFunction polled {result.received} message(s), {result.failed} failed")
        delivered = self.breakglass_alerts(inbox)
        self.show(delivered)
        final = show_role("now")
        rules = sorted(d["finding"]["rule"] for d in delivered)
        statements = final["AssumeRolePolicyDocument"]["Statement"]
        if refused is None or fired["result"] != "expired" or set(rules) != {"breakglass.refused"} or len(statements) != 1 \
                or len(after["AssumeRolePolicyDocument"]["Statement"]) != 1 or [d["finding"]["rule"] for d in granted] != [
                    "breakglass.granted"]:
            raise RuntimeError(f"break glass: expected a refusal, an expiry and a revert (got {rules}, {fired})")
        return [f"break glass: refused a non-approver, granted {grant.grant_id} with an IAM deadline, expired it on schedule "
                "(baseline restored, sessions revoked, review created)",
                f"break glass: an unapproved activation (self-tagged approval) reverted at once ({len(rules)} critical "
                "breakglass.refused alerts)"]


    def alerts(self) -> list[str]:
        from courier.render import as_text

        from stage_policy.findings import Finding
        from stage_policy.publish import FindingPublisher
        from stagewarden.sink import Sink, point_secret

        _step("10. Alert delivery: every finding of this run, as Slack shows it, and in Security Hub")
        policy = loads(self.policy.read_text(), str(self.policy))
        secret = policy.alerts.slack_webhook_secret or "stagewarden/slack-webhook"
        sqs = self.sqs
        queue, dlq = self.state.attrs["AlertQueue.QueueUrl"], self.state.attrs["AlertDeadLetterQueue.QueueUrl"]
        with Sink() as sink:
            point_secret(emulator.boto_client("secretsmanager", self.state), secret, sink.url)
            print(f"local Slack sink at {sink.shown_url}; secret {secret} points at it (the token is never printed)")
            result = self.poll("AlertFunction")
            posts = sink.wait_for(1)
            print(f"AlertFunction took {result.received} finding(s) from AlertQueue (subscribed raw to the alerts topic), "
                  f"{result.failed} failed; {len(posts)} Slack post(s)")
            for post in posts:
                print("\n" + "\n".join("  | " + line for line in as_text(post).splitlines()))
            hub = emulator.boto_client("securityhub", self.state).get_findings(MaxResults=100)["Findings"]
            print(f"\nSecurity Hub holds {len(hub)} finding(s), one per incident:")
            for f in hub:
                print(f"  {f['Severity']['Label']:<8} {f['Id'][:70]:<70} count {f['ProductFields']['stagewarden/count']}")

            _step("11. Alert delivery under faults: Slack down, the DLQ, a redrive")
            sink.set_faults(share_500=1.0)
            outage = Finding(rule="audit.tamper", severity="critical", resource="arn:aws:cloudtrail:us-east-1:123456789012:trail/org-trail",
                             principal="arn:aws:iam::123456789012:role/DataScientistAlice",
                             summary="CloudTrail trail org-trail: DeleteTrail (deleted the trail), published while Slack is down.")
            FindingPublisher(self.sns, self.state.refs["AlertsTopic"]).publish(outage)
            result = self.poll("AlertFunction")
            waiting = sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=10).get("Messages", [])
            print(f"the sink answers 500 to every post: {result.received} receive(s), {result.failed} failure(s), "
                  f"answers {dict(sink.answers)}; {len(waiting)} finding(s) now in AlertDeadLetterQueue")
            print("(in AWS the AlertDeadLettersAlarm mails the operations topic's AlertEmail subscription)")
            sink.set_faults(share_429=0.5, retry_after=0)
            for m in waiting:  # an operator's redrive once Slack is back
                sqs.send_message(QueueUrl=queue, MessageBody=m["Body"])
                sqs.delete_message(QueueUrl=dlq, ReceiptHandle=m["ReceiptHandle"])
            before = len(sink.posts)
            self.poll("AlertFunction")
            redriven = sink.wait_for(before + len(waiting))[before:]
            print(f"redriven with Slack back (answering 429 to half the posts, retried after Retry-After): "
                  f"{len(redriven)} delivered")
            for post in redriven:
                print("\n" + "\n".join("  | " + line for line in as_text(post).splitlines()))
            if not posts or len(waiting) != 1 or len(redriven) != 1 or sink.token in json.dumps(self.state.resources):
                raise RuntimeError("alert delivery: expected posts, one dead letter and its redelivery")
        return [f"alerts: {len(posts)} Slack post(s) and {len(hub)} Security Hub finding(s) for this run's incidents; "
                "a finding sent while Slack was down waited in the DLQ and was delivered on redrive"]


    def retention(self, inbox: str) -> list[str]:
        import os
        from datetime import datetime, timedelta, timezone

        from stagewarden.cli import main as cli

        lab, prod = "acme-lab-scratch", "acme-prod-out"
        events_dir = self.template.parent / "events" / "retention"

        def event(name: str, bucket: str) -> dict[str, Any]:
            data = json.loads((events_dir / name).read_text())
            data["detail"]["requestParameters"]["bucketName"] = bucket
            data["detail"]["eventID"] += f"-{bucket}"  # one CloudTrail event per bucket (a replayed one is acted on once)
            return data

        def rule_ids(bucket: str) -> list[str]:
            try:
                return [r["ID"] for r in self.s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]]
            except Exception:  # noqa: BLE001 - NoSuchLifecycleConfiguration
                return []

        def count(bucket: str) -> tuple[int, int]:
            page = self.s3.list_object_versions(Bucket=bucket)
            return len(page.get("Versions", [])), len(page.get("DeleteMarkers", []))

        _step("8. Retention: a tampered lab lifecycle is brought back to policy, expired versions swept, prod untouched")
        for bucket in (lab, prod):
            self.s3.create_bucket(Bucket=bucket)
            self.s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
        for key in ("raw/2026-11/events.csv", "raw/2026-11/events.csv", "raw/2026-11/users.csv", "aggregated/daily.parquet",
                    "aggregated/daily.parquet"):
            self.s3.put_object(Bucket=lab, Key=key, Body=b"data")
        self.s3.delete_object(Bucket=lab, Key="raw/2026-11/users.csv")
        self.s3.put_object(Bucket=prod, Key="published/model-v1.json", Body=b"{}")
        tampered = [
            {"ID": "stagewarden-class-raw/", "Status": "Enabled", "Filter": {"Prefix": "raw/"}, "Expiration": {"Days": 3650}},
            {"ID": "cleanup", "Status": "Enabled", "Filter": {"Prefix": "aggregated/"}, "Expiration": {"Days": 1},
             "Transitions": [{"Days": 0, "StorageClass": "GLACIER_IR"}]},
        ]
        self.s3.put_bucket_lifecycle_configuration(Bucket=lab, LifecycleConfiguration={"Rules": tampered})
        self.s3.put_bucket_lifecycle_configuration(Bucket=prod, LifecycleConfiguration={"Rules": [
            {"ID": "tidy", "Status": "Enabled", "Filter": {"Prefix": ""}, "Expiration": {"Days": 365}}]})
        print(f"{lab}: raw/ kept ten years and an owner rule expiring aggregated/ after 1 day; {count(lab)[0]} versions, "
              f"{count(lab)[1]} delete marker")
        print(f"{prod} (final-prod, dry run in this policy): an expiration rule; 1 published object")

        result = self.invoke("RetentionFunction", event("put_bucket_lifecycle.eventbridge.json", lab))
        print(f"event path (PutBucketLifecycle via EventBridge): {len(result['findings'])} finding(s); "
              f"{lab} rules now {rule_ids(lab)}")
        result = self.invoke("RetentionFunction", event("put_bucket_lifecycle.eventbridge.json", prod))
        print(f"event path on {prod}: {len(result['findings'])} finding(s); rules still {rule_ids(prod)} (final-prod is "
              "dry run in this policy: reported, not changed)")
        self.show(self.drain(inbox))

        config = json.loads((events_dir / "config_periodic.json").read_text())
        verdicts = self.invoke("RetentionFunction", config)["evaluations"]
        for v in verdicts:
            if v["ComplianceResourceId"] in (lab, prod):
                print(f"AWS Config rule (periodic, TESTMODE): {v['ComplianceResourceId']} {v['ComplianceType']}: {v['Annotation'][:110]}")

        daily = self.invoke("RetentionFunction", json.loads((events_dir / "schedule.json").read_text()))
        print(f"daily schedule as of the clock: {daily['buckets']} buckets reconciled, {daily['outcomes']} "
              "(nothing written today is past retention)")

        when = (datetime.now(timezone.utc) + timedelta(days=45)).strftime("%Y-%m-%dT%H:%M:%SZ")
        print(f"moto stamps every write with today's date, so the sweep runs as of {when} (45 days on), as an operator would:")
        print(f"$ stagewarden retention apply --policy {self.policy.name} --bucket {lab} --bucket {prod} --now {when}")
        saved = dict(os.environ)
        os.environ.update(self.state.environ())
        try:
            code = cli(["retention", "apply", "--policy", str(self.policy), "--bucket", lab, "--bucket", prod, "--now", when])
        finally:
            os.environ.clear()
            os.environ.update(saved)
        after_lab, after_prod = count(lab), count(prod)
        print(f"  {lab}: {after_lab[0]} version(s), {after_lab[1]} delete marker(s) left (aggregated/ keeps 90 days; raw/ 30, "
              f"old versions 7); {prod}: {after_prod[0]} version(s), rules {rule_ids(prod)}")
        if code != 0 or after_lab != (1, 0) or after_prod != (1, 0) or "stagewarden-class-raw/" not in rule_ids(lab):
            raise RuntimeError(f"retention: expected the lab swept to 1 version and prod untouched (got {after_lab}, {after_prod})")
        return [f"retention: {lab} lifecycle restored by the event path, expired versions swept (4 versions, 1 marker), "
                f"{prod} untouched and reported"]

def run(template: Path, policy: Path) -> int:
    with tempfile.TemporaryDirectory(prefix="stagewarden-demo-") as tmp:
        proc, endpoint = emulator.start_server(Path(tmp) / "moto_server.log")
        try:
            state = emulator.LocalState(endpoint=endpoint, pid=proc.pid, stack_name="stagewarden-demo")
            # the demo plays an operator who has opted in: the policy's per-stage modes decide
            emulator.provision(template, state, {"LogLevel": "WARNING", "DefaultRemediationMode": "enforce"})
            emulator.seed_policy(state, policy)
            summary = Demo(template, policy, state).run()
        finally:
            emulator.stop_pid(proc.pid)
    _step("Summary")
    for line in summary:
        print(f"  - {line}")
    return 0
