"""Everything placed into a finding is bounded: no input can make a finding invalid or oversized."""

from __future__ import annotations

import json
from datetime import datetime, timezone

from stage_policy.findings import MAX_LIST, MAX_SUMMARY, TRUNCATED, Finding, bounded


def test_long_text_is_truncated_with_a_marker() -> None:
    f = Finding(rule="exfil.bulk-download", severity="high", resource="arn:aws:s3:::b", summary="x" * 5000, action="y" * 5000)

    assert len(f.summary) == MAX_SUMMARY and f.summary.endswith(TRUNCATED) and len(f.action) == MAX_SUMMARY


def test_lists_in_evidence_are_capped_with_a_count() -> None:
    f = Finding(rule="exfil.bulk-download", severity="high", resource="r", summary="s",
                evidence={"external_principals": [f"arn:aws:iam::{i:012d}:root" for i in range(400)], "ok": [1, 2]})

    assert len(f.evidence["external_principals"]) == MAX_LIST and f.evidence["external_principals_omitted"] == 400 - MAX_LIST
    assert f.evidence["ok"] == [1, 2] and "ok_omitted" not in f.evidence


def test_nested_and_odd_values_become_bounded_json() -> None:
    deep: dict = {}
    node = deep
    for _ in range(20):
        node["next"] = {}
        node = node["next"]
    value = {"deep": deep, "set": {3, 1, 2}, "when": datetime(2026, 1, 1, tzinfo=timezone.utc), "blob": b"\x00" * 10,
             "many": {f"k{i}": i for i in range(500)}, "text": "z" * 10_000}

    out = bounded(value)

    text = json.dumps(out)
    assert len(text) < 20_000 and out["set"] == [1, 2, 3] and out["when"] == "2026-01-01T00:00:00+00:00"
    assert out["many"]["keys_omitted"] == 500 - 100


def test_a_finding_from_hostile_values_serialises() -> None:
    f = Finding(rule="input.malformed", severity="medium", resource="s3://b/" + "k" * 5000, principal="p" * 5000,
                summary="s", evidence={"issues": [{"detail": "d" * 100_000}] * 100})

    assert len(f.to_json()) < 200_000 and len(f.resource) <= 2048  # the publisher fits the rest to SNS
