"""Scale: what one ExfiltrationFunction invocation sustains, and what a 10,000-bucket organisation costs.

Run: make bench  (or: .venv/bin/python -W ignore bench/scale.py); writes bench/out/scale.json.
     .venv/bin/python bench/scale.py --derive recomputes the derived figures from that file (new assumptions).

Measured (one process, pinned to one core, CPU time of this process: time.process_time):
  template.yaml is provisioned under moto in-process (the emulator's provisioner), the example
  policy pushed, and 40 realistic CloudTrail log files (stagewarden.trailgen: 20 of everyday lab
  traffic, 100 identities, and 20 of notebook traffic, ~900 distinct sessions per file; 1,000
  S3 data events each, consecutive 5-minute spans) are delivered to the trail bucket. The
  handler (exfil.handler.lambda_handler, imported once as in a warm container) is invoked with
  SQS batches of the template's BatchSize, each record the EventBridge "Object Created" event of
  one file. Per batch, alternating in the same run:
    baseline = gzip decompression + orjson parsing of the batch's files (the least any reader does);
    handler  = the whole invocation: S3 read, detection, windows, replay record, audit, findings.
  botocore's before-call/after-call hooks count every AWS call by operation and measure the CPU
  spent inside each emulated call (botocore + moto answering it in this process): in Lambda that
  part is network wait, not CPU, so it is reported apart and subtracted. Medians over batches.
  The first invocation (cold start) is excluded and reported apart.

Derived (stated assumptions, README "Performance", "Scale"): records per second one invocation
sustains at the template's MemorySize, the concurrency a 10,000-bucket organisation needs, and
its monthly cost in Lambda, SQS, DynamoDB, S3 reads of log files and CloudTrail data events.
"""

from __future__ import annotations

import gzip
import json
import math
import os
import statistics
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import orjson
import yaml

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
sys.path[:0] = [str(ROOT / "layers" / "stage_policy"), str(ROOT / "functions" / "exfiltration"), str(ROOT)]

from stagewarden.trailgen import high_cardinality, log_file, log_key, workload  # noqa: E402

PER_FILE = 1000
FILES_PER_KIND = int(os.environ.get("BENCH_SCALE_FILES", "20"))

# ------------------------------------------------------------------ assumptions of the cost model
#: AWS list prices, us-east-1, x86, from AWS's public pricing pages as published in 2025 (DynamoDB on-demand
#: after its November 2024 reduction); not re-checked on the day of the run (no web access from the bench machine).
PRICES = {
    "date": "2025 list prices (DynamoDB on-demand as reduced in November 2024); us-east-1",
    "lambda_gb_second": 0.0000166667,
    "lambda_per_million_requests": 0.20,
    "sqs_per_million_requests": 0.40,  # standard queue, each 64 KB chunk of a request (our messages are < 2 KB)
    "dynamodb_per_million_wru": 0.625,  # on-demand
    "dynamodb_per_million_rru": 0.125,
    "s3_get_per_thousand": 0.0004,
    "cloudtrail_data_events_per_100k": 0.10,
}
ORG = {
    "buckets": 10_000,
    "data_events_per_bucket_per_day": 1_000,  # object-level reads and writes, averaged over busy and idle buckets
    "peak_to_average": 10,  # the busiest hour of the month, against the monthly average rate
    "records_per_log_file": PER_FILE,  # CloudTrail delivers a file per account and region about every 5 minutes
    "days_per_month": 30,
}
#: Lambda gives a function CPU in proportion to memory: one full vCPU at 1,769 MB.
FULL_VCPU_MB = 1769
#: Latencies of the calls an invocation waits on (in-region, from Lambda): S3 GetObject of a ~100 KB
#: log file, each DynamoDB write or read, each SNS publish. Assumed, not measured here.
LATENCY_S = {"s3_get": 0.040, "dynamodb": 0.006, "sns": 0.020, "other": 0.010}


def template_settings() -> dict:
    class Loader(yaml.SafeLoader):
        pass

    Loader.add_multi_constructor("!", lambda loader, suffix, node: None)
    template = yaml.load((ROOT / "template.yaml").read_text(), Loader=Loader)
    fn = template["Resources"]["ExfiltrationFunction"]["Properties"]
    queue = fn["Events"]["Queue"]["Properties"]
    return {"memory_mb": fn["MemorySize"], "timeout_s": fn["Timeout"], "batch_size": queue["BatchSize"],
            "maximum_concurrency": queue["ScalingConfig"]["MaximumConcurrency"],
            "reserved_concurrency": fn["ReservedConcurrentExecutions"]}


