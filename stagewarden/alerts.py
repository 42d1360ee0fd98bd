"""`stagewarden alerts test` and `stagewarden local sink`: alert delivery, tried end to end.

``alerts test --policy PATH`` publishes one sample finding of each severity to the alerts
topic, the way every function publishes (``FindingPublisher``, so ``alerts.min_severity``
and dedup apply), then, on the local emulator, lets AlertFunction take them from AlertQueue
and shows what reached the local Slack sink, Security Hub and the e-mail filter. Against a
deployed stack (``--topic-arn``) it publishes and says where to look.

No webhook URL is ever printed: the sink's is shown with its token redacted.
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from pathlib import Path
from typing import Any

SEVERITIES = ("low", "medium", "high", "critical")
EXIT_OK, EXIT_MISSED, EXIT_BAD_INPUT = 0, 1, 2


def _err(message: str) -> int:
    print(f"stagewarden: {message}", file=sys.stderr)
    return EXIT_BAD_INPUT


def samples(run_id: str | None = None) -> list[Any]:
    """One finding per severity, each its own incident (a fresh run id), so dedup never holds a test back."""
    from stage_policy.findings import Finding

    run_id = run_id or uuid.uuid4().hex[:8]
    return [Finding(
        rule="alerts.test", severity=severity, stage=None, resource=f"arn:aws:sns:::stagewarden-alerts-test/{run_id}",
        principal=None, summary=f"Stagewarden alert test ({severity}, run {run_id}): if you can read this, {severity} alerts reach you.",
        evidence={"run": run_id, "sent_by": "stagewarden alerts test"}, action="none (a test)",
        dedup_key=f"alerts.test:{run_id}:{severity}") for severity in SEVERITIES]


def email_floor(state: Any) -> str | None:
    if not state.parameters.get("AlertEmail"):
        return None
    return str(state.parameters.get("AlertEmailMinSeverity") or "high")


def cmd_alerts_test(args: Any) -> int:
    from stage_policy.findings import at_least
    from stage_policy.loader import PolicyError, load
    from stagewarden import emulator

    try:
        policy = load(args.policy)
    except PolicyError as exc:
        print("\n".join(exc.lines()), file=sys.stderr)
        return EXIT_BAD_INPUT
    template = Path(args.template)
    state = None if args.topic_arn else emulator.read_state(template)
    if state is not None and not emulator.is_alive(state.endpoint):
        state = None
    if state is None and not args.topic_arn:
        return _err("no local emulator is running and no --topic-arn was given "
                    "(start one with `stagewarden local up`, or give the stack's AlertsTopicArn output)")
    findings = samples()
    alerts = policy.alerts
    print(f"policy {args.policy}: alerts.min_severity={alerts.min_severity}, "
          f"slack_webhook_secret={alerts.slack_webhook_secret or '(none: Slack off)'}, security_hub={alerts.security_hub}")
    if state is None:
        return _deployed(args.topic_arn, findings, alerts)
    return _local(template, Path(args.policy), state, findings, alerts, at_least)


def _deployed(topic_arn: str, findings: list[Any], alerts: Any) -> int:
    import boto3

    from stage_policy.publish import FindingPublisher

    publisher = FindingPublisher(boto3.client("sns"), topic_arn)
    for f in findings:
        result = publisher.publish(f, alerts)
        print(f"  {f.severity:<8} {'published ' + str(result.message_id) if result.published else 'not published: ' + result.reason}")
    print("AlertFunction delivers them within seconds: look in the Slack channel, in Security Hub "
          f"(findings with GeneratorId stagewarden/alerts.test) and in the AlertEmail inbox. Run id {findings[0].evidence['run']}.")
    return EXIT_OK


def _local(template: Path, policy_path: Path, state: Any, findings: list[Any], alerts: Any, at_least: Any) -> int:
    from courier.asff import finding_id
    from courier.render import as_text

    from stage_policy.publish import FindingPublisher
    from stagewarden import emulator
    from stagewarden.poll import poll
    from stagewarden.sink import Sink, point_secret

    location = emulator.seed_policy(state, policy_path)
    print(f"the emulator's functions now read this policy ({location})")
    secrets = emulator.boto_client("secretsmanager", state)
    with Sink() as sink:
        previous = None
        if alerts.slack_webhook_secret:
            previous = point_secret(secrets, alerts.slack_webhook_secret, sink.url)
            print(f"secret {alerts.slack_webhook_secret} points at the local sink {sink.shown_url} for this test")
        try:
            publisher = FindingPublisher(emulator.boto_client("sns", state), state.refs["AlertsTopic"],
                                         emulator.boto_client("dynamodb", state), state.refs["StateTable"])
            published = {f.severity: publisher.publish(f, alerts).published for f in findings}
            result = poll(template, "AlertFunction", state, extra_env={"POWERTOOLS_METRICS_DISABLED": "true",
                                                                        "POWERTOOLS_LOG_LEVEL": "WARNING"})
            expected_posts = sum(1 for f in findings if published[f.severity] and alerts.slack_webhook_secret)
            posts = sink.wait_for(expected_posts, timeout=5)
        finally:
            if alerts.slack_webhook_secret and previous is not None:
                secrets.put_secret_value(SecretId=alerts.slack_webhook_secret, SecretString=previous)
    hub = {}
    if alerts.security_hub:
        paginator = emulator.boto_client("securityhub", state).get_paginator("get_findings")
        hub = {f["Id"]: f for page in paginator.paginate() for f in page["Findings"]}
    posted = {p["blocks"][0]["text"]["text"].split(":", 1)[0].lower() for p in posts}
    floor = email_floor(state)
    print(f"\nAlertFunction took {result.received} message(s) from AlertQueue, {result.failed} failed\n")
    print(f"  {'severity':<9}{'published':<11}{'Slack':<8}{'Security Hub':<14}e-mail (AlertEmail filter)")
    missed = 0
    for f in findings:
        pub = published[f.severity]
        slack = "posted" if f.severity in posted else ("-" if not (pub and alerts.slack_webhook_secret) else "MISSING")
        in_hub = "imported" if finding_id(f) in hub else ("-" if not (pub and alerts.security_hub) else "MISSING")
        mail = "-" if floor is None else ("would mail" if pub and at_least(f.severity, floor) else "filtered")
        missed += (slack == "MISSING") + (in_hub == "MISSING")
        print(f"  {f.severity:<9}{'yes' if pub else 'no (min)':<11}{slack:<8}{in_hub:<14}{mail}")
    for p in posts:
        print("\n--- as Slack shows it " + "-" * 50)
        print(as_text(p))
    if missed:
        print(f"\n{missed} delivery(ies) missing: see `stagewarden local status` and the AlertDeadLetterQueue", file=sys.stderr)
    return EXIT_MISSED if missed else EXIT_OK


def cmd_local_sink(args: Any) -> int:
    """Run a sink in the foreground and point the emulator's webhook secret at it, until Ctrl-C."""
    from courier.render import as_text

    from stagewarden import emulator
    from stagewarden.sink import Faults, Sink, point_secret

    template = Path(args.template)
    state = emulator.read_state(template)
    if state is None or not emulator.is_alive(state.endpoint):
        return _err("no emulator is running (stagewarden local up)")
    if not 0 <= args.fail_429 + args.fail_500 <= 1:
        return _err("--fail-429 and --fail-500 are shares of the posts: together between 0 and 1")
    record = emulator.state_path(template).parent / "sink.jsonl"

    def show(post: Any) -> None:
        print(f"\n--- post received {time.strftime('%H:%M:%S', time.localtime(post.at))} " + "-" * 40)
        print(as_text(post.payload), flush=True)

    sink = Sink(port=args.port, faults=Faults(args.fail_429, args.fail_500, args.retry_after), record=record, on_post=show)
    point_secret(emulator.boto_client("secretsmanager", state), args.secret, sink.url)
    print(f"local Slack sink at {sink.shown_url}; secret {args.secret} on the emulator points at it")
    print(f"answering 429 to {args.fail_429:.0%} and 500 to {args.fail_500:.0%} of posts; posts recorded in {record}")
    print("deliver with `stagewarden local poll AlertFunction`; Ctrl-C stops the sink", flush=True)
    try:
        sink.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        sink._server.server_close()
    print(f"\nsink stopped: {len(sink.posts)} post(s) accepted, answers {dict(sink.answers)}")
    return EXIT_OK


