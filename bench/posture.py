"""Bucket posture cost: S3 API calls per compliant stage bucket in a full reconcile (issue 14: <= 5 reads, 0 writes).

Run: make bench  (or: .venv/bin/python bench/posture.py)

On the local emulator (moto_server on 127.0.0.1, provisioned from template.yaml by
``stagewarden.emulator.up``, exactly as ``stagewarden local up`` does), BUCKETS managed stage
buckets are created at their stage's baseline (lifecycle as the policy requires, versioning on,
SSE-KMS, the four public access blocks, a TLS-only bucket policy; final-prod buckets with Object
Lock and a default retention), half mapped by the ``stagewarden:stage`` tag and half by name glob,
plus UNMANAGED buckets no stage claims. Then ``RetentionFunction`` is invoked in-process with the
daily schedule event (``stagewarden invoke``'s path: the template's handler and environment, real
boto3 clients against the emulator) and every API call it makes is counted through botocore's
event hooks (``before-parameter-build`` notes the bucket, ``after-call`` counts the call and its
HTTP status), per operation and per bucket. Operations named Get*/List*/Head*/Describe*/Query/
Scan are reads; everything else is a write.

The figure is per compliant bucket, split by who reads: retention's reconcile (tags, lifecycle,
versioning; Object Lock only where it is needed: immutable stages, ``posture.object_lock``, or a sweep
that meets a version due), posture's (encryption, public access block, bucket policy; logging only
when the stage names an access-logging target) and retention's sweep of perishable stages
(ListObjectVersions, the sweep marker). Per-run calls (ListBuckets, the policy object, the account
public access block, the replay record) are listed apart. The run must produce no finding and no
write to any bucket.

Time: the same daily run with and without posture (every stage's ``posture: null``), alternated
REPEATS times, medians. CPU is measured for both processes: the function's (this process,
``time.process_time``) and the emulator's (utime + stime of the moto_server process from
/proc/<pid>/stat); wall time is shown too. The machine is shared, so the ratio of the two variants
measured in the same run is the figure, not the absolute seconds.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "layers" / "stage_policy"), str(ROOT / "functions" / "retention"), str(ROOT)]

import boto3  # noqa: E402

from keeper.plan import lifecycle_diff  # noqa: E402
from keeper.posture import tls_statement  # noqa: E402
from stage_policy.loader import loads  # noqa: E402
from stagewarden import emulator  # noqa: E402
from stagewarden.invoke import function_spec, invoke  # noqa: E402

BUCKETS = int(os.environ.get("BENCH_POSTURE_BUCKETS", "1000"))
UNMANAGED = int(os.environ.get("BENCH_POSTURE_UNMANAGED", "100"))
REPEATS = int(os.environ.get("BENCH_POSTURE_REPEATS", "3"))
GOAL_READS, GOAL_WRITES = 5, 0
TAG_KEY = "stagewarden:stage"

POLICY = """
framework: three-stage
defaults: {mode: enforce}
resources:
  tag_key: "stagewarden:stage"
  buckets:
    - {pattern: "acme-lab-*", stage: prod-discovery}
    - {pattern: "acme-uat-*", stage: prod-integration}
    - {pattern: "acme-prod-*", stage: final-prod}
"""
NO_POSTURE = POLICY + """stages:
  prod-discovery: {posture: null}
  prod-integration: {posture: null}
  final-prod: {posture: null}
