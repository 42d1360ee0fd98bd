"""Buckets and roles map to stages by tag first, then by name glob; anything else is unmanaged."""

from __future__ import annotations

import pytest

from stage_policy.loader import load
from stage_policy.mapping import role_name, stage_for_bucket, stage_for_role


@pytest.fixture
def policy(example_policy_path):
    return load(example_policy_path)


def test_tag_wins_over_the_name_pattern(policy) -> None:
    match = stage_for_bucket(policy, "acme-lab-data", {"stagewarden:stage": "final-prod"})

    assert (match.stage, match.via) == ("final-prod", "tag")


def test_name_pattern_maps_a_bucket_given_by_name_or_arn(policy) -> None:
    assert stage_for_bucket(policy, "acme-uat-features").stage == "prod-integration"
    assert stage_for_bucket(policy, "arn:aws:s3:::acme-prod-models/v1/model.tar.gz").stage == "final-prod"


def test_unmapped_resources_are_unmanaged_not_errors(policy) -> None:
    match = stage_for_bucket(policy, "someone-elses-bucket")

    assert match.stage is None and not match.managed and match.via == "unmanaged"


def test_a_tag_naming_an_unknown_stage_is_unmanaged_with_the_reason(policy) -> None:
    match = stage_for_bucket(policy, "acme-lab-data", {"stagewarden:stage": "prod-lab"})

    assert match.stage is None and "names no stage" in match.detail


@pytest.mark.parametrize(
    "value, expected",
    [
        ("BreakGlassProd", "BreakGlassProd"),
        ("arn:aws:iam::111111111111:role/BreakGlassProd", "BreakGlassProd"),
        ("arn:aws:iam::111111111111:role/team/a/DataScientistAlice", "DataScientistAlice"),
        ("arn:aws:sts::111111111111:assumed-role/DataScientistAlice/alice@example.com", "DataScientistAlice"),
    ],
)
def test_role_names_are_read_from_every_arn_form(value: str, expected: str) -> None:
    assert role_name(value) == expected


def test_assumed_role_sessions_map_to_the_roles_stage(policy) -> None:
    match = stage_for_role(policy, "arn:aws:sts::111111111111:assumed-role/BreakGlassProd/oncall")

    assert (match.stage, match.via) == ("final-prod", "pattern")