def add_parsers(sub: Any, local: Any, with_template: Any) -> None:
    """`alerts test` and `local sink` (registered by stagewarden.cli)."""
    alerts = sub.add_parser("alerts", help="alert delivery (Slack, Security Hub, e-mail)").add_subparsers(dest="action", required=True)
    p = with_template(alerts.add_parser("test", help="send one sample finding of each severity through the real delivery path"))
    p.add_argument("--policy", required=True, help="the policy whose alerts section to try")
    p.add_argument("--topic-arn", help="a deployed stack's AlertsTopicArn (default: the local emulator)")
    p.set_defaults(func=cmd_alerts_test)
    p = with_template(local.add_parser("sink", help="a local Slack on 127.0.0.1 that records posts (fault injection: --fail-429/--fail-500)"))
    p.add_argument("--port", type=int, default=0, help="default: a free port")
    p.add_argument("--secret", default="stagewarden/slack-webhook", help="the webhook secret to point at the sink")
    p.add_argument("--fail-429", type=float, default=0.0, metavar="SHARE", help="answer 429 to this share of posts")
    p.add_argument("--fail-500", type=float, default=0.0, metavar="SHARE", help="answer 500 to this share of posts")
    p.add_argument("--retry-after", type=float, default=1.0, metavar="SECONDS", help="Retry-After of the 429s (default 1)")
    p.set_defaults(func=cmd_local_sink)