def corpus() -> list[tuple[str, list[dict]]]:
    files = []
    for i in range(FILES_PER_KIND * 2):
        start = datetime(2026, 11, 22, 8, 0, tzinfo=timezone.utc) + timedelta(minutes=5 * (i // 2))
        kind = "workload" if i % 2 == 0 else "notebooks"
        records = workload(PER_FILE, seed=7000 + i, start=start) if kind == "workload" else \
            high_cardinality(PER_FILE, seed=8000 + i, start=start)
        files.append((kind, records))
    return files


def run() -> dict:
    import boto3
    from moto import mock_aws

    from stagewarden.cfn import load_template, parameter_defaults
    from stagewarden.emulator import CREDENTIALS, LOCAL_PARAMETERS, LocalState, Provisioner
    from stagewarden.invoke import _lambda_process, function_spec

    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    os.environ.update({**CREDENTIALS, "AWS_DEFAULT_REGION": "us-east-1", "POWERTOOLS_METRICS_DISABLED": "true",
                       "POWERTOOLS_LOG_LEVEL": "WARNING"})
    settings = template_settings()
    with mock_aws():
        template = load_template(ROOT / "template.yaml")
        state = LocalState(endpoint="", pid=None)
        state.parameters = parameter_defaults(template, {**LOCAL_PARAMETERS, "LogLevel": "WARNING"})
        Provisioner(template, state, boto3.client).run()
        s3 = boto3.client("s3")
        s3.put_object(Bucket=state.refs["PolicyBucket"], Key="policy.yaml", Body=(ROOT / "policy.example.yaml").read_bytes())
        for i in range(5):  # the stage buckets the traffic reads (mapped to a stage by the policy's name pattern)
            s3.create_bucket(Bucket=f"acme-lab-{i}")
        trail = state.refs["CloudTrailLogBucket"]
        files = corpus()
        delivered = []
        for i, (kind, records) in enumerate(files):
            when = datetime.fromisoformat(records[0]["eventTime"].replace("Z", "+00:00"))
            key = log_key(when, f"{kind}{i:03d}")
            body = log_file(records)
            s3.put_object(Bucket=trail, Key=key, Body=body)
            delivered.append((kind, key, body))
        sample = json.loads((ROOT / "events" / "exfiltration" / "log_file_delivered.sqs.json").read_text())

        def sqs_event(batch: list[tuple[str, str, bytes]]) -> dict:
            records = []
            for kind, key, _ in batch:
                record = json.loads(json.dumps(sample["Records"][0]))
                body = json.loads(record["body"])
                body["detail"]["bucket"]["name"] = trail
                body["detail"]["object"].update(key=key, etag=key[-20:], size=len(_))
                body["id"] = f"bench-{key}"
                record.update(messageId=f"m-{key[-24:]}", body=json.dumps(body))
                records.append(record)
            return {"Records": records}

        calls: dict[str, int] = {}
        inside = {"cpu": 0.0, "started": []}

        def before(model, params, **_):
            calls[model.name] = calls.get(model.name, 0) + 1
            inside["started"].append(time.process_time())

        def after(**_):
            inside["cpu"] += time.process_time() - inside["started"].pop()

        session = boto3._get_default_session()
        session.events.register("before-call", before)
        session.events.register("after-call", after)

        spec = function_spec(ROOT / "template.yaml", "ExfiltrationFunction", state)
        from aws_lambda_powertools.utilities.typing import LambdaContext  # noqa: F401  (imported before the clock)
        from stagewarden.invoke import LambdaContext as Context

        batch_size = settings["batch_size"]
        batches = [delivered[i:i + batch_size] for i in range(0, len(delivered), batch_size)]
        rows = []
        with _lambda_process(spec, {}):
            import importlib

            cold = time.process_time()
            handler = importlib.import_module(spec.module).lambda_handler
            cold_import = time.process_time() - cold
            for n, batch in enumerate(batches):
                # baseline: decompress and parse the batch's files
                t0 = time.process_time()
                parsed = sum(len(orjson.loads(gzip.decompress(body))["Records"]) for _, _, body in batch)
                baseline = time.process_time() - t0
                before_calls, before_inside = dict(calls), inside["cpu"]
                context = Context(spec.name, spec.memory, spec.arn, f"req-{n}", spec.timeout)
                t0 = time.process_time()
                result = handler(sqs_event(batch), context)
                total = time.process_time() - t0
                assert result == {"batchItemFailures": []}, result
                delta = {op: calls.get(op, 0) - before_calls.get(op, 0) for op in calls}
                rows.append({"batch": n, "files": len(batch), "records": parsed, "kinds": sorted({k for k, _, _ in batch}),
                             "baseline_cpu_s": baseline, "handler_cpu_s": total,
                             "emulated_aws_cpu_s": inside["cpu"] - before_inside,
                             "calls": {op: c for op, c in delta.items() if c}})
        items = [i for page in boto3.client("dynamodb").get_paginator("scan").paginate(TableName=state.refs["StateTable"])
                 for i in page["Items"]]
    warm = rows[1:]  # the first invocation builds clients and loads the policy
    return {"settings": settings, "cold": {"import_cpu_s": cold_import, "first_batch": rows[0]}, "batches": warm,
            "state_items": len(items), "state_item_bytes": [item_size(i) for i in items]}


def _value_size(value: dict) -> int:
    (kind, v), = value.items()
    if kind in ("S",):
        return len(v.encode())
    if kind == "N":
        return len(v) // 2 + 2
    if kind == "B":
        return len(v)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "M":
        return 3 + sum(len(k.encode()) + _value_size(x) for k, x in v.items())
    if kind == "L":
        return 3 + sum(1 + _value_size(x) for x in v)
    return sum(len(str(x)) for x in v)  # SS, NS, BS


def item_size(item: dict) -> int:
    """DynamoDB's size of an item (attribute names plus values), as write capacity is billed."""
    return sum(len(name.encode()) + _value_size(value) for name, value in item.items())


def derive(measured: dict) -> dict:
    s, warm = measured["settings"], measured["batches"]
    records = sum(r["records"] for r in warm)
    files = sum(r["files"] for r in warm)
    per = {
        "handler_cpu_us_per_record": statistics.median(r["handler_cpu_s"] / r["records"] for r in warm) * 1e6,
        "handler_cpu_us_per_record_without_emulated_aws": statistics.median(
            (r["handler_cpu_s"] - r["emulated_aws_cpu_s"]) / r["records"] for r in warm) * 1e6,
        "baseline_cpu_us_per_record": statistics.median(r["baseline_cpu_s"] / r["records"] for r in warm) * 1e6,
    }
    per["ratio_handler_to_baseline"] = per["handler_cpu_us_per_record_without_emulated_aws"] / per["baseline_cpu_us_per_record"]
    ops: dict[str, int] = {}
    for r in warm:
        for op, c in r["calls"].items():
            ops[op] = ops.get(op, 0) + c
    per_file = {op: c / files for op, c in sorted(ops.items())}
    ddb_writes = sum(per_file.get(op, 0) for op in ("PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem"))
    ddb_reads = sum(per_file.get(op, 0) for op in ("GetItem", "Query"))
    sns = per_file.get("Publish", 0)
    s3_gets = per_file.get("GetObject", 0)
    other = sum(c for op, c in per_file.items() if op not in
                ("PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "GetItem", "Query", "Publish", "GetObject"))
    item_kb = statistics.mean(measured["state_item_bytes"]) / 1024 if measured["state_item_bytes"] else 1
    wru_per_write = max(1, math.ceil(item_kb))

    # one invocation in Lambda: CPU scaled to the function's share of a vCPU, plus the calls it waits on
    vcpu = min(1.0, s["memory_mb"] / FULL_VCPU_MB)
    cpu_s_per_file = per["handler_cpu_us_per_record_without_emulated_aws"] * PER_FILE / 1e6 / vcpu
    wait_s_per_file = (s3_gets * LATENCY_S["s3_get"] + (ddb_writes + ddb_reads) * LATENCY_S["dynamodb"]
                       + sns * LATENCY_S["sns"] + other * LATENCY_S["other"])
    seconds_per_file = cpu_s_per_file + wait_s_per_file
    per_invocation = PER_FILE / seconds_per_file
    sustained = per_invocation * s["maximum_concurrency"]

    # the organisation
    day = ORG["buckets"] * ORG["data_events_per_bucket_per_day"]
    month_events = day * ORG["days_per_month"]
    average_rate = day / 86400
    peak_rate = average_rate * ORG["peak_to_average"]
    month_files = month_events / ORG["records_per_log_file"]
    invocations = month_files / s["batch_size"]
    gb_seconds = month_files * seconds_per_file * s["memory_mb"] / 1024
    idle_polls = 5 * 3 * 60 * 24 * ORG["days_per_month"]  # Lambda's pollers long-poll (20 s) even when idle
    sqs_requests = month_files * (1 + 2 / s["batch_size"]) + idle_polls  # send (EventBridge), receive + delete per batch
    p = PRICES
    cost = {
        "lambda": gb_seconds * p["lambda_gb_second"] + invocations / 1e6 * p["lambda_per_million_requests"],
        "sqs": sqs_requests / 1e6 * p["sqs_per_million_requests"],
        "dynamodb": month_files * (ddb_writes * wru_per_write / 1e6 * p["dynamodb_per_million_wru"]
                                   + ddb_reads / 1e6 * p["dynamodb_per_million_rru"]),
        "s3_log_file_reads": month_files * s3_gets / 1000 * p["s3_get_per_thousand"],
        "cloudtrail_data_events": month_events / 1e5 * p["cloudtrail_data_events_per_100k"],
    }
    cost["total"] = sum(cost.values())
    return {
        "measured_records": records, "measured_files": files, "per_record": per, "calls_per_file": per_file,
        "dynamodb_writes_per_file": ddb_writes, "dynamodb_reads_per_file": ddb_reads, "state_item_kb_mean": item_kb,
        "lambda_model": {"vcpu_share": vcpu, "cpu_s_per_file": cpu_s_per_file, "wait_s_per_file": wait_s_per_file,
                         "records_per_s_per_invocation": per_invocation, "records_per_s_at_max_concurrency": sustained,
                         "latency_assumptions_s": LATENCY_S},
        "organisation": {**ORG, "events_per_month": month_events, "average_records_per_s": average_rate,
                         "peak_records_per_s": peak_rate, "concurrency_needed_at_peak": peak_rate / per_invocation,
                         "headroom_at_peak": sustained / peak_rate, "log_files_per_month": month_files,
                         "invocations_per_month": invocations, "lambda_gb_seconds": gb_seconds, "sqs_requests": sqs_requests},
        "monthly_cost_usd": cost, "prices": p,
    }


def main(argv: list[str]) -> int:
    # --derive: recompute the figures from bench/out/scale.json (other assumptions or template settings), no re-run
    if argv[1:] == ["--derive"]:
        measured = json.loads((OUT / "scale.json").read_text())["measured"]
        measured["settings"] = template_settings()
    else:
        measured = run()
    figures = derive(measured)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "scale.json").write_text(json.dumps({"measured": measured, "derived": figures}, indent=2, default=str))
    per, lm, org, cost = figures["per_record"], figures["lambda_model"], figures["organisation"], figures["monthly_cost_usd"]
    print(f"ExfiltrationFunction, {figures['measured_files']} log files x {PER_FILE} records in batches of "
          f"{measured['settings']['batch_size']} (warm; CPU time, one core)")
    print(f"  handler {per['handler_cpu_us_per_record']:.1f} us/record in-process, "
          f"{per['handler_cpu_us_per_record_without_emulated_aws']:.1f} us/record without the emulated AWS calls; "
          f"baseline (gunzip + parse) {per['baseline_cpu_us_per_record']:.1f} us/record: "
          f"ratio {per['ratio_handler_to_baseline']:.2f}")
    print(f"  calls per file: {', '.join(f'{op} {c:.2f}' for op, c in figures['calls_per_file'].items())}")
    print(f"  DynamoDB writes per file {figures['dynamodb_writes_per_file']:.2f} "
          f"(state item mean {figures['state_item_kb_mean']:.2f} KB)")
    print(f"  in Lambda at {measured['settings']['memory_mb']} MB ({lm['vcpu_share']:.2f} vCPU): {lm['cpu_s_per_file']:.3f} s CPU "
          f"+ {lm['wait_s_per_file']:.3f} s waiting per file = {lm['records_per_s_per_invocation']:,.0f} records/s per invocation, "
          f"{lm['records_per_s_at_max_concurrency']:,.0f} at MaximumConcurrency {measured['settings']['maximum_concurrency']}")
    print(f"  {org['buckets']:,} buckets x {org['data_events_per_bucket_per_day']:,} events/day: "
          f"{org['average_records_per_s']:,.0f} records/s average, {org['peak_records_per_s']:,.0f} at peak "
          f"(needs {org['concurrency_needed_at_peak']:.2f} invocations; headroom {org['headroom_at_peak']:.1f}x)")
    print("  monthly cost (USD): " + ", ".join(f"{k} {v:,.2f}" for k, v in cost.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
