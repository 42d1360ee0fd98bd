"""Red team: what organization.service_principals really does (the settings registry once claimed more)."""

from __future__ import annotations

import random

import pytest

from exfil.engine import Detector, MemoryWindowStore

from stage_policy.fields import entry_for
from stage_policy.loader import loads
from stagewarden.trailgen import data_event, management_event
from tests.unit.exfiltration.test_engine import T0

BROWSER = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15"


def policy(globs: list[str]):
    return loads(f"""
framework: three-stage
organization: {{account_ids: ["123456789012"], service_principals: {globs!r}}}
resources:
  buckets: [{{pattern: "acme-prod-*", stage: final-prod}}, {{pattern: "acme-lab-*", stage: prod-discovery}}]
""")


def test_a_listed_service_principal_is_never_a_human() -> None:
    # Given an automation role whose reads of final-prod look like a browser's (a console-driven job runner)
    rng = random.Random(5)
    reads = [data_event(role="etl-runner", session="job-1", bucket="acme-prod-models", key=f"m/{i}", when=T0, rng=rng,
                        user_agent=BROWSER, vpce="vpce-0a1b2c3d4e5f67890", ip="10.0.0.9") for i in range(3)]

    def rules(globs: list[str]) -> list[str]:
        detector = Detector(policy(globs), MemoryWindowStore())
        detector.feed(reads)
        return [d.finding.rule for d in detector.finish("t.json.gz")]

    # Then it is human access to final-prod unless organization.service_principals lists it
    assert rules([]) == ["access.prod-human"]
    assert rules(["arn:aws:iam::123456789012:role/etl-*"]) == []


def test_a_bucket_policy_granting_a_listed_service_principal_outside_the_organisation_is_external() -> None:
    # Given a vendor's automation role listed in organization.service_principals
    vendor = "arn:aws:iam::555555555555:role/vendor-sync"
    doc = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"AWS": vendor}, "Action": "s3:GetObject",
                                                   "Resource": "arn:aws:s3:::acme-lab-data/*"}]}
    detector = Detector(policy(["arn:aws:iam::555555555555:role/vendor-*"]), MemoryWindowStore())

    # When a bucket policy grants it
    detector.feed([management_event("PutBucketPolicy", "s3.amazonaws.com", {"bucketName": "acme-lab-data", "bucketPolicy": doc})])

    # Then it is external like any other outside principal, and the registry does not say otherwise
    assert [d.finding.rule for d in detector.finish("t.json.gz")] == ["exfil.bucket-policy-external"]
    entry = entry_for("organization.service_principals")
    assert "may be granted in bucket policies" not in entry.effect and "exfil.rules" not in entry.reader, entry


def test_a_human_writing_to_a_read_only_stage_is_flagged() -> None:
    p = loads("""
framework: custom
stages:
  reporting:
    production_data: true
    interactive_access: read-only
    download: allowed
    retention: {default_days: 30, noncurrent_version_days: 7}
resources:
  buckets: [{pattern: "acme-rep-*", stage: reporting}]
""")
    rng = random.Random(6)
    writes = [data_event(role="AWSReservedSSO_Analyst_1a2b", session="eve@example.com", bucket="acme-rep-data", key=f"r/{i}",
                         when=T0, rng=rng, name="PutObject", vpce="vpce-0a1b2c3d4e5f67890", ip="10.0.0.9") for i in range(3)]
    detector = Detector(p, MemoryWindowStore())
    detector.feed(writes)
    assert [d.finding.rule for d in detector.finish("t.json.gz")] == ["access.prod-human"]


def test_a_human_reading_a_read_only_stage_or_a_service_writing_to_it_is_not_flagged() -> None:
    p = loads("""
framework: custom
stages:
  reporting:
    production_data: true
    interactive_access: read-only
    download: allowed
    retention: {default_days: 30, noncurrent_version_days: 7}
resources:
  buckets: [{pattern: "acme-rep-*", stage: reporting}]
""")
    rng = random.Random(7)
    reads = [data_event(role="AWSReservedSSO_Analyst_1a2b", session="eve@example.com", bucket="acme-rep-data", key=f"r/{i}",
                        when=T0, rng=rng, vpce="vpce-0a1b2c3d4e5f67890", ip="10.0.0.9") for i in range(3)]
    lists = [data_event(role="AWSReservedSSO_Analyst_1a2b", session="eve@example.com", bucket="acme-rep-data", key="r/",
                        when=T0, rng=rng, name="ListObjects", vpce="vpce-0a1b2c3d4e5f67890", ip="10.0.0.9")]
    detector = Detector(p, MemoryWindowStore())
    detector.feed(reads + lists)
    assert [d.finding.rule for d in detector.finish("t.json.gz")] == []
