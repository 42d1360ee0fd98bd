"""Which stage a bucket or role belongs to: by tag first, then by name glob, else unmanaged."""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Literal, Mapping

from stage_policy.model import NamePattern, Policy

#: ``remembered``: the retention function holds a bucket at the permanent stage it remembers (keeper.reconcile).
Via = Literal["tag", "pattern", "unmanaged", "remembered"]


@dataclass(frozen=True)
class StageMatch:
    """The answer for one resource. ``stage`` is None when the resource is unmanaged."""

    stage: str | None
    via: Via
    detail: str

    @property
    def managed(self) -> bool:
        return self.stage is not None


def bucket_name(value: str) -> str:
    """Accept a bucket name or an ``arn:aws:s3:::bucket[/key]`` ARN."""
    if value.startswith("arn:"):
        value = value.split(":::", 1)[-1]
    return value.split("/", 1)[0]


def role_name(value: str) -> str:
    """Accept a role name, a role ARN (with path) or an assumed-role session ARN."""
    if value.startswith("arn:"):
        resource = value.split(":", 5)[-1]
        kind, _, rest = resource.partition("/")
        parts = rest.split("/")
        if kind == "assumed-role":
            return parts[0]
        return parts[-1]
    return value


def _resolve(policy: Policy, name: str, tags: Mapping[str, str] | None, rules: tuple[NamePattern, ...]) -> StageMatch:
    tag_key = policy.resources.tag_key
    if tags and tag_key in tags:
        value = tags[tag_key]
        if value in policy.stages:
            return StageMatch(value, "tag", f"tag {tag_key}={value}")
        return StageMatch(None, "unmanaged", f"tag {tag_key}={value!r} names no stage in the policy")
    for i, rule in enumerate(rules):
        if fnmatchcase(name, rule.pattern):
            return StageMatch(rule.stage, "pattern", f"name matches {rule.pattern!r} (rule {i})")
    return StageMatch(None, "unmanaged", "no tag and no name pattern matches")


def stage_for_bucket(policy: Policy, bucket: str, tags: Mapping[str, str] | None = None) -> StageMatch:
    return _resolve(policy, bucket_name(bucket), tags, policy.resources.buckets)


def stage_for_role(policy: Policy, role: str, tags: Mapping[str, str] | None = None) -> StageMatch:
    return _resolve(policy, role_name(role), tags, policy.resources.roles)
