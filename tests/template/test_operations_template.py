"""Operations in template.yaml: alarms on the operations topic, the dashboard, concurrency chosen per function."""

from __future__ import annotations

import json

import pytest

from tests.helpers import ROOT, deployed, translated_template

FUNCTIONS = ("PolicyGuardFunction", "ExfiltrationFunction", "SchemaGateFunction", "RetentionFunction", "AlertFunction",
             "BreakGlassFunction")


@pytest.fixture(scope="module")
def resources() -> dict[str, dict]:
    return deployed(translated_template())


def alarms(resources: dict[str, dict]) -> dict[str, dict]:
    return {k: r["Properties"] for k, r in resources.items() if r["Type"] == "AWS::CloudWatch::Alarm"}


def test_every_function_has_an_error_and_a_throttle_alarm(resources) -> None:
    watched = {(a["MetricName"], a["Dimensions"][0]["Value"]) for a in alarms(resources).values() if a["Namespace"] == "AWS/Lambda"}
    names = {fn: resources[fn]["Properties"].get("FunctionName") or deployed_name(fn) for fn in FUNCTIONS}
    assert watched == {(metric, names[fn]) for fn in FUNCTIONS for metric in ("Errors", "Throttles")}
    for alarm in alarms(resources).values():
        if alarm["Namespace"] == "AWS/Lambda":  # any error or throttle at all in 5 minutes
            assert (alarm["Statistic"], alarm["Threshold"], alarm["ComparisonOperator"]) == ("Sum", 0, "GreaterThanThreshold")


def deployed_name(logical: str) -> str:
    from tests.helpers import SUFFIX

    return f"stagewarden-lab-{logical}-{SUFFIX}"


def test_every_alarm_notifies_the_operations_topic_on_alarm_and_on_recovery(resources) -> None:
    topic = resources["OperationsTopic"]
    assert topic["Type"] == "AWS::SNS::Topic"
    ops = "arn:aws:sns:us-east-1:123456789012:stagewarden-lab-OperationsTopic-A1B2C3D4E5F6G"
    assert {k: (a["AlarmActions"], a["OKActions"]) for k, a in alarms(resources).items()} == {
        k: ([ops], [ops]) for k in alarms(resources)}
    # none is missing data's victim: no data (an idle function, an empty queue) is not an alarm
    assert {a["TreatMissingData"] for a in alarms(resources).values()} == {"notBreaching"}


def test_the_exfiltration_backlog_alarm_watches_the_age_of_the_oldest_log_file(resources) -> None:
    alarm = alarms(resources)["ExfilBacklogAlarm"]
    assert (alarm["Namespace"], alarm["MetricName"]) == ("AWS/SQS", "ApproximateAgeOfOldestMessage")
    assert alarm["Dimensions"] == [{"Name": "QueueName", "Value": "stagewarden-lab-ExfilQueue-A1B2C3D4E5F6G"}]
    assert alarm["Threshold"] * alarm["EvaluationPeriods"] >= 900  # CloudTrail itself delivers every ~5 minutes


def dashboard(resources: dict[str, dict]) -> list[dict]:
    body = json.loads(resources["OperationsDashboard"]["Properties"]["DashboardBody"])
    return [w["properties"] for w in body["widgets"] if w["type"] == "metric"]


def plotted(resources: dict[str, dict]) -> set[tuple[str, str, str]]:
    """(namespace, metric, dimension value) of every metric on the dashboard."""
    return {(m[0], m[1], m[3]) for w in dashboard(resources) for m in w["metrics"] if isinstance(m[0], str)}


def test_the_dashboard_plots_findings_by_rule_and_severity_as_the_functions_emit_them(resources) -> None:
    from stage_policy.observability import FINDINGS_METRIC

    # the namespace every function's Powertools Metrics writes to: one per stack
    namespaces = {resources[fn]["Properties"]["Environment"]["Variables"]["POWERTOOLS_METRICS_NAMESPACE"] for fn in FUNCTIONS}
    assert namespaces == {"Stagewarden/stagewarden-lab"}
    expressions = [m[0]["expression"] for w in dashboard(resources) for m in w["metrics"] if isinstance(m[0], dict)]
    # count_finding's dimensions (tests/unit/stage_policy/test_finding_metrics.py): service, rule, severity
    assert expressions == [
        f"SEARCH('{{\"Stagewarden/stagewarden-lab\",rule,service,severity}} MetricName=\"{FINDINGS_METRIC}\"', 'Sum', 300)"]


def test_the_dashboard_plots_errors_throttles_dead_letters_backlog_and_sweep_durations(resources) -> None:
    names = {fn: deployed_name(fn) for fn in FUNCTIONS}
    queues = {k: resources[k]["Properties"].get("QueueName") or deployed_name(k)
              for k, r in resources.items() if r["Type"] == "AWS::SQS::Queue"}
    dead_letters = {q for k, q in queues.items() if "DeadLetter" in k}
    metrics = plotted(resources)
    for fn in FUNCTIONS:
        assert {("AWS/Lambda", "Errors", names[fn]), ("AWS/Lambda", "Throttles", names[fn])} <= metrics
    assert {("AWS/SQS", "ApproximateNumberOfMessagesVisible", q) for q in dead_letters} <= metrics and len(dead_letters) == 6
    # the sweeps run inside the retention (daily) and break-glass (5-minute) functions
    assert {("AWS/Lambda", "Duration", names["RetentionFunction"]), ("AWS/Lambda", "Duration", names["BreakGlassFunction"])} <= metrics
    assert ("AWS/SQS", "ApproximateAgeOfOldestMessage", queues["ExfilQueue"]) in metrics
    # every plotted resource exists in the stack (no widget names a function or queue that is not there)
    known = set(names.values()) | set(queues.values())
    assert {value for _, _, value in metrics} <= known


def test_each_function_has_reserved_concurrency_and_its_queue_never_invokes_beyond_it(resources) -> None:
    reserved = {fn: resources[fn]["Properties"]["ReservedConcurrentExecutions"] for fn in FUNCTIONS}
    assert reserved == {"PolicyGuardFunction": 1, "ExfiltrationFunction": 10, "SchemaGateFunction": 10, "RetentionFunction": 2,
                        "AlertFunction": 2, "BreakGlassFunction": 3}
    mappings = {next(fn for fn in FUNCTIONS if fn in r["Properties"]["FunctionName"]): r["Properties"]
                for r in resources.values() if r["Type"] == "AWS::Lambda::EventSourceMapping"}
    assert set(mappings) == {"ExfiltrationFunction", "SchemaGateFunction", "AlertFunction", "BreakGlassFunction"}
    for fn, mapping in mappings.items():
        # a throttled receive counts towards the queue's maxReceiveCount: the poller must not outrun the reservation
        assert 2 <= mapping["ScalingConfig"]["MaximumConcurrency"] <= reserved[fn], fn
    # the account keeps Lambda's minimum of 100 unreserved executions on the default quota of 1,000
    assert sum(reserved.values()) <= 900 - 100


def test_the_readme_documents_each_alarm_and_the_deployers_dashboard_permission() -> None:
    readme = (ROOT / "README.md").read_text()
    operations = readme.split("\n## Operations\n", 1)[1].split("\n## ", 1)[0]
    for logical in alarms(deployed(translated_template())):
        assert f"`{logical}`" in operations, f"README, Operations: no runbook entry for {logical}"
    assert "cloudwatch:PutDashboard" in readme.split("**The deployer's IAM permissions.**", 1)[1].split("\n\n", 1)[0]
