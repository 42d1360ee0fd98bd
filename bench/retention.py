"""Retention sweep cost: S3 API calls per 1,000 expired versions deleted (goal <= 3.2; 2.2 before the stage re-check).

Run: make bench  (or: .venv/bin/python bench/retention.py)

One lab bucket on the emulator (moto's in-process mock_aws) holds 100,000 versions past
retention: 50,000 keys under raw/ (30 days), each with two versions written 40 days ago. One
daily run of the retention function's keeper (reconcile + sweep, enforce, the cap raised to
100,000) brings the bucket to policy and deletes them. Every S3 call the keeper makes is
counted through botocore's event hooks, per operation; the bucket must be empty afterwards.
Each DeleteObjects request is preceded by one GetBucketTagging (the sweep re-reads the bucket's
stage so that a bucket retagged permanent mid-sweep loses nothing): +1 call per 1,000 deletions,
which moved the goal from 2.2 to 3.2. The stage memory's DynamoDB reads (one GetItem per bucket
reconciled, on the state table) are counted apart, not in the S3 figure.

A second, smaller case does the same in a bucket with Object Lock on, where each version due
costs one HeadObject to read its lock state (reported, not part of the figure).

moto deep-copies every version of the bucket on each ListObjectVersions page (100 pages x
100,000 versions here). The bench swaps that copy for a shallow one (a new object sharing the
key's attributes), which changes moto's speed only, not what it returns or how many calls are
made. The versions are seeded through moto's backend directly (seeding is not measured).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "layers" / "stage_policy"), str(ROOT / "functions" / "retention"), str(ROOT)]
for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}.items():
    os.environ.setdefault(key, value)
os.environ.pop("AWS_ENDPOINT_URL", None)

import boto3  # noqa: E402
from moto import mock_aws  # noqa: E402

from keeper.ports import BucketReader, LockReader, StageMemory, SweepMarkers, VersionLister  # noqa: E402
from keeper.reconcile import Keeper  # noqa: E402
from stage_policy.executor import Executor, settle  # noqa: E402
from stage_policy.loader import loads  # noqa: E402

VERSIONS = int(os.environ.get("BENCH_RETENTION_VERSIONS", "100000"))
LOCKED_VERSIONS = int(os.environ.get("BENCH_RETENTION_LOCKED_VERSIONS", "10000"))
GOAL = 3.2  # 2.2 + one GetBucketTagging per DeleteObjects request
TABLE = "bench-state"
POLICY = """
framework: three-stage
defaults: {mode: enforce}
safety: {max_deletions_per_run: 200000}
resources:
  buckets: [{pattern: "acme-lab-*", stage: prod-discovery}]
"""


_VIEWS: dict[type, type] = {}


def _shallow(versions: list) -> list:
    """What moto's deepcopy is for here: objects whose ``is_latest`` can be set without touching the stored key.

    Same class (a subclass, for moto's isinstance checks) and attributes; its ``__del__`` does nothing, as the
    stored key still owns the body buffer.
    """
    out = []
    for key in versions:
        cls = type(key)
        if cls not in _VIEWS:
            _VIEWS[cls] = type(cls.__name__, (cls,), {"__del__": lambda self: None})
        clone = object.__new__(_VIEWS[cls])
        clone.__dict__.update(key.__dict__)
        out.append(clone)
    return out


def seed(bucket: str, versions: int, lock: bool) -> None:
    import moto.s3.models as s3_models

    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=bucket, **({"ObjectLockEnabledForBucket": True} if lock else {}))
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    backend = s3_models.s3_backends["123456789012"]["aws"]
    when = (datetime.now(timezone.utc) - timedelta(days=40)).replace(tzinfo=None)
    with mock.patch.object(s3_models, "utcnow", lambda: when):
        for i in range(versions // 2):
            for body in (b"1", b"2"):
                backend.put_object(bucket, f"raw/part-{i:06d}.csv", body, disable_notification=True)


def sweep_once(bucket: str) -> dict:
    policy = loads(POLICY, "bench-policy")
    s3, ddb = boto3.client("s3"), boto3.client("dynamodb")
    calls: Counter[str] = Counter()
    ddb_calls: Counter[str] = Counter()
    s3.meta.events.register("before-call.s3", lambda model, **_: calls.update([model.name]))
    ddb.meta.events.register("before-call.dynamodb", lambda model, **_: ddb_calls.update([model.name]))
    keeper = Keeper(policy, BucketReader(s3), VersionLister(s3), LockReader(s3), datetime.now(timezone.utc),
                    markers=SweepMarkers(ddb, TABLE), memory=StageMemory(ddb, TABLE))
    clients = {"s3": s3}
    executor = Executor(lambda service: clients.setdefault(service, boto3.client(service)), policy, "enforce")
    findings: list = []
    start = time.perf_counter()
    settle(keeper.run([bucket], executor, sweep=True), executor, findings.append)
    seconds = time.perf_counter() - start
    deleted = policy.safety.max_deletions_per_run - executor.remaining("deletions")
    left = boto3.client("s3").list_object_versions(Bucket=bucket, MaxKeys=10)
    assert not left.get("Versions") and not left.get("DeleteMarkers"), "the sweep left versions behind"
    total = sum(calls.values())
    return {"bucket": bucket, "versions_deleted": deleted, "s3_calls": total, "calls_by_operation": dict(sorted(calls.items())),
            "dynamodb_calls": dict(sorted(ddb_calls.items())),
            "calls_per_1000_deleted": round(total / (deleted / 1000), 3), "seconds": round(seconds, 1),
            "findings": sorted(f.rule for f in findings)}


def main() -> int:
    import moto.s3.models as s3_models

    fast_copy = SimpleNamespace(deepcopy=_shallow, copy=__import__("copy").copy)
    with mock_aws(), mock.patch.object(s3_models, "copy", fast_copy):
        boto3.client("dynamodb").create_table(
            TableName=TABLE, BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}, {"AttributeName": "sk", "AttributeType": "S"}])
        seed("acme-lab-bench", VERSIONS, lock=False)
        plain = sweep_once("acme-lab-bench")
        seed("acme-lab-bench-locked", LOCKED_VERSIONS, lock=True)
        locked = sweep_once("acme-lab-bench-locked")
    __import__("gc").collect()  # let moto's keys close their buffers now, not noisily at interpreter exit
    ratio = plain["calls_per_1000_deleted"]
    print("Retention sweep cost (S3 API calls, counted on moto's mock_aws)")
    print(f"  {plain['versions_deleted']:>7,} versions past retention, no Object Lock: {plain['s3_calls']:,} calls "
          f"= {ratio} per 1,000 deleted (goal <= {GOAL})  [{plain['seconds']} s]")
    print(f"      {plain['calls_by_operation']}; DynamoDB {plain['dynamodb_calls']}")
    print(f"  {locked['versions_deleted']:>7,} versions past retention, Object Lock on:  {locked['s3_calls']:,} calls "
          f"= {locked['calls_per_1000_deleted']} per 1,000 deleted (one HeadObject per version due)")
    print(f"      {locked['calls_by_operation']}")
    print(json.dumps({"bench": "retention", "goal": GOAL, "plain": plain, "object_lock": locked}))
    return 0 if ratio <= GOAL else 1


if __name__ == "__main__":
    raise SystemExit(main())
