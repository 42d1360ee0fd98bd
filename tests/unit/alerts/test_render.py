"""The Slack message and the ASFF finding, pure: no AWS, no network."""

from __future__ import annotations

import json

from courier import asff, render
from courier.incident import Incident, held_back, post_reason

from stage_policy.findings import Finding


def finding(**kw) -> Finding:
    base = dict(rule="exfil.bulk-download", severity="high", stage="prod-discovery", resource="arn:aws:s3:::acme-lab-data",
                principal="arn:aws:iam::123456789012:role/DataScientistAlice", summary="alice read 1500 objects.",
                evidence={"session_names": ["alice@example.com"], "objects": 1500})
    return Finding(**{**base, **kw})


DELIVERY = render.Delivery("new incident", 1, 0, "2026-11-22T08:00:00Z")


def test_event_text_cannot_become_a_link_or_a_mention() -> None:
    # Given an object key and a session name crafted by whoever triggered the finding
    f = finding(summary="read <https://evil.example|the report> for <!channel>",
                evidence={"sample_keys": ["<!here> & <https://evil.example|click>"], "session_names": ["<@U123>"]})

    text = json.dumps(render.message(f, DELIVERY, "us-east-1"))

    assert "<!channel>" not in text and "<!here>" not in text and "<https://evil" not in text and "<@U123>" not in text
    assert "&lt;!channel&gt;" in text and "&amp;" in text


def test_blocks_stay_within_block_kit_limits() -> None:
    f = finding(summary="x" * 1000, evidence={f"k{i}": "y" * 5000 for i in range(40)}, action="z" * 5000)

    payload = render.message(f, DELIVERY, "us-east-1")

    assert len(payload["blocks"]) <= 50 and len(payload["blocks"][0]["text"]["text"]) <= 150
    for block in payload["blocks"]:
        texts = [block["text"]["text"]] if "text" in block else []
        texts += [x["text"] for x in block.get("fields", []) + block.get("elements", [])]
        assert all(len(t) <= 3000 for t in texts)
    assert "… 32 more in the finding" in json.dumps(payload, ensure_ascii=False)


def test_as_text_reads_like_the_channel() -> None:
    text = render.as_text(render.message(finding(), DELIVERY, "us-east-1"))

    assert text.splitlines()[0] == "# HIGH: exfil.bulk-download in prod-discovery"
    assert "Principal: `DataScientistAlice` (session alice@example.com)" in text
    assert "bucket in S3 (https://s3.console.aws.amazon.com/s3/buckets/acme-lab-data)" in text


def test_asff_has_every_required_attribute_and_a_stable_id() -> None:
    a = asff.to_asff(finding(), account="123456789012", region="eu-west-1", total=7)
    b = asff.to_asff(finding(summary="a later occurrence"), account="123456789012", region="eu-west-1", total=8)

    required = {"AwsAccountId", "CreatedAt", "Description", "GeneratorId", "Id", "ProductArn", "Resources", "SchemaVersion",
                "Severity", "Title", "Types", "UpdatedAt"}
    assert required <= set(a) and a["Id"] == b["Id"]
    assert a["ProductArn"] == "arn:aws:securityhub:eu-west-1:123456789012:product/123456789012/default"
    assert a["FindingProviderFields"]["Severity"] == {"Label": "HIGH", "Original": "high"}
    assert [r["Type"] for r in a["Resources"]] == ["AwsS3Bucket", "AwsIamRole"] and b["ProductFields"]["stagewarden/count"] == "8"


def test_post_or_hold() -> None:
    open_window = Incident("k", count=3, window_start=0, window_end=100, last_seen=50, top_rank=2, posted_rank=2, posted_count=1)

    assert post_reason(open_window, 2, 60) is None and held_back(open_window) == 1
    assert post_reason(open_window, 3, 60) == "escalated from high to critical"
    assert post_reason(Incident("k", 1, 0, 100, 0, 2), 2, 10) == "new incident"
    assert post_reason(Incident("k", 1, 0, 100, 0, 2, previous_held=4), 2, 10) == "new window"
