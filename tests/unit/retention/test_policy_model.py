"""The retention parts of the policy model: classes against the default, old versions, audit and multipart settings."""

from __future__ import annotations

import pytest

from stage_policy.loader import PolicyError, loads
from stage_policy.model import PrefixClass, Retention


def rejected(doc: str) -> list[tuple[str, str]]:
    with pytest.raises(PolicyError) as exc:
        loads(doc, "p.yaml")
    return exc.value.problems


def test_a_class_longer_than_the_default_is_rejected_saying_why() -> None:
    problems = rejected("framework: two-stage\nstages: {prod-discovery: {retention: {default_days: 30, noncurrent_version_days: 7, "
                        "prefix_classes: [{prefix: models/, days: 365}]}}}")

    assert problems == [("stages.prod-discovery.retention.prefix_classes[0].days",
                         "365 is longer than default_days 30: S3 applies the shortest expiration when lifecycle rules overlap, "
                         "so the default rule would expire 'models/' after 30 days (raise default_days to at least 365)")]


def test_old_versions_may_not_outlive_a_class() -> None:
    problems = rejected("framework: two-stage\nstages: {prod-discovery: {retention: {default_days: 90, noncurrent_version_days: 14, "
                        "prefix_classes: [{prefix: raw/, days: 10}]}}}")

    assert problems == [("stages.prod-discovery.retention.noncurrent_version_days",
                         "must not exceed prefix_classes[0].days 10 (old versions would outlive the data)")]


def test_the_new_fields_have_safe_defaults_and_bounds() -> None:
    policy = loads("framework: two-stage\n", "p.yaml")
    assert policy.safety.audit_log_retention_days == 365
    assert policy.stages["prod-discovery"].retention.abort_multipart_days == 7
    assert rejected("framework: two-stage\nsafety: {audit_log_retention_days: 0}\n")[0][0] == "safety.audit_log_retention_days"
    assert rejected("framework: two-stage\nstages: {prod-discovery: {retention: {abort_multipart_days: 0}}}")[0][0] == \
        "stages.prod-discovery.retention.abort_multipart_days"


def test_days_for_keys_and_their_old_versions() -> None:
    ret = Retention(default_days=90, noncurrent_version_days=7, prefix_classes=(PrefixClass(prefix="raw/", days=30),))
    unset = Retention(default_days=90, prefix_classes=(PrefixClass(prefix="raw/", days=30),))

    assert (ret.days_for("raw/a"), ret.days_for("rawx"), ret.noncurrent_days_for("raw/a")) == (30, 90, 7)
    assert (unset.noncurrent_days_for("raw/a"), unset.noncurrent_days_for("b")) == (30, 90)
    assert Retention(permanent=True).noncurrent_days_for("raw/a") is None