"""
#: (name prefix, stage, share of the managed buckets); tagged buckets carry a neutral name, so only the tag maps them
MIX = (("acme-lab-bench-", "prod-discovery", 0.5), ("acme-uat-bench-", "prod-integration", 0.3),
       ("acme-prod-bench-", "final-prod", 0.2))
READ = re.compile(r"^(Get|List|Head|Describe|Query|Scan|BatchGet)")
#: who needs each S3 read (per bucket)
ROLE = {"GetBucketTagging": "retention", "GetBucketLifecycleConfiguration": "retention", "GetBucketVersioning": "shared",
        "GetObjectLockConfiguration": "retention", "GetBucketEncryption": "posture", "GetPublicAccessBlock": "posture",
        "GetBucketPolicy": "posture", "GetBucketLogging": "posture", "ListObjectVersions": "sweep", "GetItem": "sweep"}


def say(text: str) -> None:
    print(text, flush=True)


class Calls:
    """Every API call of the clients created after :meth:`install`, by (service, operation) and bucket."""

    def __init__(self, buckets: set[str]):
        self.buckets = buckets
        self.by_bucket: dict[str, Counter] = defaultdict(Counter)
        self.per_run: Counter = Counter()
        self.errors: Counter = Counter()
        self.enabled = False
        self._name = re.compile(r"(?:acme-(?:lab|uat|prod)-bench-|tagged-bench-[a-z-]+?-|team-scratch-bench-)[0-9]{5}")

    def install(self, session: Any) -> None:
        session.events.register("before-parameter-build", self._note)
        session.events.register("after-call", self._count)

    def _note(self, params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        bucket = params.get("Bucket")
        if bucket is None and "Key" in params:  # a DynamoDB key naming a bucket: the sweep marker
            match = self._name.search(json.dumps(params["Key"], default=str))
            bucket = match.group(0) if match else None
        context["bench_bucket"] = bucket

    def _count(self, http_response: Any, model: Any, context: dict[str, Any], **_: Any) -> None:
        if not self.enabled:
            return
        op = model.name
        bucket = context.get("bench_bucket")
        if bucket in self.buckets:
            self.by_bucket[bucket][op] += 1
        else:
            self.per_run[f"{model.service_model.service_name}.{op}"] += 1
        if http_response.status_code >= 300:
            self.errors[f"{op} {http_response.status_code}"] += 1


def cpu_of(pid: int) -> float:
    """utime + stime of a process, in seconds (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def seed(state: emulator.LocalState, policy_text: str) -> tuple[dict[str, str], list[str]]:
    """BUCKETS managed buckets at their stage's baseline and UNMANAGED others; returns ({bucket: stage}, unmanaged)."""
    policy = loads(policy_text, "bench-policy.yaml")
    s3 = emulator.boto_client("s3", state)
    managed: dict[str, str] = {}
    for prefix, stage, share in MIX:
        for i in range(int(BUCKETS * share)):
            # every other bucket is mapped by its tag alone (a name no glob matches)
            managed[(f"tagged-bench-{stage}-" if i % 2 else prefix) + f"{i:05d}"] = stage
    unmanaged = [f"team-scratch-bench-{i:05d}" for i in range(UNMANAGED)]

    def one(bucket: str) -> None:
        stage = managed.get(bucket)
        ret = policy.stages[stage].retention if stage else None
        lock = bool(ret and ret.immutable)
        s3.create_bucket(Bucket=bucket, **({"ObjectLockEnabledForBucket": True} if lock else {}))
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
        if stage is None:
            return
        if bucket.startswith("tagged-"):
            s3.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": [{"Key": TAG_KEY, "Value": stage}]})
        if lock:
            s3.put_object_lock_configuration(Bucket=bucket, ObjectLockConfiguration={
                "ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 1}}})
        desired = lifecycle_diff(ret, [], policy.safety.min_retention_days).desired
        if desired:
            s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": desired})
        s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={"Rules": [
            {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms"}, "BucketKeyEnabled": True}]})
        s3.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration={
            "BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True, "RestrictPublicBuckets": True})
        s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps({"Version": "2012-10-17", "Statement": [tls_statement(bucket)]}))

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, [*managed, *unmanaged]))
    emulator.boto_client("s3control", state).put_public_access_block(
        AccountId=state.account_id, PublicAccessBlockConfiguration={
            "BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True, "RestrictPublicBuckets": True})
    return managed, unmanaged


def daily_run(template: Path, state: emulator.LocalState) -> dict[str, Any]:
    event = json.loads((ROOT / "events" / "retention" / "schedule.json").read_text())
    event["id"] = f"{event['id']}-bench-{uuid.uuid4()}"  # a new run each time (not a replay)
    return invoke(function_spec(template, "RetentionFunction", state), event)


def timed(template: Path, state: emulator.LocalState) -> tuple[float, float, float, dict[str, Any]]:
    """(function CPU s, emulator CPU s, wall s, result) of one daily run."""
    cpu0, server0, wall0 = time.process_time(), cpu_of(state.pid), time.perf_counter()
    result = daily_run(template, state)
    return time.process_time() - cpu0, cpu_of(state.pid) - server0, time.perf_counter() - wall0, result


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="stagewarden-bench-posture-"))
    (work / "template.yaml").write_bytes((ROOT / "template.yaml").read_bytes())
    for name in ("layers", "functions", "events"):
        (work / name).symlink_to(ROOT / name)
    template = work / "template.yaml"
    policies = {name: work / f"{name}.yaml" for name in ("posture", "no-posture")}
    policies["posture"].write_text(POLICY)
    policies["no-posture"].write_text(NO_POSTURE)
    state = emulator.up(template, policies["posture"], {"DefaultRemediationMode": "enforce"})
    try:
        os.environ.update(state.environ())
        t0 = time.perf_counter()
        managed, unmanaged = seed(state, POLICY)
        say(f"seeded {len(managed)} compliant managed buckets and {len(unmanaged)} unmanaged ones on {state.endpoint} "
            f"in {time.perf_counter() - t0:.0f} s (not measured)")

        boto3.setup_default_session()
        calls = Calls(set(managed) | set(unmanaged))
        calls.install(boto3.DEFAULT_SESSION)
        calls.enabled = True
        result = daily_run(template, state)
        calls.enabled = False
        report_counts(calls, managed, unmanaged, result)

        samples: dict[str, list[tuple[float, float, float]]] = {"posture": [], "no-posture": []}
        for i in range(REPEATS):
            for variant in (("posture", "no-posture") if i % 2 == 0 else ("no-posture", "posture")):
                emulator.seed_policy(state, policies[variant])
                cpu, server, wall, out = timed(template, state)
                assert out["findings"] == [], (variant, out["findings"][:5])
                samples[variant].append((cpu, server, wall))
        report_times(samples, len(managed) + len(unmanaged))
    finally:
        emulator.down(template)
        shutil.rmtree(work, ignore_errors=True)


def report_counts(calls: Calls, managed: dict[str, str], unmanaged: list[str], result: dict[str, Any]) -> None:
    assert result["findings"] == [], f"a compliant fleet produced findings: {result['findings'][:5]}"
    missing = [b for b in managed if not calls.by_bucket.get(b)]
    assert not missing, f"{len(missing)} managed bucket(s) were not read, e.g. {missing[:3]}"
    say(f"\ndaily run of RetentionFunction ({result['buckets']} buckets listed, 0 findings): API calls per bucket")
    writes_total = 0
    reconcile_reads: dict[str, float] = {}
    for prefix, stage, _ in MIX:
        buckets = [b for b, s in managed.items() if s == stage]
        per = [calls.by_bucket[b] for b in buckets]
        ops = Counter()
        for c in per:
            ops.update(c)
        writes = sum(n for op, n in ops.items() if not READ.match(op))
        writes_total += writes
        by_role: Counter = Counter()
        for op, n in ops.items():
            if READ.match(op):
                by_role[ROLE.get(op, "other")] += n
        n = len(buckets)
        reconcile = (by_role["retention"] + by_role["shared"] + by_role["posture"] + by_role["other"]) / n
        reconcile_reads[stage] = max(sum(v for op, v in c.items() if READ.match(op) and ROLE.get(op) != "sweep") for c in per)
        say(f"  {stage:16} ({n} buckets): reconcile reads {reconcile:.2f} = retention {by_role['retention'] / n:.2f} "
            f"+ versioning (shared) {by_role['shared'] / n:.2f} + posture {by_role['posture'] / n:.2f}"
            + (f" + other {by_role['other'] / n:.2f}" if by_role["other"] else "")
            + f"; sweep reads {by_role['sweep'] / n:.2f}; writes {writes / n:.2f}")
        say("      " + ", ".join(f"{op} {v / n:.2f}" for op, v in sorted(ops.items())))
    un = Counter()
    for b in unmanaged:
        un.update(calls.by_bucket.get(b, Counter()))
    un_writes = sum(n for op, n in un.items() if not READ.match(op))
    say(f"  unmanaged        ({len(unmanaged)} buckets): " + ", ".join(f"{op} {v / max(1, len(unmanaged)):.2f}"
                                                                    for op, v in sorted(un.items())) + f"; writes {un_writes}")
    say("  per run (not per bucket): " + ", ".join(f"{k} {v}" for k, v in sorted(calls.per_run.items())))
    if calls.errors:
        say("  error responses (a missing tag set reads as none): " + ", ".join(f"{k} x{v}" for k, v in sorted(calls.errors.items())))
    posture_max = max(sum(v for op, v in calls.by_bucket[b].items() if ROLE.get(op) == "posture") for b in managed)
    say(f"FIGURE posture reads per compliant bucket (max): {posture_max} (goal <= {GOAL_READS}); retention + posture "
        "reconcile reads (max): " + ", ".join(f"{stage} {n}" for stage, n in reconcile_reads.items())
        + f"; writes to compliant buckets: {writes_total} (goal {GOAL_WRITES}); writes to unmanaged buckets: {un_writes}")
    assert writes_total == 0 and un_writes == 0


def report_times(samples: dict[str, list[tuple[float, float, float]]], buckets: int) -> None:
    scale = 1000 / buckets
    med = {k: [statistics.median(s[i] for s in v) for i in range(3)] for k, v in samples.items()}
    say(f"\ntime per 1,000 buckets of the daily run, median of {REPEATS} alternated runs each "
        "(function CPU / emulator CPU / wall):")
    for k in ("no-posture", "posture"):
        cpu, server, wall = med[k]
        say(f"  {k:10}: {cpu * scale:6.2f} s / {server * scale:6.2f} s / {wall * scale:6.2f} s")
    p, n = med["posture"], med["no-posture"]
    say(f"FIGURE posture's share of the daily run: function CPU x{p[0] / n[0]:.2f}, emulator CPU x{p[1] / n[1]:.2f}, "
        f"wall x{p[2] / n[2]:.2f} (retention with posture / retention alone)")


if __name__ == "__main__":
    main()
